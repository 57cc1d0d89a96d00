"""Mailjet provider: reads live state, and applies changes in dependency order.

Order: property definitions, lists, contact records, contact data, list memberships;
removals in reverse. Mailjet semantics handled here: PUT /contact replaces every
editable field (so unmanaged ones are sent with their live value), properties are
written through /contactdata after their definition exists, memberships are
separate resources, and a duplicate create (MJ18 or the record returned) becomes a
lookup and an update.
"""

from __future__ import annotations

import asyncio
import hashlib
from collections import ChainMap, defaultdict
from collections.abc import Awaitable, Callable, Container, MutableMapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any
from urllib.parse import quote

from reconcile.diff import Action, Change, Flag, ResourceType
from reconcile.errors import ApiError
from reconcile.model import (
    EXCLUDED,
    Contact,
    ContactField,
    ContactList,
    FieldValue,
    PropertyDef,
    ProviderRecords,
    ReadScope,
    State,
    SubscriptionStatus,
)
from reconcile.providers.base import (
    ApplyReport,
    Cancellation,
    Capability,
    Provider,
    ProviderStats,
    records_of,
)
from reconcile.providers.mailjet import records
from reconcile.providers.mailjet.bulk import BulkItem, BulkWriter, JobPolling, JobResult
from reconcile.providers.mailjet.client import API_PREFIX, MailjetClient
from reconcile.providers.mailjet.routing import (
    ContactWork,
    NamedAction,
    Route,
    list_action,
    read_back_sample,
    route,
)
from reconcile.providers.runner import ChangeRunner, GuardedWrites, all_or_none, contact_of

# One kind of change, carried out against the live state (and the IDs in it).
LiveStep = Callable[[Change, State], Awaitable[None]]
FALLBACK = (
    "Name/IsExcludedFromCampaigns written by PUT /contact: the bulk job did not apply them "
    "(read back after the first job that carried them)"
)
JOBS_APPLY_FIELDS = (
    "bulk jobs apply the Name and IsExcludedFromCampaigns they carry (checked by reading "
    "back {sample} contact(s) of the first job; the contacts are read once more after the "
    "jobs, for opt-outs made while a job waited); if they don't, each of the {count} "
    "contact(s) whose fields ride in jobs costs 2 more requests (a read and a PUT), as does "
    "each whose item would send IsExcludedFromCampaigns false on an account that does not "
    "stamp UnsubscribedAt."
)


@dataclass
class MailjetIds(ProviderRecords):
    """Mailjet IDs of what was read (and, during an apply, created), by neutral key: they
    travel in the live state, so apply needs nothing kept from the read."""

    properties: dict[str, int] = field(default_factory=dict)
    lists: dict[str, int] = field(default_factory=dict)
    contacts: MutableMapping[str, int] = field(default_factory=dict)

    def copy(self) -> MailjetIds:
        """Another set for an apply: what it adds is its own (contacts: an overlay, not a
        copy of a million IDs)."""
        return MailjetIds(dict(self.properties), dict(self.lists), ChainMap({}, self.contacts))


def _ids(live: State) -> MailjetIds:
    """The IDs in `live`; a live state read by another provider is refused."""
    found = records_of(live, MailjetIds)
    if found is None:
        found = live.provider_records = MailjetIds()  # built by hand: nothing was read
    return found


