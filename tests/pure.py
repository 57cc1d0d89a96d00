"""Literal states and change rows for the pure tests of diff, prune and plan."""

from __future__ import annotations

from collections.abc import Iterable

from reconcile.diff import Change, Values
from reconcile.model import Contact, ContactList, Membership, PropertyDef, State

Row = tuple[str, str, Values | None, Values | None]


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
