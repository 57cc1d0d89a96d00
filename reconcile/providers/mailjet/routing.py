"""Which contact writes go through bulk jobs and which through single calls.

Pure: from the planned changes alone, so the same routing gives both the plan's
estimate and apply's requests. A contact's work goes into a job when the jobs for its
group cost fewer requests than single calls would. What a job can't carry stays on
single calls: Name/IsExcludedFromCampaigns of an existing contact (PUT, with the
full-replacement rule) and historic-namespace properties (only /contactdata).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from reconcile.diff import Action, Change, Flag, ResourceType
from reconcile.model import Namespace, PropertyDef, PropertyValue, SubscriptionStatus
from reconcile.providers.runner import contact_of

EXPECTED_POLLS = 3  # a job reports running a few times before it ends
NamedAction = tuple[str, str]  # (list name, managecontactslists action)


@dataclass
class ContactWork:
    key: str
    contact: Change | None = None
    memberships: list[Change] = field(default_factory=list)

    @property
    def changes(self) -> list[Change]:
        return ([self.contact] if self.contact else []) + self.memberships

    @property
    def properties(self) -> Mapping[str, PropertyValue]:
        return (self.contact.contact_after.properties if self.contact else None) or {}

    @property
    def needs_put(self) -> bool:
        """An existing contact's Name/IsExcludedFromCampaigns change: PUT, never a job."""
        if self.contact is None or self.contact.action is not Action.UPDATE:
            return False
        return bool(self.contact.contact_after.fields)

    @property
    def record_calls(self) -> int:
        """Requests for the contact record: a POST for a new one; for a Name/exclusion
        change, the read of the record as it is now (PUT replaces every field) and the PUT."""
        if self.contact is not None and self.contact.action is Action.CREATE:
            return 1
        return 2 if self.needs_put else 0

    @property
    def resubscribes(self) -> list[Change]:
        """Memberships an opt-in brings back: each is read again just before (single calls)."""
        return [m for m in self.memberships if Flag.RESUBSCRIBE in m.flags]

    def actions(self) -> tuple[NamedAction, ...]:
        return tuple(sorted((m.list_name, list_action(m)) for m in self.memberships))

    def single_cost(self) -> int:
        calls = self.record_calls + (1 if self.properties else 0)
        calls += len({m.action is Action.DELETE for m in self.memberships})
        return calls + len(self.resubscribes)


@dataclass
class Route:
    bulk: dict[tuple[NamedAction, ...], list[ContactWork]] = field(default_factory=dict)
    single: list[ContactWork] = field(default_factory=list)

    def calls(self, chunk_size: int) -> int:
        calls = sum(work.single_cost() for work in self.single)
        for works in self.bulk.values():
            calls += jobs(len(works), chunk_size) * (1 + EXPECTED_POLLS)
            calls += sum(work.record_calls for work in works if work.needs_put)
        return calls


def jobs(contacts: int, chunk_size: int) -> int:
    return -(-contacts // chunk_size)


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
    works: dict[str, ContactWork] = {}
    for change in changes:
        if change.type not in (ResourceType.CONTACT, ResourceType.MEMBERSHIP):
            continue
        if change.type is ResourceType.CONTACT and change.action is Action.DELETE:
            continue
        work = works.setdefault(contact_of(change), ContactWork(contact_of(change)))
        if change.type is ResourceType.CONTACT:
            work.contact = change
        else:
            work.memberships.append(change)
    return list(works.values())


def route(
    changes: Iterable[Change], definitions: Mapping[str, PropertyDef], chunk_size: int
) -> Route:
    result = Route()
    groups: dict[tuple[NamedAction, ...], list[ContactWork]] = defaultdict(list)
    for work in collect(changes):
        historic = any(
            definitions.get(name) is not None and definitions[name].namespace is Namespace.HISTORIC
            for name in work.properties
        )
        if historic or work.resubscribes:
            result.single.append(work)
        else:
            groups[work.actions()].append(work)
    for actions, works in groups.items():
        single = sum(work.single_cost() for work in works)
        bulk = jobs(len(works), chunk_size) * (1 + EXPECTED_POLLS) + sum(
            work.record_calls for work in works if work.needs_put
        )
        if bulk < single:
            result.bulk[actions] = works
        else:
            result.single.extend(works)
    return result