class MailjetProvider(Provider):
    name = "mailjet"
    capabilities = frozenset(
        {
            Capability.PROPERTY_DEFINITIONS,
            Capability.REMOVE_LIST_MEMBER,
            Capability.LIST_UNSUBSCRIBE,
            Capability.DELETE_LIST,
            Capability.HARD_DELETE,
            Capability.RENAME_LIST,  # PUT /contactslist/{id} {"Name"}: the same list, renamed
            Capability.RENAME_PROPERTY,  # PUT /contactmetadata/{id} {"Name"}: values kept
        }
    )
    address_change = (
        "the standard PUT /contact can't change an email address; the separate "
        "address-change endpoint the API reference mentions (/contact/{id}/changeaddress) is "
        "documented as not reliably supported"
    )

    def __init__(
        self,
        client: MailjetClient,
        *,
        bulk_chunk_size: int = 1000,
        polling: JobPolling | None = None,
        cancel: Cancellation | None = None,
    ) -> None:
        self.client = client
        self.cancel = cancel or client.cancel
        self.guarded = GuardedWrites()
        self.bulk = BulkWriter(client, polling or JobPolling(), bulk_chunk_size, self.cancel)

    async def aclose(self) -> None:
        await self.client.aclose()

    def identity(self, live: State | None) -> dict[str, str]:
        # The API key names the account but is half of the credentials, which are never
        # printed: a digest of it tells accounts apart without showing it.
        digest = hashlib.sha256(self.client.public_key.encode()).hexdigest()[:16]
        return {"url": self.client.base_url, "api_key_sha256": digest}

    def stats(self) -> ProviderStats:
        return self.client.snapshot(jobs_pending=self.bulk.jobs_pending)

    # ---- read -------------------------------------------------------------------------

    async def read(self, scope: ReadScope) -> State:
        """Definitions and lists first (list IDs are needed), then contacts, their data and
        the members of each wanted list all at once: each collection is read exactly once."""
        async with all_or_none() as group:
            reading_metadata = group.create_task(
                self.client.list_all("/contactmetadata", keep=records.identified_property)
            )
            reading_lists = group.create_task(
                self.client.list_all("/contactslist", keep=records.identified_list)
            )
        metadata, lists = reading_metadata.result(), reading_lists.result()
        ids = MailjetIds()
        state = State(provider_records=ids)
        for property_id, definition in metadata:
            state.properties[definition.name] = definition
            ids.properties[definition.name] = property_id
        for list_id, name, deleted in lists:
            if deleted:
                continue
            state.lists[name] = ContactList(name)
            ids.lists[name] = list_id
        wanted = [name for name in sorted(ids.lists) if scope.wants_members(name)]
        definitions = state.properties
        async with all_or_none() as group:
            reading_contacts = group.create_task(
                self.client.list_all("/contact", keep=records.contact_row)
            )
            reading_data = group.create_task(
                self.client.list_all(
                    "/contactdata", keep=lambda r: records.contact_values(r, definitions)
                )
                if scope.contact_data
                else _nothing()
            )
            reading_members = [
                group.create_task(
                    self.client.list_all(
                        "/listrecipient",
                        {"ContactsList": ids.lists[name]},
                        keep=records.member,
                    )
                )
                for name in wanted
            ]
        contacts, data = reading_contacts.result(), reading_data.result()
        members = [task.result() for task in reading_members]
        emails_by_id = _add_contacts(state, ids, contacts, data)
        for name, recipients in zip(wanted, members, strict=True):
            _add_members(state, name, recipients, emails_by_id)
            recipients.clear()
        return state

    # ---- apply ------------------------------------------------------------------------

    async def apply(self, changes: Sequence[Change], live: State) -> ApplyReport:
        # IDs of what this apply creates join a copy: the caller's live state stays as read.
        live = replace(live, provider_records=_ids(live).copy())
        report = ApplyReport()
        groups: dict[tuple[ResourceType, bool], list[Change]] = defaultdict(list)
        for change in changes:
            groups[(change.type, change.action is Action.DELETE)].append(change)
        run = ChangeRunner(report, self.cancel)

        async def each(kind: ResourceType, deleting: bool, step: LiveStep) -> None:
            await run.run_each(groups[(kind, deleting)], lambda change: step(change, live))

        await each(ResourceType.PROPERTY, False, self._write_property)
        await each(ResourceType.LIST, False, self._create_list)
        routed = self._route(changes, live)
        single = [change for work in routed.single for change in work.changes]
        await self._apply_single(single, live, run)
        if routed.fields_in_jobs:
            await self._apply_bulk_with_fields(routed, live, run)
        else:
            await asyncio.gather(
                *(
                    self._apply_bulk(actions, works, live, run)
                    for actions, works in routed.bulk.items()
                )
            )
        await each(ResourceType.CONTACT, True, self._delete_contact)
        await each(ResourceType.LIST, True, self._delete_list)
        await each(ResourceType.PROPERTY, True, self._delete_property)
        return report

    def _route(self, changes: Sequence[Change], live: State) -> Route:
        return route(changes, _definitions(changes, live), self.bulk.chunk_size, len(live.contacts))

    def estimate_calls(self, changes: Sequence[Change], live: State) -> int:
        """Every request apply sends when nothing fails and nobody else writes meanwhile,
        from the same routing apply uses: definitions (two for a replace), contact records
        (a POST; a read then a PUT for a Name/exclusion change on single calls), contact
        data, list changes, bulk jobs with their expected polls, erasures; when Name/
        exclusion changes ride in jobs, the fresh read of the contacts before the jobs,
        the read-back after the first and the read of the contacts after them (assuming
        the jobs apply them: see `estimate_assumes`). Look-ups that only follow a
        duplicate (MJ18) or a write whose answer was lost are not counted, nor the
        re-exclusion of someone who opted out while a job waited."""
        return self.estimate(changes, live)[0]

    def estimate_assumes(self, changes: Sequence[Change], live: State) -> str:
        return self.estimate(changes, live)[1]

    def estimate(self, changes: Sequence[Change], live: State) -> tuple[int, str]:
        """Both from one routing (a million contacts take seconds to route)."""
        routed = self._route(changes, live)
        other = sum(
            2 if Flag.REPLACE in change.flags else 1
            for change in changes
            if change.type in (ResourceType.PROPERTY, ResourceType.LIST)
            or (change.type is ResourceType.CONTACT and change.action is Action.DELETE)
        )
        calls = other + routed.calls(self.bulk.chunk_size)
        if not routed.fields_in_jobs:
            return calls, ""
        sample = read_back_sample(routed.first_field_chunk(self.bulk.chunk_size))
        return calls, JOBS_APPLY_FIELDS.format(sample=len(sample), count=len(routed.field_works))

    async def _apply_single(self, changes: list[Change], live: State, run: ChangeRunner) -> None:
        """Contact records, then their data, then their lists: one call each per contact."""
        contacts = [c for c in changes if c.type is ResourceType.CONTACT]
        await run.start_each(contacts, lambda c: self._write_contact(c, live))
        await run.finish_each(contacts, lambda c: self._write_contact_data(c, live))
        memberships = [c for c in changes if c.type is ResourceType.MEMBERSHIP]

        async def set_lists(email: str, group: list[Change]) -> None:
            await self._set_lists(email, group, live)

        await run.run_per_contact(
            [c for c in memberships if c.action is not Action.DELETE], set_lists
        )
        await run.run_per_contact([c for c in memberships if c.action is Action.DELETE], set_lists)

    async def _apply_bulk(
        self,
        actions: tuple[NamedAction, ...],
        works: list[ContactWork],
        live: State,
        run: ChangeRunner,
        note: str = "",
    ) -> None:
        """One group of contacts sharing list actions: PUTs first where needed, then jobs
        (`note`: the message of each change whose fields were PUT)."""
        puts = [work.contact for work in works if work.contact and work.changes_fields]
        put = {change.ref for change in puts if change}
        await run.start_each(puts, lambda c: self._write_contact(c, live))
        await self._run_items(
            actions,
            works,
            lambda chunk: self._plain_items(chunk, live, run),
            run,
            live=live,
            message=lambda c: note if c.ref in put else "",
        )

    async def _run_items(
        self,
        actions: tuple[NamedAction, ...],
        works: Sequence[ContactWork],
        build: Callable[[Sequence[ContactWork]], list[BulkItem]],
        run: ChangeRunner,
        *,
        live: State,
        message: Callable[[Change], str] = lambda _: "",
        hold: bool = False,
    ) -> list[BulkItem]:
        """The jobs for `works` (their items made by `build` as each job is sent); each
        change is then done or failed, except (`hold`) a checked one, left started until
        its read-back. The items the jobs did not fail that carry a checked change."""
        if not works:
            return []
        try:
            list_actions = [(_list_id(live, name), action) for name, action in actions]
        except ApiError as error:
            for item in build(works):
                for change in item.changes:
                    run.fail(change, str(error))
            return []
        landed: list[BulkItem] = []

        def settle(items: list[BulkItem], result: JobResult) -> None:
            for item in items:
                failure = result.error_for(item)
                for change in item.changes:
                    if failure:
                        run.fail(change, failure)
                    elif hold and change is item.checked:
                        run.pending.add(change.ref)
                    else:
                        run.done(change, message(change))
                if not failure and item.checked is not None:
                    landed.append(item)

        await self.bulk.run(list_actions, works, build, settle)
        return landed

    async def _apply_bulk_with_fields(self, routed: Route, live: State, run: ChangeRunner) -> None:
        """Jobs that carry Name/exclusion changes too. The contacts are read again first
        (both fields are sent: the unmanaged one at its value now; an opt-out made since
        planning is kept). The first job carrying them is run alone and a few of its
        contacts read back: if it applied them, the other jobs carry them too; if not,
        its contacts and every later one get a read and a PUT (FALLBACK says so). After
        the jobs the contacts are read once more: someone whose UnsubscribedAt moved while
        a job waited (an opt-out the job then undid) is excluded again at once."""
        fresh, stamps, stamping = await self._read_before_jobs(routed)
        size = self.bulk.chunk_size
        plain, carrying = routed.jobs_by_fields(size)
        sample = {work.key for work in read_back_sample(routed.first_field_chunk(size))}
        held: list[Held] = []  # fields carried: checked after the jobs

        async def probe() -> bool | None:
            """Jobs one at a time until a read-back decides: did they apply the fields?"""
            while carrying:
                actions, works = carrying.pop(0)
                checked = await self._carry(
                    actions, works, live, run, fresh=fresh, stamping=stamping
                )
                reading = [i for i in checked if i.checked and contact_of(i.checked) in sample]
                told = True
                try:
                    applied = await self._read_back(reading if sample else checked[:1], live)
                except ApiError:
                    applied, told = False, False  # could not tell: the PUT path checks itself
                sample.clear()
                if applied is False:
                    held.extend(await self._fall_back(checked, live, run, told=told))
                else:
                    held.extend(Held(item) for item in checked)
                if applied is not None:
                    return applied
            return None

        async def plain_jobs() -> None:
            await asyncio.gather(
                *(
                    self._run_items(
                        actions,
                        works,
                        lambda chunk: self._plain_items(chunk, live, run),
                        run,
                        live=live,
                    )
                    for actions, works in plain
                )
            )

        applied, _ = await asyncio.gather(probe(), plain_jobs())
        if applied is False:
            run.report.note(
                "Mailjet's bulk jobs did not apply Name/IsExcludedFromCampaigns to existing "
                "contacts (read back after the first job): those were written by PUT instead, "
                "2 more requests each"
            )
            await asyncio.gather(
                *(self._apply_bulk(a, works, live, run, FALLBACK) for a, works in carrying)
            )
        else:

            async def carry(actions: tuple[NamedAction, ...], works: list[ContactWork]) -> None:
                landed = await self._carry(
                    actions, works, live, run, fresh=fresh, stamping=stamping
                )
                held.extend(Held(item) for item in landed)

            await asyncio.gather(*(carry(actions, works) for actions, works in carrying))
        fresh.clear()  # the jobs are made: not held through the read after them
        await self._after_jobs(held, stamps, live, run)

    async def _read_before_jobs(
        self, routed: Route
    ) -> tuple[dict[str, Contact], dict[str, str | None], bool]:
        """The contacts whose fields ride in jobs as they are now, their UnsubscribedAt, and
        whether the account stamps opt-outs. Every contact is read, only those kept."""
        if self.cancel.requested:
            return {}, {}, True
        try:
            read = await _read_stamped(self.client, {work.key for work in routed.field_works})
        except ApiError:
            return {}, {}, True  # then each is read and PUT on its own (missing from fresh)
        fresh = {key: contact for key, (contact, _) in read.contacts.items()}
        stamps = {key: stamp for key, (_, stamp) in read.contacts.items()}
        # An excluded contact with no UnsubscribedAt proves the account does not stamp
        # opt-outs: one made while a job waits could not be told afterwards, so no job
        # item sends IsExcludedFromCampaigns false (those contacts get a read and a PUT).
        return fresh, stamps, not read.unstamped_exclusion

    async def _after_jobs(
        self,
        held: list[Held],
        stamps: dict[str, str | None],
        live: State,
        run: ChangeRunner,
    ) -> None:
        """Read the contacts once more after the jobs that carried Name/exclusion values:
        whoever now reads included with an UnsubscribedAt other than before the jobs opted
        out while a job waited, and the job (its item sent false) brought them back: they
        are excluded again at once and their change fails, saying so. The others end as
        held (done with its message, or failed with its failure)."""
        if not held:
            return
        wanted = {contact_of(entry.item.checked) for entry in held if entry.item.checked}
        try:
            now = (await _read_stamped(self.client, wanted)).contacts
        except ApiError as error:
            for entry in held:
                entry.finish(run)
            run.report.note(
                f"could not read the contacts again after the bulk jobs ({error}): "
                f"{len(held)} contact(s) whose Name/IsExcludedFromCampaigns rode in jobs were "
                "not checked for an opt-out made while a job waited; check that nobody who "
                "opted out meanwhile was re-included"
            )
            return

        async def check(entry: Held) -> None:
            change = entry.item.checked
            assert change is not None
            key = contact_of(change)
            contact, stamp = now.get(key, (None, None))
            if (
                contact is None
                or contact.fields.get(EXCLUDED)
                or stamp is None
                or stamp == stamps.get(key)
            ):
                entry.finish(run)
                return
            run.pending.discard(change.ref)  # its outcome is told in full below
            body = records.editable_fields(contact.fields, {EXCLUDED: True})
            try:
                await self.client.put(f"/contact/{_contact_id(live, change.email)}", body)
            except ApiError as error:
                run.fail(
                    change,
                    f"{change.email} opted out (UnsubscribedAt {stamp}) while the bulk job "
                    "carrying this change waited, and the job re-included them; excluding "
                    f"them again failed ({error}): exclude them by hand now",
                )
                return
            run.fail(
                change,
                f"{change.email} opted out (UnsubscribedAt {stamp}) while the bulk job "
                "carrying this change waited, and the job re-included them: excluded again "
                "at once (run plan again)",
            )

        # The jobs are over and nothing else writes now: a re-exclusion goes out even
        # after Ctrl-C (it repairs what a job did; left undone, nothing would show it).
        with self.client.despite_stop():
            await asyncio.gather(*(check(entry) for entry in held))

    def _plain_items(
        self, works: Sequence[ContactWork], live: State, run: ChangeRunner
    ) -> list[BulkItem]:
        return [item for work in works if (item := self._bulk_item(work, live, run))]

    async def _carry(
        self,
        actions: tuple[NamedAction, ...],
        works: list[ContactWork],
        live: State,
        run: ChangeRunner,
        *,
        fresh: dict[str, Contact],
        stamping: bool,
    ) -> list[BulkItem]:
        """Jobs with Name/exclusion changes (held until checked); a contact missing from
        the fresh read (deleted since planning, or not listed yet), or (`stamping` False)
        one whose item would send IsExcludedFromCampaigns false, gets a read and a PUT
        first. The landed items whose change is held."""

        def by_put(work: ContactWork) -> bool:
            if work.key not in fresh:
                return True
            if stamping or work.contact is None:
                return False
            managed = dict(work.contact.contact_after.fields)
            sent = records.editable_fields(fresh[work.key].fields, managed)
            return sent["IsExcludedFromCampaigns"] is False

        putting = [w.contact for w in works if w.contact and w.changes_fields and by_put(w)]
        await run.start_each(putting, lambda c: self._write_contact(c, live))

        def build(chunk: Sequence[ContactWork]) -> list[BulkItem]:
            return [item for work in chunk if (item := self._bulk_item(work, live, run, fresh))]

        return await self._run_items(actions, works, build, run, live=live, hold=True)

    async def _fall_back(
        self, checked: list[BulkItem], live: State, run: ChangeRunner, *, told: bool
    ) -> list[Held]:
        """A read and a PUT for each contact whose job landed without applying its fields
        (`told`: the read-back said so; else it could not be read back). All stay held, to
        be checked after the jobs: done with FALLBACK, or failed when the PUT failed (the
        job may have sent someone's exclusion as false all the same)."""
        if told:
            outcome = "not done: the bulk job that carried its Name/IsExcludedFromCampaigns "
            outcome += "landed but did not apply them, and the PUT that would have"
        else:
            outcome = "maybe not done: the bulk job that carried its Name/"
            outcome += "IsExcludedFromCampaigns landed, but whether it applied them could not "
            outcome += "be read back, and the PUT that would make sure"

        async def one(item: BulkItem) -> Held:
            change = item.checked
            assert change is not None
            try:
                await self._write_contact(change, live)
            except ApiError as error:
                text = str(error)
                again = "" if "run plan again" in text else " (run plan again)"
                return Held(item, failure=f"{outcome}: {text}{again}")
            return Held(item, FALLBACK)

        return list(await asyncio.gather(*(one(item) for item in checked)))

    async def _read_back(self, items: list[BulkItem], live: State) -> bool | None:
        """Whether the job applied the Name/exclusion values `items` carried: False when
        any reads back as it was before, True when one reads back as sent and none as
        before, None when none could tell (deleted meanwhile, or written over by others)."""
        applied: bool | None = None
        for item in items:  # each of them (as estimated), even once one tells
            assert item.checked is not None
            path = f"/contact/{_contact_id(live, item.checked.email)}"
            found = await self.cancel.unless_requested(self._find(path), "GET", API_PREFIX + path)
            if found is None:
                continue
            now = records.editable_fields(records.contact(found).fields, {})
            for name, before in item.before.items():
                if now[name] == before:
                    applied = False
                elif now[name] == item.body[name] and applied is None:
                    applied = True
        return applied

    def _bulk_item(
        self,
        work: ContactWork,
        live: State,
        run: ChangeRunner,
        fresh: dict[str, Contact] | None = None,
    ) -> BulkItem | None:
        """`fresh` (the contacts read again just before): an existing contact's Name/
        exclusion change rides in the item, both fields sent."""
        carried = [
            change
            for change in work.changes
            if change.ref in run.pending or (change.ref not in run.failed and run.runnable(change))
        ]
        contact = work.contact
        checked: Change | None = None
        before: dict[str, Any] = {}
        fields: dict[str, Any] = {}
        if (
            fresh is not None
            and contact is not None
            and work.changes_fields
            and contact in carried
            and contact.ref not in run.pending
            and work.key in fresh
        ):
            try:
                fields, before = _riding_fields(contact, live, fresh[work.key])
                checked = contact
            except ApiError as error:
                run.fail(contact, str(error))
                carried = [c for c in carried if c is not contact and run.runnable(c)]
        if not carried:
            return None
        if contact is not None and contact.action is Action.CREATE:
            after = contact.contact_after
            body = records.creation_body(after.email or contact.email, after.fields)
        else:
            current = live.contacts.get(work.key)
            body = {"Email": current.email if current else work.key, **fields}
        if work.properties and contact in carried:
            body["Properties"] = dict(work.properties)
        return BulkItem(body, carried, checked, before)

    async def _write_property(self, change: Change, live: State) -> None:
        after = change.property_after
        name = change.key[0]
        if change.renamed_from is not None:
            await self._rename(change, "/contactmetadata", _ids(live).properties)
            return
        if Flag.REPLACE in change.flags and name in _ids(live).properties:
            await self.client.delete(f"/contactmetadata/{_ids(live).properties.pop(name)}")
        body = {"Name": name, "Datatype": after.type.value, "NameSpace": after.namespace.value}
        record = await self._create(
            "/contactmetadata",
            body,
            lambda: self._find(f"/contactmetadata/{quote(name, safe='')}"),
        )
        _ids(live).properties[name] = records.field(record, "ID", int, "/contactmetadata")

    async def _rename(self, change: Change, path: str, ids: dict[str, int]) -> None:
        """PUT the new Name on the record read under the old one: the same list or
        definition, with every member, unsubscribe and value it holds; the new name then
        stands for its ID in the rest of this apply."""
        old, new = change.renamed_from, change.key[0]
        assert old is not None
        record_id = ids.get(old)
        if record_id is None:
            raise ApiError(f"{old!r} (to be renamed to {new!r}) is not in the account")
        await self.client.put(f"{path}/{record_id}", {"Name": new})
        ids[new] = ids.pop(old)

    async def _create_list(self, change: Change, live: State) -> None:
        name = change.list_name
        if change.renamed_from is not None:
            await self._rename(change, "/contactslist", _ids(live).lists)
            return

        async def find() -> Any:
            found = await self.client.get("/contactslist", {"Name": name})
            return next((r for r in found if r.get("Name") == name), None)

        record = await self._create("/contactslist", {"Name": name}, find)
        _ids(live).lists[name] = records.field(record, "ID", int, "/contactslist")

    async def _write_contact(self, change: Change, live: State) -> None:
        """Create or update the contact record (Name, IsExcludedFromCampaigns)."""
        after = change.contact_after
        managed = dict(after.fields)
        if change.action is Action.CREATE:
            email = after.email or change.email
            record = await self._create(
                "/contact",
                records.creation_body(email, managed),
                lambda: self._find(f"/contact/{quote(email, safe='')}"),
            )
            _ids(live).contacts[change.email] = records.field(record, "ID", int, "/contact")
            current = records.contact(record)
            if current.fields.get(EXCLUDED) is True:
                # It existed already (created meanwhile) and opted out: never re-included
                # by a creation, which carries no consent.
                managed.pop(EXCLUDED, None)
            await self._replace_fields(change, live, current, managed)
        elif managed:  # else properties only: /contactdata carries them, the record stays
            async with self.guarded.pair():
                current = await self._current_contact(change, live)
                await self._replace_fields(change, live, current, managed)

    async def _replace_fields(
        self, change: Change, live: State, current: Contact, managed: dict[ContactField, FieldValue]
    ) -> None:
        if any(current.fields.get(k) != v for k, v in managed.items()):
            # Full replacement: every editable field, live value for the unmanaged ones.
            body = records.editable_fields(current.fields, managed)
            await self.client.put(f"/contact/{_contact_id(live, change.email)}", body)

    async def _current_contact(self, change: Change, live: State) -> Contact:
        """The record as it is now, not as planned: PUT replaces every editable field, so
        a field sent from the plan's read would undo an opt-out or rename made since."""
        path = f"/contact/{_contact_id(live, change.email)}"
        # A read for a write: after Ctrl-C it is not started (nor waited for).
        found = await self.cancel.unless_requested(self._find(path), "GET", API_PREFIX + path)
        if found is None:
            raise ApiError(f"contact {change.email} was deleted since planning; run plan again")
        current = records.contact(found)
        planned = live.contacts.get(change.email)
        reincluding = change.contact_after.fields.get(EXCLUDED) is False
        if (
            reincluding
            and current.fields.get(EXCLUDED)
            and (planned is None or current.opted_out_at != planned.opted_out_at)
        ):
            raise ApiError(
                f"contact {change.email} opted out again since planning, after the opt-in; "
                "left excluded (run plan again)"
            )
        return current

    async def _write_contact_data(self, change: Change, live: State) -> None:
        """Only the managed properties that differ; Mailjet merges the rest, null clears."""
        values = change.contact_after.properties
        if not values:
            return
        await self.client.put(
            f"/contactdata/{_contact_id(live, change.email)}", records.data_body(values)
        )

    async def _set_lists(self, email: str, changes: list[Change], live: State) -> None:
        """All of one contact's membership changes in one managecontactslists call; an
        opt-in's re-subscribe only if the membership is still the opt-out it undoes."""
        resubscribing = [change for change in changes if Flag.RESUBSCRIBE in change.flags]
        if not resubscribing:
            await self._post_lists(email, changes, live)
            return
        async with self.guarded.pair():
            for change in resubscribing:
                await self._still_opted_out_as_planned(change, live)
            await self._post_lists(email, changes, live)

    async def _post_lists(self, email: str, changes: list[Change], live: State) -> None:
        actions = [
            {"ListID": _list_id(live, c.list_name), "Action": list_action(c)} for c in changes
        ]
        await self.client.post(
            f"/contact/{_contact_id(live, email)}/managecontactslists",
            {"ContactsLists": actions},
            idempotent=True,
        )

    async def _still_opted_out_as_planned(self, change: Change, live: State) -> None:
        """addforce re-subscribes whatever the membership is now: read it first, so someone
        who unsubscribed again after the opt-in (and after planning) stays out."""
        params = {
            "Contact": _contact_id(live, change.email),
            "ContactsList": _list_id(live, change.list_name),
        }
        found = await self.cancel.unless_requested(
            self.client.get("/listrecipient", params), "GET", API_PREFIX + "/listrecipient"
        )
        now = [records.recipient(record) for record in found or []]
        planned = live.memberships.get((change.list_name, change.email))
        expected = [planned.opted_out_at] if planned else []
        if [when for _, unsubscribed, when in now if unsubscribed] != expected:
            raise ApiError(
                f"{change.email} on list {change.list_name!r} changed since planning "
                "(unsubscribed again?); not re-subscribed (run plan again)"
            )

    async def _delete_contact(self, change: Change, live: State) -> None:
        contact_id = _contact_id(live, change.email)
        try:
            # GDPR erasure lives in v4: the real v3 has no DELETE on contact (405), so
            # trying v3 first would cost every erasure a second request.
            await self.client.delete(f"/v4/contacts/{contact_id}", prefix="")
        except ApiError as error:
            if error.status not in (404, 405):
                raise
            await self.client.delete(f"/contact/{contact_id}")  # the seed document's way

    async def _delete_list(self, change: Change, live: State) -> None:
        await self.client.delete(f"/contactslist/{_ids(live).lists[change.list_name]}")

    async def _delete_property(self, change: Change, live: State) -> None:
        await self.client.delete(f"/contactmetadata/{_ids(live).properties[change.key[0]]}")

    # ---- helpers ----------------------------------------------------------------------

    async def _create(
        self, path: str, body: dict[str, Any], find: Callable[[], Awaitable[Any]]
    ) -> Any:
        """POST once; on a duplicate, or an answer that may hide a landed write, look it up.

        The real API answers a duplicate with 400 MJ18; the documented one returns
        the existing record. A 5xx, a lost connection or a success we could not read
        on a POST is not retried blindly: the record is looked up first, and only
        created again if absent.
        """
        try:
            created = await self.client.post(path, body, idempotent=False)
        except ApiError as error:
            duplicate = _is_duplicate(error)
            if not duplicate and not _may_have_landed(error):
                raise
            existing = await find()
            if existing is not None:
                return existing
            if duplicate:
                raise
            created = await self.client.post(path, body, idempotent=False)
        record = created[0] if created else None
        if _has_id(record):
            return record
        # A success whose record we can't read: it landed, so look it up, never re-create.
        existing = await find()
        if existing is not None:
            return existing
        raise ApiError(
            f"answered {record!r} instead of the created record"[:300]
            + "; nothing was changed based on it",
            method="POST",
            path=API_PREFIX + path,
        )

    async def _find(self, path: str) -> Any:
        try:
            found = await self.client.get(path)
        except ApiError as error:
            if error.status == 404:
                return None
            raise
        return found[0] if found else None


