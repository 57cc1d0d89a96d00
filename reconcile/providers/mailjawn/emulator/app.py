"""Emulator of the MailJawn REST v1 API: subscribers, the public subscribe form, events.

Written from the API document alone (never from the client) and strict on
purpose: undocumented fields, wrong types and paths without their trailing slash
are refused, so client bugs show up here rather than in production.

Order of checks for an authenticated endpoint, as a DRF view runs them:
route (404 "Not found", no rate-limit headers) -> API key (401) -> rate limit
(429) -> project (404 "Project not found") -> method (405) -> scope (403) ->
body validation (400/415) -> the operation. Every answer from the API key step
on carries the RateLimit-* headers of the bucket it was counted in; a 401 for a
missing or malformed Authorization header has none (there is no key to count).
Assets endpoints are not emulated (404).
"""

from __future__ import annotations

import json
import re
import threading
import time
import urllib.parse
from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass, field
from typing import Any

from starlette.datastructures import QueryParams
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Router
from starlette.types import ASGIApp

from reconcile.providers.mailjawn.emulator.ratelimit import RateLimits, bucket_for_method
from reconcile.providers.mailjawn.emulator.store import (
    ListQuery,
    SubscriberNotFound,
    SubscriberStore,
    UpsertBehaviour,
)
from reconcile.providers.mailjawn.emulator.validation import (
    SUBSCRIBER_STATUSES,
    InvalidRequest,
    reject_unknown_fields,
    require_object,
    validate_email,
    validate_identify,
    validate_patch,
    validate_slug,
    validate_status,
    validate_string,
    validate_track,
)
from reconcile.sandbox.common import (
    ApiApp,
    ControlMiddleware,
    EmulatorControl,
    control_routes,
)

ALL_SCOPES: frozenset[str] = frozenset(
    {
        "subscribers:read",
        "subscribers:write",
        "events:write",
        "assets:read",
        "assets:write",
        "campaigns:read",
        "campaigns:write",
        "templates:read",
        "templates:write",
        "sequences:read",
        "sequences:write",
        "stats:read",
        "email:send",
    }
)

DEFAULT_LIMIT = 50
MAX_LIMIT = 100

_API_PATH = re.compile(r"/api/v1/projects/(?P<project_id>[^/]+)/(?P<rest>.*)")


@dataclass
class MailJawnEmulatorSettings:
    project_id: str = "00000000-0000-4000-8000-000000000001"
    api_keys: dict[str, frozenset[str]] = field(
        default_factory=lambda: {"mj_sandbox_key": ALL_SCOPES}
    )
    read_limit: int = 100  # per key per window; 0 = unlimited (and no RateLimit-* headers)
    write_limit: int = 30
    window_seconds: float = 60.0
    time_scale: float = 1.0  # effective window = window_seconds / time_scale
    max_import: int = 1000
    subscribe_limit: int = 10  # public subscribe/ requests per client IP per window
    # How identify and import treat an existing subscriber, where the document is silent;
    # also settable at run time: POST /_emulator/settings {"upsert": {...}}.
    upsert: UpsertBehaviour = field(default_factory=UpsertBehaviour)
    clock: Callable[[], float] = time.time

    def __post_init__(self) -> None:
        if self.time_scale <= 0 or self.window_seconds <= 0:
            raise ValueError("time_scale and window_seconds must be positive")


