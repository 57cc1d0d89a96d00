"""Emulator of the Mailchimp Marketing API v3: audiences, merge fields, members, tags.

Written from /work/shared/mailchimp-api.md alone (never from a client). Order of
checks: connection limit (429 or bare 403, outermost) -> route (404) -> Basic auth
(401) -> method (405 with Allow) -> audience / resource (404) -> query and body
(400) -> the operation. Every error is application/problem+json with `instance`
equal to the X-Request-Id header. Behaviours the reference leaves open are
switches of `MailchimpEmulatorSettings` (settings.py).

Not emulated: POST /lists (audience creation; use seed_audience), interests,
saved/fuzzy segments, /batches, OAuth, webhooks. The per-address signup throttle is
the `throttled_addresses` setting. GET .../members refuses the filters it does not
emulate (interest_*, since_last_campaign) rather than ignore them.
"""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import Any

from starlette.datastructures import QueryParams
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Router
from starlette.types import ASGIApp

from reconcile.providers.mailchimp.emulator.ratelimit import ConnectionLimit, basic_key
from reconcile.providers.mailchimp.emulator.settings import MailchimpEmulatorSettings
from reconcile.providers.mailchimp.emulator.store import SORT_FIELDS, MailchimpStore, MemberQuery
from reconcile.providers.mailchimp.emulator.validation import (
    ERROR_TYPE,
    READ_STATUSES,
    ApiProblem,
    check_status,
    invalid,
    not_found,
    parse_instant,
    schema_error,
)
from reconcile.sandbox.common import (
    ApiApp,
    ControlMiddleware,
    EmulatorControl,
    control_routes,
)

DEFAULT_COUNT = 10
MAX_COUNT = 1000
# Documented GET .../members filters this emulator does not implement: refused, not ignored.
UNEMULATED_MEMBER_FILTERS = (
    "interest_category_id",
    "interest_ids",
    "interest_match",
    "since_last_campaign",
)

Handler = Callable[[Request, dict[str, str]], Awaitable[Response]]


def problem_response(problem: ApiProblem) -> Response:
    instance = str(uuid.uuid4())
    body: dict[str, Any] = {}
    if problem.with_type:
        body["type"] = ERROR_TYPE
    body.update(
        {
            "title": problem.title,
            "status": problem.status,
            "detail": problem.detail,
            "instance": instance,
        }
    )
    if problem.errors:
        body["errors"] = problem.errors
    return JSONResponse(
        body,
        status_code=problem.status,
        headers={**problem.headers, "X-Request-Id": instance},
        media_type="application/problem+json; charset=utf-8",
    )


