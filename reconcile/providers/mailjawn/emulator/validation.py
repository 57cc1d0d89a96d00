"""Request validation for the MailJawn emulator, written from the REST v1 document.

Every check raises `InvalidRequest` with the message the emulator answers as
{"error": ...} with status 400. The checks are deliberately strict: the emulator
exists to catch client bugs, so a wrong type or an undocumented field is refused
rather than ignored.
"""

from __future__ import annotations

import re
import uuid
import zoneinfo
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import cache
from typing import Any

SUBSCRIBER_STATUSES = ("active", "unsubscribed", "bounced", "complained")

# Optional string fields identify and bulk import accept, besides email.
IDENTIFY_STRING_FIELDS = (
    "name",
    "timezone",
    "source",
    "device_type",
    "os_version",
    "app_version",
    "locale",
    "sdk_version",
)
IDENTIFY_FIELDS = frozenset(
    {"email", "custom_fields", "tags", "trigger_automations", *IDENTIFY_STRING_FIELDS}
)
PATCH_FIELDS = frozenset({"name", "timezone", "custom_fields", "status"})
TRACK_FIELDS = frozenset(
    {"subscriber_id", "event_name", "properties", "occurred_at", "client_event_id"}
)

MAX_EMAIL_LENGTH = 254
MAX_EVENT_NAME_LENGTH = 100
MAX_SLUG_LENGTH = 50

