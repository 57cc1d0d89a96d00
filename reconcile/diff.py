"""Pure comparison of desired and live state, key by key. No I/O.

Only what the desired state mentions is compared: a contact field or property the
manifest leaves out is never part of a change, so it can never be reset. Consent is
decided here for every provider: nobody who opted out is brought back (to a list, or
into campaigns) without an opt-in recorded after their opt-out.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, NamedTuple

from reconcile.model import (
    EXCLUDED,
    Contact,
    Key,
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


KEY_LENGTH = {
    ResourceType.PROPERTY: 1,
    ResourceType.LIST: 1,
    ResourceType.CONTACT: 1,
    ResourceType.MEMBERSHIP: 2,
}


class Ref(NamedTuple):
    """What a change or finding is about: its type and structured key."""

    type: ResourceType
    key: Key

    @property
    def address(self) -> str:
        """For display only: `membership:Sales/EMEA/a@x.com` is ambiguous, the key is not."""
        return f"{self.type.value}:{'/'.join(self.key)}"


def contact_ref(email_key: str) -> Ref:
    return Ref(ResourceType.CONTACT, (email_key,))


def membership_ref(list_name: str, email_key: str) -> Ref:
    return Ref(ResourceType.MEMBERSHIP, (list_name, email_key))


def list_ref(name: str) -> Ref:
    return Ref(ResourceType.LIST, (name,))


def property_ref(name: str) -> Ref:
    return Ref(ResourceType.PROPERTY, (name,))


class Action(StrEnum):
    CREATE = "create"
    UPDATE = "update"
    DELETE = "delete"


class Flag(StrEnum):
    RESUBSCRIBE = "resubscribe"  # undoes an opt-out, with consent recorded after it
    REPLACE = "replace"  # delete and recreate; values held by it are lost
    PRUNE = "prune"  # asked by a prune policy: its fingerprint covers the reason (scope lists)


class Effect(StrEnum):
    """What a change means for the people in the audience; the plan names each one."""

    UNSUBSCRIBE = "unsubscribe"  # stays on the list, receives nothing from it
    REMOVE_FROM_LIST = "remove from list"  # membership (and its history) removed
    EXCLUDE = "exclude from campaigns"  # no campaign reaches them; lists unchanged
    RESUBSCRIBE = "re-subscribe"  # only with consent recorded in the manifest
    INCLUDE = "re-include in campaigns"  # only with consent recorded in the manifest
    ERASE = "erase (irreversible)"  # GDPR erasure of the contact
    DELETE_LIST = "delete list"
    DELETE_PROPERTY = "delete property (every value of it is lost)"


DESTRUCTIVE = frozenset(
    {
        Effect.UNSUBSCRIBE,
        Effect.REMOVE_FROM_LIST,
        Effect.EXCLUDE,
        Effect.ERASE,
        Effect.DELETE_LIST,
        Effect.DELETE_PROPERTY,
    }
)


@dataclass(frozen=True, slots=True)
class Change:
    type: ResourceType
    action: Action
    key: Key
    before: Mapping[str, Any] | None
    after: Mapping[str, Any] | None
    fingerprint: str | None = None  # of the live record the change was planned against
    flags: frozenset[Flag] = frozenset()

    @property
    def ref(self) -> Ref:
        return Ref(self.type, self.key)

    @property
    def address(self) -> str:
        return self.ref.address

    @property
    def email(self) -> str:
        """The contact a contact or membership change concerns (its email key)."""
        return self.key[-1]

    @property
    def list_name(self) -> str:
        """The list a membership or list change concerns."""
        return self.key[0]

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
    if change.type is ResourceType.CONTACT and change.action is Action.UPDATE:
        if after.get(EXCLUDED) is True:
            return Effect.EXCLUDE
        if after.get(EXCLUDED) is False:
            return Effect.INCLUDE
    return None


@dataclass(frozen=True, slots=True)
class Finding:
    ref: Ref
    message: str

    @property
    def address(self) -> str:
        return self.ref.address

    def __str__(self) -> str:
        return f"{self.address}: {self.message}"


@dataclass
class DiffResult:
    changes: list[Change] = field(default_factory=list)
    warnings: list[Finding] = field(default_factory=list)
    errors: list[Finding] = field(default_factory=list)


def consent_blocker(opted_out_at: str | None, opted_in_at: str | None) -> str | None:
    """Why the manifest's opt-in does not undo this opt-out; None when it does.

    An opt-in records when consent was given and undoes only an opt-out from before
    it, so it is used once: opting out again later is respected by every later plan.
    Times are UTC `YYYY-MM-DDTHH:MM:SSZ`, which compare as text.
    """
    if opted_in_at is None:
        return "no opt-in (opted_in_at) is recorded for this in the manifest"
    if opted_out_at is None:
        return (
            f"the provider gives no time for the opt-out, so the opt-in of {opted_in_at} "
            "can't be shown to be newer"
        )
    if opted_out_at >= opted_in_at:
        return f"they opted out at {opted_out_at}, not before the opt-in of {opted_in_at}"
    return None


def diff_states(desired: State, live: State, policy: Policy | None = None) -> DiffResult:
    policy = policy or Policy()
    result = DiffResult()
    replaced = _replaced_properties(desired, live)
    result.changes.extend(_property_changes(desired, live, result.errors))
    result.changes.extend(_list_changes(desired, live))
    result.changes.extend(_contact_changes(desired, live, replaced, result.warnings))
    result.changes.extend(_membership_changes(desired, live, policy, result.warnings))
    result.changes.extend(_pruned(desired, live, policy, result.changes, result.warnings))
    result.changes = _without_memberships_of_erased(result.changes)
    result.errors.extend(_protection_errors(result.changes, policy))
    result.warnings.extend(_unmatched_protections(desired, live, policy))
    return result


def _without_memberships_of_erased(changes: list[Change]) -> list[Change]:
    erased = {
        c.email for c in changes if c.type is ResourceType.CONTACT and c.action is Action.DELETE
    }
    if not erased:
        return changes
    return [c for c in changes if c.type is not ResourceType.MEMBERSHIP or c.email not in erased]


def _replaced_properties(desired: State, live: State) -> frozenset[str]:
    """Properties this plan deletes and recreates: every live value of them is lost."""
    return frozenset(
        name
        for name, want in desired.properties.items()
        if want.replace
        and (have := live.properties.get(name)) is not None
        and want.record() != have.record()
    )


def _property_changes(desired: State, live: State, errors: list[Finding]) -> Iterator[Change]:
    for name, want in desired.properties.items():
        have = live.properties.get(name)
        if have is None:
            yield Change(ResourceType.PROPERTY, Action.CREATE, (name,), None, want.record())
        elif want.record() != have.record():
            if want.replace:
                yield _replace_property(want, have)
            else:
                errors.append(
                    Finding(
                        property_ref(name),
                        f"is {have.type}/{have.namespace} live and {want.type}/{want.namespace} "
                        "in the manifest; a definition can't change in place. Set replace: true "
                        "to delete and recreate it (every contact's value of it is lost).",
                    )
                )


def _replace_property(want: PropertyDef, have: PropertyDef) -> Change:
    return Change(
        ResourceType.PROPERTY,
        Action.UPDATE,
        (want.name,),
        have.record(),
        want.record(),
        fingerprint(have.record()),
        frozenset({Flag.REPLACE}),
    )


def _list_changes(desired: State, live: State) -> Iterator[Change]:
    for name, want in desired.lists.items():
        if name not in live.lists:
            yield Change(ResourceType.LIST, Action.CREATE, (name,), None, want.record())


def _contact_changes(
    desired: State, live: State, replaced: frozenset[str], warnings: list[Finding]
) -> Iterator[Change]:
    for key, want in desired.contacts.items():
        have = live.contacts.get(key)
        if have is None:
            yield Change(ResourceType.CONTACT, Action.CREATE, (key,), None, _creation(want))
            continue
        before, after = _contact_delta(want, have, replaced)
        flags: frozenset[Flag] = frozenset()
        if after.get(EXCLUDED) is False:
            blocked = consent_blocker(have.opted_out_at, want.opted_in_at)
            if blocked is None:
                flags = frozenset({Flag.RESUBSCRIBE})
            else:
                warnings.append(_kept_out(contact_ref(key), blocked))
                del before[EXCLUDED], after[EXCLUDED]
        if after:
            record = have.record()
            yield Change(
                ResourceType.CONTACT,
                Action.UPDATE,
                (key,),
                before,
                after,
                fingerprint(record),
                flags,
            )


def _kept_out(ref: Ref, why: str) -> Finding:
    what = "unsubscribed from this list" if ref.type is ResourceType.MEMBERSHIP else "excluded"
    return Finding(
        ref,
        f"opted out ({what}); the manifest would bring them back, but {why}: left as they "
        "are. If they gave consent again, record when with opted_in_at (see README, Consent).",
    )


def _creation(want: Contact) -> dict[str, Any]:
    after: dict[str, Any] = {"email": want.email, **want.fields}
    properties = {k: v for k, v in want.properties.items() if v is not None}
    if properties:
        after["properties"] = properties
    return after


def _contact_delta(
    want: Contact, have: Contact, replaced: frozenset[str]
) -> tuple[dict[str, Any], dict[str, Any]]:
    before: dict[str, Any] = {}
    after: dict[str, Any] = {}
    for name, value in want.fields.items():
        if have.fields.get(name) != value:
            before[name] = have.fields.get(name)
            after[name] = value
    old_values: dict[str, Any] = {}
    new_values: dict[str, Any] = {}
    for name, value in want.properties.items():
        # A replaced property starts empty: its declared values are written again.
        current = None if name in replaced else have.properties.get(name)
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
        key = (list_name, email)
        have = live.memberships.get(key)
        if have is None:
            yield Change(ResourceType.MEMBERSHIP, Action.CREATE, key, None, want.record_wanted())
        elif have.status != want.status:
            change = _status_change(want, have, warnings)
            if change is not None:
                yield change
    exact = {name for name, spec in desired.lists.items() if spec.members is MembersPolicy.EXACT}
    for (list_name, email), have in live.memberships.items():
        if list_name not in exact or (list_name, email) in desired.memberships:
            continue
        if have.status is SubscriptionStatus.UNSUBSCRIBED:
            # Removing them would erase the record of their unsubscribe; keep it.
            continue
        if _protected(policy, list_name, email):
            continue
        if policy.exact_members is MemberPrune.UNSUBSCRIBE:
            yield _unsubscribe(have)
        else:
            yield _removal(have)


def _status_change(want: Membership, have: Membership, warnings: list[Finding]) -> Change | None:
    flags: frozenset[Flag] = frozenset()
    if want.status is SubscriptionStatus.SUBSCRIBED:
        blocked = consent_blocker(have.opted_out_at, want.opted_in_at)
        if blocked is not None:
            warnings.append(_kept_out(membership_ref(*have.key), blocked))
            return None
        flags = frozenset({Flag.RESUBSCRIBE})
    record = have.record()
    return Change(
        ResourceType.MEMBERSHIP,
        Action.UPDATE,
        have.key,
        record,
        want.record_wanted(),
        fingerprint(record),
        flags,
    )


def _unsubscribe(have: Membership) -> Change:
    after = {"status": SubscriptionStatus.UNSUBSCRIBED.value}
    record = have.record()
    return Change(
        ResourceType.MEMBERSHIP, Action.UPDATE, have.key, record, after, fingerprint(record)
    )


def _removal(have: Membership) -> Change:
    record = have.record()
    return Change(
        ResourceType.MEMBERSHIP, Action.DELETE, have.key, record, None, fingerprint(record)
    )


def _protected(policy: Policy, list_name: str, email: str) -> bool:
    return email in policy.protected_contacts or list_name in policy.protected_lists


def _pruned(
    desired: State, live: State, policy: Policy, planned: list[Change], warnings: list[Finding]
) -> Iterator[Change]:
    """What the prune policies ask for things no manifest declares."""
    if policy.lists is DefinitionPrune.DELETE:
        for name, have in live.lists.items():
            if name not in desired.lists and name not in policy.protected_lists:
                record = have.record()
                yield Change(
                    ResourceType.LIST, Action.DELETE, (name,), record, None, fingerprint(record)
                )
    if policy.properties is DefinitionPrune.DELETE:
        for name, definition in live.properties.items():
            if name not in desired.properties:
                record = definition.record()
                yield Change(
                    ResourceType.PROPERTY, Action.DELETE, (name,), record, None, fingerprint(record)
                )
    if policy.contacts is not ContactPrune.IGNORE:
        already = {change.ref for change in planned}
        lists_of = memberships_by_email(live)
        for key in sorted(_undeclared_in_scope(desired, live, policy)):
            if policy.contacts is ContactPrune.DELETE and live.contacts[key].fields.get(EXCLUDED):
                warnings.append(_kept_record(key))
                continue
            for change in _prune_contact(key, desired, live, policy, lists_of.get(key, [])):
                if change.ref not in already:
                    yield change


def _kept_record(key: str) -> Finding:
    return Finding(
        contact_ref(key),
        "is in the prune's scope but opted out of all campaigns: not erased, because erasing "
        "them would erase the record of their opt-out (a later import could mail them)",
    )


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


def memberships_by_email(state: State) -> dict[str, list[Membership]]:
    found: dict[str, list[Membership]] = {}
    for membership in state.memberships.values():
        found.setdefault(membership.email, []).append(membership)
    return found


def prune_basis(contact: Contact, memberships: Iterable[Membership]) -> dict[str, Any]:
    """What a contact prune was decided on: the record and its lists as read. A saved plan
    is stale when it moved (say, the scope list that put them in scope was left)."""
    lists = sorted((m.list_name, m.status.value) for m in memberships)
    return {**contact.record(), "lists": lists}


def _prune_contact(
    key: str, desired: State, live: State, policy: Policy, memberships: list[Membership]
) -> Iterator[Change]:
    have = live.contacts[key]
    basis = fingerprint(prune_basis(have, memberships))
    pruned = frozenset({Flag.PRUNE})
    if policy.contacts is ContactPrune.DELETE:
        record = have.record()
        yield Change(ResourceType.CONTACT, Action.DELETE, (key,), record, None, basis, pruned)
    elif policy.contacts is ContactPrune.EXCLUDE:
        if have.fields.get(EXCLUDED) is not True:
            before = {EXCLUDED: have.fields.get(EXCLUDED)}
            yield Change(
                ResourceType.CONTACT, Action.UPDATE, (key,), before, {EXCLUDED: True}, basis, pruned
            )
    else:
        for list_name in sorted(desired.lists):
            membership = live.memberships.get((list_name, key))
            if (
                membership is not None
                and membership.status is SubscriptionStatus.SUBSCRIBED
                and list_name not in policy.protected_lists
            ):
                yield _unsubscribe(membership)


def _protection_errors(changes: list[Change], policy: Policy) -> Iterator[Finding]:
    """A change the manifest asks for explicitly that `protect:` forbids."""
    for change in changes:
        if change.effect not in DESTRUCTIVE:
            continue
        if protected_by(change, policy):
            yield Finding(
                change.ref,
                f"is protected (protect: in the manifest), so no plan may {change.effect}; "
                "change the manifest or remove the protection",
            )


def protection_conflicts(desired: State, policy: Policy) -> Iterator[Finding]:
    """What the manifest itself asks that `protect:` forbids, found without reading the
    account: excluding a protected contact, unsubscribing from or on a protected list."""
    for email in sorted(policy.protected_contacts):
        contact = desired.contacts.get(email)
        if contact is not None and contact.fields.get(EXCLUDED) is True:
            yield Finding(
                contact_ref(email),
                "is protected (protect: in the manifest), so a plan that would exclude it from "
                "campaigns is refused (unless it already is)",
            )
    for (list_name, email), membership in desired.memberships.items():
        if membership.status is SubscriptionStatus.UNSUBSCRIBED and _protected(
            policy, list_name, email
        ):
            yield Finding(
                membership_ref(list_name, email),
                "is protected (protect: in the manifest), so a plan that would unsubscribe it "
                "is refused (unless it already is)",
            )


def protected_by(change: Change, policy: Policy) -> bool:
    """Whether `protect:` covers what `change` touches (the contact, or the list)."""
    if change.type is ResourceType.CONTACT:
        return change.email in policy.protected_contacts
    if change.type is ResourceType.MEMBERSHIP:
        return _protected(policy, change.list_name, change.email)
    if change.type is ResourceType.LIST:
        return change.list_name in policy.protected_lists
    return False


def _unmatched_protections(desired: State, live: State, policy: Policy) -> Iterator[Finding]:
    """A `protect:` entry that names nothing protects nothing: most likely a typo."""
    for email in sorted(policy.protected_contacts):
        if email not in desired.contacts and email not in live.contacts:
            yield Finding(
                contact_ref(email),
                "is under protect:contacts but is neither in the manifest nor in the account "
                "(a typo protects nobody)",
            )
    for name in sorted(policy.protected_lists):
        if name not in desired.lists and name not in live.lists:
            yield Finding(
                list_ref(name),
                "is under protect:lists but is neither in the manifest nor in the account "
                "(a typo protects nothing)",
            )
