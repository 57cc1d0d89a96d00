"""Which contact writes go through bulk jobs and which through single calls.

Pure: from the planned changes and the number of live contacts alone, so the same
routing gives both the plan's estimate and apply's requests. A contact's work goes into
a job when the jobs for its group cost fewer requests than single calls would. What a
job can't carry stays on single calls: historic-namespace properties (only
/contactdata) and opt-ins that re-subscribe (each checked just before).

Name/IsExcludedFromCampaigns of an existing contact: a job item upserts both
(mailjet-facts.md), so they ride in the jobs when that costs fewer requests than a read
and a PUT per contact. Riding costs a fresh read of the contact collection just before
the jobs (both fields are sent, the one the manifest does not manage at its value of
that moment, and an opt-out made since planning is never undone), the read-back of a
few contacts of the first job that carries them (did the job apply them?), and one more
read of the collection after the jobs (someone who opted out while a job waited, and
whom the job re-included, is excluded again at once). Otherwise,
or when that read-back finds the job ignored them, each goes through a read and a PUT.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

from reconcile.diff import Action, Change, Flag, ResourceType
from reconcile.model import Namespace, PropertyDef, PropertyValue, SubscriptionStatus
from reconcile.providers.runner import contact_of

EXPECTED_POLLS = 3  # a job reports running a few times before it ends
READ_BACK = 3  # contacts of the first job carrying Name/exclusion changes read back
PAGE_SIZE = 1000  # the contact collection is read in pages of this many
NamedAction = tuple[str, str]  # (list name, managecontactslists action)
Job = tuple[tuple[NamedAction, ...], list["ContactWork"]]  # one bulk job: its actions, contacts


_NO_PROPERTIES: Mapping[str, PropertyValue] = MappingProxyType({})


@dataclass(slots=True)
class ContactWork:
    """One contact's changes (its record's, its memberships'), with what routing asks of
    them worked out once: a million contacts are routed for the estimate and for apply."""

    key: str
    contact: Change | None = None
    memberships: list[Change] = field(default_factory=list)
    # Worked out by `settle`, once the changes are all in (collect does it).
    properties: Mapping[str, PropertyValue] = field(default_factory=lambda: _NO_PROPERTIES)
    changes_fields: bool = False  # an existing contact's Name/exclusion change
    creates: bool = False
    resubscriptions: int = 0  # each read again just before (single calls)
    record_calls: int = 0
    single_calls: int = 0

    def settle(self) -> None:
        """Work out what routing asks, once `contact` and `memberships` are complete."""
        contact = self.contact
        after = contact.contact_after if contact is not None else None
        self.properties = (after.properties if after else None) or _NO_PROPERTIES
        self.creates = contact is not None and contact.action is Action.CREATE
        self.changes_fields = (
            after is not None and contact is not None and contact.action is Action.UPDATE
        ) and bool(after.fields)
        self.resubscriptions = sum(Flag.RESUBSCRIBE in m.flags for m in self.memberships)
        # Requests for the contact record on single calls: a POST for a new one; for a
        # Name/exclusion change, the read of the record as it is now (PUT replaces every
        # field) and the PUT.
        self.record_calls = 1 if self.creates else 2 if self.changes_fields else 0
        # On single calls: the record, its data, a call per kind of list change (adds
        # and removals), and a read before each re-subscription.
        self.single_calls = (
            self.record_calls
            + (1 if self.properties else 0)
            + len({m.action is Action.DELETE for m in self.memberships})
            + self.resubscriptions
        )

    @property
    def changes(self) -> list[Change]:
        return ([self.contact] if self.contact else []) + self.memberships

    @property
    def field_names(self) -> frozenset[str]:
        if self.contact is None or not self.changes_fields:
            return frozenset()
        return frozenset(self.contact.contact_after.fields)

    def actions(self) -> tuple[NamedAction, ...]:
        return tuple(sorted((m.list_name, list_action(m)) for m in self.memberships))


@dataclass
class Route:
    """Groups of contacts for jobs (by their list actions; in each, those with Name/
    exclusion changes first, so the fewest jobs carry them) and contacts on single calls.
    `fields_in_jobs`: Name/exclusion changes of bulk contacts ride in the jobs, after a
    fresh read of `contacts_then` contacts, and the contacts (`contacts_after`, with those
    the jobs create) are read once more after the jobs (an opt-out made while a job
    waited is found and undone at once); else they are PUT before their job."""

    bulk: dict[tuple[NamedAction, ...], list[ContactWork]] = field(default_factory=dict)
    single: list[ContactWork] = field(default_factory=list)
    fields_in_jobs: bool = False
    contacts_then: int = 0
    contacts_after: int = 0

    def calls(self, chunk_size: int) -> int:
        calls = sum(work.single_calls for work in self.single)
        for works in self.bulk.values():
            calls += jobs(len(works), chunk_size) * (1 + EXPECTED_POLLS)
            if not self.fields_in_jobs:
                calls += sum(work.record_calls for work in works if work.changes_fields)
        if self.fields_in_jobs:
            calls += listing_calls(self.contacts_then) + listing_calls(self.contacts_after)
            calls += len(read_back_sample(self.first_field_chunk(chunk_size)))
        return calls

    @property
    def field_works(self) -> list[ContactWork]:
        return [work for works in self.bulk.values() for work in works if work.changes_fields]

    def jobs_by_fields(self, chunk_size: int) -> tuple[list[Job], list[Job]]:
        """The jobs (each group's chunks, in order) that carry no Name/exclusion change,
        and those that carry some (any of its contacts does)."""
        plain: list[Job] = []
        carrying: list[Job] = []
        for actions, works in self.bulk.items():
            for start in range(0, len(works), chunk_size):
                chunk = works[start : start + chunk_size]
                (carrying if any(w.changes_fields for w in chunk) else plain).append(
                    (actions, chunk)
                )
        return plain, carrying

    def first_field_chunk(self, chunk_size: int) -> list[ContactWork]:
        """The contacts of the first job that carries Name/exclusion changes."""
        carrying = self.jobs_by_fields(chunk_size)[1]
        return carrying[0][1] if carrying else []


def jobs(contacts: int, chunk_size: int) -> int:
    return -(-contacts // chunk_size)


def listing_calls(contacts: int) -> int:
    """Requests of reading a collection of `contacts` records (the client's list_all):
    the first page; past a full one, the count and the other pages; a full last page is
    followed by one more."""
    if contacts < PAGE_SIZE:
        return 1
    return 1 + jobs(contacts, PAGE_SIZE) + (1 if contacts % PAGE_SIZE == 0 else 0)


def read_back_sample(chunk: Iterable[ContactWork]) -> list[ContactWork]:
    """The contacts read back after the first job carrying Name/exclusion changes: up to
    READ_BACK of those it changes, covering each of the two fields it changes if it can."""
    changing = [work for work in chunk if work.changes_fields]
    sample: list[ContactWork] = []
    for wanted in sorted({name for work in changing for name in work.field_names}):
        found = next((w for w in changing if wanted in w.field_names and w not in sample), None)
        if found is not None and len(sample) < READ_BACK:
            sample.append(found)
    for work in changing:
        if len(sample) >= READ_BACK:
            break
        if work not in sample:
            sample.append(work)
    return sample


def list_action(change: Change) -> str:
    if change.action is Action.DELETE:
        return "remove"
    if change.membership_after.status is SubscriptionStatus.UNSUBSCRIBED:
        return "unsub"
    if Flag.RESUBSCRIBE in change.flags:
        return "addforce"
    # addnoforce never re-subscribes someone who left, even if they did so after planning.
    return "addnoforce"


def collect(changes: Iterable[Change]) -> list[ContactWork]:
    """Each contact's work, in the order its first change comes."""
    works: dict[str, ContactWork] = {}
    for change in changes:
        if change.type is ResourceType.CONTACT:
            if change.action is Action.DELETE:
                continue
        elif change.type is not ResourceType.MEMBERSHIP:
            continue
        key = contact_of(change)
        work = works.get(key)
        if work is None:
            work = works[key] = ContactWork(key)
        if change.type is ResourceType.CONTACT:
            work.contact = change
        else:
            work.memberships.append(change)
    for work in works.values():
        work.settle()
    return list(works.values())


def route(
    changes: Iterable[Change],
    definitions: Mapping[str, PropertyDef],
    chunk_size: int,
    live_contacts: int = 0,
) -> Route:
    """The cheaper of two routings: Name/exclusion changes PUT (before their job, or on
    single calls), or riding in the jobs; `live_contacts` as read (for the fresh read)."""
    forced: list[ContactWork] = []
    groups: dict[tuple[NamedAction, ...], list[ContactWork]] = defaultdict(list)
    historic = {name for name, d in definitions.items() if d.namespace is Namespace.HISTORIC}
    for work in collect(changes):
        if work.resubscriptions or (historic and not historic.isdisjoint(work.properties)):
            forced.append(work)
        else:
            groups[work.actions()].append(work)
    for actions, works in groups.items():  # those changing fields first (stable)
        groups[actions] = sorted(works, key=lambda work: not work.changes_fields)
    putting = _grouped(forced, groups, chunk_size, fields_in_jobs=False)
    riding = _grouped(forced, groups, chunk_size, fields_in_jobs=True)
    if not riding.field_works:
        return putting
    riding.contacts_then = live_contacts + sum(1 for work in riding.single if work.creates)
    created = sum(1 for works in riding.bulk.values() for work in works if work.creates)
    riding.contacts_after = riding.contacts_then + created
    return riding if riding.calls(chunk_size) < putting.calls(chunk_size) else putting


def _grouped(
    forced: list[ContactWork],
    groups: Mapping[tuple[NamedAction, ...], list[ContactWork]],
    chunk_size: int,
    *,
    fields_in_jobs: bool,
) -> Route:
    result = Route(single=list(forced), fields_in_jobs=fields_in_jobs)
    for actions, works in groups.items():
        single = sum(work.single_calls for work in works)
        bulk = jobs(len(works), chunk_size) * (1 + EXPECTED_POLLS)
        if not fields_in_jobs:
            bulk += sum(work.record_calls for work in works if work.changes_fields)
        if bulk < single:
            result.bulk[actions] = works
        else:
            result.single.extend(works)
    return result