@dataclass
class Held:
    """A contact change whose Name/exclusion a job carried, its outcome waiting for the
    read after the jobs: done with `message`, or failed with `failure`."""

    item: BulkItem
    message: str = ""
    failure: str | None = None

    def finish(self, run: ChangeRunner) -> None:
        change = self.item.checked
        assert change is not None
        if self.failure is None:
            run.done(change, self.message)
            return
        run.pending.discard(change.ref)  # the job landed: told in full, not "partly done"
        run.report.failed(change, self.failure)
        run.failed.add(change.ref)


def _riding_fields(
    change: Change, live: State, current: Contact
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Name and IsExcludedFromCampaigns for a job item: the managed ones as planned, the
    other at its value now; and the values now of those that change. An exclusion is
    lifted only as the plan's consented change planned it: not for someone who opted out
    again since planning."""
    managed = dict(change.contact_after.fields)
    planned = live.contacts.get(change.email)
    if (
        managed.get(EXCLUDED) is False
        and current.fields.get(EXCLUDED)
        and (planned is None or current.opted_out_at != planned.opted_out_at)
    ):
        raise ApiError(
            f"contact {change.email} opted out again since planning, after the opt-in; "
            "left excluded (run plan again)"
        )
    sent = records.editable_fields(current.fields, managed)
    now = records.editable_fields(current.fields, {})
    return sent, {name: value for name, value in now.items() if sent[name] != value}


@dataclass
class Stamped:
    """What an apply keeps of a read of every contact: the ones it asked for, each with
    its UnsubscribedAt (by key; the last listed wins), and whether any contact read was
    excluded with no UnsubscribedAt (an account that does not stamp opt-outs)."""

    contacts: dict[str, tuple[Contact, str | None]]
    unstamped_exclusion: bool


async def _read_stamped(client: MailjetClient, wanted: Container[str]) -> Stamped:
    """Every contact read (each record checked as it arrives), only the `wanted` ones
    kept: a million contacts read again are never all held at once."""
    unstamped = False

    def keep(record: Any) -> tuple[Contact, str | None] | None:
        nonlocal unstamped
        _, contact, stamp = records.stamped_contact(record)
        if contact.fields.get(EXCLUDED) and stamp is None:
            unstamped = True
        return (contact, stamp) if contact.key in wanted else None

    read = await client.list_all("/contact", keep=keep)
    kept = {found[0].key: found for found in read if found is not None}
    return Stamped(kept, unstamped)


def _contact_id(live: State, key: str) -> int:
    try:
        return _ids(live).contacts[key]
    except KeyError:
        raise ApiError(f"contact {key} is not in the account") from None


def _list_id(live: State, name: str) -> int:
    try:
        return _ids(live).lists[name]
    except KeyError:
        raise ApiError(f"list {name!r} is not in the account") from None


async def _nothing() -> list[records.DataRow]:
    return []


def _add_contacts(
    state: State, ids: MailjetIds, contacts: list[records.ContactRow], data: list[records.DataRow]
) -> dict[int, str]:
    """Each contact made once, with its data (the last listed wins); their keys by ID.
    Both lists are emptied as they are used (a read of a million holds each row once)."""
    data_by_id = {row[0]: row for row in data}
    data.clear()
    emails_by_id: dict[int, str] = {}
    for row in contacts:
        contact_id = row[0]
        contact = records.contact_of(row, data_by_id.get(contact_id))
        key = contact.key  # one string object shared by every index of this contact
        state.contacts[key] = contact
        ids.contacts[key] = contact_id
        emails_by_id[contact_id] = key
    contacts.clear()
    return emails_by_id


def _add_members(
    state: State,
    list_name: str,
    members: list[int | tuple[int, str | None]],
    emails_by_id: dict[int, str],
) -> None:
    # A member the contact listing does not hold (it lags behind) is not managed here.
    subscribed = (emails_by_id.get(m) for m in members if isinstance(m, int))
    state.memberships.put_subscribed(list_name, (e for e in subscribed if e is not None))
    for member in members:
        if isinstance(member, int):
            continue
        contact_id, unsubscribed_at = member
        email = emails_by_id.get(contact_id)
        if email is not None:
            state.memberships.put(
                list_name, email, SubscriptionStatus.UNSUBSCRIBED, opted_out_at=unsubscribed_at
            )


def _definitions(changes: Sequence[Change], live: State) -> dict[str, PropertyDef]:
    """Live definitions, with the ones this apply creates or replaces."""
    definitions = dict(live.properties)
    for change in changes:
        if change.type is ResourceType.PROPERTY and change.action is not Action.DELETE:
            after = change.property_after
            definitions[change.key[0]] = PropertyDef(change.key[0], after.type, after.namespace)
    return definitions


def _has_id(record: Any) -> bool:
    identifier = record.get("ID") if isinstance(record, dict) else None
    return isinstance(identifier, int) and not isinstance(identifier, bool)


def _may_have_landed(error: ApiError) -> bool:
    """No answer, a server error, or a success whose body we could not read."""
    return error.status is None or error.status >= 500 or error.status < 300


def _is_duplicate(error: ApiError) -> bool:
    text = str(error)
    return error.status == 400 and ("MJ18" in text or "already exists" in text)
