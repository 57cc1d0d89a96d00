"""State of the Mailjet emulator: records, indexes, value rules. No HTTP here."""

from __future__ import annotations

import math
import re
import secrets
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Any

DATATYPES = ("str", "int", "float", "bool", "datetime")
NAMESPACES = ("static", "historic")
LIST_ACTIONS = ("addforce", "addnoforce", "remove", "unsub")

_EMAIL = re.compile(r"^[^@\s]+@[^@\s.]+(\.[^@\s.]+)+$")
_INTEGER = re.compile(r"^[+-]?\d+$")

# Distinct ID ranges, so a client that passes one resource's ID for another's
# gets "not found" instead of silently hitting the wrong record.
_FIRST_IDS = {
    "property": 1,
    "list": 1_001,
    "contact": 100_001,
    "membership": 5_000_001,
    "job": 9_000_001,
}


class ApiError(Exception):
    """An error answer: status plus an ErrorMessage (a string, or an object per field)."""

    def __init__(self, status: int, message: str | dict[str, str]) -> None:
        super().__init__(str(message))
        self.status = status
        self.message = message


def not_found() -> ApiError:
    return ApiError(404, "Object not found")


def now_iso() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def is_valid_email(value: str) -> bool:
    return bool(_EMAIL.match(value))


def coerce_value(datatype: str, value: Any) -> Any:
    """Return `value` typed for `datatype` (strings that parse are accepted).

    Raises ValueError when the value does not fit.
    """
    typed = _COERCERS[datatype](value)
    if typed is None:
        raise ValueError(f"{value!r} is not a valid {datatype}")
    return typed


def _as_str(value: Any) -> str | None:
    if isinstance(value, str):
        return value
    if isinstance(value, int | float) and not isinstance(value, bool):
        return str(value)
    return None


def _as_int(value: Any) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, str) and _INTEGER.match(value.strip()):
        return int(value.strip())
    return None


def _as_float(value: Any) -> float | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        number = float(value)
    elif isinstance(value, str):
        try:
            number = float(value.strip())
        except ValueError:
            return None
    else:
        return None
    return number if math.isfinite(number) else None


def _as_bool(value: Any) -> bool | None:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().lower() in ("true", "false"):
        return value.strip().lower() == "true"
    return None


def _as_datetime(value: Any) -> str | None:
    """Normalise to UTC 'YYYY-MM-DDTHH:MM:SSZ', the shape the API answers with."""
    if not isinstance(value, str):
        return None
    try:
        parsed = datetime.fromisoformat(value.strip())
    except ValueError:
        return None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return parsed.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


_COERCERS: dict[str, Any] = {
    "str": _as_str,
    "int": _as_int,
    "float": _as_float,
    "bool": _as_bool,
    "datetime": _as_datetime,
}


@dataclass
class ContactRecord:
    id: int
    email: str
    name: str = ""
    excluded: bool = False
    created_at: str = ""
    last_activity_at: str = ""
    delivered_count: int = 0
    unsubscribed_at: str = ""
    unsubscribed_by: str = ""
    is_opt_in_pending: bool = False
    is_spam_complaining: bool = False
    hidden_from_listing: bool = False
    properties: dict[str, Any] = field(default_factory=dict)

    def set_excluded(self, excluded: bool, stamp: bool) -> None:
        """Exclusion is "equivalent to a global unsubscribe" (the seed); with `stamp`, it
        sets UnsubscribedAt ("Timestamp when the contact unsubscribed") as it happens."""
        if excluded and not self.excluded and stamp:
            self.unsubscribed_at = now_iso()
        self.excluded = excluded

    def to_api(self) -> dict[str, Any]:
        return {
            "CreatedAt": self.created_at,
            "DeliveredCount": self.delivered_count,
            "Email": self.email,
            "ID": self.id,
            "IsExcludedFromCampaigns": self.excluded,
            "IsOptInPending": self.is_opt_in_pending,
            "IsSpamComplaining": self.is_spam_complaining,
            "LastActivityAt": self.last_activity_at,
            "Name": self.name,
            "UnsubscribedAt": self.unsubscribed_at,
            "UnsubscribedBy": self.unsubscribed_by,
        }


@dataclass
class PropertyRecord:
    id: int
    name: str
    datatype: str
    namespace: str = "static"

    def to_api(self) -> dict[str, Any]:
        return {
            "Datatype": self.datatype,
            "ID": self.id,
            "Name": self.name,
            "NameSpace": self.namespace,
        }


