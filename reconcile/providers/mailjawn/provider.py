"""MailJawn provider: subscribers are contacts, tags are lists, custom_fields are properties.

Order: nothing to write for property definitions or lists (tags exist by name); new
contacts by bulk import with their tags and custom fields; updates by PATCH with only
what changed; tags for existing subscribers by identify; deletions last. MailJawn can't
remove a tag, so membership removals and unsubscribes are refused (the engine refuses
them earlier through `capabilities`). A bounced or complained status is never changed.
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from reconcile.diff import (
    Action,
    Change,
    Finding,
    ResourceType,
    contact_ref,
    list_ref,
    property_ref,
)
from reconcile.errors import ApiError
from reconcile.model import (
    EXCLUDED,
    ContactList,
    ContactValues,
    Membership,
    ProviderRecords,
    ReadScope,
    State,
    SubscriptionStatus,
    email_key,
)
from reconcile.providers.base import (
    ApplyReport,
    Cancellation,
    Capability,
    Provider,
    ProviderStats,
    records_of,
)
from reconcile.providers.mailjawn import records
from reconcile.providers.mailjawn.client import PAGE_SIZE, MailJawnClient
from reconcile.providers.mailjawn.records import SUBSCRIBERS, Subscriber
from reconcile.providers.runner import ChangeRunner, GuardedWrites, all_or_none

MAX_IMPORT = 1000
IDENTIFY = "/subscribers/identify/"
NO_TAG_REMOVAL = "MailJawn has no way to remove a tag from a subscriber"


@dataclass
class _NewContact:
    """A contact created by bulk import, and the memberships riding in it as tags."""

    change: Change
    memberships: list[Change]  # created by its import, as tags

    @property
    def key(self) -> str:
        return self.change.email

    @property
    def after(self) -> ContactValues:
        return self.change.contact_after

    @property
    def email(self) -> str:
        """As written in the manifest."""
        return self.after.email or self.key

    @property
    def tags(self) -> list[str]:
        return [membership.list_name for membership in self.memberships]

    @property
    def needs_status(self) -> bool:
        return bool(self.after.fields.get(EXCLUDED))  # import can't set status; a PATCH follows


@dataclass
class _ImportResult:
    failed: dict[str, str] = dataclasses.field(default_factory=dict)  # key -> message
    to_check: set[str] = dataclasses.field(default_factory=set)  # look up, then converge


Subscribers = dict[str, Subscriber]  # by email key


@dataclass
class MailJawnRecords(ProviderRecords):
    """The subscribers as read (ids, status, modified): they travel in the live state, so
    apply needs nothing kept from the read."""

    subscribers: Subscribers


def _subscribers(live: State) -> Subscribers:
    """The subscribers read into `live`; a live state read by another provider is refused."""
    found = records_of(live, MailJawnRecords)
    # None: built by hand, nothing was read, so each one is looked up
    return {} if found is None else found.subscribers


class MailJawnProvider(Provider):
    name = "mailjawn"
    # No RENAME_LIST: a list is a tag slug on each subscriber, with no route of its own (and
    # a tag can't be removed); no RENAME_PROPERTY: custom fields have no definitions.
    capabilities = frozenset({Capability.HARD_DELETE})
    address_change = (
        "its API document has no route that changes a subscriber's email (identify and "
        "import match subscribers by email; PATCH takes name, timezone, custom_fields and "
        "status)"
    )

    def __init__(
        self,
        client: MailJawnClient,
        *,
        import_chunk_size: int = MAX_IMPORT,
        cancel: Cancellation | None = None,
    ) -> None:
        if not 1 <= import_chunk_size <= MAX_IMPORT:
            raise ValueError(f"import_chunk_size must be 1..{MAX_IMPORT}")
        self.client = client
        self.cancel = cancel or client.cancel
        self.guarded = GuardedWrites()
        self.import_chunk_size = import_chunk_size

    async def aclose(self) -> None:
        await self.client.aclose()

    def identity(self, live: State | None) -> dict[str, str]:
        return {"url": self.client.base_url, "project_id": self.client.project_id}

    def estimate_calls(self, changes: Sequence[Change], live: State) -> int:
        """Every request apply sends when nothing fails and nobody else writes meanwhile:
        imports per chunk of new subscribers; for each created excluded one (an import can't
        set a status) the look-up of its id and a PATCH; a PATCH per update (after a
        fresh read when it re-activates someone), one identify per existing subscriber
        gaining tags, deletes. Look-ups that only follow a fault or an import that skipped
        someone are not counted."""
        creates = [
            c for c in changes if c.type is ResourceType.CONTACT and c.action is Action.CREATE
        ]
        created = {c.email for c in creates}
        excluded = sum(1 for c in creates if c.contact_after.fields.get(EXCLUDED) is True)
        others = sum(
            1 for c in changes if c.type is ResourceType.CONTACT and c.action is not Action.CREATE
        )
        tagged = {
            c.email
            for c in changes
            if c.type is ResourceType.MEMBERSHIP and c.action is Action.CREATE
        } - created
        imports = -(-len(creates) // self.import_chunk_size)
        reactivations = sum(
            1
            for c in changes
            if c.type is ResourceType.CONTACT
            and c.action is Action.UPDATE
            and c.contact_after.fields.get(EXCLUDED) is False
        )  # each reads the subscriber again first: one search
        lookups = lookup_calls(excluded, len(live.contacts) + len(creates)) + reactivations
        return imports + lookups + excluded + others + len(tagged)

    def stats(self) -> ProviderStats:
        return self.client.snapshot()

    @classmethod
    def check_desired(cls, desired: State) -> list[Finding]:
        findings = []
        for name in desired.lists:
            if records.is_slug(name):
                continue
            slug = records.slug_for(name)
            fix = f"rename it to {slug!r}" if slug else "use letters and digits"
            findings.append(
                Finding(
                    list_ref(name),
                    "is not a valid MailJawn tag slug (lower-case letters and digits joined by "
                    f"single - or _); {fix}",
                )
            )
        findings += [
            Finding(
                property_ref(name),
                "has replace: true, but MailJawn keeps no property definitions: there is "
                "nothing to replace and values keep the type they were written with; remove it",
            )
            for name, definition in desired.properties.items()
            if definition.replace
        ]
        findings += [
            Finding(
                contact_ref(key),
                f"{contact.email!r}: MailJawn's API document defines no addresses beyond "
                "ASCII, so reconcile sends none; write the domain in its xn-- (punycode) form",
            )
            for key, contact in desired.contacts.items()
            if not contact.email.isascii()
        ]
        return findings

    def review(self, changes: Sequence[Change], live: State) -> tuple[list[Change], list[Finding]]:
        """Drop excluded_from_campaigns from updates of bounced or complained subscribers."""
        kept: list[Change] = []
        warnings: list[Finding] = []
        for change in changes:
            status = _protected_status(change, live)
            if status is None:
                kept.append(change)
                continue
            warnings.append(
                Finding(
                    change.ref,
                    f"is {status} on MailJawn; reconcile never changes a bounced or complained "
                    "status, so excluded_from_campaigns stays true",
                )
            )
            rest = _without_excluded(change)
            if rest is not None:
                kept.append(rest)
        return kept, warnings

    # ---- read -------------------------------------------------------------------------

    async def read(self, scope: ReadScope) -> State:
        """Every subscriber; every tag seen, plus scope.lists (a tag exists by name)."""
        known: Subscribers = {}
        state = State(provider_records=MailJawnRecords(known))
        for found in await self.client.list_all(
            SUBSCRIBERS, "subscribers", keep=records.subscriber
        ):
            if found.key in known:
                continue  # the same subscriber on two pages: someone added one meanwhile
            known[found.key] = found
            state.add_contact(found.contact())
            for tag in found.tags:
                state.lists.setdefault(tag, ContactList(tag))
                if scope.wants_members(tag):
                    state.add_membership(Membership(tag, found.key))
        for name in scope.lists:
            state.lists.setdefault(name, ContactList(name))
        return state

    # ---- apply ------------------------------------------------------------------------

    async def apply(self, changes: Sequence[Change], live: State) -> ApplyReport:
        known = dict(_subscribers(live))  # as read, then as found by this apply
        report = ApplyReport()
        run = ChangeRunner(report, self.cancel)
        groups: dict[tuple[ResourceType, Action], list[Change]] = defaultdict(list)
        for change in changes:
            groups[(change.type, change.action)].append(change)
        for change in _of_type(groups, ResourceType.PROPERTY):
            run.done(change, "MailJawn has no property definitions; nothing to write")
        for change in groups[(ResourceType.LIST, Action.CREATE)]:
            run.done(change, "a tag exists by name; nothing to write")
        for change in groups[(ResourceType.LIST, Action.DELETE)]:
            run.fail(change, "MailJawn has no way to delete a tag")
        new_keys = {c.email for c in groups[(ResourceType.CONTACT, Action.CREATE)]}
        imported_tags, tag_adds, refused = _split_memberships(groups, new_keys)
        for change in refused:
            run.fail(change, NO_TAG_REMOVAL)
        creates = groups[(ResourceType.CONTACT, Action.CREATE)]
        await self._create_contacts(creates, imported_tags, run, known)
        updates = groups[(ResourceType.CONTACT, Action.UPDATE)]
        await run.run_each(updates, lambda change: self._update_contact(change, known))
        await run.run_per_contact(tag_adds, lambda key, group: self._add_tags(key, group, known))
        deletions = groups[(ResourceType.CONTACT, Action.DELETE)]
        await run.run_each(deletions, lambda change: self._delete_contact(change, known))
        return report

    # -- creation by bulk import

    async def _create_contacts(
        self,
        creates: list[Change],
        imported_tags: dict[str, list[Change]],
        run: ChangeRunner,
        known: Subscribers,
    ) -> None:
        items = [_NewContact(c, imported_tags.get(c.email, [])) for c in creates if run.runnable(c)]
        size = self.import_chunk_size
        chunks = [items[i : i + size] for i in range(0, len(items), size)]
        project_size = len(known) + len(items)
        results = await asyncio.gather(*(self._import(chunk, project_size) for chunk in chunks))
        failed = {k: v for result in results for k, v in result.failed.items()}
        to_check = set().union(*(result.to_check for result in results))
        found: dict[str, Subscriber] = {}
        try:
            found = await self._find_many(
                [item.email for item in items if item.key in to_check],
                subscribers=project_size,
            )
        except ApiError as error:
            failed.update(
                dict.fromkeys(to_check, f"imported or already there; not checked: {error}")
            )
        for item in items:
            if item.key in failed:
                run.fail(item.change, failed[item.key])
                run.mark_carried(item.memberships)
            elif item.key not in to_check:
                run.done(item.change)
                run.mark_carried(item.memberships)
        checked = [item for item in items if item.key in to_check and item.key not in failed]
        await asyncio.gather(
            *(self._converge(item, found.get(item.key), run, known) for item in checked)
        )

    async def _import(
        self, items: list[_NewContact], project_size: int, *, again: bool = True
    ) -> _ImportResult:
        """One bulk import. If its answer was lost or unreadable, import only the missing."""
        emails = [item.email for item in items]
        body = {
            "subscribers": [
                records.import_item(item.email, item.after, item.tags) for item in items
            ]
        }
        try:
            answer = await self.client.post(SUBSCRIBERS, body, idempotent=False)
            mapped = records.import_answer(answer, emails)
        except ApiError as error:
            if not again or not _may_have_landed(error):
                return _ImportResult(failed={item.key: str(error) for item in items})
            return await self._import_missing(items, error, project_size)
        # Skipped emails are only counted, not named: every other one is checked then.
        unsure = mapped.skipped > 0 or not mapped.accounted
        to_check = {
            item.key
            for item in items
            if item.key not in mapped.failed and (unsure or item.needs_status)
        }
        request = f"POST {self.client.prefix}{SUBSCRIBERS}"
        failed = {key: f"{request} (bulk import): {why}" for key, why in mapped.failed.items()}
        return _ImportResult(failed, to_check)

    async def _import_missing(
        self, items: list[_NewContact], error: ApiError, project_size: int
    ) -> _ImportResult:
        """After an import that may have landed: never blindly again, only who is missing."""
        try:
            landed = await self._find_many((item.email for item in items), subscribers=project_size)
        except ApiError as lookup_error:
            message = f"{error}; then, looking them up: {lookup_error}"
            return _ImportResult(failed={item.key: message for item in items})
        missing = [item for item in items if item.key not in landed]
        if not missing:
            result = _ImportResult()
        else:
            result = await self._import(missing, project_size, again=False)
        result.to_check |= set(landed)
        return result

    async def _converge(
        self, item: _NewContact, current: Subscriber | None, run: ChangeRunner, known: Subscribers
    ) -> None:
        """Bring a subscriber found after import (ours, or someone else's) to the manifest."""
        if current is None:
            run.fail(item.change, "not found after the bulk import; run plan again")
            run.mark_carried(item.memberships)
            return
        known[current.key] = current
        body = records.patch_body(records.differing(item.after, current), current.status)
        try:
            if body:
                await self.client.patch(f"{SUBSCRIBERS}{current.id}/", body)
        except ApiError as error:
            run.fail(item.change, str(error))
            run.mark_carried(item.memberships)
            return
        run.done(item.change)
        missing = [
            membership
            for membership in item.memberships
            if membership.list_name not in current.tags
        ]
        await run.run_as_one(current.email, missing, self._identify)
        run.mark_carried(
            [membership for membership in item.memberships if membership not in missing]
        )

    # -- updates, tags, deletions

    async def _update_contact(self, change: Change, known: Subscribers) -> str:
        current = await self._subscriber(change.email, known)
        after = change.contact_after
        if after.fields.get(EXCLUDED) is False:
            async with self.guarded.pair():
                current = await self._unchanged_since_planning(current, len(known))
                await self._patch(current, after)
        else:
            await self._patch(current, after)
        if current.protected and EXCLUDED in after.fields:
            return f"status left {current.status}: it is never changed"
        return ""

    async def _patch(self, current: Subscriber, after: ContactValues) -> None:
        body = records.patch_body(after, current.status)
        if body:
            await self.client.patch(f"{SUBSCRIBERS}{current.id}/", body)

    async def _unchanged_since_planning(self, planned: Subscriber, project_size: int) -> Subscriber:
        """Before re-activating someone (an opt-in), read them again: if their record moved
        since the plan read it, they may have opted out again after the consent."""
        lookup = self._find_many([planned.email], subscribers=project_size + 1)
        found = (await self.cancel.unless_requested(lookup, "GET", SUBSCRIBERS)).get(planned.key)
        if found is None or found.modified != planned.modified or found.status != planned.status:
            raise ApiError(
                f"subscriber {planned.email} changed since planning (opted out again?); "
                "not re-activated (run plan again)"
            )
        return found

    async def _add_tags(self, key: str, changes: list[Change], known: Subscribers) -> None:
        current = known.get(key)
        await self._identify(current.email if current else key, changes)

    async def _identify(self, email: str, changes: list[Change]) -> None:
        tags = sorted({change.list_name for change in changes})
        await self.client.post(IDENTIFY, records.identify_body(email, tags), idempotent=True)

    async def _delete_contact(self, change: Change, known: Subscribers) -> str:
        try:
            current = await self._subscriber(change.email, known)
            await self.client.delete(f"{SUBSCRIBERS}{current.id}/")
        except ApiError as error:
            if error.status != 404 and not isinstance(error, _NotFound):
                raise
            return "already gone"
        return ""

    # -- look-ups

    async def _subscriber(self, key: str, known: Subscribers) -> Subscriber:
        read = known.get(key)
        if read is not None:
            return read
        found = await self._find_many([key], subscribers=len(known) + 1)
        if key not in found:
            raise _NotFound(f"subscriber {key} is not in the project (deleted meanwhile?)")
        return found[key]

    async def _find_many(self, emails: Iterable[str], *, subscribers: int) -> Subscribers:
        """Subscribers by email key: one search each, or one full listing when that's fewer
        (`subscribers`: about how many the project holds)."""
        wanted = {email_key(email): email for email in emails}
        if not wanted:
            return {}
        if lookup_calls(len(wanted), subscribers) < len(wanted):
            candidates = await self.client.list_all(
                SUBSCRIBERS, "subscribers", keep=records.subscriber
            )
        else:
            async with all_or_none() as group:
                searches = [group.create_task(self._search(e)) for e in wanted.values()]
            candidates = [found for search in searches for found in search.result()]
        return {found.key: found for found in candidates if found.key in wanted}

    async def _search(self, email: str) -> list[Subscriber]:
        matches = await self.client.list_all(
            SUBSCRIBERS, "subscribers", {"search": email}, keep=records.subscriber
        )
        return [found for found in matches if found.key == email_key(email)]


def lookup_calls(wanted: int, subscribers: int) -> int:
    """Requests to find `wanted` subscribers in a project of `subscribers`: a search each,
    or every page of the listing when that is fewer."""
    if not wanted:
        return 0
    return min(wanted, max(1, -(-subscribers // PAGE_SIZE)))


class _NotFound(ApiError):
    """The subscriber a change concerns is not in the project any more."""


def _may_have_landed(error: ApiError) -> bool:
    """No answer, a server error, or a success we could not read: it may have been imported."""
    return error.status is None or error.status >= 500 or error.status < 300


def _of_type(
    groups: dict[tuple[ResourceType, Action], list[Change]], kind: ResourceType
) -> list[Change]:
    return [change for (t, _), group in groups.items() if t is kind for change in group]


def _split_memberships(
    groups: dict[tuple[ResourceType, Action], list[Change]], new_keys: set[str]
) -> tuple[dict[str, list[Change]], list[Change], list[Change]]:
    """(tags riding in the import by contact key, tags to add by identify, refused changes)."""
    imported_tags: dict[str, list[Change]] = defaultdict(list)
    tag_adds: list[Change] = []
    refused: list[Change] = list(groups[(ResourceType.MEMBERSHIP, Action.DELETE)])
    adds = (
        groups[(ResourceType.MEMBERSHIP, Action.CREATE)]
        + groups[(ResourceType.MEMBERSHIP, Action.UPDATE)]
    )
    for change in adds:
        if change.membership_after.status is not SubscriptionStatus.SUBSCRIBED:
            refused.append(change)  # an unsubscribed tag can't be expressed
            continue
        email = change.email
        if email in new_keys:
            imported_tags[email].append(change)
        else:
            tag_adds.append(change)
    return imported_tags, tag_adds, refused


def _protected_status(change: Change, live: State) -> str | None:
    if change.type is not ResourceType.CONTACT or change.action is not Action.UPDATE:
        return None
    if EXCLUDED not in change.contact_after.fields:
        return None
    contact = live.contacts.get(change.email)
    status = contact.fields.get(records.STATUS) if contact else None
    return status if status in records.PROTECTED_STATUSES else None


def _without_excluded(change: Change) -> Change | None:
    after = change.contact_after.without(EXCLUDED)
    if after.is_empty:
        return None
    before = change.contact_before.without(EXCLUDED)
    return dataclasses.replace(change, before=before, after=after)