class MailchimpEmulator:
    def __init__(
        self,
        settings: MailchimpEmulatorSettings | None = None,
        state: dict[str, Any] | None = None,
    ) -> None:
        self.settings = settings or MailchimpEmulatorSettings()
        self.control = EmulatorControl()
        self.store = MailchimpStore(self.settings)
        self._routes = self._build_routes()
        control_app = Router(routes=control_routes(self.control, self.dump_state, self.load_state))
        inner = ControlMiddleware(ApiApp(self.serve, control_app), self.control)
        self.connections = ConnectionLimit(inner, self.settings, self.control)
        self.app: ASGIApp = self.connections
        if state is not None:
            self.load_state(state)

    # -- state and test helpers (no HTTP) ---------------------------------------

    def dump_state(self) -> dict[str, Any]:
        return self.store.dump()

    def load_state(self, data: dict[str, Any]) -> None:
        self.store.load(data)

    def seed_audience(self, name: str, list_id: str | None = None) -> str:
        """A new audience with FNAME, LNAME, ADDRESS, PHONE; returns its id."""
        return self.store.create_audience(name, list_id)

    def seed_merge_field(
        self, list_id: str, tag: str, name: str | None = None, type: str = "text", **extra: Any
    ) -> dict[str, Any]:
        """extra = required, options, default_value, public, help_text, display_order."""
        body = {"tag": tag, "name": name or tag.title(), "type": type, **extra}
        try:
            return self.store.create_merge_field(list_id, body)
        except ApiProblem as problem:
            raise ValueError(str(problem)) from None

    def seed_member(
        self,
        list_id: str,
        email: str,
        status: str = "subscribed",
        *,
        merge_fields: dict[str, Any] | None = None,
        tags: list[str] | None = None,
        compliance: bool = False,
    ) -> str:
        """A member (status may be archived); compliance=True makes it one that
        unsubscribed itself or bounced: re-subscribing it is refused. Returns its hash."""
        try:
            return self.store.seed_member(
                list_id=list_id,
                email=email,
                status=status,
                merge_fields=merge_fields,
                tags=tags or [],
                compliance=compliance,
            )
        except ApiProblem as problem:
            raise ValueError(str(problem)) from None

    def seed_tag(self, list_id: str, name: str, emails: list[str] | None = None) -> int:
        """A tag (static segment) holding `emails` (members of the audience); returns its id."""
        try:
            segment = self.store.create_segment(
                list_id, {"name": name, "static_segment": emails or []}
            )
        except ApiProblem as problem:
            raise ValueError(str(problem)) from None
        segment_id: int = segment["id"]
        return segment_id

    def member(self, list_id: str, email: str) -> dict[str, Any] | None:
        try:
            return self.store.get_member(list_id, email)
        except ApiProblem:
            return None

    # People acting between a plan and an apply. Each raises ValueError when the address
    # is not on the audience (or, for archive, cannot be archived).

    def self_unsubscribe(self, list_id: str, email: str) -> None:
        """The person unsubscribed through a campaign link: status unsubscribed, in
        compliance (re-subscribing is refused), unsubscribe_reason of a link."""
        _as_value_error(self.store.self_unsubscribe, list_id, email)

    def bounce(self, list_id: str, email: str) -> None:
        """The address bounced hard: status cleaned, in compliance."""
        _as_value_error(self.store.bounce, list_id, email)

    def archive(self, list_id: str, email: str) -> None:
        """Someone archived the member in the web app (the rules of DELETE apply)."""
        _as_value_error(self.store.archive_member, list_id, email)

    def forget(self, list_id: str, email: str) -> None:
        """Someone deleted the member permanently: it 404s and cannot be re-added."""
        _as_value_error(self.store.delete_permanent, list_id, email)

    def opt_in_emails_sent(self, list_id: str, email: str) -> int:
        """Opt-in (confirmation) emails sent to the member so far; 0 if not on the list.
        A member created or seeded as pending has had one."""
        try:
            return self.store.opt_in_emails_sent(list_id, email)
        except ApiProblem as problem:
            raise ValueError(str(problem)) from None

    # -- HTTP -------------------------------------------------------------------

    def _build_routes(self) -> list[tuple[re.Pattern[str], dict[str, Handler]]]:
        table: list[tuple[str, dict[str, Handler]]] = [
            (r"/ping", {"GET": self._ping}),
            (r"/lists", {"GET": self._lists}),
            (r"/lists/(?P<list_id>[^/]+)", {"GET": self._list, "POST": self._batch_subscribe}),
            (
                r"/lists/(?P<list_id>[^/]+)/merge-fields",
                {"GET": self._merge_fields, "POST": self._create_merge_field},
            ),
            (
                r"/lists/(?P<list_id>[^/]+)/merge-fields/(?P<merge_id>[^/]+)",
                {
                    "GET": self._merge_field,
                    "PATCH": self._update_merge_field,
                    "DELETE": self._delete_merge_field,
                },
            ),
            (
                r"/lists/(?P<list_id>[^/]+)/members",
                {"GET": self._members, "POST": self._add_member},
            ),
            (
                r"/lists/(?P<list_id>[^/]+)/members/(?P<hash>[^/]+)",
                {
                    "GET": self._member,
                    "PUT": self._upsert_member,
                    "PATCH": self._update_member,
                    "DELETE": self._archive_member,
                },
            ),
            (
                r"/lists/(?P<list_id>[^/]+)/members/(?P<hash>[^/]+)/actions/delete-permanent",
                {"POST": self._delete_permanent},
            ),
            (
                r"/lists/(?P<list_id>[^/]+)/members/(?P<hash>[^/]+)/tags",
                {"GET": self._member_tags, "POST": self._write_member_tags},
            ),
            (r"/lists/(?P<list_id>[^/]+)/tag-search", {"GET": self._tag_search}),
            (
                r"/lists/(?P<list_id>[^/]+)/segments",
                {"GET": self._segments, "POST": self._create_segment},
            ),
            (
                r"/lists/(?P<list_id>[^/]+)/segments/(?P<segment_id>[^/]+)",
                {"GET": self._segment, "POST": self._batch_segment, "DELETE": self._delete_segment},
            ),
            (
                r"/lists/(?P<list_id>[^/]+)/segments/(?P<segment_id>[^/]+)/members",
                {"GET": self._segment_members, "POST": self._add_segment_member},
            ),
            (
                r"/lists/(?P<list_id>[^/]+)/segments/(?P<segment_id>[^/]+)/members/(?P<hash>[^/]+)",
                {"DELETE": self._remove_segment_member},
            ),
        ]
        return [(re.compile("/3.0" + pattern + "/?"), ops) for pattern, ops in table]

    async def serve(self, request: Request) -> Response:
        try:
            return await self._serve(request)
        except ApiProblem as problem:
            return problem_response(problem)

    async def _serve(self, request: Request) -> Response:
        match: re.Match[str] | None = None
        operations: dict[str, Handler] = {}
        for pattern, candidate in self._routes:
            match = pattern.fullmatch(request.url.path)
            if match is not None:
                operations = candidate
                break
        if match is None:
            raise not_found()
        self._authenticate(request)
        method = request.method
        if method == "POST" and "x-http-method-override" in request.headers:
            method = request.headers["x-http-method-override"].upper()
        handler = operations.get(method)
        if handler is None:
            raise ApiProblem(
                405,
                "Method Not Allowed",
                "The requested method and resource are not compatible. See the Allow header "
                "for this resource's available methods.",
                headers={"Allow": ", ".join(sorted(operations))},
            )
        return await handler(request, match.groupdict())

    def _authenticate(self, request: Request) -> None:
        key = basic_key(request.headers.get("authorization", ""))
        if key is None or key not in self.settings.api_keys:
            raise ApiProblem(
                401,
                "API Key Invalid",
                "Your API key may be invalid, or you've attempted to access the wrong datacenter.",
                headers={"WWW-Authenticate": 'Basic realm="mailchimp"'},
            )

    # -- handlers -----------------------------------------------------------------

    async def _ping(self, request: Request, _: dict[str, str]) -> Response:
        return JSONResponse({"health_status": "Everything's Chimpy!"})

    async def _lists(self, request: Request, _: dict[str, str]) -> Response:
        lists = self.store.lists()
        page, _total = self._page(request.query_params, lists)
        body = {
            "lists": page,
            "total_items": len(lists),
            "constraints": {
                "may_create": False,
                "max_instances": len(lists),
                "current_total_instances": len(lists),
            },
            "_links": [],
        }
        return self._answer(request, body)

    async def _list(self, request: Request, args: dict[str, str]) -> Response:
        include = request.query_params.get("include_total_contacts") == "true"
        with self.store.lock:
            view = self.store.list_view(self.store.audience(args["list_id"]), include)
        return self._answer(request, view)

    async def _batch_subscribe(self, request: Request, args: dict[str, str]) -> Response:
        body = await _json_body(request)
        result = self.store.batch_subscribe(
            args["list_id"],
            body,
            _flag(request.query_params, "skip_merge_validation"),
            _flag(request.query_params, "skip_duplicate_check"),
        )
        return JSONResponse(result)

    async def _merge_fields(self, request: Request, args: dict[str, str]) -> Response:
        params = request.query_params
        items = self.store.merge_fields(args["list_id"])
        if "type" in params:
            items = [f for f in items if f["type"] == params["type"]]
        if "required" in params:
            required = params["required"] == "true"
            items = [f for f in items if f["required"] == required]
        page, total = self._page(params, items)
        body = {
            "merge_fields": page,
            "list_id": args["list_id"],
            "total_items": total,
            "_links": [],
        }
        return self._answer(request, body)

    async def _create_merge_field(self, request: Request, args: dict[str, str]) -> Response:
        body = await _json_body(request)
        return JSONResponse(self.store.create_merge_field(args["list_id"], body))

    async def _merge_field(self, request: Request, args: dict[str, str]) -> Response:
        return self._answer(request, self.store.merge_field(args["list_id"], args["merge_id"]))

    async def _update_merge_field(self, request: Request, args: dict[str, str]) -> Response:
        body = await _json_body(request)
        return JSONResponse(self.store.update_merge_field(args["list_id"], args["merge_id"], body))

    async def _delete_merge_field(self, request: Request, args: dict[str, str]) -> Response:
        self.store.delete_merge_field(args["list_id"], args["merge_id"])
        return Response(status_code=204)

    async def _members(self, request: Request, args: dict[str, str]) -> Response:
        params = request.query_params
        items = self.store.list_members(args["list_id"], _member_query(params))
        page, total = self._page(params, items)
        body = {"members": page, "list_id": args["list_id"], "total_items": total, "_links": []}
        return self._answer(request, body)

    async def _add_member(self, request: Request, args: dict[str, str]) -> Response:
        return await self._write(request, args, "POST")

    async def _upsert_member(self, request: Request, args: dict[str, str]) -> Response:
        return await self._write(request, args, "PUT")

    async def _update_member(self, request: Request, args: dict[str, str]) -> Response:
        return await self._write(request, args, "PATCH")

    async def _write(self, request: Request, args: dict[str, str], method: str) -> Response:
        self.store.audience(args["list_id"])
        body = await _json_body(request)
        view, _created = self.store.write_member(
            args["list_id"],
            method,
            args.get("hash"),
            body,
            _flag(request.query_params, "skip_merge_validation"),
        )
        return JSONResponse(view)

    async def _member(self, request: Request, args: dict[str, str]) -> Response:
        return self._answer(request, self.store.get_member(args["list_id"], args["hash"]))

    async def _archive_member(self, request: Request, args: dict[str, str]) -> Response:
        self.store.archive_member(args["list_id"], args["hash"])
        return Response(status_code=204)

    async def _delete_permanent(self, request: Request, args: dict[str, str]) -> Response:
        self.store.delete_permanent(args["list_id"], args["hash"])
        return Response(status_code=204)

    async def _member_tags(self, request: Request, args: dict[str, str]) -> Response:
        tags = self.store.member_tags(args["list_id"], args["hash"])
        page, total = self._page(request.query_params, tags)
        return self._answer(request, {"tags": page, "total_items": total, "_links": []})

    async def _write_member_tags(self, request: Request, args: dict[str, str]) -> Response:
        self.store.audience(args["list_id"])
        body = await _json_body(request)
        self.store.write_member_tags(args["list_id"], args["hash"], body)
        return Response(status_code=204)

    async def _tag_search(self, request: Request, args: dict[str, str]) -> Response:
        tags = self.store.tag_search(args["list_id"], request.query_params.get("name"))
        return self._answer(request, {"tags": tags, "total_items": len(tags)})

    async def _segments(self, request: Request, args: dict[str, str]) -> Response:
        params = request.query_params
        items = self.store.segments(args["list_id"], params.get("type"))
        page, total = self._page(params, items)
        body = {"segments": page, "list_id": args["list_id"], "total_items": total, "_links": []}
        return self._answer(request, body)

    async def _create_segment(self, request: Request, args: dict[str, str]) -> Response:
        self.store.audience(args["list_id"])
        body = await _json_body(request)
        return JSONResponse(self.store.create_segment(args["list_id"], body))

    async def _segment(self, request: Request, args: dict[str, str]) -> Response:
        return self._answer(request, self.store.segment(args["list_id"], args["segment_id"]))

    async def _batch_segment(self, request: Request, args: dict[str, str]) -> Response:
        self.store.segment(args["list_id"], args["segment_id"])
        body = await _json_body(request)
        return JSONResponse(self.store.batch_segment(args["list_id"], args["segment_id"], body))

    async def _delete_segment(self, request: Request, args: dict[str, str]) -> Response:
        self.store.delete_segment(args["list_id"], args["segment_id"])
        return Response(status_code=204)

    async def _segment_members(self, request: Request, args: dict[str, str]) -> Response:
        params = request.query_params
        include = {
            status
            for status in ("cleaned", "transactional", "unsubscribed")
            if _flag(params, f"include_{status}")
        }
        items = self.store.segment_members(args["list_id"], args["segment_id"], include)
        page, total = self._page(params, items)
        return self._answer(request, {"members": page, "total_items": total, "_links": []})

    async def _add_segment_member(self, request: Request, args: dict[str, str]) -> Response:
        self.store.segment(args["list_id"], args["segment_id"])
        body = await _json_body(request)
        return JSONResponse(
            self.store.add_segment_member(args["list_id"], args["segment_id"], body)
        )

    async def _remove_segment_member(self, request: Request, args: dict[str, str]) -> Response:
        self.store.remove_segment_member(args["list_id"], args["segment_id"], args["hash"])
        return Response(status_code=204)

    # -- paging and partial responses -------------------------------------------------

    def _page(
        self, params: QueryParams, items: list[dict[str, Any]]
    ) -> tuple[list[dict[str, Any]], int]:
        count = _int_param(params, "count", DEFAULT_COUNT)
        offset = _int_param(params, "offset", 0)
        if count < 0 or offset < 0:
            raise invalid(
                "count and offset must be 0 or more.",
                [{"field": "count" if count < 0 else "offset", "message": "must be 0 or more"}],
            )
        if count > MAX_COUNT:
            if self.settings.over_max_count == "reject":
                raise invalid(
                    f"count must be at most {MAX_COUNT}.",
                    [{"field": "count", "message": f"at most {MAX_COUNT}, got {count}"}],
                )
            count = MAX_COUNT
        return items[offset : offset + count], len(items)

    def _answer(self, request: Request, body: dict[str, Any]) -> Response:
        params = request.query_params
        fields = _paths(params.get("fields"))
        excluded = _paths(params.get("exclude_fields"))
        shaped: Any = body
        if fields:
            shaped = _pick(shaped, fields)
        if excluded:
            shaped = _drop(shaped, excluded)
        return JSONResponse(shaped)


