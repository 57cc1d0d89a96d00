"""HTTP plumbing of the Mailjet emulator: error bodies, auth, bodies, paging."""

from __future__ import annotations

import base64
import binascii
import json
import secrets
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from reconcile.providers.mailjet.emulator.state import ApiError

T = TypeVar("T")

MAX_LIMIT = 1000
DEFAULT_LIMIT = 10
PAGING_PARAMS = frozenset({"Limit", "Offset", "countOnly"})


def error_response(status: int, message: str | dict[str, str]) -> JSONResponse:
    body = {
        "ErrorIdentifier": str(uuid.uuid4()),
        "ErrorInfo": "",
        "ErrorMessage": message,
        "StatusCode": status,
    }
    return JSONResponse(body, status_code=status)


def one(record: dict[str, Any], status: int = 200) -> JSONResponse:
    return JSONResponse({"Count": 1, "Data": [record], "Total": 1}, status_code=status)


def not_modified() -> Response:
    return Response(status_code=304)


def check_basic_auth(request: Request, api_key: str, secret_key: str) -> str:
    """Return the API key of a valid Basic Authorization header, else raise 401."""
    scheme, _, encoded = request.headers.get("authorization", "").partition(" ")
    try:
        decoded = base64.b64decode(encoded, validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError):
        decoded = ""
    user, _, password = decoded.partition(":")
    valid = (
        scheme.lower() == "basic"
        and secrets.compare_digest(user, api_key)
        and secrets.compare_digest(password, secret_key)
    )
    if not valid:
        raise ApiError(
            401,
            "API key authentication/authorization failure. You may be unauthorized to access "
            "the API or your API key may be expired.",
        )
    return user


async def read_object(request: Request) -> dict[str, Any]:
    raw = await request.body()
    try:
        data = json.loads(raw) if raw else None
    except ValueError as exc:
        raise ApiError(400, f"Invalid json input: {exc}") from exc
    if not isinstance(data, dict):
        raise ApiError(400, "Invalid json input: the body must be a JSON object")
    return data


def check_writable(body: dict[str, Any], editable: set[str], read_only: set[str]) -> None:
    """Writing a read-only field is MJ19; a field the resource lacks is a plain 400."""
    for key in body:
        if key in read_only:
            raise ApiError(400, f'MJ19 Property "{key}" is read-only and cannot be set.')
        if key not in editable:
            raise ApiError(400, f'Unknown property "{key}"')


def check_types(body: dict[str, Any], types: dict[str, type]) -> None:
    """Per-field type errors, reported as an ErrorMessage object."""
    errors: dict[str, str] = {}
    for key, expected in types.items():
        if key not in body:
            continue
        value = body[key]
        wrong_bool = isinstance(value, bool) and expected is not bool
        if wrong_bool or not isinstance(value, expected):
            errors[key] = f"Invalid value, expected {expected.__name__}"
    if errors:
        raise ApiError(400, errors)


def numeric_id(ref: str) -> int:
    """Write endpoints take a numeric ID only."""
    if not ref.isdigit():
        raise ApiError(404, "Object not found")
    return int(ref)


@dataclass
class Query:
    limit: int
    offset: int
    count_only: bool
    filters: dict[str, str]

    def bool_filter(self, name: str) -> bool | None:
        raw = self.filters.get(name)
        if raw is None:
            return None
        lowered = raw.lower()
        if lowered not in ("true", "false", "1", "0"):
            raise ApiError(400, f'Invalid value for filter "{name}": {raw!r}')
        return lowered in ("true", "1")

    def int_filter(self, name: str) -> int | None:
        raw = self.filters.get(name)
        if raw is None:
            return None
        if not raw.isdigit():
            raise ApiError(400, f'Invalid value for filter "{name}": {raw!r}')
        return int(raw)


def parse_query(request: Request, filters: frozenset[str] = frozenset()) -> Query:
    """Unknown query parameters are refused, so a misspelt filter can't silently match all."""
    params = request.query_params
    for key in params:
        if key not in filters and key not in PAGING_PARAMS:
            raise ApiError(400, f'Unknown filter "{key}"')
    limit = _int_param(params.get("Limit"), "Limit", DEFAULT_LIMIT)
    if not 1 <= limit <= MAX_LIMIT:
        raise ApiError(400, f"Limit must be between 1 and {MAX_LIMIT}, got {limit}")
    offset = _int_param(params.get("Offset"), "Offset", 0)
    count_only = params.get("countOnly", "0").lower() in ("1", "true")
    chosen = {key: params[key] for key in params if key in filters}
    return Query(limit, offset, count_only, chosen)


def _int_param(raw: str | None, name: str, default: int) -> int:
    if raw is None:
        return default
    if not raw.isdigit():
        raise ApiError(400, f"{name} must be a non-negative integer, got {raw!r}")
    return int(raw)


def page_response(
    query: Query,
    records: Sequence[T],
    render: Callable[[T], dict[str, Any]],
    total_mode: str,
) -> JSONResponse:
    """Count is the page size; Total is the page size too unless total_mode is "full"."""
    if query.count_only:
        return JSONResponse({"Count": len(records), "Data": [], "Total": len(records)})
    page = [render(r) for r in records[query.offset : query.offset + query.limit]]
    total = len(records) if total_mode == "full" else len(page)
    return JSONResponse({"Count": len(page), "Data": page, "Total": total})
