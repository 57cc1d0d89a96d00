"""Provider-neutral resources and the state that holds them.

A contact keeps only the fields and properties that are known: in desired state,
those the manifest manages; in live state, everything the provider returned. The
diff compares desired keys only, which is what makes unmanaged fields safe.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
import sys
from collections.abc import (
    Callable,
    ItemsView,
    Iterable,
    Iterator,
    KeysView,
    Mapping,
    MutableMapping,
    ValuesView,
)
from collections.abc import Set as AbstractSet
from dataclasses import dataclass, field, replace
from datetime import UTC, date, datetime
from enum import StrEnum
from itertools import repeat
from operator import itemgetter
from typing import Any, Final, TypeAlias, cast

PropertyValue: TypeAlias = str | int | float | bool | None
# The identity of a planned resource: (name,) for a property or list, (email key,) for a
# contact, (list name, email key) for a membership. Text addresses are for display only.
Key: TypeAlias = tuple[str, ...]


class PropertyType(StrEnum):
    STR = "str"
    INT = "int"
    FLOAT = "float"
    BOOL = "bool"
    DATETIME = "datetime"


class Namespace(StrEnum):
    STATIC = "static"
    HISTORIC = "historic"


class MembersPolicy(StrEnum):
    ADDITIVE = "additive"
    EXACT = "exact"


class SubscriptionStatus(StrEnum):
    SUBSCRIBED = "subscribed"
    UNSUBSCRIBED = "unsubscribed"


class ContactField(StrEnum):
    """Top-level contact fields every provider maps (besides email, the identity)."""

    NAME = "name"
    EXCLUDED = "excluded_from_campaigns"


NAME = ContactField.NAME
EXCLUDED = ContactField.EXCLUDED
CONTACT_FIELDS: Mapping[str, ContactField] = {field.value: field for field in ContactField}

FieldValue: TypeAlias = str | bool | None


# ---- what a change says of a resource -------------------------------------------------
# One frozen value type per resource type. Their JSON is the plan file's `before` and
# `after`; the same dicts are what fingerprints are taken of (`record()` below).


@dataclass(frozen=True, slots=True)
class PropertyValues:
    """`name` only on a rename (the old name before, the new one after): a definition's
    record never holds it, so fingerprints of definitions are unchanged by it."""

    type: PropertyType
    namespace: Namespace = Namespace.STATIC
    name: str | None = None

    def to_json(self) -> dict[str, Any]:
        data = {"type": self.type.value, "namespace": self.namespace.value}
        if self.name is not None:
            data["name"] = self.name
        return data

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> PropertyValues:
        kind = _text(data.get("type"), "type")
        namespace = _text(data.get("namespace", Namespace.STATIC.value), "namespace")
        name = _optional_text(data.get("name"), "name")
        return cls(PropertyType(kind), Namespace(namespace), name)


@dataclass(frozen=True, slots=True)
class ListValues:
    name: str

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> ListValues:
        return cls(_text(data.get("name"), "name"))


@dataclass(frozen=True, slots=True)
class MembershipValues:
    """`opted_out_at` only in a live record, when the provider says when they left."""

    status: SubscriptionStatus
    opted_out_at: str | None = None

    def to_json(self) -> dict[str, Any]:
        data: dict[str, Any] = {"status": self.status.value}
        if self.opted_out_at is not None:
            data["opted_out_at"] = self.opted_out_at
        return data

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> MembershipValues:
        status = SubscriptionStatus(_text(data.get("status"), "status"))
        return cls(status, _optional_text(data.get("opted_out_at"), "opted_out_at"))


@dataclass(frozen=True, slots=True)
class ContactValues:
    """Part of a contact, as a change states it. A field or property that is not a key
    of `fields` or `properties` is not part of the change (not managed, or unchanged); a
    key whose value is None is part of it, with no value (cleared, or unset live).
    `properties` is None when the change concerns no property at all.

    `email` (as written) is there on a creation and in a deletion's record; a deletion's
    record also holds `opted_out_at` and the `other_fields` a provider reads that no
    manifest manages (a delivery status): shown, never written.
    """

    fields: Mapping[ContactField, FieldValue] = field(default_factory=dict)
    properties: Mapping[str, PropertyValue] | None = None
    email: str | None = None
    opted_out_at: str | None = None
    other_fields: Mapping[str, PropertyValue] = field(default_factory=dict)

    @property
    def is_empty(self) -> bool:
        return not (self.fields or self.properties or self.other_fields) and self.email is None

    def without(self, name: ContactField) -> ContactValues:
        """The same values with field `name` left out of them."""
        kept = {key: value for key, value in self.fields.items() if key is not name}
        return replace(self, fields=kept)

    def to_json(self) -> dict[str, Any]:
        data: dict[str, Any] = {} if self.email is None else {"email": self.email}
        data.update({str(name): value for name, value in self.fields.items()})
        data.update(self.other_fields)
        if self.properties is not None:
            data["properties"] = dict(self.properties)
        if self.opted_out_at is not None:
            data["opted_out_at"] = self.opted_out_at
        return data

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> ContactValues:
        fields: dict[ContactField, FieldValue] = {}
        other: dict[str, PropertyValue] = {}
        for name, value in data.items():
            known = CONTACT_FIELDS.get(name)
            if known is not None:
                fields[known] = _field_value(value, name)
            elif name not in ("email", "properties", "opted_out_at"):
                other[name] = _scalar(value, name)
        found = data.get("properties")
        properties = None
        if found is not None:
            if not isinstance(found, Mapping):
                raise ValueError(f"properties: expected a mapping, got {describe(found)}")
            properties = {str(k): _scalar(v, f"properties.{k}") for k, v in found.items()}
        email = data.get("email")
        return cls(
            fields,
            properties,
            None if email is None else _text(email, "email"),
            _optional_text(data.get("opted_out_at"), "opted_out_at"),
            other,
        )


def _text(value: object, name: str) -> str:
    if not isinstance(value, str):
        raise ValueError(f"{name}: expected a string, got {describe(value)}")
    return value


def _optional_text(value: object, name: str) -> str | None:
    return None if value is None else _text(value, name)


def _field_value(value: object, name: str) -> FieldValue:
    if value is None or isinstance(value, str | bool):
        return value
    raise ValueError(f"{name}: expected a string or a boolean, got {describe(value)}")


def _scalar(value: object, name: str) -> PropertyValue:
    if value is None or isinstance(value, str | int | float | bool):
        return value
    raise ValueError(f"{name}: expected a single value, got {describe(value)}")


# ---- resources ------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class PropertyDef:
    name: str
    type: PropertyType
    namespace: Namespace = Namespace.STATIC
    replace: bool = False  # desired only: allows delete + recreate when the type differs
    renamed_from: tuple[str, ...] = ()  # desired only: earlier names, renamed in place

    def values(self) -> PropertyValues:
        return PropertyValues(self.type, self.namespace)

    def record(self) -> dict[str, Any]:
        return self.values().to_json()


@dataclass(frozen=True, slots=True)
class ContactList:
    name: str
    members: MembersPolicy = MembersPolicy.ADDITIVE
    renamed_from: tuple[str, ...] = ()  # desired only: earlier names, renamed in place

    def values(self) -> ListValues:
        return ListValues(self.name)

    def record(self) -> dict[str, Any]:
        return self.values().to_json()


_UNSET: Any = object()
_NO_VALUES: Mapping[str, Any] = {}


class _Shape:
    """The names of a contact's fields and properties, shared by every contact that has
    the same ones: a contact keeps only its values, in one tuple, fields first."""

    __slots__ = ("fields", "properties")

    def __init__(self, fields: tuple[str, ...], properties: tuple[str, ...]) -> None:
        # Known field names as ContactField, so a change can hold a contact's fields as is.
        names = [CONTACT_FIELDS.get(name, name) for name in fields]
        self.fields: dict[str, int] = {name: at for at, name in enumerate(names)}
        start = len(fields)
        self.properties: dict[str, int] = {name: start + at for at, name in enumerate(properties)}


_SHAPES: dict[tuple[tuple[str, ...], tuple[str, ...]], _Shape] = {}


def _shape_named(fields: tuple[str, ...], properties: tuple[str, ...]) -> _Shape:
    names = (fields, properties)
    shape = _SHAPES.get(names)
    if shape is None:
        shape = _SHAPES[names] = _Shape(*names)
    return shape


_Picks = tuple[Callable[[tuple[Any, ...]], Any], Callable[[tuple[Any, ...]], Any]]
_PICKS: dict[tuple[_Shape, _Shape], _Picks | None] = {}


def _picks(wanted: _Shape, held: _Shape) -> _Picks | None:
    """Two getters that take, from a `wanted` contact's values and a `held` one's, the
    values of the names `wanted` has, in the same order; None when `held` lacks one."""
    key = (wanted, held)
    if key not in _PICKS:
        pairs = [(at, held.fields.get(name)) for name, at in wanted.fields.items()]
        pairs += [(at, held.properties.get(name)) for name, at in wanted.properties.items()]
        if not pairs or any(other is None for _, other in pairs):
            _PICKS[key] = None
        else:
            # An itemgetter of one position gives the value, not a tuple: ask for it twice.
            ours = [at for at, _ in pairs] * (2 if len(pairs) == 1 else 1)
            theirs = [cast(int, at) for _, at in pairs] * (2 if len(pairs) == 1 else 1)
            _PICKS[key] = (itemgetter(*ours), itemgetter(*theirs))
    return _PICKS[key]


class Values(Mapping[str, Any]):
    """A read-only view of a contact's fields or properties (made when asked for)."""

    __slots__ = ("_index", "_values")

    def __init__(self, index: dict[str, int], values: tuple[Any, ...]) -> None:
        self._index = index
        self._values = values

    def __getitem__(self, name: str) -> Any:
        return self._values[self._index[name]]

    def get(self, name: str, default: Any = None) -> Any:
        at = self._index.get(name)
        return default if at is None else self._values[at]

    def __contains__(self, name: object) -> bool:
        return name in self._index

    def __iter__(self) -> Iterator[str]:
        return iter(self._index)

    def __len__(self) -> int:
        return len(self._index)

    def _slice(self) -> tuple[Any, ...]:
        if not self._index:
            return ()
        start = next(iter(self._index.values()))
        return self._values[start : start + len(self._index)]

    def items(self) -> ItemsView[str, Any]:
        return _ValuesItems(self)

    def values(self) -> ValuesView[Any]:
        return _ValuesValues(self)

    def __repr__(self) -> str:
        return repr(dict(self.items()))


