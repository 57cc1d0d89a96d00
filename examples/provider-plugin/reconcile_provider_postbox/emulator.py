"""Postbox REST v1, emulated: an in-memory account served as an ASGI app (starlette).

This module is the API's definition; the client and provider are written against it
and it imports neither of them (it must check them, not repeat their mistakes).

    Authorization: Bearer <key> on every request (401 without a known key).
    Bodies and answers are JSON. An error is {"error": {"code": ..., "message": ...}}.
    Every record has a stable string `id` and a `version`: 1, then one more for each
    write that changes that record. A single record's answer carries it as the ETag
    `"<version>"`; a PATCH sent with `If-Match: "<version>"` is refused with 412 when
    the record has moved on since.
    Listings: ?limit=1..100 (default 50) &page_token=<from the previous page>
        -> {"data": [...], "next_page_token": "..." or null}, oldest record first.

    GET, POST          /v1/properties         {name, type: str|int|float|bool|datetime}
    DELETE             /v1/properties/{id}    every contact's value of it goes too
    GET, POST          /v1/lists              {name}
    DELETE             /v1/lists/{id}         its memberships go too
    GET, POST          /v1/contacts           {email, name, excluded_from_campaigns,
                                               properties: {name: value}}
    GET, PATCH, DELETE /v1/contacts/{id}      PATCH merges; a property set to null is
                                              cleared; DELETE erases the contact and
                                              its memberships
    GET, POST          /v1/lists/{id}/members {contact_id, status: subscribed|unsubscribed}
    PATCH, DELETE      /v1/lists/{id}/members/{contact_id}    {status}

    `excluded_at` (contact) and `unsubscribed_at` (member): when the opt-out happened
    (UTC, `YYYY-MM-DDTHH:MM:SSZ`), null while not opted out.
    400 for a bad query parameter or a body that is not a JSON object; 404 for an
    unknown path or id; 409 for a name or email (case-insensitive) already taken, or a
    contact already on the list (the error carries `existing_id`); 412 for a failed
    If-Match; 422 for a body the API does not take (unknown field, wrong type, undefined
    property, value not of its property's type).

Deleting a property definition removes its values without counting as a write to each
contact (their versions stay). `/_emulator/...` are the shared control routes (faults,
latency, request log, state) of `reconcile.sandbox.common`.
"""

from __future__ import annotations

import dataclasses
import json
import math
import re
import threading
from collections.abc import Awaitable, Callable, Mapping
from collections.abc import Set as AbstractSet
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route, Router
from starlette.types import ASGIApp

from reconcile.sandbox.common import ControlMiddleware, EmulatorControl, control_routes

SANDBOX_KEY = "pb_sandbox_key"
TYPES = ("str", "int", "float", "bool", "datetime")
STATUSES = ("subscribed", "unsubscribed")
DEFAULT_LIMIT, MAX_LIMIT = 50, 100
PROPERTY_NAME = re.compile(r"[a-z][a-z0-9_]{0,63}")
MAX_LIST_NAME = 200
INT_RANGE = (-(2**63), 2**63 - 1)

Clock = Callable[[], datetime]


def _now() -> datetime:
    return datetime.now(UTC)


class Refused(Exception):
    """An error answer: `status`, a machine-readable `code` and a message."""

    def __init__(self, status: int, code: str, message: str, **extra: Any) -> None:
        super().__init__(message)
        self.status, self.code, self.message, self.extra = status, code, message, extra

    def response(self) -> Response:
        body = {"error": {"code": self.code, "message": self.message, **self.extra}}
        return JSONResponse(body, status_code=self.status)


# ---- records ---------------------------------------------------------------------------


@dataclass
class PropertyRecord:
    id: str
    name: str
    type: str
    version: int = 1


@dataclass
class ListRecord:
    id: str
    name: str
    version: int = 1


@dataclass
class ContactRecord:
    id: str
    email: str
    name: str = ""
    excluded_from_campaigns: bool = False
    excluded_at: str | None = None
    properties: dict[str, Any] = field(default_factory=dict)
    version: int = 1


@dataclass
class MemberRecord:
    list_id: str
    contact_id: str
    status: str = "subscribed"
    unsubscribed_at: str | None = None
    version: int = 1


