"""MailJawn subscribers <-> neutral model. Every field read is type-checked: a misread
answer raises instead of becoming a write."""

from __future__ import annotations

import dataclasses
import json
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from reconcile.errors import ApiError
from reconcile.model import (
    EXCLUDED,
    NAME,
    Contact,
    ContactValues,
    PropertyValue,
    email_key,
    utc_moment,
)

SUBSCRIBERS = "/subscribers/"
ACTIVE = "active"
UNSUBSCRIBED = "unsubscribed"
STATUSES = frozenset({ACTIVE, UNSUBSCRIBED, "bounced", "complained"})
PROTECTED_STATUSES = frozenset({"bounced", "complained"})  # set by delivery; never changed
# A live-only contact field: MailJawn's own status, for review() and plan freshness.
# The diff never compares it (no manifest has it) and export does not write it.
STATUS = "status"
# Strings identify and import take besides name: no manifest manages them, and the document
# does not say whether an upsert that leaves one out keeps it, so their live values are sent.
KEPT_STRINGS = ("timezone", "locale", "device_type", "os_version", "app_version", "sdk_version")

_SLUG = re.compile(r"[a-z0-9]+(?:[-_][a-z0-9]+)*")
_NOT_SLUG = re.compile(r"[^a-z0-9]+")


@dataclass(frozen=True)
class Subscriber:
    id: str
    email: str
    name: str
    status: str
    custom_fields: Mapping[str, PropertyValue]
    tags: frozenset[str]
    modified: str | None = None  # UTC; MailJawn keeps no unsubscribe time, only this
    kept: tuple[tuple[str, str], ...] = ()  # KEPT_STRINGS that are not empty, as read

    @property
    def key(self) -> str:
        return email_key(self.email)

    @property
    def protected(self) -> bool:
        return self.status in PROTECTED_STATUSES

    def contact(self) -> Contact:
        fields = {NAME: self.name, EXCLUDED: self.status != ACTIVE, STATUS: self.status}
        # No unsubscribe time: the last change of the record is the latest the opt-out can
        # have happened, so an opt-in older than any change since never brings them back.
        opted_out_at = None if self.status == ACTIVE else self.modified
        return Contact(self.email, fields, dict(self.custom_fields), opted_out_at=opted_out_at)


def subscriber(record: Any) -> Subscriber:
    if not isinstance(record, Mapping):
        raise _misread(f"expected a subscriber object, got {type(record).__name__}")
    email = _required_str(record, "email")
    status = _required_str(record, "status")
    if status not in STATUSES:
        raise _misread(f"subscriber {email} has status {status!r}, which reconcile does not know")
    name = record.get("name")
    if name is not None and not isinstance(name, str):
        raise _misread(f"subscriber {email} has name={name!r}, expected a string")
    custom = record.get("custom_fields") or {}
    if not isinstance(custom, Mapping):
        raise _misread(f"subscriber {email} has custom_fields={custom!r}, expected an object")
    return Subscriber(
        id=_required_str(record, "id"),
        email=email,
        name=name or "",
        status=status,
        custom_fields={str(k): _scalar(v) for k, v in custom.items()},
        tags=_tag_slugs(record.get("tags") or [], email),
        modified=utc_moment(record.get("modified")),
        kept=tuple((name, value) for name in KEPT_STRINGS if (value := record.get(name))),
    )


def _tag_slugs(tags: Any, email: str) -> frozenset[str]:
    if not isinstance(tags, list):
        raise _misread(f"subscriber {email} has tags={tags!r}, expected a list")
    slugs: set[str] = set()
    for tag in tags:
        slug = tag.get("slug") if isinstance(tag, Mapping) else None
        if not isinstance(slug, str):
            raise _misread(f"subscriber {email} has a tag without a slug: {tag!r}")
        slugs.add(slug)
    return frozenset(slugs)


def _scalar(value: Any) -> PropertyValue:
    """JSON scalars as they are; an object or array as its JSON text (shown, never lost)."""
    if value is None or isinstance(value, str | int | float | bool):
        return value
    return json.dumps(value, sort_keys=True)


def _required_str(record: Mapping[str, Any], name: str) -> str:
    value = record.get(name)
    if not isinstance(value, str) or not value:
        raise _misread(f"subscriber has {name}={value!r}, expected a string")
    return value


def _misread(message: str) -> ApiError:
    return ApiError(f"{message}; nothing was changed based on it", path=SUBSCRIBERS)


# ---- tags -------------------------------------------------------------------------------


def is_slug(name: str) -> bool:
    return _SLUG.fullmatch(name) is not None


def slug_for(name: str) -> str:
    """The slug closest to `name` (may be empty when nothing usable is left)."""
    return _NOT_SLUG.sub("-", name.lower()).strip("-")


# ---- request bodies ---------------------------------------------------------------------


