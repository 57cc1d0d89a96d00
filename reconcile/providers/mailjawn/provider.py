"""MailJawn provider: subscribers are contacts, tags are lists, custom_fields are properties.

Order: nothing to write for property definitions or lists (tags exist by name); new
contacts by bulk import with their tags and custom fields; then existing subscribers;
deletions last. MailJawn can't remove a tag, so membership removals and unsubscribes are
refused (the engine refuses them earlier through `capabilities`). A bounced or
complained status is never changed.

Existing subscribers: the document does not say whether a bulk import updates an
existing subscriber or skips it, so apply finds out. When enough active subscribers
change (no status change, no custom field removed) for imports to be cheaper, the first
few go in one import, read before and after: if every value landed and nothing else
moved, the rest follow in imports of up to 1,000; otherwise they are written one by one
and the report says why. One by one: a PATCH with what changed, or, for an active
subscriber that also gains tags, one identify with both. Every upsert sends the live
value of each field no manifest manages (custom fields excepted: they are merged).
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

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
from reconcile.providers.runner import ChangeRunner, GroupStep, GuardedWrites, all_or_none

MAX_IMPORT = 1000
PROBE_SIZE = 3  # subscribers of the first update import, read before and after it
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
class _Existing:
    """An existing subscriber's changes: its contact update, and the tags it gains."""

    key: str
    current: Subscriber | None  # as read; None: not read, looked up when written
    update: Change | None = None
    tags: list[Change] = dataclasses.field(default_factory=list)

    @property
    def after(self) -> ContactValues | None:
        return self.update.contact_after if self.update is not None else None

    @property
    def changes(self) -> list[Change]:
        return ([self.update] if self.update is not None else []) + self.tags

    @property
    def upsertable(self) -> bool:
        return self.current is not None and records.upsertable(self.after, self.current)

    @property
    def folds(self) -> bool:
        """Its update and its new tags go in one identify instead of a PATCH and another."""
        return self.update is not None and bool(self.tags) and self.upsertable

    def item(self, current: Subscriber, *, unmanaged: bool = True) -> dict[str, Any]:
        tags = [tag.list_name for tag in self.tags]
        return records.upsert_item(current, self.after, tags, unmanaged=unmanaged)

    @property
    def revealing(self) -> int:
        """How much an upsert leaving things out could damage (the probe picks the most)."""
        current = self.current
        if current is None:
            return 0
        sent = set(self.after.properties or {}) if self.after is not None else set()
        unsent = set(current.custom_fields) - sent
        return len(unsent) + len(current.tags) + len(current.kept) + bool(current.name)

    def single_calls(self) -> int:
        """Requests to write it alone: a fold; else a PATCH (after a fresh read when it
        re-activates someone) and an identify for the tags."""
        if self.folds:
            return 1
        after = self.after
        patch = 0 if after is None else 1 + (after.fields.get(EXCLUDED) is False)
        return patch + bool(self.tags)


