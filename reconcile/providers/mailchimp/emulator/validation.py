"""Problem answers and request checks for the Mailchimp emulator.

Written from /work/shared/mailchimp-api.md alone. Every refusal is an `ApiProblem`,
answered as application/problem+json with type, title, status, detail, instance
and, for validation errors, `errors: [{field, message}]`.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

ERROR_TYPE = "https://mailchimp.com/developer/marketing/docs/errors/"
SCHEMA_DETAIL = (
    "The resource submitted could not be validated. "
    "For field-specific details, see the 'errors' array."
)

WRITE_STATUSES = ("subscribed", "unsubscribed", "cleaned", "pending", "transactional")
READ_STATUSES = (*WRITE_STATUSES, "archived")
MERGE_FIELD_TYPES = (
    "text",
    "number",
    "address",
    "phone",
    "date",
    "url",
    "imageurl",
    "radio",
    "dropdown",
    "birthday",
    "zip",
)
MERGE_TAG = re.compile(r"[A-Z0-9_]{1,10}")
_EMAIL = re.compile(r"[^@\s]+@[^@\s]+\.[A-Za-z]{2,}")


@dataclass
class ApiProblem(Exception):
    status: int
    title: str
    detail: str
    errors: list[dict[str, str]] = field(default_factory=list)
    headers: dict[str, str] = field(default_factory=dict)
    with_type: bool = True

    def __str__(self) -> str:
        return f"{self.status} {self.title}: {self.detail}"


def invalid(detail: str, errors: list[dict[str, str]] | None = None) -> ApiProblem:
    return ApiProblem(400, "Invalid Resource", detail, errors or [])


def schema_error(field_name: str, message: str) -> ApiProblem:
    return invalid(SCHEMA_DETAIL, [{"field": field_name, "message": message}])


def not_found() -> ApiProblem:
    return ApiProblem(404, "Resource Not Found", "The requested resource could not be found.")


def throttled(email: str) -> ApiProblem:
    return invalid(
        f"{email} has signed up to a lot of lists very recently; "
        "we're not allowing more signups for now"
    )


def parse_instant(raw: str, name: str) -> datetime:
    """A query timestamp: ISO 8601 with an offset (2021-11-23T22:51:58+00:00 or ...Z).

    Anything else, an offset-less value included, is a 400 naming the parameter. An
    unencoded '+' in a query string arrives as a space and so is refused too."""
    try:
        moment = datetime.fromisoformat(raw)
    except ValueError:
        moment = None
    if moment is None or moment.tzinfo is None or "T" not in raw:
        raise invalid(
            f"{name} must be an ISO 8601 date and time with an offset, "
            f"e.g. 2021-11-23T22:51:58+00:00; got {raw!r}.",
            [{"field": name, "message": "This value is not a valid datetime."}],
        )
    return moment


def stored_instant(value: Any) -> datetime | None:
    """A member's stored timestamp as an instant; "" or unreadable is None (offset-less
    values are read as UTC)."""
    if not isinstance(value, str) or not value:
        return None
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        return None
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


def subscriber_hash(email: str) -> str:
    return hashlib.md5(email.strip().lower().encode(), usedforsecurity=False).hexdigest()


def check_email(value: Any, fake_domains: tuple[str, ...]) -> str:
    if not isinstance(value, str):
        raise schema_error(
            "email_address", f"Schema describes string, {_json_type(value)} found instead"
        )
    email = value.strip()
    if not _EMAIL.fullmatch(email):
        raise invalid("Please provide a valid email address.")
    if email.rsplit("@", 1)[1].lower() in fake_domains:
        raise invalid(f"{email} looks fake or invalid, please enter a real email address.")
    return email


def check_status(value: Any, name: str, allowed: tuple[str, ...] = WRITE_STATUSES) -> str:
    if not isinstance(value, str) or value not in allowed:
        raise schema_error(name, f"Value is not one of the allowed values: {', '.join(allowed)}")
    return value


def check_object(value: Any, name: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise schema_error(name, f"Schema describes object, {_json_type(value)} found instead")
    return value


def check_bool(value: Any, name: str) -> bool:
    if not isinstance(value, bool):
        raise schema_error(name, f"Schema describes boolean, {_json_type(value)} found instead")
    return value


def check_string(value: Any, name: str) -> str:
    if not isinstance(value, str):
        raise schema_error(name, f"Schema describes string, {_json_type(value)} found instead")
    return value


def check_int(value: Any, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise schema_error(name, f"Schema describes integer, {_json_type(value)} found instead")
    return value


def check_email_list(value: Any, name: str, limit: int) -> list[str]:
    if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
        raise schema_error(name, "Schema describes array of strings")
    if len(value) > limit:
        raise invalid(f"{name}: at most {limit} email addresses per request, got {len(value)}")
    return list(value)


def merge_value(field_def: dict[str, Any], value: Any) -> tuple[Any, str | None]:
    """(stored value, per-field message or None) for one member merge value.

    Raises ApiProblem for schema-level rejections (null, booleans, wrong JSON type)."""
    tag = field_def["tag"]
    if value is None:
        raise schema_error(f"merge_fields.{tag}", "Schema describes string, NULL found instead")
    if isinstance(value, bool):
        raise schema_error(
            f"merge_fields.{tag}", "Data did not match any of the schemas described in anyOf."
        )
    if value == "":
        return "", None
    kind = field_def["type"]
    if kind == "number":
        if isinstance(value, int | float):
            return value, None
        if isinstance(value, str):
            try:
                number = float(value)
            except ValueError:
                return None, "Please enter a number"
            return (int(number) if number.is_integer() and "." not in value else number), None
        return None, "Please enter a number"
    if kind == "address":
        if not isinstance(value, dict):
            return None, "Please enter a complete address"
        if any(
            not isinstance(value.get(key), str) or not value.get(key)
            for key in ("addr1", "city", "state", "zip")
        ):
            return None, "Please enter a complete address"
        return {
            key: str(value.get(key, ""))
            for key in ("addr1", "addr2", "city", "state", "zip", "country")
        }, None
    if not isinstance(value, str):
        if isinstance(value, int | float):
            return str(value), None
        raise schema_error(
            f"merge_fields.{tag}", "Data did not match any of the schemas described in anyOf."
        )
    return value, None


def _json_type(value: Any) -> str:
    if value is None:
        return "NULL"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int | float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    return "object"
