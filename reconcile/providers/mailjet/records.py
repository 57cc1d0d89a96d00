"""Mailjet records <-> neutral model. Every field read is type-checked: a misread answer
raises instead of becoming a write."""

from __future__ import annotations

import sys
from collections.abc import Mapping
from types import MappingProxyType
from typing import Any, TypeVar

from reconcile.errors import ApiError
from reconcile.model import (
    EXCLUDED,
    KNOWN_MOMENTS,
    NAME,
    Contact,
    ContactField,
    FieldValue,
    Namespace,
    PropertyDef,
    PropertyType,
    PropertyValue,
    ValueTypeError,
    normalize_value,
    utc_moment,
)

T = TypeVar("T")


def field(record: Any, name: str, kind: type[T], source: str) -> T:
    # `type is dict` first: the ABC check alone is a second a million records
    if type(record) is not dict and not isinstance(record, Mapping):
        raise ApiError(
            f"expected an object in the answer, got {type(record).__name__}", path=source
        )
    value = record.get(name)
    if kind is int and isinstance(value, bool):
        value = None  # a bool is not an ID
    if not isinstance(value, kind):
        raise ApiError(
            f"answer has {name}={value!r}, expected {kind.__name__}; "
            "nothing was changed based on it",
            path=source,
        )
    return value


def optional_str(record: Mapping[str, Any], name: str) -> str:
    value = record.get(name)
    return value if isinstance(value, str) else ""


def property_def(record: Any) -> PropertyDef:
    source = "/contactmetadata"
    name = field(record, "Name", str, source)
    datatype = field(record, "Datatype", str, source)
    namespace = optional_str(record, "NameSpace") or Namespace.STATIC.value
    try:
        return PropertyDef(name, PropertyType(datatype), Namespace(namespace))
    except ValueError:
        raise ApiError(
            f"property {name!r} has Datatype {datatype!r} / NameSpace {namespace!r}, "
            "which reconcile does not know",
            path=source,
        ) from None


def identified_property(record: Any) -> tuple[int, PropertyDef]:
    return field(record, "ID", int, "/contactmetadata"), property_def(record)


def identified_list(record: Any) -> tuple[int, str, bool]:
    """A /contactslist record -> (ID, Name, IsDeleted)."""
    source = "/contactslist"
    return (
        field(record, "ID", int, source),
        field(record, "Name", str, source),
        (record.get("IsDeleted") is True),
    )


# A read's record of one contact: ID, Email, Name, IsExcludedFromCampaigns and when they
# opted out; made a Contact once its data has joined it (not a Contact made twice).
ContactRow = tuple[int, str, str, bool, str | None]
_NO_PROPERTIES: Mapping[str, PropertyValue] = MappingProxyType({})


def contact(record: Any) -> Contact:
    return _contact(*_checked_contact(record))


def contact_row(record: Any) -> ContactRow:
    if type(record) is dict and record.get("IsExcludedFromCampaigns", False) is False:
        # The common record, checked without the general calls: a million of them.
        contact_id, email, name = record.get("ID"), record.get("Email"), record.get("Name")
        if type(contact_id) is int and type(email) is str and type(name) is str:
            return contact_id, email, name, False, None
    return (field(record, "ID", int, "/contact"), *_checked_contact(record))


def contact_of(row: ContactRow, data: DataRow | None = None) -> Contact:
    """The contact of a /contact row, with its /contactdata row's properties if any."""
    _, email, name, excluded, opted_out_at = row
    names, values = (data[1], data[2]) if data is not None else ((), ())
    return Contact.in_order(email, _FIELDS, names, (name, excluded, *values), opted_out_at)


_FIELDS = (NAME, EXCLUDED)  # a /contact row's fields, in the order of its values


def identified_contact(record: Any) -> tuple[int, Contact]:
    row = contact_row(record)
    return row[0], contact_of(row)


def _contact(
    email: str,
    name: str,
    excluded: bool,
    opted_out_at: str | None,
    properties: Mapping[str, PropertyValue] = _NO_PROPERTIES,
) -> Contact:
    return Contact(email, {NAME: name, EXCLUDED: excluded}, properties, opted_out_at=opted_out_at)


def _checked_contact(record: Any) -> tuple[str, str, bool, str | None]:
    """Email, Name, IsExcludedFromCampaigns and when they opted out of everything, if
    the account says (a re-inclusion needs an opt-in recorded after it; an unknown time
    can't be undone). Name and IsExcludedFromCampaigns are checked too: every PUT sends
    both back, so a misread one would overwrite the live value."""
    source = "/contact"
    email = field(record, "Email", str, source)
    excluded = record.get("IsExcludedFromCampaigns", False)
    if not isinstance(excluded, bool):
        raise ApiError(
            f"contact {email} has IsExcludedFromCampaigns={excluded!r}, expected a boolean; "
            "nothing was changed based on it",
            path=source,
        )
    if "Name" not in record:
        raise ApiError(f"contact {email} has no Name; nothing was changed based on it", path=source)
    name = record["Name"]
    if name is not None and not isinstance(name, str):
        raise ApiError(
            f"contact {email} has Name={name!r}, expected a string; "
            "nothing was changed based on it",
            path=source,
        )
    opted_out_at = utc_moment(record.get("UnsubscribedAt")) if excluded else None
    return email, name or "", excluded, opted_out_at


def stamped_contact(record: Any) -> tuple[int, Contact, str | None]:
    """A /contact record with its UnsubscribedAt whether or not it is excluded now: a
    stamp that changes between two reads means an opt-out happened in between."""
    contact_id, found = identified_contact(record)
    return contact_id, found, utc_moment(record.get("UnsubscribedAt"))