@dataclass
class ListRecord:
    id: int
    name: str
    address: str
    is_deleted: bool = False
    created_at: str = ""


@dataclass
class MembershipRecord:
    id: int
    contact_id: int
    list_id: int
    is_unsubscribed: bool = False
    subscribed_at: str = ""
    unsubscribed_at: str = ""


@dataclass
class JobRecord:
    """A managemanycontacts job; its effects apply only when it completes."""

    id: int
    contacts: list[dict[str, Any]]
    contacts_lists: list[dict[str, Any]]
    job_start: str
    polls: int = 0
    status: str = "Allocated"
    error: str = ""
    job_end: str = ""
    # [email, error] for each contact that failed
    failures: list[list[str]] = field(default_factory=list)


@dataclass
class MailjetState:
    contacts: dict[int, ContactRecord] = field(default_factory=dict)
    properties: dict[int, PropertyRecord] = field(default_factory=dict)
    lists: dict[int, ListRecord] = field(default_factory=dict)
    memberships: dict[int, MembershipRecord] = field(default_factory=dict)
    jobs: dict[int, JobRecord] = field(default_factory=dict)
    next_ids: dict[str, int] = field(default_factory=lambda: dict(_FIRST_IDS))
    _by_email: dict[str, int] = field(default_factory=dict, repr=False)
    _by_pair: dict[tuple[int, int], int] = field(default_factory=dict, repr=False)

    # ---- ids and lookups -------------------------------------------------

    def new_id(self, kind: str) -> int:
        value = self.next_ids[kind]
        self.next_ids[kind] = value + 1
        return value

    def contact_by_email(self, email: str) -> ContactRecord | None:
        contact_id = self._by_email.get(email.lower())
        return None if contact_id is None else self.contacts[contact_id]

    def contact_by_ref(self, ref: str) -> ContactRecord | None:
        """Look a contact up by numeric ID or by email address."""
        if ref.isdigit():
            return self.contacts.get(int(ref))
        return self.contact_by_email(ref)

    def property_by_name(self, name: str) -> PropertyRecord | None:
        return next((p for p in self.properties.values() if p.name == name), None)

    def list_by_name(self, name: str) -> ListRecord | None:
        return next((lst for lst in self.lists.values() if lst.name == name), None)

    def membership_of(self, contact_id: int, list_id: int) -> MembershipRecord | None:
        membership_id = self._by_pair.get((contact_id, list_id))
        return None if membership_id is None else self.memberships[membership_id]

    # ---- contacts --------------------------------------------------------

    def add_contact(self, email: str, name: str = "", excluded: bool = False) -> ContactRecord:
        created = now_iso()
        contact = ContactRecord(
            id=self.new_id("contact"),
            email=email,
            name=name,
            excluded=excluded,
            created_at=created,
            last_activity_at=created,
            unsubscribed_at=created if excluded else "",
        )
        self.contacts[contact.id] = contact
        self._by_email[email.lower()] = contact.id
        return contact

    def delete_contact(self, contact_id: int) -> None:
        contact = self.contacts.pop(contact_id)
        self._by_email.pop(contact.email.lower(), None)
        for list_id in self.lists:
            membership = self.membership_of(contact_id, list_id)
            if membership is not None:
                self.delete_membership(membership.id)

    # ---- properties ------------------------------------------------------

    def add_property(self, name: str, datatype: str, namespace: str = "static") -> PropertyRecord:
        record = PropertyRecord(self.new_id("property"), name, datatype, namespace)
        self.properties[record.id] = record
        return record

    def rename_property(self, record: PropertyRecord, new_name: str) -> None:
        for contact in self.contacts.values():
            if record.name in contact.properties:
                contact.properties[new_name] = contact.properties.pop(record.name)
        record.name = new_name

    def delete_property(self, property_id: int) -> None:
        record = self.properties.pop(property_id)
        for contact in self.contacts.values():
            contact.properties.pop(record.name, None)

    def contact_data_api(self, contact: ContactRecord) -> dict[str, Any]:
        ordered = sorted(self.properties.values(), key=lambda p: p.id)
        data = [
            {"Name": p.name, "Value": contact.properties[p.name]}
            for p in ordered
            if p.name in contact.properties
        ]
        return {"ContactID": contact.id, "Data": data, "ID": contact.id}

    # ---- lists and memberships -------------------------------------------

    def add_list(self, name: str, is_deleted: bool = False) -> ListRecord:
        record = ListRecord(
            id=self.new_id("list"),
            name=name,
            address=secrets.token_hex(5),
            is_deleted=is_deleted,
            created_at=now_iso(),
        )
        self.lists[record.id] = record
        return record

    def delete_list(self, list_id: int) -> None:
        for membership in [m for m in self.memberships.values() if m.list_id == list_id]:
            self.delete_membership(membership.id)
        del self.lists[list_id]

    def subscriber_count(self, list_id: int) -> int:
        return sum(
            1 for m in self.memberships.values() if m.list_id == list_id and not m.is_unsubscribed
        )

    def list_api(self, record: ListRecord) -> dict[str, Any]:
        return {
            "Address": record.address,
            "CreatedAt": record.created_at,
            "ID": record.id,
            "IsDeleted": record.is_deleted,
            "Name": record.name,
            "SubscriberCount": self.subscriber_count(record.id),
        }

    def add_membership(
        self, contact_id: int, list_id: int, unsubscribed: bool = False
    ) -> MembershipRecord:
        now = now_iso()
        membership = MembershipRecord(
            id=self.new_id("membership"),
            contact_id=contact_id,
            list_id=list_id,
            is_unsubscribed=unsubscribed,
            subscribed_at=now,
            unsubscribed_at=now if unsubscribed else "",
        )
        self.memberships[membership.id] = membership
        self._by_pair[(contact_id, list_id)] = membership.id
        return membership

    def delete_membership(self, membership_id: int) -> None:
        membership = self.memberships.pop(membership_id)
        self._by_pair.pop((membership.contact_id, membership.list_id), None)

    @staticmethod
    def set_unsubscribed(membership: MembershipRecord, unsubscribed: bool) -> None:
        if membership.is_unsubscribed == unsubscribed:
            return
        membership.is_unsubscribed = unsubscribed
        if unsubscribed:
            membership.unsubscribed_at = now_iso()
        else:
            membership.subscribed_at = now_iso()
            membership.unsubscribed_at = ""

    def apply_list_action(self, contact_id: int, list_id: int, action: str) -> None:
        """One managecontactslists / managemanycontacts action on one membership."""
        membership = self.membership_of(contact_id, list_id)
        if action == "remove":
            if membership is not None:
                self.delete_membership(membership.id)
            return
        if membership is None:
            self.add_membership(contact_id, list_id, unsubscribed=action == "unsub")
        elif action == "addforce":
            self.set_unsubscribed(membership, False)
        elif action == "unsub":
            self.set_unsubscribed(membership, True)
        # addnoforce leaves an existing member as it is

    def membership_api(self, membership: MembershipRecord) -> dict[str, Any]:
        return {
            "ContactID": membership.contact_id,
            "ID": membership.id,
            "IsActive": not membership.is_unsubscribed,
            "IsUnsubscribed": membership.is_unsubscribed,
            "ListID": membership.list_id,
            "ListName": self.lists[membership.list_id].name,
            "SubscribedAt": membership.subscribed_at,
            "UnsubscribedAt": membership.unsubscribed_at,
        }

    # ---- persistence -----------------------------------------------------

    def dump(self) -> dict[str, Any]:
        return {
            "contacts": [asdict(c) for c in self.contacts.values()],
            "properties": [asdict(p) for p in self.properties.values()],
            "lists": [asdict(lst) for lst in self.lists.values()],
            "memberships": [asdict(m) for m in self.memberships.values()],
            "jobs": [asdict(j) for j in self.jobs.values()],
            "next_ids": dict(self.next_ids),
        }

    @classmethod
    def load(cls, data: dict[str, Any]) -> MailjetState:
        state = cls()
        state.next_ids.update(data.get("next_ids", {}))

        # IDs only grow, so insertion order is ID order; keep it that way on load.
        def by_id(kind: str) -> list[dict[str, Any]]:
            return sorted(data.get(kind, []), key=lambda item: int(item["id"]))

        for item in by_id("properties"):
            state.properties[item["id"]] = PropertyRecord(**item)
        for item in by_id("lists"):
            state.lists[item["id"]] = ListRecord(**item)
        for item in by_id("contacts"):
            contact = ContactRecord(**item)
            state.contacts[contact.id] = contact
            state._by_email[contact.email.lower()] = contact.id
        for item in by_id("memberships"):
            membership = MembershipRecord(**item)
            state.memberships[membership.id] = membership
            state._by_pair[(membership.contact_id, membership.list_id)] = membership.id
        for item in by_id("jobs"):
            state.jobs[item["id"]] = JobRecord(**item)
        return state