@dataclass
class Account:
    """The whole account; `dump()` and `load()` are its JSON form (the sandbox's file)."""

    next_id: int = 1
    properties: dict[str, PropertyRecord] = field(default_factory=dict)
    lists: dict[str, ListRecord] = field(default_factory=dict)
    contacts: dict[str, ContactRecord] = field(default_factory=dict)
    members: dict[tuple[str, str], MemberRecord] = field(default_factory=dict)

    def new_id(self, prefix: str) -> str:
        made = f"{prefix}_{self.next_id}"
        self.next_id += 1
        return made

    def dump(self) -> dict[str, Any]:
        return {
            "next_id": self.next_id,
            "properties": [dataclasses.asdict(r) for r in self.properties.values()],
            "lists": [dataclasses.asdict(r) for r in self.lists.values()],
            "contacts": [dataclasses.asdict(r) for r in self.contacts.values()],
            "members": [dataclasses.asdict(r) for r in self.members.values()],
        }

    @classmethod
    def load(cls, data: Mapping[str, Any]) -> Account:
        """From `dump()`'s form; anything else raises KeyError, TypeError or ValueError
        (the sandbox runtime reports those as a broken state file)."""
        account = cls(next_id=int(data["next_id"]))
        for raw in data["properties"]:
            prop = PropertyRecord(**raw)
            account.properties[prop.id] = prop
        for raw in data["lists"]:
            found = ListRecord(**raw)
            account.lists[found.id] = found
        for raw in data["contacts"]:
            contact = ContactRecord(**raw)
            account.contacts[contact.id] = contact
        for raw in data["members"]:
            member = MemberRecord(**raw)
            if member.list_id not in account.lists or member.contact_id not in account.contacts:
                raise ValueError(f"member {raw!r} names an unknown list or contact")
            account.members[(member.list_id, member.contact_id)] = member
        return account


def property_json(record: PropertyRecord) -> dict[str, Any]:
    return dataclasses.asdict(record)


def list_json(record: ListRecord) -> dict[str, Any]:
    return dataclasses.asdict(record)


def contact_json(record: ContactRecord) -> dict[str, Any]:
    return {**dataclasses.asdict(record), "properties": dict(record.properties)}


def member_json(record: MemberRecord, contact: ContactRecord) -> dict[str, Any]:
    return {**dataclasses.asdict(record), "email": contact.email}


# ---- validation ------------------------------------------------------------------------


def _unprocessable(message: str) -> Refused:
    return Refused(422, "invalid", message)


def _object(
    body: Any, allowed: AbstractSet[str], required: AbstractSet[str] = frozenset()
) -> dict[str, Any]:
    if not isinstance(body, dict):
        raise Refused(400, "bad_request", "the body must be a JSON object")
    unknown = sorted(set(body) - allowed)
    if unknown:
        raise _unprocessable(f"unknown field(s): {', '.join(unknown)}")
    missing = sorted(required - set(body))
    if missing:
        raise _unprocessable(f"missing field(s): {', '.join(missing)}")
    return body


def _string(body: Mapping[str, Any], name: str) -> str:
    value = body[name]
    if not isinstance(value, str):
        raise _unprocessable(f"{name}: expected a string")
    return value


def _boolean(body: Mapping[str, Any], name: str) -> bool:
    value = body[name]
    if not isinstance(value, bool):
        raise _unprocessable(f"{name}: expected true or false")
    return value


def _email(value: str) -> str:
    local, at, domain = value.rpartition("@")
    if not at or not local or not domain or len(value) > 254 or any(c.isspace() for c in value):
        raise _unprocessable(f"email: {value[:60]!r} is not an email address")
    return value


def _moment(value: datetime) -> str:
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def typed_value(kind: str, value: Any, name: str) -> Any:
    """A property value as stored, or a 422 saying why it does not fit `kind`."""
    problem = f"properties.{name}: expected {kind}"
    if kind == "str":
        if isinstance(value, str):
            return value
    elif kind == "bool":
        if isinstance(value, bool):
            return value
    elif kind == "int":
        if isinstance(value, int) and not isinstance(value, bool):
            if INT_RANGE[0] <= value <= INT_RANGE[1]:
                return value
            problem = f"properties.{name}: out of the 64-bit integer range"
    elif kind == "float":
        if isinstance(value, int | float) and not isinstance(value, bool):
            if math.isfinite(value):
                return float(value)
            problem = f"properties.{name}: must be finite"
    elif isinstance(value, str):  # datetime
        try:
            moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
            return _moment(moment if moment.tzinfo else moment.replace(tzinfo=UTC))
        except (ValueError, OverflowError):
            problem = f"properties.{name}: expected an ISO 8601 datetime within the calendar"
    raise _unprocessable(problem)


