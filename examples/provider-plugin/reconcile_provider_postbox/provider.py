"""Postbox as a reconcile provider: read the account into the neutral model, carry out a
plan's changes one request each.

Consent is decided by the plan (reconcile's diff), never here: a re-subscribe or a
re-inclusion is written only when the change carries the plan's consent flag, and then
only on the condition (If-Match) that the record is still the version the plan was made
against, so someone who opted out again after planning stays out. A creation never
overwrites: a contact or membership that appeared since planning is reported, not
touched. Record ids come from the live state (`PostboxRecords`), never from this
object: it keeps nothing between read and apply.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from typing import Any, TypeVar
from urllib.parse import quote

from reconcile.diff import (
    Action,
    Change,
    Finding,
    Flag,
    Ref,
    ResourceType,
    list_ref,
    property_ref,
)
from reconcile.errors import ApiError, ReconcileError
from reconcile.model import Namespace, ReadScope, State, SubscriptionStatus
from reconcile.providers.base import (
    ApplyReport,
    Cancellation,
    Capability,
    Provider,
    ProviderStats,
    blocker,
)
from reconcile_provider_postbox import payloads, records
from reconcile_provider_postbox.client import Conflict, Moved, NotFound, PostboxClient
from reconcile_provider_postbox.records import PostboxRecords

T = TypeVar("T")
PROPERTY_NAME_RULE = "lower-case letters, digits and _, starting with a letter, at most 64"
MAX_LIST_NAME = 200
RUN_PLAN_AGAIN = "run plan again"


class PostboxProvider(Provider):
    name = "postbox"
    # Named one by one (never `frozenset(Capability)`): a capability reconcile adds later
    # is one this provider has not implemented.
    capabilities = frozenset(
        {
            Capability.PROPERTY_DEFINITIONS,
            Capability.REMOVE_LIST_MEMBER,
            Capability.LIST_UNSUBSCRIBE,
            Capability.DELETE_LIST,
            Capability.HARD_DELETE,
            # Not RENAME_LIST nor RENAME_PROPERTY: Postbox has no rename route, so `validate`
            # refuses renamed_from: instead of planning a rename it can't carry out.
        }
    )

    def __init__(self, client: PostboxClient, *, api_key: str, cancel: Cancellation) -> None:
        self.client = client
        self.cancel = cancel
        # The key names the account but is a secret: a digest tells accounts apart.
        self._key_digest = hashlib.sha256(api_key.encode()).hexdigest()[:16]

    async def aclose(self) -> None:
        await self.client.aclose()

    def identity(self, live: State | None) -> dict[str, str]:
        return {"url": self.client.base_url, "api_key_sha256": self._key_digest}

    def stats(self) -> ProviderStats:
        stats = self.client.stats
        return ProviderStats(
            requests=stats.requests,
            retries=stats.retries,
            rate_limited=stats.rate_limited,
            waited_seconds=round(stats.waited_seconds, 3),
        )

    @classmethod
    def check_desired(cls, desired: State) -> list[Finding]:
        findings = [
            Finding(property_ref(name), f"is not a Postbox property name ({PROPERTY_NAME_RULE})")
            for name in desired.properties
            if not _property_name_ok(name)
        ]
        findings += [
            Finding(
                property_ref(name),
                "has namespace: historic, which Postbox does not have; remove it",
            )
            for name, definition in desired.properties.items()
            if definition.namespace is not Namespace.STATIC
        ]
        findings += [
            Finding(list_ref(name), f"is longer than the {MAX_LIST_NAME} characters Postbox takes")
            for name in desired.lists
            if len(name) > MAX_LIST_NAME
        ]
        return findings

    def estimate_calls(self, changes: Sequence[Change], live: State) -> int:
        """One request per change; a replaced property definition takes two (delete, create).
        Retries are not counted."""
        return len(changes) + sum(1 for change in changes if _replaces(change))

    # ---- read ----------------------------------------------------------------------

    async def read(self, scope: ReadScope) -> State:
        ids = PostboxRecords()
        state = State(provider_records=ids)
        for raw in await self.client.get_all("/properties"):
            definition, property_id = records.property_def(raw)
            state.properties[definition.name] = definition
            ids.properties[definition.name] = property_id
        for raw in await self.client.get_all("/lists"):
            found, list_id = records.contact_list(raw)
            state.lists[found.name] = found
            ids.lists[found.name] = list_id
        types = {name: definition.type for name, definition in state.properties.items()}
        for raw in await self.client.get_all("/contacts"):
            contact, record = records.contact(raw, types)
            if contact.key not in state.contacts:  # a page boundary that moved: seen twice
                state.add_contact(contact)
                ids.contacts[contact.key] = record
        for list_name, list_id in ids.lists.items():
            if not scope.wants_members(list_name):
                continue
            for raw in await self.client.get_all(_at("lists", list_id, "members")):
                member, record = records.membership(raw, list_name)
                state.add_membership(member)
                ids.members[member.key] = record
        return state

    # ---- apply ---------------------------------------------------------------------

    async def apply(self, changes: Sequence[Change], live: State) -> ApplyReport:
        """Each change in the plan's order, one at a time; one whose dependency failed is
        skipped. Ctrl-C (the cancellation token) lets the change in flight finish and starts
        nothing more."""
        ids = _ids_of(live)
        report = ApplyReport()
        failed: set[Ref] = set()
        self.cancel.applying = True  # from now on, Ctrl-C asks us to stop between changes
        for index, change in enumerate(changes):
            if self.cancel.requested:
                for rest in changes[index:]:
                    report.not_started(rest)
                break
            blocking = blocker(change, failed)
            if blocking is not None:
                failed.add(change.ref)
                report.skipped(change, blocking)
                continue
            message, error = await self._attempt(change, ids)
            if error is None:
                report.done(change, message)
            else:
                failed.add(change.ref)
                report.failed(change, error)
        return report

    async def _attempt(self, change: Change, ids: PostboxRecords) -> tuple[str, str | None]:
        """(message, None) when done, ("", why) when it failed."""
        try:
            return await self._carry_out(change, ids), None
        except ReconcileError as error:
            return "", str(error)

    async def _carry_out(self, change: Change, ids: PostboxRecords) -> str:
        """One change; returns a note for the report, raises an ApiError when it failed."""
        kind, action = change.type, change.action
        if kind is ResourceType.PROPERTY:
            if action is Action.DELETE:
                return await self._delete(_at("properties", _id(ids.properties, change.key[0])))
            if action is Action.UPDATE:
                if Flag.REPLACE not in change.flags:
                    raise ApiError("a definition can't change in place; the plan did not say to")
                await self._delete(_at("properties", _id(ids.properties, change.key[0])))
            body = {"name": change.key[0], "type": payloads.property_type(change)}
            created = await self._create("/properties", body, "property")
            ids.properties[change.key[0]] = records.versioned(created, "POST /v1/properties").id
            return ""
        if kind is ResourceType.LIST:
            if action is Action.DELETE:
                return await self._delete(_at("lists", _id(ids.lists, change.list_name)))
            return await self._create_list(change, ids)
        if kind is ResourceType.CONTACT:
            if action is Action.DELETE:
                return await self._delete(_at("contacts", _id(ids.contacts, change.email).id))
            if action is Action.CREATE:
                body = payloads.contact_write(change).body()
                created = await self._create("/contacts", body, "contact")
                ids.contacts[change.email] = records.versioned(created, "POST /v1/contacts")
                return ""
            return await self._update_contact(change, ids)
        list_id = _id(ids.lists, change.list_name)
        if action is Action.DELETE:
            member = _id(ids.members, (change.list_name, change.email))
            return await self._delete(_at("lists", list_id, "members", member.id))
        if action is Action.CREATE:
            contact_id = _id(ids.contacts, change.email).id
            body = {"contact_id": contact_id, "status": payloads.membership_status(change).value}
            await self._create(_at("lists", list_id, "members"), body, "membership")
            return ""
        return await self._update_membership(change, list_id, ids)

    async def _create_list(self, change: Change, ids: PostboxRecords) -> str:
        try:
            answer = await self.client.send("POST", "/lists", {"name": change.list_name})
        except Conflict as conflict:
            if conflict.existing_id is None:
                raise
            ids.lists[change.list_name] = conflict.existing_id
            return "created by someone else since planning; used as it is"
        ids.lists[change.list_name] = records.versioned(answer, "POST /v1/lists").id
        return ""

    async def _update_contact(self, change: Change, ids: PostboxRecords) -> str:
        write = payloads.contact_write(change)
        record = _id(ids.contacts, change.email)
        condition = None
        if write.excluded is False:
            if not payloads.carries_consent(change):
                raise ApiError("the plan carries no consent to re-include them; nothing written")
            condition = record.version  # opted out again since planning: not re-included
        try:
            answer = await self.client.send(
                "PATCH", _at("contacts", record.id), write.body(), if_match=condition
            )
        except Moved:
            raise ApiError(
                "changed since planning (opted out again?); not re-included, nothing written; "
                + RUN_PLAN_AGAIN
            ) from None
        ids.contacts[change.email] = records.versioned(answer, "PATCH /v1/contacts/{id}")
        return ""

    async def _update_membership(self, change: Change, list_id: str, ids: PostboxRecords) -> str:
        status = payloads.membership_status(change)
        member = _id(ids.members, (change.list_name, change.email))
        condition = None
        if status is SubscriptionStatus.SUBSCRIBED:
            if not payloads.carries_consent(change):
                raise ApiError("the plan carries no consent to re-subscribe them; nothing written")
            condition = member.version  # unsubscribed again since planning: left out
        try:
            await self.client.send(
                "PATCH",
                _at("lists", list_id, "members", member.id),
                {"status": status.value},
                if_match=condition,
            )
        except Moved:
            raise ApiError(
                "changed since planning (unsubscribed again?); not re-subscribed, nothing "
                "written; " + RUN_PLAN_AGAIN
            ) from None
        return ""

    async def _create(self, path: str, body: dict[str, Any], what: str) -> object:
        """POST a new record; its answer. Never an overwrite: one that exists is refused."""
        try:
            answer = await self.client.send("POST", path, body)
        except Conflict as conflict:
            raise ApiError(
                f"the {what} was created by someone else since planning; left as it is "
                f"(never overwritten: they may have opted out); {RUN_PLAN_AGAIN}",
                method=conflict.method,
                path=conflict.path,
                status=conflict.status,
            ) from None
        return answer

    async def _delete(self, path: str) -> str:
        try:
            await self.client.send("DELETE", path)
        except NotFound:
            return "already gone"
        return ""


def _at(*parts: str) -> str:
    """An API path from its parts; ids are quoted (they come from answers)."""
    return "".join(f"/{quote(part, safe='')}" for part in parts)


def _property_name_ok(name: str) -> bool:
    return (
        1 <= len(name) <= 64
        and name[0].isascii()
        and name[0].islower()
        and all(c.isascii() and (c.islower() or c.isdigit() or c == "_") for c in name)
    )


def _replaces(change: Change) -> bool:
    return (
        change.type is ResourceType.PROPERTY
        and change.action is Action.UPDATE
        and Flag.REPLACE in change.flags
    )


def _ids_of(live: State) -> PostboxRecords:
    """This apply's own copy of the ids read (creations add theirs to it)."""
    found = live.provider_records
    if not isinstance(found, PostboxRecords):
        raise ReconcileError(
            "the live state given to apply was not read by the postbox provider (its record "
            "ids are missing); run plan again"
        )
    return PostboxRecords(
        dict(found.properties), dict(found.lists), dict(found.contacts), dict(found.members)
    )


K = TypeVar("K")
V = TypeVar("V")


def _id(known: Mapping[K, V], key: K) -> V:
    """The record of `key`, as read before apply or created by it."""
    found = known.get(key)
    if found is None:
        shown = "/".join(key) if isinstance(key, tuple) else key
        raise ApiError(f"{shown} is not in the account as read before apply; {RUN_PLAN_AGAIN}")
    return found