def import_item(email: str, after: ContactValues, tags: Sequence[str]) -> dict[str, Any]:
    """One subscriber of a bulk import; import can't set status (a PATCH follows)."""
    item: dict[str, Any] = {"email": email, "trigger_automations": False}
    if NAME in after.fields:
        item["name"] = after.fields[NAME]
    values = {k: v for k, v in (after.properties or {}).items() if v is not None}
    if values:
        item["custom_fields"] = values
    if tags:
        item["tags"] = sorted(tags)
    return item


def identify_body(email: str, tags: Sequence[str]) -> dict[str, Any]:
    """Adds tags to a subscriber not read (nothing known to send back)."""
    return {"email": email, "tags": sorted(tags), "trigger_automations": False}


def upsertable(after: ContactValues | None, current: Subscriber) -> bool:
    """Whether an identify (or an import item) can write `after` to `current`: it has no
    status field, so never for a status change or for anyone not active (whether an upsert
    re-activates an unsubscribed subscriber is not documented); a null custom field (a
    removal) stays with PATCH too."""
    if current.status != ACTIVE:
        return False
    if after is None:
        return True
    return EXCLUDED not in after.fields and None not in (after.properties or {}).values()


def upsert_item(
    current: Subscriber,
    after: ContactValues | None,
    tags: Iterable[str],
    *,
    unmanaged: bool = True,
) -> dict[str, Any]:
    """An identify body (or import item) for an existing subscriber: the managed values
    of `after`, and for everything else the live value, so that it is right whether an
    upsert keeps what it leaves out or clears it (`unmanaged=False`: left out, for an
    upsert known to keep what it omits, or the probe finding out). Tags: the live ones
    and the new ones (whether tags are added or replace the set is not documented).
    custom_fields: only the changed ones (the document says they are merged)."""
    fields = after.fields if after is not None else {}
    item: dict[str, Any] = {"email": current.email, "trigger_automations": False}
    if NAME in fields:
        item["name"] = fields[NAME]
    elif unmanaged and current.name:
        item["name"] = current.name
    if unmanaged:
        item.update(current.kept)
    values = (after.properties or {}) if after is not None else {}
    if values:
        item["custom_fields"] = dict(values)
    every_tag = current.tags | set(tags)
    if every_tag:
        item["tags"] = sorted(every_tag)
    return item


def patch_body(after: ContactValues, current_status: str) -> dict[str, Any]:
    """PATCH body for the fields of `after` (a change's after, only what differs).

    A bounced or complained status is never overwritten, whatever `after` asks.
    """
    body: dict[str, Any] = {}
    if NAME in after.fields:
        body["name"] = after.fields[NAME]
    if EXCLUDED in after.fields and current_status not in PROTECTED_STATUSES:
        body["status"] = UNSUBSCRIBED if after.fields[EXCLUDED] else ACTIVE
    values = after.properties
    if values:
        body["custom_fields"] = dict(values)
    return body


def patched(current: Subscriber, body: Mapping[str, Any]) -> Subscriber:
    """`current` as a PATCH of `body` leaves it (custom_fields merged, null removes)."""
    custom = dict(current.custom_fields)
    for name, value in (body.get("custom_fields") or {}).items():
        if value is None:
            custom.pop(name, None)
        else:
            custom[name] = value
    return dataclasses.replace(
        current,
        name=body.get("name", current.name),
        status=body.get("status", current.status),
        custom_fields=custom,
    )


def differing(after: ContactValues, current: Subscriber) -> ContactValues:
    """The part of a creation's `after` that `current` (found live) does not hold yet."""
    have = current.contact()
    fields = {name: value for name, value in after.fields.items() if have.fields.get(name) != value}
    if fields.get(EXCLUDED) is False:
        del fields[EXCLUDED]  # they opted out before the import: a creation carries no consent
    values = {
        name: value
        for name, value in (after.properties or {}).items()
        if have.properties.get(name) != value
    }
    return ContactValues(fields, values or None)


# ---- bulk import answers ----------------------------------------------------------------


@dataclass(frozen=True)
class ImportAnswer:
    failed: Mapping[str, str]  # email key -> the API's error for it
    skipped: int
    accounted: bool  # imported + skipped + failed add up to what was sent


def import_answer(answer: Any, emails: Sequence[str]) -> ImportAnswer:
    """Map the answer's errors to the emails sent (by email, else by index, else by text)."""
    if not isinstance(answer, Mapping):
        raise _misread(f"bulk import answered {answer!r}, expected an object")
    counts = [answer.get(name, 0) for name in ("imported", "skipped", "failed")]
    errors = answer.get("errors") or []
    if not all(isinstance(n, int) for n in counts) or not isinstance(errors, list):
        raise _misread(f"bulk import answered {answer!r}, expected counts and an errors list")
    failed: dict[str, str] = {}
    for entry in errors:
        key = _failed_email(entry, emails)
        if key is not None:
            failed.setdefault(key, _error_text(entry))
    imported, skipped, failed_count = counts
    accounted = imported + skipped + failed_count == len(emails) and len(failed) == failed_count
    return ImportAnswer(failed, skipped, accounted)