class _ValuesItems(ItemsView[str, Any]):
    _mapping: Values

    def __iter__(self) -> Iterator[tuple[str, Any]]:
        return zip(self._mapping._index, self._mapping._slice(), strict=True)


class _ValuesValues(ValuesView[Any]):
    _mapping: Values

    def __iter__(self) -> Iterator[Any]:
        return iter(self._mapping._slice())


class Contact:
    """`opted_in_at` (desired only): when the person gave the consent the manifest records,
    UTC `YYYY-MM-DDTHH:MM:SSZ`. `opted_out_at` (live only): the latest moment their global
    opt-out can have happened (the provider's unsubscribe time, or the record's last
    change where the provider keeps none); None when unknown.

    Immutable. Kept compactly: its values in one tuple, their names shared with every
    contact that has the same ones (a million contacts would otherwise hold two dicts
    each, some 400 bytes a contact); `fields` and `properties` are read-only views."""

    __slots__ = ("_shape", "_values", "email", "opted_in_at", "opted_out_at")

    def __init__(
        self,
        email: str,
        fields: Mapping[str, Any] = _NO_VALUES,
        properties: Mapping[str, PropertyValue] = _NO_VALUES,
        opted_in_at: str | None = None,
        opted_out_at: str | None = None,
        *,
        _in_order: tuple[tuple[str, ...], tuple[str, ...], tuple[Any, ...]] | None = None,
    ) -> None:
        # Final: immutable as far as the type checker sees (a guard at run time would
        # cost a million contacts a second).
        self.email: Final = email  # as written; identity is email_key(email)
        if _in_order is None:
            _in_order = (tuple(fields), tuple(properties), (*fields.values(), *properties.values()))
        self._shape: Final = _shape_named(_in_order[0], _in_order[1])
        self._values: Final = _in_order[2]
        self.opted_in_at: Final = opted_in_at
        self.opted_out_at: Final = opted_out_at

    @classmethod
    def in_order(
        cls,
        email: str,
        field_names: tuple[str, ...],
        property_names: tuple[str, ...],
        values: tuple[Any, ...],
        opted_out_at: str | None = None,
    ) -> Contact:
        """A contact from its names (each once) and its values in the same order, fields
        first: a read of a million contacts makes no mapping for any of them."""
        in_order = (field_names, property_names, values)
        return cls(email, opted_out_at=opted_out_at, _in_order=in_order)

    @property
    def fields(self) -> Mapping[str, Any]:
        return Values(self._shape.fields, self._values)

    @property
    def properties(self) -> Mapping[str, PropertyValue]:
        return Values(self._shape.properties, self._values)

    def get_field(self, name: str) -> Any:
        """`fields.get(name)`, without a view."""
        at = self._shape.fields.get(name)
        return None if at is None else self._values[at]

    def get_property(self, name: str) -> PropertyValue:
        """`properties.get(name)`, without a view."""
        at = self._shape.properties.get(name)
        return None if at is None else self._values[at]

    @property
    def key(self) -> str:
        return email_key(self.email)

    def holds(self, wanted: Contact) -> bool:
        """Whether this contact has every field and property `wanted` has, at the same
        value (one it lacks counts as None). Most contacts of a plan are equal: one
        comparison of two tuples, picked out by positions shared by every such pair of
        shapes, instead of a look-up per value."""
        pick = _picks(wanted._shape, self._shape)
        if pick is None:
            return all(
                self.get_field(name) == value for name, value in wanted.fields.items()
            ) and all(self.get_property(name) == value for name, value in wanted.properties.items())
        pick_wanted, pick_held = pick
        return bool(pick_wanted(wanted._values) == pick_held(self._values))

    def replaced(
        self,
        *,
        fields: Mapping[str, Any] = _UNSET,
        properties: Mapping[str, PropertyValue] = _UNSET,
    ) -> Contact:
        """The same contact with other fields or properties."""
        return Contact(
            self.email,
            self.fields if fields is _UNSET else fields,
            self.properties if properties is _UNSET else properties,
            self.opted_in_at,
            self.opted_out_at,
        )

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Contact):
            return NotImplemented
        return (
            self.email == other.email
            and self.opted_in_at == other.opted_in_at
            and self.opted_out_at == other.opted_out_at
            and dict(self.fields.items()) == dict(other.fields.items())
            and dict(self.properties.items()) == dict(other.properties.items())
        )

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return (
            f"Contact(email={self.email!r}, fields={self.fields!r}, "
            f"properties={self.properties!r}, opted_in_at={self.opted_in_at!r}, "
            f"opted_out_at={self.opted_out_at!r})"
        )

    def values(self) -> ContactValues:
        """The whole record, as read."""
        known: dict[ContactField, FieldValue] = {}
        other: dict[str, PropertyValue] = {}
        for name, value in self.fields.items():
            if name in CONTACT_FIELDS:
                known[CONTACT_FIELDS[name]] = value
            else:
                other[name] = value
        properties = dict(self.properties.items())
        return ContactValues(known, properties, self.email, self.opted_out_at, other)

    def record(self) -> dict[str, Any]:
        """`values().to_json()`, built directly: every planned update fingerprints one."""
        shape, values = self._shape, self._values
        record: dict[str, Any] = {"email": self.email}
        fields = len(shape.fields)  # fields come first in values
        record.update(zip(shape.fields, values[:fields], strict=True))
        record["properties"] = dict(zip(shape.properties, values[fields:], strict=True))
        if self.opted_out_at is not None:
            record["opted_out_at"] = self.opted_out_at
        return record