_EMAIL_RE = re.compile(
    r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+(?:\.[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+)*"
    r"@(?:[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?\.)+[A-Za-z]{2,}"
)
_SLUG_RE = re.compile(r"[a-z0-9]+(?:[-_][a-z0-9]+)*")


class InvalidRequest(Exception):
    """A 400 answer: the message becomes {"error": message}."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


@dataclass
class IdentifyInput:
    """A validated identify (or bulk-import item) payload; absent fields are None."""

    email: str
    strings: dict[str, str] = field(default_factory=dict)
    custom_fields: dict[str, Any] | None = None
    tags: list[str] = field(default_factory=list)


@dataclass
class PatchInput:
    name: str | None = None
    timezone: str | None = None
    custom_fields: dict[str, Any] | None = None
    status: str | None = None


@dataclass
class TrackInput:
    subscriber_id: str
    event_name: str
    properties: dict[str, Any]
    occurred_at: str | None
    client_event_id: str | None


def require_object(payload: Any, what: str = "Request body") -> dict[str, Any]:
    if not isinstance(payload, dict):
        raise InvalidRequest(f"{what} must be a JSON object")
    return payload


def reject_unknown_fields(payload: Mapping[str, Any], allowed: Iterable[str]) -> None:
    unknown = sorted(set(payload) - set(allowed))
    if unknown:
        raise InvalidRequest(f"Unknown or read-only field(s): {', '.join(unknown)}")


def validate_email(value: Any) -> str:
    if not isinstance(value, str):
        raise InvalidRequest("email: must be a string")
    if len(value) > MAX_EMAIL_LENGTH or not _EMAIL_RE.fullmatch(value):
        raise InvalidRequest(f"email: {value!r} is not a valid email address")
    return value


def email_key(email: str) -> str:
    """The identity of an email address: matched case-insensitively."""
    return email.lower()


def validate_string(name: str, value: Any) -> str:
    # null is refused too: the document types these fields as strings, "" clears.
    if not isinstance(value, str):
        raise InvalidRequest(f"{name}: must be a string")
    return value


@cache
def _known_timezones() -> frozenset[str]:
    return frozenset(zoneinfo.available_timezones())


def validate_timezone(value: Any) -> str:
    timezone = validate_string("timezone", value)
    known = _known_timezones()
    # An empty string clears the timezone; without a tz database we cannot judge names.
    if timezone and known and timezone not in known:
        raise InvalidRequest(f"timezone: {timezone!r} is not an IANA timezone")
    return timezone


def validate_custom_fields(value: Any) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise InvalidRequest("custom_fields: must be an object")
    return dict(value)


def validate_slug(name: str, value: Any) -> str:
    if not isinstance(value, str) or len(value) > MAX_SLUG_LENGTH or not _SLUG_RE.fullmatch(value):
        raise InvalidRequest(
            f"{name}: {value!r} is not a tag slug (lowercase letters, digits, - and _)"
        )
    return value


def validate_tags(value: Any) -> list[str]:
    if not isinstance(value, list):
        raise InvalidRequest("tags: must be an array of tag slugs")
    slugs: list[str] = []
    for item in value:
        slug = validate_slug("tags", item)
        if slug not in slugs:
            slugs.append(slug)
    return slugs


def validate_status(value: Any) -> str:
    if value not in SUBSCRIBER_STATUSES:
        raise InvalidRequest(f"status: {value!r} is not one of {', '.join(SUBSCRIBER_STATUSES)}")
    return str(value)


def validate_identify(payload: Any, what: str = "Request body") -> IdentifyInput:
    body = require_object(payload, what)
    reject_unknown_fields(body, IDENTIFY_FIELDS)
    if "email" not in body:
        raise InvalidRequest("email: this field is required")
    result = IdentifyInput(email=validate_email(body["email"]))
    for name in IDENTIFY_STRING_FIELDS:
        if name in body:
            value = body[name]
            result.strings[name] = (
                validate_timezone(value) if name == "timezone" else validate_string(name, value)
            )
    if "custom_fields" in body:
        result.custom_fields = validate_custom_fields(body["custom_fields"])
    if "tags" in body:
        result.tags = validate_tags(body["tags"])
    if "trigger_automations" in body and not isinstance(body["trigger_automations"], bool):
        raise InvalidRequest("trigger_automations: must be a boolean")
    return result


def validate_patch(payload: Any) -> PatchInput:
    body = require_object(payload)
    reject_unknown_fields(body, PATCH_FIELDS)
    result = PatchInput()
    if "name" in body:
        result.name = validate_string("name", body["name"])
    if "timezone" in body:
        result.timezone = validate_timezone(body["timezone"])
    if "custom_fields" in body:
        result.custom_fields = validate_custom_fields(body["custom_fields"])
    if "status" in body:
        result.status = validate_status(body["status"])
    return result


def validate_uuid(name: str, value: Any) -> str:
    if not isinstance(value, str):
        raise InvalidRequest(f"{name}: must be a UUID string")
    try:
        return str(uuid.UUID(value))
    except ValueError:
        raise InvalidRequest(f"{name}: {value!r} is not a valid UUID") from None


def parse_timestamp(name: str, value: Any) -> datetime:
    if not isinstance(value, str):
        raise InvalidRequest(f"{name}: must be an ISO 8601 string")
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        raise InvalidRequest(f"{name}: {value!r} is not an ISO 8601 datetime") from None
    # A naive datetime is taken as UTC, as a Django server with USE_TZ would.
    return parsed.replace(tzinfo=UTC) if parsed.tzinfo is None else parsed.astimezone(UTC)


def validate_track(payload: Any) -> TrackInput:
    body = require_object(payload)
    reject_unknown_fields(body, TRACK_FIELDS)
    for required in ("subscriber_id", "event_name"):
        if required not in body:
            raise InvalidRequest(f"{required}: this field is required")
    event_name = validate_string("event_name", body["event_name"])
    if not event_name or len(event_name) > MAX_EVENT_NAME_LENGTH:
        raise InvalidRequest(f"event_name: must be 1 to {MAX_EVENT_NAME_LENGTH} characters")
    properties = body.get("properties", {})
    if not isinstance(properties, dict):
        raise InvalidRequest("properties: must be an object")
    occurred_at = None
    if "occurred_at" in body:
        occurred_at = format_timestamp(parse_timestamp("occurred_at", body["occurred_at"]))
    client_event_id = None
    if "client_event_id" in body:
        client_event_id = validate_uuid("client_event_id", body["client_event_id"])
    return TrackInput(
        subscriber_id=validate_uuid("subscriber_id", body["subscriber_id"]),
        event_name=event_name,
        properties=dict(properties),
        occurred_at=occurred_at,
        client_event_id=client_event_id,
    )


def format_timestamp(moment: datetime) -> str:
    """The document's timestamp form: UTC, whole seconds, "Z" suffix."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def timestamp_from_epoch(seconds: float) -> str:
    return format_timestamp(datetime.fromtimestamp(seconds, UTC))