def _failed_email(entry: Any, emails: Sequence[str]) -> str | None:
    keys = [email_key(e) for e in emails]
    if isinstance(entry, Mapping):
        named = entry.get("email")
        if isinstance(named, str) and email_key(named) in keys:
            return email_key(named)
        index = entry.get("index")
        if isinstance(index, int) and not isinstance(index, bool) and 0 <= index < len(keys):
            return keys[index]
        entry = entry.get("error") or entry.get("message") or ""
    if isinstance(entry, str):
        # The longest email found in the text, so a@x.io does not match inside aa@x.io.
        mentioned = [k for k in keys if k in entry.lower()]
        return max(mentioned, key=len) if mentioned else None
    return None


def _error_text(entry: Any) -> str:
    if isinstance(entry, Mapping):
        message = entry.get("error") or entry.get("message") or entry.get("detail")
        return str(message) if message else json.dumps(entry, default=str)
    return str(entry)


# ---- checking an upsert (the probe) -----------------------------------------------------

# Fields an upsert may move on its own: the write's time, and what follows the timezone.
_MOVES_BY_ITSELF = frozenset({"modified", "last_seen", "effective_timezone"})
# Item keys compared otherwise (merged, added) or not stored at all.
_NOT_STORED_AS_SENT = frozenset({"email", "custom_fields", "tags", "trigger_automations"})


@dataclass(frozen=True)
class UpsertCheck:
    applied: bool  # every value asked for is there
    unasked: tuple[str, ...]  # what changed that was not asked for: "field: before -> after"
    cleared: tuple[str, ...] = ()  # string fields the item left out that were emptied


def omitted(item: Mapping[str, Any]) -> frozenset[str]:
    """The strings an upsert may keep or clear that `item` leaves out."""
    return frozenset(name for name in ("name", *KEPT_STRINGS) if name not in item)


def check_upsert(
    before: Mapping[str, Any], after: Mapping[str, Any], item: Mapping[str, Any]
) -> UpsertCheck:
    """Compare a subscriber read before and after an upsert of `item`, field by field (each
    custom field on its own): every value asked for applied? anything else changed? A
    string the item left out that was emptied is `cleared`, not `unasked`."""
    left_out = omitted(item)
    was = _units(before)
    want = dict(was)
    want.update({k: v for k, v in item.items() if k not in _NOT_STORED_AS_SENT})
    custom = item.get("custom_fields") or {}
    want.update({f"custom_fields.{k}": v for k, v in custom.items()})
    want["tags"] = tuple(sorted(set(was["tags"]) | set(item.get("tags") or ())))
    now = _units(after)
    applied, unasked, cleared = True, [], []
    for unit in sorted(set(was) | set(want) | set(now)):
        old, wanted, new = (units.get(unit, _ABSENT) for units in (was, want, now))
        if new == wanted:
            continue
        if wanted != old and new == old:
            applied = False  # asked for, not there
        elif unit in left_out and new in ("", None, _ABSENT):
            cleared.append(f"{unit}: {old!r} -> {new!r}")
        else:
            unasked.append(f"{unit}: {old!r} -> {new!r}")
    return UpsertCheck(applied, tuple(unasked), tuple(cleared))


def restore_body(
    before: Mapping[str, Any], after: Mapping[str, Any], item: Mapping[str, Any]
) -> dict[str, Any] | None:
    """A PATCH that puts back what an upsert changed unasked (custom fields it dropped or
    changed, name, timezone), or None when something moved that PATCH can't set."""
    body: dict[str, Any] = {}
    was, now = before.get("custom_fields") or {}, after.get("custom_fields") or {}
    asked = item.get("custom_fields") or {}
    custom = {k: v for k, v in was.items() if now.get(k, _ABSENT) != v and k not in asked}
    custom.update({k: None for k in now if k not in was and k not in asked})
    if custom:
        body["custom_fields"] = custom
    for name in ("name", "timezone"):
        if name not in item and before.get(name) != after.get(name):
            body[name] = before.get(name) or ""
    others = set(_units(before)) | set(_units(after))
    patchable = {"name", "timezone", "tags"} | {u for u in others if u.startswith("custom_fields.")}
    if any(_units(before).get(u) != _units(after).get(u) for u in others - patchable):
        return None
    return body


class _Absent:
    def __repr__(self) -> str:
        return "absent"


_ABSENT = _Absent()


def _units(record: Mapping[str, Any]) -> dict[str, Any]:
    """The record's comparable values: each field, each custom field, the tag slugs."""
    units = {k: v for k, v in record.items() if k not in _MOVES_BY_ITSELF | _NOT_STORED_AS_SENT}
    units["email"] = record.get("email")
    custom = record.get("custom_fields") or {}
    if isinstance(custom, Mapping):
        units.update({f"custom_fields.{k}": v for k, v in custom.items()})
    units["tags"] = tuple(sorted(_slugs(record)))
    return units


def _slugs(record: Mapping[str, Any]) -> list[str]:
    tags = record.get("tags") or []
    return [t["slug"] if isinstance(t, Mapping) else str(t) for t in tags]