@dataclass
class _Probe:
    """What the first update import showed."""

    upserts: bool
    settled: set[str]  # keys whose outcomes are recorded
    note: str = ""
    # Probe subscribers no longer active when read again: written one by one, as read.
    inactive: list[_Existing] = dataclasses.field(default_factory=list)


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
        """Every request apply sends when nothing fails and nobody else writes meanwhile,
        taking bulk imports to update existing subscribers (`estimate_assumes`): imports
        per chunk of new subscribers; for each created excluded one (an import can't set
        a status) the look-up of its id and a PATCH; the existing subscribers' writes
        (`_existing_calls`); deletes. Look-ups that only follow a fault or an import that
        skipped someone are not counted."""
        return self._calls(changes, live, upserts=True)

    def estimate_assumes(self, changes: Sequence[Change], live: State) -> str:
        bulk, _ = self._split(_existing_of(changes, _subscribers(live)))
        if not bulk:
            return ""
        probe = min(PROBE_SIZE, len(bulk))
        otherwise = self._calls(changes, live, upserts=False)
        return (
            "MailJawn's bulk import updates existing subscribers and keeps the fields an "
            f"item leaves out (its document says neither; apply checks both on the first "
            f"{probe}): if it skips them, or clears what it leaves out, apply makes "
            f"{otherwise:,} calls, writing the other {len(bulk) - probe:,} one by one."
        )

    def _calls(self, changes: Sequence[Change], live: State, *, upserts: bool) -> int:
        creates = [
            c for c in changes if c.type is ResourceType.CONTACT and c.action is Action.CREATE
        ]
        excluded = sum(1 for c in creates if c.contact_after.fields.get(EXCLUDED) is True)
        deletes = sum(
            1 for c in changes if c.type is ResourceType.CONTACT and c.action is Action.DELETE
        )
        imports = -(-len(creates) // self.import_chunk_size)
        lookups = lookup_calls(excluded, len(live.contacts) + len(creates))
        existing = _existing_of(changes, _subscribers(live))
        return imports + lookups + excluded + deletes + self._existing_calls(existing, upserts)

    def _existing_calls(self, existing: list[_Existing], upserts: bool) -> int:
        """The probe and the imports (or, when imports skip, single writes) for the bulk
        part; single writes for the others."""
        bulk, singles = self._split(existing)
        if bulk:
            probe = min(PROBE_SIZE, len(bulk))
            rest = bulk[probe:]
            bulk_calls = 1 + 2 * probe
            bulk_calls += self._imports_for(len(rest)) if upserts else len(bulk)
        else:
            bulk_calls = 0
        return bulk_calls + sum(item.single_calls() for item in singles)

    def _imports_for(self, count: int) -> int:
        return -(-count // self.import_chunk_size)

    def _split(self, existing: list[_Existing]) -> tuple[list[_Existing], list[_Existing]]:
        """(updated by bulk import, written one by one): imports when they cost fewer calls,
        probe included, than one write each."""
        bulk = [item for item in existing if item.upsertable]
        probe = min(PROBE_SIZE, len(bulk))
        if not bulk or 1 + 2 * probe + self._imports_for(len(bulk) - probe) >= len(bulk):
            return [], existing
        return bulk, [item for item in existing if not item.upsertable]

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
                f"ASCII, so reconcile sends none; {_ascii_advice(contact.email)}",
            )
            for key, contact in desired.contacts.items()
            if not contact.email.isascii()
        ]
        return findings

    def review(self, changes: Sequence[Change], live: State) -> tuple[list[Change], list[Finding]]:
        """Drop excluded_from_campaigns from updates of bounced or complained subscribers,
        and tags for anyone not active whom this plan does not re-activate: a tag is only
        added by an upsert, and whether one re-activates a subscriber is not documented."""
        kept: list[Change] = []
        warnings: list[Finding] = []
        reactivated = {
            c.email
            for c in changes
            if c.type is ResourceType.CONTACT
            and c.action is Action.UPDATE
            and c.contact_after.fields.get(EXCLUDED) is False
            and _protected_status(c, live) is None
        }
        for change in changes:
            inactive = _inactive_status(change, live)
            if inactive is not None and change.email not in reactivated:
                warnings.append(Finding(change.ref, _tag_not_added(change.email, inactive)))
                continue
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
                    state.memberships.put(tag, found.key)
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
        existing = _runnable(_existing_of([*updates, *tag_adds], known), run)
        bulk, singles = self._split(existing)
        singles += await self._update_in_bulk(bulk, run, report, known)
        await self._write_one_by_one(singles, run, known)
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
        try:
            current = await self._patch(current, records.differing(item.after, current), known)
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
        await run.run_as_one(
            current.key, missing, lambda key, changes: self._identify(current, key, changes)
        )
        run.mark_carried(
            [membership for membership in item.memberships if membership not in missing]
        )

    # -- existing subscribers by bulk import, once a probe shows that it updates them

    async def _update_in_bulk(
        self, items: list[_Existing], run: ChangeRunner, report: ApplyReport, known: Subscribers
    ) -> list[_Existing]:
        """Returns those left to write one by one."""
        if not items:
            return []
        order = sorted(range(len(items)), key=lambda n: -items[n].revealing)
        probe = [items[n] for n in order[:PROBE_SIZE]]
        rest = [items[n] for n in sorted(order[PROBE_SIZE:])]
        found = await self._probe(probe, run)
        if found.note:
            report.note(found.note)
        for item in found.inactive:  # as read just now: no upsert goes to them
            assert item.current is not None
            known[item.key] = item.current
        if not found.upserts:
            gone = {item.key for item in found.inactive}
            unsettled = [i for i in items if i.key not in found.settled and i.key not in gone]
            return found.inactive + unsettled
        size = self.import_chunk_size
        chunks = [rest[i : i + size] for i in range(0, len(rest), size)]
        left = await asyncio.gather(*(self._import_updates(chunk, run) for chunk in chunks))
        return found.inactive + [item for chunk in left for item in chunk]

    async def _probe(self, items: list[_Existing], run: ChangeRunner) -> _Probe:
        """Import `items`, read before and after: did every value land, nothing else move?
        Anyone no longer active when read again is left out (written one by one)."""
        inactive: list[_Existing] = []
        found = await self._probe_active(items, run, inactive)
        found.inactive = inactive
        return found

    async def _probe_active(
        self, items: list[_Existing], run: ChangeRunner, inactive: list[_Existing]
    ) -> _Probe:
        one_by_one = "their updates go by PATCH and identify, one request each"
        try:
            before = await self._get_each(items)
            fresh = [records.subscriber(raw) for raw in before]
        except ApiError as error:
            return _Probe(False, set(), f"could not check bulk import ({error}): {one_by_one}")
        active = [n for n, found in enumerate(fresh) if found.status == records.ACTIVE]
        inactive += [
            dataclasses.replace(items[n], current=now)
            for n, now in enumerate(fresh)
            if n not in active
        ]
        items, before = [items[n] for n in active], [before[n] for n in active]
        fresh = [fresh[n] for n in active]
        # Left out: what no manifest manages, so the later items can leave it out too (no
        # value read at plan time is ever sent back over a newer one) if this keeps it.
        sent = [item.item(found, unmanaged=False) for item, found in zip(items, fresh, strict=True)]
        if not sent:
            return _Probe(False, set(), "")
        failed: dict[str, str] = {}
        try:
            answer = await self.client.post(SUBSCRIBERS, {"subscribers": sent}, idempotent=True)
            emails = [body["email"] for body in sent]
            failed = dict(records.import_answer(answer, emails).failed)
        except ApiError as error:
            if not _may_have_landed(error):
                note = f"a bulk import of existing subscribers was refused ({error}): {one_by_one}"
                return _Probe(False, set(), note)
        if self.cancel.requested:
            return _Probe(False, set(), "")  # stopped: nothing judged, nothing more sent
        request = f"POST {self.client.prefix}{SUBSCRIBERS}"
        for item in items:
            if item.key in failed:
                _fail_all(run, item.changes, f"{request} (bulk import): {failed[item.key]}")
        checked = [n for n, item in enumerate(items) if item.key not in failed]
        try:
            after = await self._get_each([items[n] for n in checked])
        except ApiError as error:
            note = f"could not read back a bulk import of existing subscribers ({error})"
            return _Probe(False, set(failed), f"{note}: {one_by_one}")
        checks = {
            items[n].key: records.check_upsert(before[n], now, sent[n])
            for n, now in zip(checked, after, strict=True)
        }
        raw_before = {items[n].key: before[n] for n in checked}
        raw_after = {items[n].key: now for n, now in zip(checked, after, strict=True)}
        raw_sent = {items[n].key: sent[n] for n in checked}
        reads = (raw_before, raw_after, raw_sent)
        found = await self._judge(items, checks, run, set(failed), reads)
        cleared = [items[n] for n in checked if checks[items[n].key].cleared]
        if found.note or not cleared:
            return found
        fresh_by_key = {item.key: now for item, now in zip(items, fresh, strict=True)}
        return await self._restore(cleared, fresh_by_key, checks, run, found)

    async def _restore(
        self,
        cleared: list[_Existing],
        fresh: Subscribers,
        checks: dict[str, records.UpsertCheck],
        run: ChangeRunner,
        found: _Probe,
    ) -> _Probe:
        """The probe emptied what it left out: send it back to those subscribers, as read
        just before, with their changes (one identify each); the rest go one by one."""
        lost = "; ".join(sorted({u.split(":")[0] for i in cleared for u in checks[i.key].cleared}))
        restored = await asyncio.gather(
            *(self._send_back(item, fresh[item.key], run) for item in cleared)
        )
        names = ", ".join(item.key for item, ok in zip(cleared, restored, strict=True) if ok)
        note = (
            f"MailJawn's bulk import clears the fields an item leaves out ({lost}, checked on "
            f"{len(cleared)}); restored at once by identify, with the values read just before "
            f"the import ({names or 'none could be'}); imports are not used for the other "
            "updates: they go by PATCH and identify, one request each"
        )
        return _Probe(False, found.settled | {item.key for item in cleared}, note)

    async def _send_back(self, item: _Existing, fresh: Subscriber, run: ChangeRunner) -> bool:
        body = item.item(fresh)  # every unmanaged value, as read just before the probe
        try:
            await self.client.post(IDENTIFY, body, idempotent=True)
        except ApiError as error:
            lost = ", ".join(f"{k}={v!r}" for k, v in body.items() if k in records.omitted({}))
            _fail_all(
                run,
                item.changes,
                f"MailJawn's bulk import cleared fields it was not sent ({lost}) and "
                f"restoring them failed: {error}; restore them by hand",
            )
            return False
        _done_all(run, item)
        return True

    async def _judge(
        self,
        items: list[_Existing],
        checks: dict[str, records.UpsertCheck],
        run: ChangeRunner,
        settled: set[str],
        reads: tuple[dict[str, Any], dict[str, Any], dict[str, Any]],
    ) -> _Probe:
        one_by_one = "the other updates go by PATCH and identify, one request each"
        damaged = {key: check.unasked for key, check in checks.items() if check.unasked}
        by_key = {item.key: item for item in items}
        if damaged:
            for key, unasked in damaged.items():
                changed = (
                    f"MailJawn's bulk import changed what it was not asked to: {'; '.join(unasked)}"
                )
                body = records.restore_body(reads[0][key], reads[1][key], reads[2][key])
                try:
                    if body:
                        await self.client.patch(f"{SUBSCRIBERS}{reads[0][key]['id']}/", body)
                except ApiError as error:
                    message = (
                        f"{changed}. Restoring it by PATCH failed ({error}); restore it by "
                        f"hand: {body}"
                    )
                    _fail_all(run, by_key[key].changes, message)
                    continue
                if checks[key].applied and body is not None:
                    for change in by_key[key].changes:
                        run.done(change, f"{changed}; restored by PATCH, as read before the import")
                else:
                    message = f"{changed}. Check this subscriber: not every value could be restored"
                    _fail_all(run, by_key[key].changes, message)
            names = ", ".join(sorted(damaged))
            note = (
                f"MailJawn's bulk import changed fields it was not asked to change ({names}); "
                f"imports are not used for updates: {one_by_one}"
            )
            return _Probe(
                False,
                settled | set(damaged),
                note + "; the values it changed were restored by PATCH where it could",
            )
        if any(check.cleared for check in checks.values()):
            return _Probe(False, settled, "")  # applied, but what it left out was lost
        if checks and all(check.applied for check in checks.values()):
            for key in checks:
                _done_all(run, by_key[key])
            note = (
                f"MailJawn's bulk import updates existing subscribers and keeps the fields an "
                f"item leaves out (checked on {len(checks)}, read before and after): the other "
                f"updates go in imports of up to {self.import_chunk_size:,}, leaving out "
                "every field no manifest manages"
            )
            return _Probe(True, settled | set(checks), note)
        note = (
            "MailJawn's bulk import did not update existing subscribers (checked on "
            f"{len(checks)}: it skipped them): {one_by_one}"
        )
        return _Probe(False, settled, note)

    async def _import_updates(self, items: list[_Existing], run: ChangeRunner) -> list[_Existing]:
        """One import of existing subscribers; returns those it may not have updated (an
        upsert again is harmless: they are written one by one)."""
        currents = [item.current for item in items if item.current is not None]
        # The probe showed that an import keeps what it leaves out: nothing read at plan
        # time but the tags goes back (an edit made since then stays).
        sent = [
            item.item(current, unmanaged=False)
            for item, current in zip(items, currents, strict=True)
        ]
        try:
            answer = await self.client.post(SUBSCRIBERS, {"subscribers": sent}, idempotent=True)
            mapped = records.import_answer(answer, [body["email"] for body in sent])
        except ApiError as error:
            if _may_have_landed(error):
                return items
            for item in items:
                _fail_all(run, item.changes, str(error))
            return []
        request = f"POST {self.client.prefix}{SUBSCRIBERS}"
        for item in items:
            if item.key in mapped.failed:
                _fail_all(run, item.changes, f"{request} (bulk import): {mapped.failed[item.key]}")
        rest = [item for item in items if item.key not in mapped.failed]
        if mapped.skipped or not mapped.accounted:
            return rest  # which ones it skipped is not said
        for item in rest:
            _done_all(run, item)
        return []

    async def _get_each(self, items: list[_Existing]) -> list[Any]:
        async with all_or_none() as group:
            reads = [
                group.create_task(self.client.get(f"{SUBSCRIBERS}{item.current.id}/"))
                for item in items
                if item.current is not None
            ]
        return [read.result() for read in reads]

    # -- existing subscribers one by one

    async def _write_one_by_one(
        self, items: list[_Existing], run: ChangeRunner, known: Subscribers
    ) -> None:
        folds = [item for item in items if item.folds]
        others = [item for item in items if not item.folds]
        updates = [item.update for item in others if item.update is not None]
        # Tags of someone this apply unsubscribes go first, while they are still active:
        # no upsert is ever sent to a subscriber who is not.
        leaving = {item.key for item in others if item.after and item.after.fields.get(EXCLUDED)}
        first = [tag for item in others if item.key in leaving for tag in item.tags]
        await run.run_per_contact(first, lambda key, group: self._add_tags(key, group, known))
        await asyncio.gather(
            *(run.run_as_one(item.key, item.changes, self._fold(item)) for item in folds),
            run.run_each(updates, lambda change: self._update_contact(change, known)),
        )
        tags = [tag for item in others if item.key not in leaving for tag in item.tags]
        await run.run_per_contact(tags, lambda key, group: self._add_tags(key, group, known))

    def _fold(self, item: _Existing) -> GroupStep:
        async def identify(_: str, changes: list[Change]) -> None:
            assert item.current is not None  # folds only when read
            tags = [c.list_name for c in changes if c.type is ResourceType.MEMBERSHIP]
            body = records.upsert_item(item.current, item.after, tags)
            await self.client.post(IDENTIFY, body, idempotent=True)

        return identify

    # -- updates, tags, deletions

    async def _update_contact(self, change: Change, known: Subscribers) -> str:
        current = await self._subscriber(change.email, known)
        after = change.contact_after
        if after.fields.get(EXCLUDED) is False:
            async with self.guarded.pair():
                current = await self._unchanged_since_planning(current, len(known))
                await self._patch(current, after, known)
        else:
            await self._patch(current, after, known)
        if current.protected and EXCLUDED in after.fields:
            return f"status left {current.status}: it is never changed"
        return ""

    async def _patch(
        self, current: Subscriber, after: ContactValues, known: Subscribers
    ) -> Subscriber:
        """PATCH what `after` changes; `known` then holds the subscriber as written, so a
        later identify sends back the new values, not the old ones."""
        body = records.patch_body(after, current.status)
        if not body:
            return current
        await self.client.patch(f"{SUBSCRIBERS}{current.id}/", body)
        known[current.key] = written = records.patched(current, body)
        return written

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
        await self._identify(known.get(key), key, changes)

    async def _identify(self, current: Subscriber | None, key: str, changes: list[Change]) -> None:
        """Adds the tags of `changes`; a subscriber read gets its live values sent back.
        Nothing is sent to a subscriber known not to be active (see `review`)."""
        if current is not None and current.status != records.ACTIVE:
            raise ApiError(_tag_not_added(current.email, current.status))
        tags = sorted({change.list_name for change in changes})
        body = (
            records.identify_body(key, tags)
            if current is None
            else records.upsert_item(current, None, tags)
        )
        await self.client.post(IDENTIFY, body, idempotent=True)

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