def _paths(raw: str | None) -> list[list[str]]:
    if not raw:
        return []
    return [part.strip().split(".") for part in raw.split(",") if part.strip()]


def _pick(value: Any, paths: list[list[str]]) -> Any:
    if isinstance(value, list):
        return [_pick(item, paths) for item in value]
    if not isinstance(value, dict):
        return value
    result: dict[str, Any] = {}
    for key, inner in value.items():
        tails = [path[1:] for path in paths if path[0] == key]
        if not tails:
            continue
        result[key] = inner if any(not tail for tail in tails) else _pick(inner, tails)
    return result


def _drop(value: Any, paths: list[list[str]]) -> Any:
    if isinstance(value, list):
        return [_drop(item, paths) for item in value]
    if not isinstance(value, dict):
        return value
    result: dict[str, Any] = {}
    for key, inner in value.items():
        tails = [path[1:] for path in paths if path[0] == key]
        if any(not tail for tail in tails):
            continue
        result[key] = _drop(inner, tails) if tails else inner
    return result


def _member_query(params: QueryParams) -> MemberQuery:
    for name in UNEMULATED_MEMBER_FILTERS:
        if name in params:
            raise invalid(
                f"{name} is not emulated.",
                [{"field": name, "message": "not supported by this emulator"}],
            )
    status = params.get("status")
    if status is not None:
        check_status(status, "status", READ_STATUSES)
    sort_field = params.get("sort_field")
    if sort_field is not None and sort_field not in SORT_FIELDS:
        raise schema_error(
            "sort_field", f"Value is not one of the allowed values: {', '.join(SORT_FIELDS)}"
        )
    sort_dir = params.get("sort_dir", "ASC")
    if sort_dir not in ("ASC", "DESC"):
        raise schema_error("sort_dir", "Value is not one of the allowed values: ASC, DESC")
    vip_only = params.get("vip_only", "false")
    if vip_only not in ("true", "false"):
        raise schema_error("vip_only", "Schema describes boolean")

    def instant(name: str) -> datetime | None:
        raw = params.get(name)
        return None if raw is None else parse_instant(raw, name)

    return MemberQuery(
        status=status,
        email_type=params.get("email_type"),
        since_last_changed=instant("since_last_changed"),
        before_last_changed=instant("before_last_changed"),
        since_timestamp_opt=instant("since_timestamp_opt"),
        before_timestamp_opt=instant("before_timestamp_opt"),
        unsubscribed_since=instant("unsubscribed_since"),
        vip_only=vip_only == "true",
        unique_email_id=params.get("unique_email_id"),
        sort_field=sort_field,
        sort_dir=sort_dir,
    )


def _as_value_error(action: Callable[[str, str], None], list_id: str, email: str) -> None:
    try:
        action(list_id, email)
    except ApiProblem as problem:
        raise ValueError(str(problem)) from None


def _int_param(params: QueryParams, name: str, default: int) -> int:
    raw = params.get(name)
    if raw is None:
        return default
    try:
        return int(raw)
    except ValueError:
        raise schema_error(name, f"Schema describes integer, {raw!r} found instead") from None


def _flag(params: QueryParams, name: str) -> bool:
    return params.get(name, "false").lower() == "true"


async def _json_body(request: Request) -> Any:
    raw = await request.body()
    if not raw.strip():
        raise invalid("The request body is empty.")
    try:
        return json.loads(raw)
    except ValueError:
        raise ApiProblem(
            400,
            "JSON Parse Error",
            "We encountered an unspecified JSON parsing error.",
        ) from None


def create_mailchimp_emulator(
    settings: MailchimpEmulatorSettings | None = None,
    state: dict[str, Any] | None = None,
) -> MailchimpEmulator:
    return MailchimpEmulator(settings, state)