def recipient(record: Any) -> tuple[int, bool, str | None]:
    """A /listrecipient record -> (ContactID, IsUnsubscribed, UnsubscribedAt when
    unsubscribed). A misread IsUnsubscribed would take someone who left for a member
    (and an exact list would remove them)."""
    source = "/listrecipient"
    unsubscribed = field(record, "IsUnsubscribed", bool, source)
    when = utc_moment(record.get("UnsubscribedAt")) if unsubscribed else None
    return field(record, "ContactID", int, source), unsubscribed, when


def member(record: Any) -> int | tuple[int, str | None]:
    """`recipient` as a read of every member keeps it: the ContactID alone when subscribed
    (a tuple each would cost a read of two million members some 130 MB), else with when
    they unsubscribed."""
    if type(record) is dict and record.get("IsUnsubscribed") is False:
        contact_id = record.get("ContactID")
        if type(contact_id) is int:  # the common member, checked without `field` calls
            return contact_id
    contact_id, unsubscribed, when = recipient(record)
    return (contact_id, when) if unsubscribed else contact_id


# A read's record of one contact's data: ContactID, then the property names (each once;
# one tuple shared by every record with the same ones) and their values. A dict per record held
# until the contacts join (a read of a million) would cost some 150 bytes more each.
DataRow = tuple[int, tuple[str, ...], tuple[PropertyValue, ...]]
_NAME_SETS: dict[tuple[str, ...], tuple[str, ...]] = {}
_MOST_NAME_SETS = 4096  # past this many kinds, a record keeps its own (memory stays bounded)


def contact_values(record: Any, definitions: Mapping[str, PropertyDef]) -> DataRow:
    """A /contactdata record -> (ContactID, names, canonical values)."""
    source = "/contactdata"
    # A dict with an int ContactID and a Data list, as nearly every record is, checked
    # without `field` calls (eight hundred thousand records at a million contacts).
    contact_id = record.get("ContactID") if type(record) is dict else None
    if type(contact_id) is not int:
        contact_id = field(record, "ContactID", int, source)
    items = record.get("Data")
    if type(items) is not list:
        items = field(record, "Data", list, source)
    names: list[str] = []
    values: list[PropertyValue] = []
    for item in items:
        # The common item, a dict with a string Name and a value of its declared type (a
        # million records, five items each), without the general checks' calls.
        name = item.get("Name") if type(item) is dict else None
        if type(name) is not str:
            name = field(item, "Name", str, source)
        definition = definitions.get(name)
        raw: Any = item.get("Value")  # Any, and its type apart: no cast() call each
        of_type = type(raw)
        if definition is not None and of_type is _SAME_TYPE.get(definition.type):
            value: PropertyValue = raw
        elif (
            of_type is str
            and definition is not None
            and definition.type is PropertyType.DATETIME
            and raw in KNOWN_MOMENTS
        ):
            value = KNOWN_MOMENTS[raw]  # a time read before (a renewal date, repeated)
        else:
            value = _canonical(raw, definition)
        # The definition's name and interned short strings: one object per distinct
        # value, not one per contact (tens of MB at 100k contacts).
        if type(value) is str and len(value) <= 64:
            value = sys.intern(value)
        names.append(definition.name if definition else name)
        values.append(value)
    kind = tuple(names)
    shared = _NAME_SETS.get(kind)
    if shared is None:
        if len(set(kind)) < len(kind):  # a name twice: its last value, as a dict keeps it
            unique = dict(zip(kind, values, strict=True))
            kind, values = tuple(unique), list(unique.values())
        if len(_NAME_SETS) < _MOST_NAME_SETS:
            shared = _NAME_SETS[kind] = kind
    return contact_id, shared or kind, tuple(values)


# A value of exactly this type is canonical for its declared type as it is (the checks
# of `normalize_value` would return it unchanged): a string, not "", for STR included.
_SAME_TYPE: dict[PropertyType, type] = {
    PropertyType.STR: str,
    PropertyType.INT: int,
    PropertyType.FLOAT: float,
    PropertyType.BOOL: bool,
}


def _canonical(raw: Any, definition: PropertyDef | None) -> PropertyValue:
    if raw == "" and definition is not None and definition.type is not PropertyType.STR:
        return None  # Mailjet shows an unset typed property as an empty string
    if definition is None:
        return raw if isinstance(raw, str | int | float | bool) else None
    try:
        return normalize_value(definition.type, raw)
    except ValueTypeError:
        return str(raw)  # keep what is there; the diff will show it differs


def editable_fields(
    current: Mapping[str, Any], managed: Mapping[ContactField, FieldValue]
) -> dict[str, Any]:
    """The body of PUT /contact: every editable field, because PUT replaces them all (the
    managed ones as planned, the others as they are live)."""
    name = managed[NAME] if NAME in managed else current.get(NAME, "")
    excluded = managed[EXCLUDED] if EXCLUDED in managed else current.get(EXCLUDED)
    return {"Name": name, "IsExcludedFromCampaigns": bool(excluded)}


def creation_body(email: str, managed: Mapping[ContactField, FieldValue]) -> dict[str, Any]:
    body: dict[str, Any] = {"Email": email}
    if NAME in managed:
        body["Name"] = managed[NAME]
    # Only true is sent: false is a new contact's default, and on a contact someone created
    # meanwhile (the write becomes an update) it would re-include them without consent.
    if managed.get(EXCLUDED) is True:
        body["IsExcludedFromCampaigns"] = True
    return body


def data_body(values: Mapping[str, PropertyValue]) -> dict[str, Any]:
    return {"Data": [{"Name": name, "Value": value} for name, value in values.items()]}