@dataclass(slots=True, unsafe_hash=True)
class Membership:
    """`opted_in_at` and `opted_out_at` as on Contact, for this one list.

    Treat as immutable. Not a frozen dataclass only because a state of a million contacts
    makes millions of them on the fly (`Memberships`), and a frozen one takes six times as
    long to make."""

    list_name: str
    email: str  # identity key (lower case)
    status: SubscriptionStatus = SubscriptionStatus.SUBSCRIBED
    opted_in_at: str | None = None
    opted_out_at: str | None = None

    @property
    def key(self) -> tuple[str, str]:
        return (self.list_name, self.email)

    def values(self) -> MembershipValues:
        """The membership as read (a live one)."""
        return MembershipValues(self.status, self.opted_out_at)

    def wanted(self) -> MembershipValues:
        """What a plan asks of this membership (a desired one): one value per status,
        shared by every change that asks it."""
        return wanted_status(self.status)

    def record(self) -> dict[str, Any]:
        """`values().to_json()`, built directly: every membership update fingerprints one."""
        record = {"status": self.status.value}
        if self.opted_out_at is not None:
            record["opted_out_at"] = self.opted_out_at
        return record


MembershipKey: TypeAlias = tuple[str, str]
_Entry: TypeAlias = "SubscriptionStatus | tuple[SubscriptionStatus, str | None, str | None]"


