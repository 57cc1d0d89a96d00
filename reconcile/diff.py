"""Pure comparison of desired and live state, key by key. No I/O.

Only what the desired state mentions is compared: a contact field or property the
manifest leaves out is never part of a change, so it can never be reset.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from reconcile.model import (
    EXCLUDED,
    Contact,
    Membership,
    MembersPolicy,
    PropertyDef,
    State,
    SubscriptionStatus,
    fingerprint,
)
from reconcile.policy import ContactPrune, DefinitionPrune, MemberPrune, Policy


class ResourceType(StrEnum):
    PROPERTY = "property"
    LIST = "list"
    CONTACT = "contact"
    MEMBERSHIP = "membership"


class Action(StrEnum):
    CREATE = "create"
    UPDATE = "update"
    DELETE = "delete"


class Flag(StrEnum):
    RESUBSCRIBE = "resubscribe"  # consent given in the manifest to subscribe again
    REPLACE = "replace"  # delete and recreate; values held by it are lost


class Effect(StrEnum):
    """What a change means for the people in the audience; the plan names each one."""

    UNSUBSCRIBE = "unsubscribe"  # stays on the list, receives nothing from it
    REMOVE_FROM_LIST = "remove from list"  # membership (and its history) removed
    EXCLUDE = "exclude from campaigns"  # no campaign reaches them; lists unchanged
    RESUBSCRIBE = "re-subscribe"  # only with consent recorded in the manifest
    ERASE = "erase (irreversible)"  # GDPR erasure of the contact
    DELETE_LIST = "delete list"
    DELETE_PROPERTY = "delete property (every value of it is lost)"


DESTRUCTIVE = frozenset(
    {
        Effect.UNSUBSCRIBE,
        Effect.REMOVE_FROM_LIST,
        Effect.ERASE,
        Effect.DELETE_LIST,
        Effect.DELETE_PROPERTY,
    }
)


@dataclass(frozen=True, slots=True)
class Change:
    type: ResourceType
    action: Action
    key: str
    before: Mapping[str, Any] | None
    after: Mapping[str, Any] | None
    fingerprint: str | None = None  # of the live record the change was planned against
    flags: frozenset[Flag] = frozenset()

    @property
    def address(self) -> str:
        return f"{self.type.value}:{self.key}"

    @property
    def effect(self) -> Effect | None:
        return effect_of(self)


def effect_of(change: Change) -> Effect | None:
    if change.action is Action.DELETE:
        return {
            ResourceType.CONTACT: Effect.ERASE,
            ResourceType.MEMBERSHIP: Effect.REMOVE_FROM_LIST,
            ResourceType.LIST: Effect.DELETE_LIST,
            ResourceType.PROPERTY: Effect.DELETE_PROPERTY,
        }[change.type]
    after = change.after or {}
    if change.type is ResourceType.MEMBERSHIP and change.action is Action.UPDATE:
        if after.get("status") == SubscriptionStatus.UNSUBSCRIBED:
            return Effect.UNSUBSCRIBE
        return Effect.RESUBSCRIBE
    if change.type is ResourceType.CONTACT and after.get(EXCLUDED) is True:
        return Effect.EXCLUDE
    return None


@dataclass(frozen=True, slots=True)
class Finding:
    address: str
    message: str

    def __str__(self) -> str:
        return f"{self.address}: {self.message}"


@dataclass
class DiffResult:
    changes: list[Change] = field(default_factory=list)
    warnings: list[Finding] = field(default_factory=list)
    errors: list[Finding] = field(default_factory=list)


def membership_key(list_name: str, email: str) -> str:
    return f"{list_name}/{email}"


def split_membership_key(key: str) -> tuple[str, str]:
    list_name, _, email = key.partition("/")
    return list_name, email


def diff_states(desired: State, live: State, policy: Policy | None = None) -> DiffResult:
    policy = policy or Policy()
    result = DiffResult()
    result.changes.extend(_property_changes(desired, live, result.errors))
    result.changes.extend(_list_changes(desired, live))
    result.changes.extend(_contact_changes(desired, live))
    result.changes.extend(_membership_changes(desired, live, policy, result.warnings))
    result.changes.extend(_pruned(desired, live, policy, result.changes))
    result.changes = _without_memberships_of_erased(result.changes)
    result.errors.extend(_protection_errors(result.changes, policy))
    return result


def _without_memberships_of_erased(changes: list[Change]) -> list[Change]:
    erased = {
        c.key for c in changes if c.type is ResourceType.CONTACT and c.action is Action.DELETE
    }
    if not erased:
        return changes
    return [
        c
        for c in changes
        if c.type is not ResourceType.MEMBERSHIP or split_membership_key(c.key)[1] not in erased
    ]


def _property_changes(desired: State, live: State, errors: list[Finding]) -> Iterator[Change]:
    for name, want in desired.properties.items():
        have = live.properties.get(name)
        if have is None:
            yield Change(ResourceType.PROPERTY, Action.CREATE, name, None, want.record())
        elif want.record() != have.record():
            if want.replace:
                yield _replace_property(want, have)
            else:
                errors.append(
                    Finding(
                        f"property:{name}",
                        f"is {have.type}/{have.namespace} live and {want.type}/{want.namespace} "
                        "in the manifest; a definition can't change in place. Set replace: true "
                        "to delete and recreate it (every contact's value of it is lost).",
                    )
                )


def _replace_property(want: PropertyDef, have: PropertyDef) -> Change:
    return Change(
        ResourceType.PROPERTY,
        Action.UPDATE,
        want.name,
        have.record(),
        want.record(),
        fingerprint(have.record()),
        frozenset({Flag.REPLACE}),
    )


def _list_changes(desired: State, live: State) -> Iterator[Change]:
    for name, want in desired.lists.items():
        if name not in live.lists:
            yield Change(ResourceType.LIST, Action.CREATE, name, None, want.record())


def _contact_changes(desired: State, live: State) -> Iterator[Change]:
    for key, want in desired.contacts.items():
        have = live.contacts.get(key)
        if have is None:
            yield Change(ResourceType.CONTACT, Action.CREATE, key, None, _creation(want))
            continue
        before, after = _contact_delta(want, have)
        if after:
            yield Change(
                ResourceType.CONTACT, Action.UPDATE, key, before, after, fingerprint(have.record())
            )


def _creation(want: Contact) -> dict[str, Any]:
    after: dict[str, Any] = {"email": want.email, **want.fields}
    properties = {k: v for k, v in want.properties.items() if v is not None}
    if properties:
        after["properties"] = properties
    return after


def _contact_delta(want: Contact, have: Contact) -> tuple[dict[str, Any], dict[str, Any]]:
    before: dict[str, Any] = {}
    after: dict[str, Any] = {}
    for name, value in want.fields.items():
        if have.fields.get(name) != value:
            before[name] = have.fields.get(name)
            after[name] = value
    old_values: dict[str, Any] = {}
    new_values: dict[str, Any] = {}
    for name, value in want.properties.items():
        current = have.properties.get(name)
        if current != value:
            old_values[name] = current
            new_values[name] = value
    if new_values:
        before["properties"] = old_values
        after["properties"] = new_values
    return before, after


def _membership_changes(
    desired: State, live: State, policy: Policy, warnings: list[Finding]
) -> Iterator[Change]:
    for (list_name, email), want in desired.memberships.items():
        key = membership_key(list_name, email)
        have = live.memberships.get((list_name, email))
        if have is None:
            yield Change(ResourceType.MEMBERSHIP, Action.CREATE, key, None, want.record())
        elif have.status != want.status:
            change = _status_change(key, want, have, warnings)
            if change is not None:
                yield change
    exact = {name for name, spec in desired.lists.items() if spec.members is MembersPolicy.EXACT}
    for (list_name, email), have in live.memberships.items():
        if list_name not in exact or (list_name, email) in desired.memberships:
            continue
        key = membership_key(list_name, email)
        if have.status is SubscriptionStatus.UNSUBSCRIBED:
            # Removing them would erase the record of their unsubscribe; keep it.
            continue
        if _protected(policy, list_name, email):
            continue
        if policy.exact_members is MemberPrune.UNSUBSCRIBE:
            yield _unsubscribe(key, have)
        else:
            yield _removal(key, have)


def _status_change(
    key: str, want: Membership, have: Membership, warnings: list[Finding]
) -> Change | None:
    flags: frozenset[Flag] = frozenset()
    if want.status is SubscriptionStatus.SUBSCRIBED:
        if not want.resubscribe:
            warnings.append(
                Finding(
                    f"membership:{key}",
                    "unsubscribed from this list; the manifest says subscribed, but nobody is "
                    "re-subscribed without consent: left unsubscribed (set resubscribe: true on "
                    "this membership if they opted in again)",
                )
            )
            return None
        flags = frozenset({Flag.RESUBSCRIBE})
    return Change(
        ResourceType.MEMBERSHIP,
        Action.UPDATE,
        key,
        have.record(),
        want.record(),
        fingerprint(have.record()),
        flags,
    )


def _unsubscribe(key: str, have: Membership) -> Change:
    after = {"status": SubscriptionStatus.UNSUBSCRIBED.value}
    record = have.record()
    return Change(ResourceType.MEMBERSHIP, Action.UPDATE, key, record, after, fingerprint(record))


def _removal(key: str, have: Membership) -> Change:
    record = have.record()
    return Change(ResourceType.MEMBERSHIP, Action.DELETE, key, record, None, fingerprint(record))


def _protected(policy: Policy, list_name: str, email: str) -> bool:
    return email in policy.protected_contacts or list_name in policy.protected_lists


def _pruned(desired: State, live: State, policy: Policy, planned: list[Change]) -> Iterator[Change]:
    """What the prune policies ask for things no manifest declares."""
    if policy.lists is DefinitionPrune.DELETE:
        for name, have in live.lists.items():
            if name not in desired.lists and name not in policy.protected_lists:
                record = have.record()
                yield Change(
                    ResourceType.LIST, Action.DELETE, name, record, None, fingerprint(record)
                )
    if policy.properties is DefinitionPrune.DELETE:
        for name, definition in live.properties.items():
            if name not in desired.properties:
                record = definition.record()
                yield Change(
                    ResourceType.PROPERTY, Action.DELETE, name, record, None, fingerprint(record)
                )
    if policy.contacts is not ContactPrune.IGNORE:
        already = {change.address for change in planned}
        for key in sorted(_undeclared_in_scope(desired, live, policy)):
            for change in _prune_contact(key, desired, live, policy):
                if change.address not in already:
                    yield change


def _undeclared_in_scope(desired: State, live: State, policy: Policy) -> set[str]:
    scope_lists = policy.scope_lists(frozenset(desired.lists))
    # Subscribed members only: someone who unsubscribed from every scope list is left as is,
    # like an unsubscribed member of an exact list (the record of their choice is kept).
    on_lists = {
        email
        for (list_name, email), membership in live.memberships.items()
        if list_name in scope_lists and membership.status is SubscriptionStatus.SUBSCRIBED
    }
    marker = policy.contact_scope.marker
    chosen: set[str] = set()
    for key in on_lists:
        contact = live.contacts.get(key)
        if contact is None or key in desired.contacts or key in policy.protected_contacts:
            continue
        if marker is not None and contact.properties.get(marker[0]) != marker[1]:
            continue
        chosen.add(key)
    return chosen


def _prune_contact(key: str, desired: State, live: State, policy: Policy) -> Iterator[Change]:
    have = live.contacts[key]
    if policy.contacts is ContactPrune.DELETE:
        record = have.record()
        yield Change(ResourceType.CONTACT, Action.DELETE, key, record, None, fingerprint(record))
    elif policy.contacts is ContactPrune.EXCLUDE:
        if have.fields.get(EXCLUDED) is not True:
            before = {EXCLUDED: have.fields.get(EXCLUDED)}
            yield Change(
                ResourceType.CONTACT,
                Action.UPDATE,
                key,
                before,
                {EXCLUDED: True},
                fingerprint(have.record()),
            )
    else:
        for list_name in sorted(desired.lists):
            membership = live.memberships.get((list_name, key))
            if (
                membership is not None
                and membership.status is SubscriptionStatus.SUBSCRIBED
                and list_name not in policy.protected_lists
            ):
                yield _unsubscribe(membership_key(list_name, key), membership)


def _protection_errors(changes: list[Change], policy: Policy) -> Iterator[Finding]:
    """A change the manifest asks for explicitly that `protect:` forbids."""
    for change in changes:
        if change.effect not in DESTRUCTIVE:
            continue
        email = list_name = ""
        if change.type is ResourceType.CONTACT:
            email = change.key
        elif change.type is ResourceType.MEMBERSHIP:
            list_name, email = split_membership_key(change.key)
        elif change.type is ResourceType.LIST:
            list_name = change.key
        if email in policy.protected_contacts or list_name in policy.protected_lists:
            yield Finding(
                change.address,
                f"is protected (protect: in the manifest), so no plan may {change.effect}; "
                "change the manifest or remove the protection",
            )
