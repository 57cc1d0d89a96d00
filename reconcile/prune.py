"""Pure policy: what the manifest allows beyond its declarations, applied to a comparison.

diff compares what is declared; this decides what happens to what is not (prune
policies: undeclared contacts in scope, undeclared members of exact lists, undeclared
lists and properties) and enforces `protect:`, which wins over everything. No I/O.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from collections.abc import Set as AbstractSet
from typing import Any

from reconcile.diff import (
    DESTRUCTIVE,
    Action,
    Change,
    DiffResult,
    Finding,
    Flag,
    ResourceType,
    as_renamed,
    contact_ref,
    list_ref,
    membership_ref,
    renames_in,
)
from reconcile.model import (
    EXCLUDED,
    Contact,
    ContactList,
    ContactValues,
    Key,
    Membership,
    MembershipValues,
    MembersPolicy,
    PropertyDef,
    State,
    SubscriptionStatus,
    fingerprint,
)
from reconcile.policy import ContactPrune, DefinitionPrune, MemberPrune, Policy


def apply_policy(desired: State, live: State, policy: Policy, compared: DiffResult) -> DiffResult:
    """`compared` (diff_states of desired and live) with the prunes `policy` asks for, the
    memberships of erased contacts dropped, and what `protect:` forbids as errors.

    Prunes look at live as it will be once the plan's renames are made: a list renamed
    from an old name is not undeclared under that name (nor pruned), and its members are
    its members under the new one."""
    live = as_renamed(live, renames_in(compared.changes))
    changes = list(compared.changes)
    warnings = list(compared.warnings)
    changes.extend(_undeclared_members(desired, live, policy))
    changes.extend(_pruned(desired, live, policy, changes, warnings))
    changes = _without_memberships_of_erased(changes)
    errors = [*compared.errors, *_protection_errors(changes, policy)]
    warnings.extend(_unmatched_protections(desired, live, policy))
    return DiffResult(changes, warnings, errors)


def _undeclared_members(desired: State, live: State, policy: Policy) -> Iterator[Change]:
    """Members of a `members: exact` list that no manifest declares: removed or unsubscribed."""
    exact = {name for name, spec in desired.lists.items() if spec.members is MembersPolicy.EXACT}
    for list_name, email in _members_of(live, exact):
        if (list_name, email) in desired.memberships:
            continue
        have = live.memberships[(list_name, email)]
        if have.status is SubscriptionStatus.UNSUBSCRIBED:
            # Removing them would erase the record of their unsubscribe; keep it.
            continue
        if _protected(policy, list_name, email):
            continue
        if policy.exact_members is MemberPrune.UNSUBSCRIBE:
            yield _unsubscribe(have)
        else:
            yield _deletion(ResourceType.MEMBERSHIP, have.key, have)


def _unsubscribe(have: Membership) -> Change:
    after = MembershipValues(SubscriptionStatus.UNSUBSCRIBED)
    record = have.record()
    return Change(
        ResourceType.MEMBERSHIP, Action.UPDATE, have.key, have.values(), after, fingerprint(record)
    )


def _deletion(kind: ResourceType, key: Key, have: PropertyDef | ContactList | Membership) -> Change:
    return Change(kind, Action.DELETE, key, have.values(), None, fingerprint(have.record()))


def _protected(policy: Policy, list_name: str, email: str) -> bool:
    return email in policy.protected_contacts or list_name in policy.protected_lists


def _pruned(
    desired: State, live: State, policy: Policy, planned: list[Change], warnings: list[Finding]
) -> Iterator[Change]:
    """What the prune policies ask for lists, properties and contacts no manifest declares."""
    if policy.lists is DefinitionPrune.DELETE:
        for name, have in live.lists.items():
            if name not in desired.lists and name not in policy.protected_lists:
                yield _deletion(ResourceType.LIST, (name,), have)
    if policy.properties is DefinitionPrune.DELETE:
        for name, definition in live.properties.items():
            if name not in desired.properties:
                yield _deletion(ResourceType.PROPERTY, (name,), definition)
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
        for list_name, email in _members_of(live, scope_lists)
        if live.memberships.status(list_name, email) is SubscriptionStatus.SUBSCRIBED
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


def _members_of(state: State, lists: AbstractSet[str]) -> Iterator[tuple[str, str]]:
    """(list name, email key) of the members of `lists`, without a look at any other list."""
    for list_name in sorted(lists):
        for email in state.memberships.emails(list_name):
            yield list_name, email


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
        yield Change(
            ResourceType.CONTACT, Action.DELETE, (key,), have.values(), None, basis, pruned
        )
    elif policy.contacts in (ContactPrune.EXCLUDE, ContactPrune.ARCHIVE):
        # Someone already excluded is left as they are (archived, or their opt-out kept).
        if have.fields.get(EXCLUDED) is not True:
            if policy.contacts is ContactPrune.ARCHIVE:
                pruned |= {Flag.ARCHIVE}
            before = ContactValues({EXCLUDED: have.fields.get(EXCLUDED)})
            after = ContactValues({EXCLUDED: True})
            yield Change(ResourceType.CONTACT, Action.UPDATE, (key,), before, after, basis, pruned)
    else:
        for list_name in sorted(desired.lists):
            membership = live.memberships.get((list_name, key))
            if (
                membership is not None
                and membership.status is SubscriptionStatus.SUBSCRIBED
                and list_name not in policy.protected_lists
            ):
                yield _unsubscribe(membership)


def _without_memberships_of_erased(changes: list[Change]) -> list[Change]:
    erased = {
        c.email for c in changes if c.type is ResourceType.CONTACT and c.action is Action.DELETE
    }
    if not erased:
        return changes
    return [c for c in changes if c.type is not ResourceType.MEMBERSHIP or c.email not in erased]


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
    if policy.contacts is not ContactPrune.IGNORE:
        for name in sorted(policy.contact_scope.lists or ()):
            if name not in desired.lists and name not in live.lists:
                yield Finding(
                    list_ref(name),
                    "is a prune scope list (prune:contacts:scope:lists) but is neither in the "
                    "manifest nor in the account: it brings nobody into the prune's scope "
                    "(a typo, or another spelling of a list?)",
                )