# ---- the emulator ----------------------------------------------------------------------


Handler = Callable[[Request], Awaitable[Response]]


class PostboxEmulator:
    """The API above over an in-memory `Account`; `dump_state()`/`load_state()` keep it
    between sandbox runs. Python helpers (`seed_*`, `subscribe`, `unsubscribe`, `exclude`,
    `contact`, `member`) play the outside world in tests: no HTTP, no key."""

    def __init__(
        self,
        state: dict[str, Any] | None = None,
        *,
        api_keys: frozenset[str] = frozenset({SANDBOX_KEY}),
        clock: Clock = _now,
    ) -> None:
        self.api_keys = api_keys
        self.clock = clock
        self.account = Account.load(state) if state is not None else Account()
        self.control = EmulatorControl()
        self._lock = threading.Lock()
        routes = [
            *control_routes(self.control, self.dump_state, self.load_state),
            Route("/v1/properties", self._api(self._list_properties), methods=["GET"]),
            Route("/v1/properties", self._api(self._create_property), methods=["POST"]),
            Route("/v1/properties/{id}", self._api(self._delete_property), methods=["DELETE"]),
            Route("/v1/lists", self._api(self._list_lists), methods=["GET"]),
            Route("/v1/lists", self._api(self._create_list), methods=["POST"]),
            Route("/v1/lists/{id}", self._api(self._delete_list), methods=["DELETE"]),
            Route("/v1/contacts", self._api(self._list_contacts), methods=["GET"]),
            Route("/v1/contacts", self._api(self._create_contact), methods=["POST"]),
            Route("/v1/contacts/{id}", self._api(self._get_contact), methods=["GET"]),
            Route("/v1/contacts/{id}", self._api(self._update_contact), methods=["PATCH"]),
            Route("/v1/contacts/{id}", self._api(self._delete_contact), methods=["DELETE"]),
            Route("/v1/lists/{id}/members", self._api(self._list_members), methods=["GET"]),
            Route("/v1/lists/{id}/members", self._api(self._add_member), methods=["POST"]),
            Route(
                "/v1/lists/{id}/members/{contact_id}",
                self._api(self._update_member),
                methods=["PATCH"],
            ),
            Route(
                "/v1/lists/{id}/members/{contact_id}",
                self._api(self._remove_member),
                methods=["DELETE"],
            ),
        ]
        router = Router(routes=routes, default=_not_found)
        self.app: ASGIApp = ControlMiddleware(router, self.control)

    # -- state -----------------------------------------------------------------------

    def dump_state(self) -> dict[str, Any]:
        with self._lock:
            return json.loads(json.dumps(self.account.dump()))  # type: ignore[no-any-return]

    def load_state(self, data: dict[str, Any]) -> None:
        account = Account.load(data)
        with self._lock:
            self.account = account

    def now(self) -> str:
        return _moment(self.clock())

    # -- the outside world, for tests ------------------------------------------------

    def seed_property(self, name: str, kind: str) -> str:
        with self._lock:
            return self._new_property(name, kind).id

    def seed_list(self, name: str) -> str:
        with self._lock:
            return self._new_list(name).id

    def seed_contact(
        self,
        email: str,
        name: str = "",
        excluded: bool = False,
        properties: Mapping[str, Any] | None = None,
        lists: Mapping[str, str] | None = None,
    ) -> str:
        """A contact (with `properties` by name, defined first) on `lists` by name, each
        with its status; an opt-out is stamped now."""
        with self._lock:
            body: dict[str, Any] = {"email": email, "name": name}
            body["excluded_from_campaigns"] = excluded
            body["properties"] = dict(properties or {})
            contact = self._new_contact(body)
            for list_name, status in (lists or {}).items():
                found = self._list_named(list_name) or self._new_list(list_name)
                self._new_member(found, contact, status)
            return contact.id

    def subscribe(self, list_name: str, email: str) -> None:
        """The person signs up to the list through a form (joins, or comes back)."""
        with self._lock:
            found, contact = self._list_named(list_name), self._contact_by_email(email)
            if found is None or contact is None:
                raise KeyError((list_name, email))
            member = self.account.members.get((found.id, contact.id))
            if member is None:
                self._new_member(found, contact, "subscribed")
            else:
                self._set_status(member, "subscribed")

    def unsubscribe(self, list_name: str, email: str) -> None:
        """The person clicks "unsubscribe" in a mail from that list."""
        with self._lock:
            member = self._member_by_names(list_name, email)
            self._set_status(member, "unsubscribed")

    def exclude(self, email: str, excluded: bool = True) -> None:
        """The person opts out of every campaign (or, with False, back in, in the UI)."""
        with self._lock:
            contact = self._contact_by_email(email)
            if contact is None:
                raise KeyError(email)
            self._write_contact(contact, contact.name, excluded, contact.properties)

    def contact(self, email: str) -> dict[str, Any] | None:
        with self._lock:
            found = self._contact_by_email(email)
            return None if found is None else contact_json(found)

    def member(self, list_name: str, email: str) -> dict[str, Any] | None:
        with self._lock:
            try:
                found = self._member_by_names(list_name, email)
            except KeyError:
                return None
            return member_json(found, self.account.contacts[found.contact_id])

    # -- plumbing --------------------------------------------------------------------

    def _api(self, handler: Handler) -> Handler:
        """Authentication first, then the handler; a `Refused` becomes its answer."""

        async def endpoint(request: Request) -> Response:
            scheme, _, token = request.headers.get("authorization", "").partition(" ")
            if scheme.lower() != "bearer" or token.strip() not in self.api_keys:
                return Refused(401, "unauthorized", "a valid API key is required").response()
            try:
                return await handler(request)
            except Refused as refused:
                return refused.response()

        return endpoint

    async def _body(self, request: Request) -> Any:
        try:
            return json.loads(await request.body())
        except ValueError:
            raise Refused(400, "bad_request", "the body is not JSON") from None

    def _page(self, request: Request, records: list[dict[str, Any]]) -> Response:
        limit_text = request.query_params.get("limit", str(DEFAULT_LIMIT))
        token = request.query_params.get("page_token", "0")
        if not limit_text.isdigit() or not 1 <= int(limit_text) <= MAX_LIMIT:
            raise Refused(400, "bad_request", f"limit: must be 1..{MAX_LIMIT}")
        if not token.isdigit():
            raise Refused(400, "bad_request", "page_token: not a token this API gave")
        start, limit = int(token), int(limit_text)
        end = start + limit
        following = str(end) if end < len(records) else None
        return JSONResponse({"data": records[start:end], "next_page_token": following})

    @staticmethod
    def _one(record: dict[str, Any], status: int = 200) -> Response:
        return JSONResponse(record, status, headers={"ETag": f'"{record["version"]}"'})

    @staticmethod
    def _check_version(request: Request, version: int, what: str) -> None:
        wanted = request.headers.get("if-match")
        if wanted is not None and wanted.strip().strip('"') != str(version):
            raise Refused(
                412,
                "precondition_failed",
                f"the {what} is at version {version}, not {wanted.strip()}",
            )

    # -- properties ------------------------------------------------------------------

    async def _list_properties(self, request: Request) -> Response:
        with self._lock:
            records = [property_json(r) for r in self.account.properties.values()]
        return self._page(request, records)

    async def _create_property(self, request: Request) -> Response:
        body = _object(await self._body(request), {"name", "type"}, {"name", "type"})
        name, kind = _string(body, "name"), _string(body, "type")
        with self._lock:
            return self._one(property_json(self._new_property(name, kind)), 201)

    def _new_property(self, name: str, kind: str) -> PropertyRecord:
        if not PROPERTY_NAME.fullmatch(name):
            raise _unprocessable(
                "name: lower-case letters, digits and _, starting with a letter, at most 64"
            )
        if kind not in TYPES:
            raise _unprocessable(f"type: one of {', '.join(TYPES)}")
        existing = self._property_named(name)
        if existing is not None:
            raise Refused(409, "conflict", f"property {name} exists", existing_id=existing.id)
        record = PropertyRecord(self.account.new_id("prop"), name, kind)
        self.account.properties[record.id] = record
        return record

    async def _delete_property(self, request: Request) -> Response:
        with self._lock:
            record = self.account.properties.pop(request.path_params["id"], None)
            if record is None:
                raise Refused(404, "not_found", "no such property")
            for contact in self.account.contacts.values():
                contact.properties.pop(record.name, None)
        return Response(status_code=204)

    def _property_named(self, name: str) -> PropertyRecord | None:
        return next((p for p in self.account.properties.values() if p.name == name), None)

    # -- lists -----------------------------------------------------------------------

    async def _list_lists(self, request: Request) -> Response:
        with self._lock:
            records = [list_json(r) for r in self.account.lists.values()]
        return self._page(request, records)

    async def _create_list(self, request: Request) -> Response:
        body = _object(await self._body(request), {"name"}, {"name"})
        name = _string(body, "name")
        with self._lock:
            return self._one(list_json(self._new_list(name)), 201)

    def _new_list(self, name: str) -> ListRecord:
        if not name.strip() or len(name) > MAX_LIST_NAME:
            raise _unprocessable(f"name: 1..{MAX_LIST_NAME} characters, not only spaces")
        existing = self._list_named(name)
        if existing is not None:
            raise Refused(409, "conflict", f"list {name} exists", existing_id=existing.id)
        record = ListRecord(self.account.new_id("list"), name)
        self.account.lists[record.id] = record
        return record

    async def _delete_list(self, request: Request) -> Response:
        with self._lock:
            found = self._list(request.path_params["id"])
            del self.account.lists[found.id]
            for key in [key for key in self.account.members if key[0] == found.id]:
                del self.account.members[key]
        return Response(status_code=204)

    def _list(self, list_id: str) -> ListRecord:
        found = self.account.lists.get(list_id)
        if found is None:
            raise Refused(404, "not_found", "no such list")
        return found

    def _list_named(self, name: str) -> ListRecord | None:
        return next((r for r in self.account.lists.values() if r.name == name), None)

    # -- contacts --------------------------------------------------------------------

    async def _list_contacts(self, request: Request) -> Response:
        with self._lock:
            records = [contact_json(r) for r in self.account.contacts.values()]
        return self._page(request, records)

    async def _get_contact(self, request: Request) -> Response:
        with self._lock:
            return self._one(contact_json(self._contact(request.path_params["id"])))

    async def _create_contact(self, request: Request) -> Response:
        fields = {"email", "name", "excluded_from_campaigns", "properties"}
        body = _object(await self._body(request), fields, {"email"})
        with self._lock:
            return self._one(contact_json(self._new_contact(body)), 201)

    def _new_contact(self, body: Mapping[str, Any]) -> ContactRecord:
        email = _email(_string(body, "email"))
        existing = self._contact_by_email(email)
        if existing is not None:
            raise Refused(409, "conflict", "the email is taken", existing_id=existing.id)
        name = _string(body, "name") if "name" in body else ""
        excluded = "excluded_from_campaigns" in body and _boolean(body, "excluded_from_campaigns")
        values = self._values(body.get("properties", {}))
        record = ContactRecord(self.account.new_id("ct"), email, name)
        record.properties = {k: v for k, v in values.items() if v is not None}
        record.excluded_from_campaigns = excluded
        record.excluded_at = self.now() if excluded else None
        self.account.contacts[record.id] = record
        return record

    async def _update_contact(self, request: Request) -> Response:
        fields = {"name", "excluded_from_campaigns", "properties"}
        body = _object(await self._body(request), fields)
        with self._lock:
            record = self._contact(request.path_params["id"])
            self._check_version(request, record.version, "contact")
            name = _string(body, "name") if "name" in body else record.name
            excluded = (
                _boolean(body, "excluded_from_campaigns")
                if "excluded_from_campaigns" in body
                else record.excluded_from_campaigns
            )
            values = self._values(body.get("properties", {}))
            merged = dict(record.properties)
            for key, value in values.items():
                if value is None:
                    merged.pop(key, None)
                else:
                    merged[key] = value
            self._write_contact(record, name, excluded, merged)
            return self._one(contact_json(record))

    async def _delete_contact(self, request: Request) -> Response:
        with self._lock:
            record = self._contact(request.path_params["id"])
            del self.account.contacts[record.id]
            for key in [key for key in self.account.members if key[1] == record.id]:
                del self.account.members[key]
        return Response(status_code=204)

    def _values(self, raw: Any) -> dict[str, Any]:
        if not isinstance(raw, dict):
            raise _unprocessable("properties: expected an object")
        values: dict[str, Any] = {}
        for name, value in raw.items():
            definition = self._property_named(name)
            if definition is None:
                raise _unprocessable(f"properties.{name}: no such property; define it first")
            values[name] = None if value is None else typed_value(definition.type, value, name)
        return values

    def _write_contact(
        self, record: ContactRecord, name: str, excluded: bool, values: dict[str, Any]
    ) -> None:
        """One write: the version counts it once, if anything changed."""
        if excluded != record.excluded_from_campaigns:
            record.excluded_at = self.now() if excluded else None
        elif name == record.name and values == record.properties:
            return
        record.name, record.excluded_from_campaigns, record.properties = name, excluded, values
        record.version += 1

    def _contact(self, contact_id: str) -> ContactRecord:
        found = self.account.contacts.get(contact_id)
        if found is None:
            raise Refused(404, "not_found", "no such contact")
        return found

    def _contact_by_email(self, email: str) -> ContactRecord | None:
        key = email.lower()
        return next((c for c in self.account.contacts.values() if c.email.lower() == key), None)

    # -- memberships -----------------------------------------------------------------

    async def _list_members(self, request: Request) -> Response:
        with self._lock:
            found = self._list(request.path_params["id"])
            records = [
                member_json(member, self.account.contacts[member.contact_id])
                for (list_id, _), member in self.account.members.items()
                if list_id == found.id
            ]
        return self._page(request, records)

    async def _add_member(self, request: Request) -> Response:
        body = _object(await self._body(request), {"contact_id", "status"}, {"contact_id"})
        status = _string(body, "status") if "status" in body else "subscribed"
        with self._lock:
            found = self._list(request.path_params["id"])
            contact = self.account.contacts.get(_string(body, "contact_id"))
            if contact is None:
                raise _unprocessable("contact_id: no such contact")
            existing = self.account.members.get((found.id, contact.id))
            if existing is not None:
                raise Refused(
                    409, "conflict", "the contact is on the list already", existing_id=contact.id
                )
            member = self._new_member(found, contact, status)
            return self._one(member_json(member, contact), 201)

    def _new_member(self, found: ListRecord, contact: ContactRecord, status: str) -> MemberRecord:
        if status not in STATUSES:
            raise _unprocessable(f"status: one of {', '.join(STATUSES)}")
        unsubscribed_at = self.now() if status == "unsubscribed" else None
        member = MemberRecord(found.id, contact.id, status, unsubscribed_at)
        self.account.members[(found.id, contact.id)] = member
        return member

    async def _update_member(self, request: Request) -> Response:
        body = _object(await self._body(request), {"status"}, {"status"})
        status = _string(body, "status")
        if status not in STATUSES:
            raise _unprocessable(f"status: one of {', '.join(STATUSES)}")
        with self._lock:
            member = self._member(request.path_params["id"], request.path_params["contact_id"])
            self._check_version(request, member.version, "membership")
            self._set_status(member, status)
            return self._one(member_json(member, self.account.contacts[member.contact_id]))

    async def _remove_member(self, request: Request) -> Response:
        with self._lock:
            member = self._member(request.path_params["id"], request.path_params["contact_id"])
            del self.account.members[(member.list_id, member.contact_id)]
        return Response(status_code=204)

    def _set_status(self, member: MemberRecord, status: str) -> None:
        if status == member.status:
            return
        member.status = status
        member.unsubscribed_at = self.now() if status == "unsubscribed" else None
        member.version += 1

    def _member(self, list_id: str, contact_id: str) -> MemberRecord:
        self._list(list_id)
        member = self.account.members.get((list_id, contact_id))
        if member is None:
            raise Refused(404, "not_found", "the contact is not on the list")
        return member

    def _member_by_names(self, list_name: str, email: str) -> MemberRecord:
        found, contact = self._list_named(list_name), self._contact_by_email(email)
        if found is None or contact is None or (found.id, contact.id) not in self.account.members:
            raise KeyError((list_name, email))
        return self.account.members[(found.id, contact.id)]


async def _not_found(scope: Any, receive: Any, send: Any) -> None:
    await Refused(404, "not_found", "no such path").response()(scope, receive, send)


def create_postbox_emulator(state: dict[str, Any] | None = None) -> PostboxEmulator:
    return PostboxEmulator(state)
