"""Mailchimp audience members, merge fields and tags <-> the neutral model, and the
request bodies built from it. Every field read is type-checked: a misread answer raises
instead of becoming a write."""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from reconcile.errors import ApiError
from reconcile.model import (
    EXCLUDED,
    Contact,
    PropertyType,
    PropertyValue,
    ValueTypeError,
    email_key,
    normalize_value,
    utc_moment,
)

SUBSCRIBED = "subscribed"
UNSUBSCRIBED = "unsubscribed"
CLEANED = "cleaned"
PENDING = "pending"
TRANSACTIONAL = "transactional"
ARCHIVED = "archived"
STATUSES = frozenset({SUBSCRIBED, UNSUBSCRIBED, CLEANED, PENDING, TRANSACTIONAL, ARCHIVED})
UNDECIDED = frozenset({PENDING, TRANSACTIONAL})  # no excluded_from_campaigns either way
# A live-only contact field: Mailchimp's own status, for review() and plan freshness. The
# diff never compares it (no manifest has it) and export does not write it.
STATUS = "status"

MAX_TAG_LENGTH = 10
MERGE_TAG = re.compile(r"[A-Z][A-Z0-9_]{0,9}")
# Types whose values are text; `address` values are objects the model can't hold.
TEXT_TYPES = frozenset({"text", "phone", "url", "imageurl", "zip", "radio", "dropdown", "birthday"})
NUMBER, DATE = "number", "date"
CREATED_TYPES = {
    PropertyType.STR: "text",
    PropertyType.INT: NUMBER,
    PropertyType.FLOAT: NUMBER,
    PropertyType.DATETIME: DATE,
}
_DATE_FORMATS = {"MM/DD/YYYY": "%m/%d/%Y", "DD/MM/YYYY": "%d/%m/%Y"}


def subscriber_hash(email: str) -> str:
    """The member's id in every path: MD5 of the trimmed, lower-cased address. A hash of
    anything else would make a PUT rename the member it names."""
    return hashlib.md5(email_key(email).encode(), usedforsecurity=False).hexdigest()


def tag_problem(name: str) -> str | None:
    """Why `name` can't be a merge tag (the reference's rules), or None."""
    if MERGE_TAG.fullmatch(name):
        return None
    if len(name) > MAX_TAG_LENGTH:
        return f"is longer than {MAX_TAG_LENGTH} characters, Mailchimp's limit for a merge tag"
    closest = re.sub(r"[^A-Z0-9_]", "_", name.upper())
    fix = f" (rename it {closest})" if MERGE_TAG.fullmatch(closest) else ""
    return (
        "is not a Mailchimp merge tag: upper-case letters, digits and _, starting with a "
        f"letter{fix}"
    )


@dataclass(frozen=True)
class MergeField:
    merge_id: int
    tag: str
    name: str
    type: str
    required: bool
    date_format: str = ""

    @property
    def property_type(self) -> PropertyType | None:
        """How the model holds this field's values; None for an address (an object)."""
        if self.type == NUMBER:
            return PropertyType.FLOAT
        if self.type == DATE:
            return PropertyType.DATETIME
        if self.type in TEXT_TYPES:
            return PropertyType.STR
        return None

    def model_value(self, raw: Any, email: str) -> PropertyValue:
        """A member's value of this field as the model holds it ("" is no value)."""
        if raw == "" or raw is None:
            return None
        if self.type == NUMBER:
            if isinstance(raw, int | float) and not isinstance(raw, bool):
                return raw
            return _number_text(raw, self.tag, email)
        if self.type == DATE:
            return self._date(raw, email)
        if isinstance(raw, str):
            return raw
        return json.dumps(raw, sort_keys=True)  # shown, never written back

    def _date(self, raw: Any, email: str) -> str:
        if not isinstance(raw, str):
            raise misread(f"member {email} has {self.tag}={raw!r}, expected a date")
        try:
            value = normalize_value(PropertyType.DATETIME, raw)
        except ValueTypeError:
            layout = _DATE_FORMATS.get(self.date_format.upper())
            try:
                day = datetime.strptime(raw, layout or "%Y-%m-%d").replace(tzinfo=UTC)
            except ValueError:
                raise misread(f"member {email} has {self.tag}={raw!r}, not a date") from None
            return day.strftime("%Y-%m-%dT00:00:00Z")
        return str(value)


def _number_text(raw: Any, tag: str, email: str) -> PropertyValue:
    if isinstance(raw, str):
        try:
            number = float(raw)
        except ValueError:
            pass
        else:
            return int(number) if number.is_integer() and "." not in raw else number
    raise misread(f"member {email} has {tag}={raw!r}, expected a number")


def merge_field(record: Any) -> MergeField:
    if not isinstance(record, Mapping):
        raise misread(f"expected a merge field object, got {type(record).__name__}")
    merge_id = record.get("merge_id")
    tag = record.get("tag")
    kind = record.get("type")
    if not isinstance(merge_id, int) or not isinstance(tag, str) or not isinstance(kind, str):
        raise misread(f"merge field {record!r} has no integer merge_id, tag and type")
    options = record.get("options")
    date_format = options.get("date_format") if isinstance(options, Mapping) else None
    name = record.get("name")
    return MergeField(
        merge_id,
        tag,
        name if isinstance(name, str) else tag,
        kind,
        record.get("required") is True,
        date_format if isinstance(date_format, str) else "",
    )


