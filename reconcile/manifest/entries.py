"""A contact entry of the common shape, checked by hand instead of by the schema: a
pydantic model per entry is most of a big file's validation. Used for YAML entries and
CSV rows alike; anything else goes to the schema, which decides and words any error."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from reconcile.manifest.schema import ContactSpec
from reconcile.model import text_problem


@dataclass(slots=True)
class PlainContact:
    """A contact entry of the common shape, checked by hand: what ContactSpec would hold
    for it. A pydantic model per entry is most of a big file's validation. (Not frozen:
    a frozen dataclass takes four times as long to make, a million times.)"""

    email: str
    name: str | None
    excluded_from_campaigns: bool | None
    properties: dict[str, Any]
    lists: list[str]
    opted_in_at: Any
    renamed_from: None = None


ContactEntry = ContactSpec | PlainContact
_PLAIN_KEYS = frozenset(
    {"email", "name", "excluded_from_campaigns", "properties", "lists", "opted_in_at"}
)
_ABSENT: Any = object()


def plain_contact(raw: Any) -> PlainContact | None:
    """The entry, when ContactSpec would take it as it is and it has only plain fields: an
    email, a printable name, excluded_from_campaigns, properties with text keys, lists as
    a list of names, opted_in_at. None for anything else (the schema decides, and words
    any error), so a fast path never changes what is accepted or reported."""
    if type(raw) is not dict:
        return None
    email = raw.get("email")
    if type(email) is not str:
        return None
    name = raw.get("name", _ABSENT)
    excluded = raw.get("excluded_from_campaigns", _ABSENT)
    properties = raw.get("properties", _ABSENT)
    lists = raw.get("lists", _ABSENT)
    opted_in_at = raw.get("opted_in_at")
    if not (
        _PLAIN_KEYS.issuperset(raw)
        and (name is _ABSENT or (type(name) is str and text_problem(name) is None))
        and (excluded is _ABSENT or type(excluded) is bool)
        and (properties is _ABSENT or (type(properties) is dict and _texts(properties)))
        and (lists is _ABSENT or (type(lists) is list and _texts(lists)))
    ):
        return None
    return PlainContact(
        email,
        None if name is _ABSENT else name,
        None if excluded is _ABSENT else excluded,
        {} if properties is _ABSENT else properties,
        [] if lists is _ABSENT else lists,
        opted_in_at,
    )


def _texts(values: Iterable[Any]) -> bool:
    # a loop, not all() over a generator, which takes twice as long
    for value in values:  # noqa: SIM110
        if type(value) is not str:
            return False
    return True
