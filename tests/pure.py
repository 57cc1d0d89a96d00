"""Literal states, changes and change rows for the pure tests of diff, prune and plan."""

from __future__ import annotations

from collections.abc import Iterable

from reconcile.diff import Action, Change, ResourceType, Values
from reconcile.model import (
    NAME,
    Contact,
    ContactList,
    ContactValues,
    ListValues,
    Membership,
    MembershipValues,
    PropertyDef,
    PropertyType,
    PropertyValues,
    State,
    SubscriptionStatus,
)

Row = tuple[str, str, Values | None, Values | None]
SUBSCRIBED, UNSUBSCRIBED = SubscriptionStatus.SUBSCRIBED, SubscriptionStatus.UNSUBSCRIBED


def state(*items: PropertyDef | ContactList | Contact | Membership) -> State:
    built = State()
    for item in items:
        if isinstance(item, PropertyDef):
            built.properties[item.name] = item
        elif isinstance(item, ContactList):
            built.lists[item.name] = item
        elif isinstance(item, Contact):
            built.add_contact(item)
        else:
            built.add_membership(item)
    return built


def rows(changes: Iterable[Change]) -> list[Row]:
    """(action, address, before, after) of each change, in order."""
    return [(c.action.value, c.address, c.before, c.after) for c in changes]


def create_property(name: str) -> Change:
    return Change(
        ResourceType.PROPERTY, Action.CREATE, (name,), None, PropertyValues(PropertyType.STR)
    )


def delete_property(name: str) -> Change:
    values = PropertyValues(PropertyType.STR)
    return Change(ResourceType.PROPERTY, Action.DELETE, (name,), values, None)


def create_list(name: str) -> Change:
    return Change(ResourceType.LIST, Action.CREATE, (name,), None, ListValues(name))


def delete_list(name: str) -> Change:
    return Change(ResourceType.LIST, Action.DELETE, (name,), ListValues(name), None)


def create_contact(email: str) -> Change:
    values = ContactValues({NAME: "N"}, None, email)
    return Change(ResourceType.CONTACT, Action.CREATE, (email,), None, values)


def rename(email: str, fingerprint: str | None = None) -> Change:
    before, after = ContactValues({NAME: "Old"}), ContactValues({NAME: "New"})
    return Change(ResourceType.CONTACT, Action.UPDATE, (email,), before, after, fingerprint)


def erase(email: str) -> Change:
    values = ContactValues(email=email)
    return Change(ResourceType.CONTACT, Action.DELETE, (email,), values, None)


def join(list_name: str, email: str) -> Change:
    key = (list_name, email)
    return Change(ResourceType.MEMBERSHIP, Action.CREATE, key, None, MembershipValues(SUBSCRIBED))


def unsubscribe(list_name: str, email: str) -> Change:
    before, after = MembershipValues(SUBSCRIBED), MembershipValues(UNSUBSCRIBED)
    return Change(ResourceType.MEMBERSHIP, Action.UPDATE, (list_name, email), before, after)


def remove(list_name: str, email: str) -> Change:
    values = MembershipValues(SUBSCRIBED)
    return Change(ResourceType.MEMBERSHIP, Action.DELETE, (list_name, email), values, None)
