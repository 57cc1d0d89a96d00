"""Postbox records <-> reconcile's neutral model, and the record ids that travel in the
live state. Every field read is type-checked: a misread answer is an error naming the
request, never a write based on a guess."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from reconcile.errors import ApiError
from reconcile.model import (
    EXCLUDED,
    NAME,
    Contact,
    ContactList,
    Membership,
    PropertyDef,
    PropertyType,
    PropertyValue,
    ProviderRecords,
    SubscriptionStatus,
    ValueTypeError,
    email_key,
    normalize_value,
    utc_moment,
)


@dataclass(frozen=True)
class Versioned:
    """A record's id and the version it was read at (a conditional write names it)."""

    id: str
    version: int


@dataclass
class PostboxRecords(ProviderRecords):
    """What `read` found besides the neutral model, kept in `State.provider_records`:
    `apply(changes, live)` finds every id here, so the provider keeps nothing between the
    two (a saved plan's apply re-reads and gets a fresh one)."""

    properties: dict[str, str] = field(default_factory=dict)  # name -> id
    lists: dict[str, str] = field(default_factory=dict)  # name -> id
    contacts: dict[str, Versioned] = field(default_factory=dict)  # email key -> record
    members: dict[tuple[str, str], Versioned] = field(default_factory=dict)  # (list, key)


class Misread(ApiError):
    """An answer that does not have the shape the API promises. `where` names the request
    (`GET /v1/contacts`); after a write, the write itself was made."""

    def __init__(self, problem: str, where: str) -> None:
        method, _, path = where.partition(" ")
        then = (
            "nothing was changed based on it"
            if method == "GET"
            else "the write was made, but its answer can't be used; run plan to see"
        )
        super().__init__(f"{problem}; {then}", method=method, path=path)


def _field(record: Any, name: str, kind: type | tuple[type, ...], where: str) -> Any:
    if not isinstance(record, Mapping):
        raise Misread(f"expected an object, got {type(record).__name__}", where)
    value = record.get(name)
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        raise Misread(f"{name}={value!r} is not what the API promises", where)
    return value


def _optional_str(record: Mapping[str, Any], name: str, where: str) -> str | None:
    value = record.get(name)
    if value is not None and not isinstance(value, str):
        raise Misread(f"{name}={value!r} is not a string or null", where)
    return value


def property_def(record: Any) -> tuple[PropertyDef, str]:
    where = "GET /v1/properties"
    kind = _field(record, "type", str, where)
    try:
        parsed = PropertyType(kind)
    except ValueError:
        raise Misread(f"property type {kind!r} is not one reconcile knows", where) from None
    return PropertyDef(_field(record, "name", str, where), parsed), _field(record, "id", str, where)


def contact_list(record: Any) -> tuple[ContactList, str]:
    where = "GET /v1/lists"
    return ContactList(_field(record, "name", str, where)), _field(record, "id", str, where)


def contact(record: Any, types: Mapping[str, PropertyType]) -> tuple[Contact, Versioned]:
    """A contact as the neutral model holds it: name, exclusion (with when), values typed
    by their definitions."""
    where = "GET /v1/contacts"
    email = _field(record, "email", str, where)
    excluded = _field(record, "excluded_from_campaigns", bool, where)
    values = _field(record, "properties", dict, where)
    properties: dict[str, PropertyValue] = {}
    for name, raw in values.items():
        kind = types.get(name)
        if kind is None:
            continue  # defined after the definitions were read: not managed by this plan
        try:
            properties[name] = normalize_value(kind, raw)
        except ValueTypeError as error:
            raise Misread(f"{email}: properties.{name}: {error}", where) from None
    fields: dict[str, Any] = {NAME: _field(record, "name", str, where), EXCLUDED: excluded}
    opted_out = utc_moment(_optional_str(record, "excluded_at", where)) if excluded else None
    found = Contact(email, fields, properties, opted_out_at=opted_out)
    return found, versioned(record, where)


def membership(record: Any, list_name: str) -> tuple[Membership, Versioned]:
    where = "GET /v1/lists/{id}/members"
    email = _field(record, "email", str, where)
    status_text = _field(record, "status", str, where)
    try:
        status = SubscriptionStatus(status_text)
    except ValueError:
        raise Misread(
            f"{email}: status {status_text!r} is not one reconcile knows", where
        ) from None
    unsubscribed = status is SubscriptionStatus.UNSUBSCRIBED
    opted_out = (
        utc_moment(_optional_str(record, "unsubscribed_at", where)) if unsubscribed else None
    )
    found = Membership(list_name, email_key(email), status, opted_out_at=opted_out)
    member = Versioned(
        _field(record, "contact_id", str, where), _field(record, "version", int, where)
    )
    return found, member


def versioned(record: Any, where: str) -> Versioned:
    """The id and version of a record (an answer to a write, or an item of a listing)."""
    return Versioned(_field(record, "id", str, where), _field(record, "version", int, where))