class Memberships(MutableMapping[MembershipKey, Membership]):
    """A state's memberships by (list name, email key), kept compactly: per list, per
    email key, the status alone, or (status, opted_in_at, opted_out_at) when a time is
    known. A Membership is made when one is asked for. A million contacts on two lists
    each would otherwise keep two million key tuples and Membership objects per state
    (some 400 bytes a contact).

    Iteration goes list by list, each in the order its members were added."""

    __slots__ = ("_lists", "_size")

    def __init__(
        self, items: Mapping[MembershipKey, Membership] | Iterable[Membership] = ()
    ) -> None:
        self._lists: dict[str, dict[str, _Entry]] = {}
        self._size = 0
        for membership in items.values() if isinstance(items, Mapping) else items:
            self.add(membership)

    def add(self, membership: Membership) -> None:
        self.put(
            membership.list_name,
            membership.email,
            membership.status,
            membership.opted_in_at,
            membership.opted_out_at,
        )

    def put(
        self,
        list_name: str,
        email: str,
        status: SubscriptionStatus = SubscriptionStatus.SUBSCRIBED,
        opted_in_at: str | None = None,
        opted_out_at: str | None = None,
    ) -> None:
        """Add or replace one membership, without making a Membership for it."""
        members = self._lists.get(list_name)
        if members is None:
            members = self._lists[list_name] = {}
        size = len(members)
        if opted_in_at is None and opted_out_at is None:
            members[email] = status
        else:
            members[email] = (status, opted_in_at, opted_out_at)
        self._size += len(members) - size

    def put_subscribed(self, list_name: str, emails: Iterable[str]) -> None:
        """`put` of each of `emails`, subscribed with no times (a read of a million)."""
        members = self._lists.get(list_name)
        if members is None:
            members = self._lists[list_name] = {}
        size = len(members)
        members.update(zip(emails, repeat(SubscriptionStatus.SUBSCRIBED)))  # no dict between
        self._size += len(members) - size
        if not members:
            del self._lists[list_name]

    @staticmethod
    def _made(list_name: str, email: str, entry: _Entry) -> Membership:
        if type(entry) is tuple:
            return Membership(list_name, email, *entry)
        return Membership(list_name, email, entry)  # type: ignore[arg-type]

    def __getitem__(self, key: MembershipKey) -> Membership:
        list_name, email = key
        return self._made(list_name, email, self._lists[list_name][email])

    def get(self, key: MembershipKey, default: Any = None) -> Any:
        members = self._lists.get(key[0])
        if members is None:
            return default
        entry = members.get(key[1])
        return default if entry is None else self._made(key[0], key[1], entry)

    def status(self, list_name: str, email: str) -> SubscriptionStatus | None:
        """The status of a membership, or None when there is none (no object made)."""
        members = self._lists.get(list_name)
        entry = None if members is None else members.get(email)
        if entry is None or isinstance(entry, SubscriptionStatus):
            return entry
        return entry[0]

    def __contains__(self, key: object) -> bool:
        if not isinstance(key, tuple) or len(key) != 2:
            return False
        members = self._lists.get(key[0])
        return members is not None and key[1] in members

    def __setitem__(self, key: MembershipKey, membership: Membership) -> None:
        if key != membership.key:
            raise ValueError(f"membership {membership.key} stored under {key}")
        self.add(membership)

    def __delitem__(self, key: MembershipKey) -> None:
        members = self._lists[key[0]]
        del members[key[1]]
        self._size -= 1
        if not members:
            del self._lists[key[0]]

    def __iter__(self) -> Iterator[MembershipKey]:
        for list_name, members in self._lists.items():
            for email in members:
                yield (list_name, email)

    def __len__(self) -> int:
        return self._size

    def items(self) -> ItemsView[MembershipKey, Membership]:
        return _MembershipItems(self)

    def values(self) -> ValuesView[Membership]:
        return _MembershipValues(self)

    def emails(self, list_name: str) -> KeysView[str]:
        """The email keys of one list's members (empty when the list has none)."""
        return self._lists.get(list_name, {}).keys()

    def differing(
        self, other: Memberships
    ) -> Iterator[tuple[str, str, SubscriptionStatus, SubscriptionStatus | None]]:
        """(list name, email key, status here, status in `other` or None when it has no
        such membership) of each membership here whose status `other` does not hold,
        without making one for any (most are equal: one identity check each)."""
        for list_name, members in self._lists.items():
            theirs = other._lists.get(list_name, {})
            for email, entry in members.items():
                there = theirs.get(email)
                if there is entry:  # the same status, with no times
                    continue
                mine = entry[0] if isinstance(entry, tuple) else entry
                if there is None:
                    yield list_name, email, mine, None
                    continue
                status = there[0] if isinstance(there, tuple) else there
                if status != mine:
                    yield list_name, email, mine, status

    def list_names(self) -> KeysView[str]:
        """The lists that have members here."""
        return self._lists.keys()

    def copy(self) -> Memberships:
        copied = Memberships()
        copied._lists = {name: dict(members) for name, members in self._lists.items()}
        copied._size = self._size
        return copied

    def _pairs(self) -> Iterator[tuple[MembershipKey, Membership]]:
        made = self._made
        for list_name, members in self._lists.items():
            for email, entry in members.items():
                yield (list_name, email), made(list_name, email, entry)

    def __repr__(self) -> str:
        return f"Memberships({dict(self._pairs())!r})"


