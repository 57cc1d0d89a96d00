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
    Contact,
    Membership,
    MembersPolicy,
    PropertyDef,
    State,
    SubscriptionStatus,
    fingerprint,
)


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


def diff_states(desired: State, live: State) -> DiffResult:
    result = DiffResult()
    result.changes.extend(_property_changes(desired, live, result.errors))
    result.changes.extend(_list_changes(desired, live))
    result.changes.extend(_contact_changes(desired, live))
    result.changes.extend(_membership_changes(desired, live, result.warnings))
    return result


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


def _membership_changes(desired: State, live: State, warnings: list[Finding]) -> Iterator[Change]:
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
        yield Change(
            ResourceType.MEMBERSHIP,
            Action.DELETE,
            key,
            have.record(),
            None,
            fingerprint(have.record()),
        )


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