@dataclass(frozen=True)
class Segment:
    id: int
    name: str


def segment(record: Any) -> Segment:
    if not isinstance(record, Mapping):
        raise misread(f"expected a segment object, got {type(record).__name__}")
    segment_id, name = record.get("id"), record.get("name")
    if not isinstance(segment_id, int) or isinstance(segment_id, bool):
        raise misread(f"segment {record!r} has no integer id")
    if not isinstance(name, str):
        raise misread(f"segment {segment_id} has no name")
    return Segment(segment_id, name)


@dataclass(frozen=True, slots=True)
class Member:
    email: str
    status: str
    merge_fields: Mapping[str, Any]  # raw, as read: sent back whole when it is rewritten
    tags: frozenset[str]
    tags_count: int
    last_changed: str | None  # UTC

    @property
    def key(self) -> str:
        return email_key(self.email)

    @property
    def hash(self) -> str:
        return subscriber_hash(self.email)

    @property
    def all_tags_read(self) -> bool:
        """A member object holds at most 50 tags; the rest are read from its tags route."""
        return len(self.tags) >= self.tags_count

    def contact(self, fields: Mapping[str, MergeField]) -> Contact:
        values = {
            tag: definition.model_value(self.merge_fields.get(tag, ""), self.email)
            for tag, definition in fields.items()
            if definition.property_type is not None
        }
        excluded = self.status != SUBSCRIBED
        # No unsubscribe time: the last change of the record is the latest the opt-out can
        # have happened, so an opt-in older than any change since never brings them back.
        opted_out_at = self.last_changed if excluded else None
        record_fields: dict[str, Any] = {STATUS: self.status}
        if self.status not in UNDECIDED:
            record_fields[EXCLUDED.value] = excluded
        # Pending (a double opt-in not confirmed yet) and transactional (never asked for
        # marketing) are no opt-out to keep: an export that declared them excluded would
        # unsubscribe them the day they confirm. Neither receives campaigns meanwhile.
        return Contact(self.email, record_fields, values, opted_out_at=opted_out_at)


def member(record: Any) -> Member:
    if not isinstance(record, Mapping):
        raise misread(f"expected a member object, got {type(record).__name__}")
    email = record.get("email_address")
    status = record.get("status")
    if not isinstance(email, str) or not email:
        raise misread(f"member {record.get('id')!r} has no email_address")
    if status not in STATUSES:
        raise misread(f"member {email} has status {status!r}, which reconcile does not know")
    values = record.get("merge_fields") or {}
    if not isinstance(values, Mapping):
        raise misread(f"member {email} has merge_fields={values!r}, expected an object")
    tags = record.get("tags") or []
    if not isinstance(tags, list):
        raise misread(f"member {email} has tags={tags!r}, expected a list")
    names = frozenset(tag_name(tag, email) for tag in tags)
    count = record.get("tags_count", len(names))
    if not isinstance(count, int) or isinstance(count, bool):
        raise misread(f"member {email} has tags_count={count!r}, expected an integer")
    return Member(
        email, str(status), dict(values), names, count, utc_moment(record.get("last_changed"))
    )


def tag_name(tag: Any, email: str) -> str:
    name = tag.get("name") if isinstance(tag, Mapping) else None
    if not isinstance(name, str):
        raise misread(f"member {email} has a tag without a name: {tag!r}")
    return name


def misread(message: str) -> ApiError:
    return ApiError(f"{message}; nothing was changed based on it")


# ---- tag names ------------------------------------------------------------------------


def tag_key(name: str) -> str:
    """Mailchimp compares tag names without case (and may change their case)."""
    return name.casefold()


class TagNames:
    """Live tag names as the manifest spells them: a tag matching a declared list without
    case is that list; any other keeps its live spelling."""

    def __init__(self, declared: Iterable[str]) -> None:
        # Two spellings of one tag (a declared list, a prune scope list in other case):
        # the same one every read, so a saved plan is applied as it was planned.
        self._declared: dict[str, str] = {}
        for name in sorted(declared, reverse=True):
            self._declared[tag_key(name)] = name

    def __call__(self, live_name: str) -> str:
        return self._declared.get(tag_key(live_name), live_name)


# ---- request bodies -------------------------------------------------------------------


def write_value(definition: MergeField | None, value: PropertyValue) -> Any:
    """A model value as a member write sends it: "" clears (never null), a date as
    YYYY-MM-DD (the manifest's datetimes on a date field are midnight UTC, checked
    offline)."""
    if value is None:
        return ""
    if definition is not None and definition.type == DATE and isinstance(value, str):
        return value[:10]
    return value


def member_values(
    fields: Mapping[str, MergeField], base: Mapping[str, Any], wanted: Mapping[str, PropertyValue]
) -> dict[str, Any]:
    """Every merge field of a member: `base` (as read, written back whole, so a write that
    replaces them keeps the unmanaged ones) with the `wanted` values over it."""
    values = {tag: raw for tag, raw in base.items() if tag in fields}
    for tag, value in wanted.items():
        definition = fields.get(tag)
        if definition is None:  # Mailchimp would drop the value without a word
            raise ApiError(
                f"merge field {tag} is not in the audience (deleted since the plan?); "
                "nothing was written for this member; run plan again"
            )
        values[tag] = write_value(definition, value)
    return values