def _existing_of(changes: Iterable[Change], subscribers: Subscribers) -> list[_Existing]:
    """Contact updates and tag additions of existing subscribers, by subscriber (the tags
    of a contact created by this apply ride in its import; refused ones are left out)."""
    changes = list(changes)
    new_keys = {
        c.email for c in changes if c.type is ResourceType.CONTACT and c.action is Action.CREATE
    }
    found: dict[str, _Existing] = {}

    def of(key: str) -> _Existing:
        if key not in found:
            found[key] = _Existing(key, subscribers.get(key))
        return found[key]

    for change in changes:
        if change.type is ResourceType.CONTACT and change.action is Action.UPDATE:
            of(change.email).update = change
        elif (
            change.type is ResourceType.MEMBERSHIP
            and change.action is not Action.DELETE
            and change.membership_after.status is SubscriptionStatus.SUBSCRIBED
            and change.email not in new_keys
        ):
            of(change.email).tags.append(change)
    return list(found.values())


def _runnable(items: list[_Existing], run: ChangeRunner) -> list[_Existing]:
    """Without what can't start (Ctrl-C, a failed dependency: reported so by the runner)."""
    kept = []
    for item in items:
        if item.update is not None and not run.runnable(item.update):
            item.update = None
        item.tags = [tag for tag in item.tags if run.runnable(tag)]
        if item.changes:
            kept.append(item)
    return kept