class _MembershipItems(ItemsView[MembershipKey, Membership]):
    _mapping: Memberships

    def __iter__(self) -> Iterator[tuple[MembershipKey, Membership]]:
        return self._mapping._pairs()


class _MembershipValues(ValuesView[Membership]):
    _mapping: Memberships

    def __iter__(self) -> Iterator[Membership]:
        return (membership for _, membership in self._mapping._pairs())


_WANTED = {status: MembershipValues(status) for status in SubscriptionStatus}


def wanted_status(status: SubscriptionStatus) -> MembershipValues:
    """What a plan asks of a membership that should have `status` (one value shared)."""
    return _WANTED[status]


@dataclass(frozen=True)
class ReadScope:
    """What a plan needs read: memberships of these lists, and contact data or not."""

    lists: frozenset[str] = frozenset()
    contact_data: bool = True
    every_list: bool = False  # export: memberships of every live list

    def wants_members(self, list_name: str) -> bool:
        return self.every_list or list_name in self.lists

    def to_json(self) -> dict[str, Any]:
        return {
            "lists": sorted(self.lists),
            "contact_data": self.contact_data,
            "every_list": self.every_list,
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> ReadScope:
        return cls(
            frozenset(data.get("lists", ())),
            bool(data.get("contact_data", True)),
            bool(data.get("every_list", False)),
        )


class ProviderRecords:
    """What a provider's read found besides the neutral model (record ids, versions): the
    provider subclasses it and finds it again in the live state it is asked to apply
    against, so it keeps nothing of its own between read and apply."""


@dataclass(init=False)
class State:
    properties: dict[str, PropertyDef] = field(default_factory=dict)
    lists: dict[str, ContactList] = field(default_factory=dict)
    contacts: dict[str, Contact] = field(default_factory=dict)
    memberships: Memberships = field(default_factory=Memberships)
    provider_records: ProviderRecords | None = None  # live state only

    def __init__(
        self,
        properties: dict[str, PropertyDef] | None = None,
        lists: dict[str, ContactList] | None = None,
        contacts: dict[str, Contact] | None = None,
        memberships: Mapping[MembershipKey, Membership] | None = None,
        provider_records: ProviderRecords | None = None,
    ) -> None:
        self.properties = {} if properties is None else properties
        self.lists = {} if lists is None else lists
        self.contacts = {} if contacts is None else contacts
        if memberships is None:
            memberships = Memberships()
        elif not isinstance(memberships, Memberships):
            memberships = Memberships(memberships)
        self.memberships = memberships
        self.provider_records = provider_records

    def __repr__(self) -> str:
        # Counts only: asyncio.run reprs the main task's result (Python 3.11, on leaving), and
        # a million contacts would take seconds and hundreds of MB to show.
        return (
            f"State({len(self.properties)} properties, {len(self.lists)} lists, "
            f"{len(self.contacts)} contacts, {len(self.memberships)} memberships)"
        )

    def add_contact(self, contact: Contact) -> None:
        self.contacts[contact.key] = contact

    def add_membership(self, membership: Membership) -> None:
        self.memberships[membership.key] = membership


def email_key(email: str) -> str:
    """The identity of an address: trimmed, lower case. An address already in that form is
    its own key (the same string object: a million contacts keep one string each, not two)."""
    key = email.strip().lower()
    return email if key == email else key


def utc_moment(value: object) -> str | None:
    """A provider's timestamp as UTC `YYYY-MM-DDTHH:MM:SSZ`, or None when absent or unreadable
    (an unreadable time counts as unknown, which no opt-in can undo)."""
    if value is None or value == "":
        return None
    try:
        moment = normalize_value(PropertyType.DATETIME, value)
    except ValueTypeError:
        return None
    return moment if isinstance(moment, str) else None


def fingerprint(record: Mapping[str, Any]) -> str:
    """A short stable hash of a record, used to tell whether live state moved."""
    return hashlib.sha256(_CANONICAL.encode(record).encode()).hexdigest()[:16]


# json.dumps(record, sort_keys=True, separators=(",", ":"), default=str), with one encoder
# (json.dumps makes one per call given options: a plan of a million updates makes as many)
_CANONICAL = json.JSONEncoder(sort_keys=True, separators=(",", ":"), default=str)


class ValueTypeError(ValueError):
    """A property value does not fit its declared type."""


def describe(value: object) -> str:
    """What a value is, in the words of whoever wrote it: never a parser's type name."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, date):  # datetime too
        return "a date"
    if isinstance(value, bytes | bytearray):
        return "binary data"
    if isinstance(value, Mapping):
        return "a mapping"
    if isinstance(value, AbstractSet):
        return "a set"
    if isinstance(value, list | tuple):
        return "a list"
    return "a tagged value"


def quote_hint(value: object) -> str:
    """For a number where text was expected: how to keep it as written, when the reader
    changed it (`0123` -> 123, `0x1F` -> 31). YAML readers keep the written form of such
    a number on a subclass of int, with its width when it had leading zeros."""
    if isinstance(value, bool) or not isinstance(value, int) or type(value) is int:
        return ""
    width = getattr(value, "_width", None)
    if isinstance(width, int) and width > len(str(abs(value))):
        return " — quote it to keep leading zeros"
    if width is None:
        return " — quote it to keep it as written"
    return ""


_TRUE_WORDS = {"true", "1", "yes"}
_FALSE_WORDS = {"false", "0", "no", ""}


def normalize_value(kind: PropertyType, value: object) -> PropertyValue:
    """Bring a value to the canonical form of `kind`, or raise ValueTypeError.

    Strict for manifest input (`strict_value`) and lenient for provider answers,
    which often carry numbers and booleans as strings.
    """
    if value is None:
        return None
    if kind is PropertyType.STR:
        if isinstance(value, str):
            return value
        raise ValueTypeError(f"expected a string, got {describe(value)}{quote_hint(value)}")
    if kind is PropertyType.BOOL:
        return _to_bool(value)
    if kind is PropertyType.INT:
        return _to_int(value)
    if kind is PropertyType.FLOAT:
        return _to_float(value)
    return _to_datetime(value)


MAX_TEXT = 10_000  # characters in a name or a string property value
INT_RANGE = (-(2**63), 2**63 - 1)
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")
_SURROGATE = re.compile("[\ud800-\udfff]")


def text_problem(value: str) -> str | None:
    """What makes `value` unfit for a name or a string value, or None."""
    if len(value) > MAX_TEXT:
        return f"is longer than {MAX_TEXT:,} characters"
    if value.isprintable():  # the common case, without a regex (controls are unprintable)
        return None
    found = _CONTROL.search(value)
    if found:
        return f"contains a control character ({found.group()!r})"
    return unencodable(value)


def unencodable(value: str) -> str | None:
    """What makes `value` impossible to send or print, or None: a lone surrogate (JSON's
    "\\ud800" escape, alone), which no UTF-8 text, no provider and no terminal can hold."""
    found = _SURROGATE.search(value)
    if found:
        return f"contains a lone surrogate ({found.group()!r}), which is not a character"
    return None


def strict_value(kind: PropertyType, value: object) -> PropertyValue:
    """Manifest values: no strings standing in for numbers or booleans, nothing that
    cannot be stored (64-bit integers, finite floats, printable text)."""
    if value is None:
        return None
    # Fast paths for a value of exactly its declared type (a million contacts, five values
    # each): the same checks and result as the general path below.
    if type(value) is str and kind is PropertyType.STR:
        problem = text_problem(value)
        if problem:
            raise ValueTypeError(f"the value {problem}")
        return value
    if type(value) is int and kind is PropertyType.INT and INT_RANGE[0] <= value <= INT_RANGE[1]:
        return value
    if type(value) is float and kind is PropertyType.FLOAT and math.isfinite(value):
        return value
    if type(value) is bool and kind is PropertyType.BOOL:
        return value
    if type(value) is str and kind is PropertyType.DATETIME and value.isprintable():
        known = _MOMENTS.get(value)  # read and checked before (printable: no control)
        if known is not None:
            return known
    if not isinstance(value, str | int | float | date):  # a list, a mapping, a tag, ...
        raise ValueTypeError(f"expected {kind.value}, got {describe(value)}")
    if isinstance(value, str):
        problem = text_problem(value)
        if problem:
            raise ValueTypeError(f"the value {problem}")
    if isinstance(value, int) and not INT_RANGE[0] <= value <= INT_RANGE[1]:
        raise ValueTypeError("is out of the 64-bit integer range")
    if isinstance(value, float) and not math.isfinite(value):
        raise ValueTypeError(f"must be a finite number, got {value}")
    if isinstance(value, str) and kind in (PropertyType.INT, PropertyType.FLOAT, PropertyType.BOOL):
        raise ValueTypeError(f"expected {kind.value}, got a string")
    if isinstance(value, bool) and kind in (PropertyType.INT, PropertyType.FLOAT):
        raise ValueTypeError(f"expected {kind.value}, got a boolean")
    if kind is PropertyType.BOOL and not isinstance(value, bool):
        raise ValueTypeError(f"expected bool, got {describe(value)}")
    if kind is PropertyType.FLOAT and isinstance(value, int) and float(value) != value:
        raise ValueTypeError("is an integer a float can't hold exactly; declare it int or str")
    return normalize_value(kind, value)


def _to_bool(value: object) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().lower() in _TRUE_WORDS | _FALSE_WORDS:
        return value.strip().lower() in _TRUE_WORDS
    if isinstance(value, int) and value in (0, 1):
        return bool(value)
    raise ValueTypeError(f"expected bool, got {repr(value)[:60]}")


def _to_int(value: object) -> int:
    if isinstance(value, bool):
        raise ValueTypeError("expected int, got a boolean")
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, str):
        try:
            return int(value.strip())
        except ValueError:
            pass
    raise ValueTypeError(f"expected int, got {repr(value)[:60]}")


def _to_float(value: object) -> float:
    if isinstance(value, bool):
        raise ValueTypeError("expected float, got a boolean")
    if isinstance(value, int | float):
        return float(value)
    if isinstance(value, str):
        try:
            return float(value.strip())
        except ValueError:
            pass
    raise ValueTypeError(f"expected float, got {repr(value)[:60]}")


def _to_datetime(value: object) -> str:
    if isinstance(value, datetime):
        moment = value if value.tzinfo else value.replace(tzinfo=UTC)
    elif isinstance(value, date):
        moment = datetime(value.year, value.month, value.day, tzinfo=UTC)
    elif isinstance(value, str):
        known = _MOMENTS.get(value)
        if known is not None:
            return known
        try:
            moment = datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
        except ValueError as error:
            raise ValueTypeError(
                f"expected an ISO 8601 datetime, got {value[:60]!r} ({error})"
            ) from None
        if moment.tzinfo is None:
            moment = moment.replace(tzinfo=UTC)
    else:
        raise ValueTypeError(f"expected an ISO 8601 datetime, got {describe(value)}")
    try:
        normal = moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    except OverflowError:
        raise ValueTypeError("the datetime is out of range once converted to UTC") from None
    if isinstance(value, str) and len(value) <= 64:
        if len(_MOMENTS) >= _MOMENTS_KEPT:
            _MOMENTS.clear()
        _MOMENTS[value] = normal = sys.intern(normal)
    return normal


# Datetimes as written -> as normalised: audiences repeat a few dates (a renewal, a
# sign-up day) over many contacts, and parsing each again is most of a load's time for them.
_MOMENTS: dict[str, str] = {}
_MOMENTS_KEPT = 100_000
# Read-only: a datetime as written -> as normalised, when it has been read before.
KNOWN_MOMENTS: Mapping[str, str] = _MOMENTS