class ApiError(Exception):
    """An answer {"error": message} with `status`."""

    def __init__(self, status: int, message: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.headers = headers or {}


Handler = Callable[[Request, str], Awaitable[Response]]


@dataclass
class ImportFaults:
    """Per-item failures a test asks of the bulk imports that come next."""

    failing_emails: dict[str, int] = field(default_factory=dict)  # lower email -> imports left
    message: str = "could not be imported"
    lock: threading.Lock = field(default_factory=threading.Lock)

    def take(self, email: str) -> str | None:
        key = email.lower()
        with self.lock:
            left = self.failing_emails.get(key, 0)
            if left <= 0:
                return None
            if left == 1:
                del self.failing_emails[key]
            else:
                self.failing_emails[key] = left - 1
            return f"{email}: {self.message}"


@dataclass(frozen=True)
class Operation:
    scope: str | None
    handler: Handler


@dataclass(frozen=True)
class Endpoint:
    pattern: re.Pattern[str]
    operations: dict[str, Operation]
    public: bool = False

    def allowed_methods(self) -> list[str]:
        methods = set(self.operations) | {"OPTIONS"}
        if "GET" in methods:
            methods.add("HEAD")
        return sorted(methods)


def error_response(status: int, message: str, headers: dict[str, str] | None = None) -> Response:
    return JSONResponse({"error": message}, status_code=status, headers=headers)


class MailJawnEmulator:
    def __init__(
        self,
        settings: MailJawnEmulatorSettings | None = None,
        state: dict[str, Any] | None = None,
    ) -> None:
        self.settings = settings or MailJawnEmulatorSettings()
        self.control = EmulatorControl()
        self.store = SubscriberStore(self.settings.clock, self.settings.upsert)
        self.import_faults = ImportFaults()
        self._limits = RateLimits(
            {
                "read": self.settings.read_limit,
                "write": self.settings.write_limit,
                "subscribe": self.settings.subscribe_limit,
            },
            self.settings.window_seconds,
            self.settings.time_scale,
            self.settings.clock,
        )
        self._endpoints = self._build_endpoints()
        control_app = Router(
            routes=control_routes(
                self.control, self.dump_state, self.load_state, self._change_settings
            )
        )
        self.app: ASGIApp = ControlMiddleware(ApiApp(self.serve, control_app), self.control)
        if state is not None:
            self.load_state(state)

    # -- state and test helpers (no HTTP, no rate limit) ---------------------

    def dump_state(self) -> dict[str, Any]:
        return self.store.dump()

    def load_state(self, data: dict[str, Any]) -> None:
        self.store.load(data)

    def seed_subscriber(
        self,
        email: str,
        name: str = "",
        status: str = "active",
        custom_fields: dict[str, Any] | None = None,
        tags: list[str] | None = None,
        **extra: Any,
    ) -> str:
        """Create a subscriber directly; extra = timezone, locale, source, device_type..."""
        payload: dict[str, Any] = {"email": email, "name": name, **extra}
        if custom_fields is not None:
            payload["custom_fields"] = custom_fields
        if tags is not None:
            payload["tags"] = tags
        try:
            data = validate_identify(payload, "seed_subscriber")
            validate_status(status)
        except InvalidRequest as problem:
            raise ValueError(problem.message) from None
        return self.store.seed(data, status, default_source="api")

    def subscriber(self, email: str) -> dict[str, Any] | None:
        return self.store.find_by_email(email)

    def set_upsert(self, **switches: bool) -> None:
        """Switch how identify and import treat existing subscribers (UpsertBehaviour)."""
        for name, value in switches.items():
            if not hasattr(self.settings.upsert, name) or not isinstance(value, bool):
                raise ValueError(f"unknown upsert switch or not a boolean: {name}={value!r}")
            setattr(self.settings.upsert, name, value)

    def set_limits(
        self,
        *,
        read_limit: int | None = None,
        write_limit: int | None = None,
        window_seconds: float | None = None,
    ) -> None:
        """Change the rate limits while serving; the window under way keeps what it counted."""
        if window_seconds is not None and window_seconds <= 0:
            raise ValueError("window_seconds must be positive")
        if read_limit is not None:
            self.settings.read_limit = read_limit
            self._limits.set_limit("read", read_limit)
        if write_limit is not None:
            self.settings.write_limit = write_limit
            self._limits.set_limit("write", write_limit)
        if window_seconds is not None:
            self.settings.window_seconds = window_seconds
            self._limits.set_window(window_seconds)

    def _change_settings(self, payload: dict[str, Any]) -> dict[str, Any]:
        """POST /_emulator/settings: {"upsert": {...}}, read_limit, write_limit,
        window_seconds (latency_seconds is the common control's)."""
        self.set_upsert(**payload.get("upsert", {}))
        self.set_limits(
            read_limit=_count(payload, "read_limit"),
            write_limit=_count(payload, "write_limit"),
            window_seconds=_number(payload, "window_seconds"),
        )
        current = self.settings
        return {
            "upsert": asdict(current.upsert),
            "read_limit": current.read_limit,
            "write_limit": current.write_limit,
            "window_seconds": current.window_seconds,
        }

    def fail_in_imports(
        self, emails: list[str], times: int = 1, message: str | None = None
    ) -> None:
        """Each of `emails` is counted failed (with an error naming it) in the next `times`
        bulk imports that would create or update it."""
        with self.import_faults.lock:
            for email in emails:
                self.import_faults.failing_emails[email.lower()] = times
            if message is not None:
                self.import_faults.message = message

    # -- HTTP ----------------------------------------------------------------

    def _build_endpoints(self) -> list[Endpoint]:
        def route(pattern: str) -> re.Pattern[str]:
            return re.compile(pattern)

        # identify/ is listed before {id}/ so it is never taken for a subscriber id.
        return [
            Endpoint(
                route(r"subscribers/identify/"),
                {"POST": Operation("subscribers:write", self._identify)},
            ),
            Endpoint(
                route(r"subscribers/"),
                {
                    "GET": Operation("subscribers:read", self._list),
                    "POST": Operation("subscribers:write", self._bulk_import),
                },
            ),
            Endpoint(
                route(r"subscribers/(?P<arg>[^/]+)/"),
                {
                    "GET": Operation("subscribers:read", self._get),
                    "PATCH": Operation("subscribers:write", self._patch),
                    "DELETE": Operation("subscribers:write", self._delete),
                },
            ),
            Endpoint(route(r"events/track/"), {"POST": Operation("events:write", self._track)}),
            Endpoint(route(r"subscribe/"), {"POST": Operation(None, self._subscribe)}, public=True),
        ]

    def _resolve(self, path: str) -> tuple[str, Endpoint, str] | None:
        """(project_id, endpoint, path argument) for an API path, or None."""
        api_match = _API_PATH.fullmatch(path)
        if api_match is None:
            return None
        for endpoint in self._endpoints:
            match = endpoint.pattern.fullmatch(api_match["rest"])
            if match is not None:
                return api_match["project_id"], endpoint, match.groupdict().get("arg") or ""
        return None

    async def serve(self, request: Request) -> Response:
        resolved = self._resolve(request.url.path)
        if resolved is None:
            return error_response(404, "Not found")
        project_id, endpoint, arg = resolved
        method = request.method
        if endpoint.public:
            bucket, key, scopes = "subscribe", _client_ip(request), ALL_SCOPES
        else:
            token = _bearer_token(request)
            if token is None:
                return error_response(
                    401,
                    "Authentication credentials were not provided.",
                    {"WWW-Authenticate": "Bearer"},
                )
            bucket, key = bucket_for_method(method), token
            scopes = self.settings.api_keys.get(token, frozenset())
        quota = self._limits.hit(bucket, key)
        rate_headers = self._limits.headers(quota)
        try:
            if not endpoint.public and key not in self.settings.api_keys:
                raise ApiError(401, "Invalid API key.", {"WWW-Authenticate": "Bearer"})
            if quota is not None and not quota.allowed:
                return self._limits.throttled(quota)
            if project_id != self.settings.project_id:
                raise ApiError(404, "Project not found")
            response = await self._run(request, endpoint, arg, scopes)
        except ApiError as problem:
            response = error_response(problem.status, problem.message, problem.headers)
        except InvalidRequest as problem:
            response = error_response(400, problem.message)
        except SubscriberNotFound:
            response = error_response(404, "Subscriber not found")
        response.headers.update(rate_headers)
        return response

    async def _run(
        self, request: Request, endpoint: Endpoint, arg: str, scopes: frozenset[str]
    ) -> Response:
        method = request.method
        allow = ", ".join(endpoint.allowed_methods())
        if method == "OPTIONS":
            return JSONResponse(
                {"allowed_methods": endpoint.allowed_methods()}, headers={"Allow": allow}
            )
        operation = endpoint.operations.get("GET" if method == "HEAD" else method)
        if operation is None:
            raise ApiError(405, f'Method "{method}" not allowed.', {"Allow": allow})
        if operation.scope is not None and operation.scope not in scopes:
            raise ApiError(403, f"API key lacks scope {operation.scope}")
        return await operation.handler(request, arg)

    async def _identify(self, request: Request, _: str) -> Response:
        data = validate_identify(await _json_body(request))
        subscriber_id, created = self.store.identify(data)
        return JSONResponse({"subscriber_id": subscriber_id, "created": created})

    async def _list(self, request: Request, _: str) -> Response:
        query = parse_list_query(request.query_params)
        page, total = self.store.list_page(query)
        return JSONResponse(
            {"subscribers": page, "total": total, "limit": query.limit, "offset": query.offset}
        )

    async def _bulk_import(self, request: Request, _: str) -> Response:
        body = require_object(await _json_body(request))
        reject_unknown_fields(body, {"subscribers"})
        items = body.get("subscribers")
        if not isinstance(items, list):
            raise InvalidRequest("subscribers: this field is required and must be an array")
        if not 1 <= len(items) <= self.settings.max_import:
            raise InvalidRequest(
                f"subscribers: must contain 1 to {self.settings.max_import} items, got {len(items)}"
            )
        return JSONResponse(self.store.bulk_import(items, self.import_faults.take).as_json())

    async def _get(self, _: Request, subscriber_id: str) -> Response:
        return JSONResponse(self.store.get(subscriber_id))

    async def _patch(self, request: Request, subscriber_id: str) -> Response:
        self.store.get(subscriber_id)  # an unknown id is 404 before the body is judged
        changes = validate_patch(await _json_body(request))
        return JSONResponse(self.store.patch(subscriber_id, changes))

    async def _delete(self, _: Request, subscriber_id: str) -> Response:
        self.store.delete(subscriber_id)
        return Response(status_code=204)

    async def _track(self, request: Request, _: str) -> Response:
        data = validate_track(await _json_body(request))
        event, created = self.store.track(data)
        return JSONResponse(event, status_code=201 if created else 200)

    async def _subscribe(self, request: Request, _: str) -> Response:
        # Signup forms post extra fields (bot protection), so unknown fields are ignored here.
        body = await _form_or_json_body(request)
        if "email" not in body:
            raise InvalidRequest("email: this field is required")
        email = validate_email(body["email"])
        name = validate_string("name", body.get("name", ""))
        tag = body.get("tag") or None
        self.store.subscribe_form(email, name, validate_slug("tag", tag) if tag else None)
        return JSONResponse({"status": "subscribed", "email": email})


def parse_list_query(params: QueryParams) -> ListQuery:
    status = params.get("status")
    if status is not None and status not in SUBSCRIBER_STATUSES:
        raise InvalidRequest(f"status: {status!r} is not one of {', '.join(SUBSCRIBER_STATUSES)}")
    limit = _int_param(params, "limit", DEFAULT_LIMIT)
    if not 1 <= limit <= MAX_LIMIT:
        raise InvalidRequest(f"limit: must be between 1 and {MAX_LIMIT}, got {limit}")
    offset = _int_param(params, "offset", 0)
    if offset < 0:
        raise InvalidRequest(f"offset: must be 0 or more, got {offset}")
    return ListQuery(
        status=status,
        tag=params.get("tag"),
        search=params.get("search"),
        limit=limit,
        offset=offset,
    )


def _int_param(params: QueryParams, name: str, default: int) -> int:
    raw = params.get(name)
    if raw is None:
        return default
    try:
        return int(raw)
    except ValueError:
        raise InvalidRequest(f"{name}: {raw!r} is not an integer") from None


def _number(payload: dict[str, Any], name: str) -> float | None:
    value = payload.get(name)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
        raise ValueError(f"{name} must be a number, at least 0")
    return float(value)


def _count(payload: dict[str, Any], name: str) -> int | None:
    value = _number(payload, name)
    if value is not None and not value.is_integer():
        raise ValueError(f"{name} must be a whole number")
    return None if value is None else int(value)


def _bearer_token(request: Request) -> str | None:
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token or " " in token:
        return None
    return token


def _client_ip(request: Request) -> str:
    return request.client.host if request.client else "unknown"


def _media_type(request: Request) -> str:
    return request.headers.get("content-type", "").split(";")[0].strip().lower()


async def _json_body(request: Request) -> Any:
    media_type = _media_type(request)
    if media_type != "application/json":
        raise ApiError(415, f'Unsupported media type "{media_type}" in request.')
    try:
        return json.loads(await request.body())
    except ValueError:
        raise InvalidRequest("JSON parse error: the request body is not valid JSON") from None


async def _form_or_json_body(request: Request) -> dict[str, Any]:
    if _media_type(request) == "application/x-www-form-urlencoded":
        fields = urllib.parse.parse_qs((await request.body()).decode(), keep_blank_values=True)
        return {name: values[-1] for name, values in fields.items()}
    return require_object(await _json_body(request))


def create_mailjawn_emulator(
    settings: MailJawnEmulatorSettings | None = None,
    state: dict[str, Any] | None = None,
) -> MailJawnEmulator:
    return MailJawnEmulator(settings, state)