def _done_all(run: ChangeRunner, item: _Existing) -> None:
    if item.update is not None:
        run.done(item.update)
    run.mark_carried(item.tags)


def _fail_all(run: ChangeRunner, changes: Iterable[Change], message: str) -> None:
    for change in changes:
        run.fail(change, message)


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


def _inactive_status(change: Change, live: State) -> str | None:
    """The status of an existing subscriber who is not active that a tag addition concerns."""
    if change.type is not ResourceType.MEMBERSHIP or change.action is Action.DELETE:
        return None
    if change.membership_after.status is not SubscriptionStatus.SUBSCRIBED:
        return None  # refused anyway (no tag removal)
    contact = live.contacts.get(change.email)
    status = contact.fields.get(records.STATUS) if contact else None
    return status if isinstance(status, str) and status != records.ACTIVE else None


def _tag_not_added(email: str, status: str) -> str:
    return (
        f"{email} is {status} on MailJawn: the tag is not added. MailJawn adds a tag only by "
        "an upsert (identify or import), and whether one re-activates a subscriber is not "
        "documented, so reconcile sends none to anyone not active; to add it, re-activate "
        "them with consent (excluded_from_campaigns: false with opted_in_at)"
    )


def _without_excluded(change: Change) -> Change | None:
    after = change.contact_after.without(EXCLUDED)
    if after.is_empty:
        return None
    before = change.contact_before.without(EXCLUDED)
    return dataclasses.replace(change, before=before, after=after)


def _ascii_advice(email: str) -> str:
    """What to do about letters beyond ASCII, where they are: a domain has an ASCII form."""
    local, _, domain = email.rpartition("@")
    if not local.isascii():
        return "the part before the @ has no ASCII form, so this address can't be used here"
    try:
        ascii_form = f" ({domain.encode('idna').decode()})"
    except UnicodeError:
        ascii_form = ""
    return f"write the domain in its xn-- (punycode) form{ascii_form}"
