"""State of one emulated MailJawn project: subscribers, tags and tracked events.

No HTTP here. Every public method takes the store's lock, so handlers running
concurrently (or a test seeding from another thread) never see half an update.
"""

from __future__ import annotations

import threading
import uuid
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

from reconcile.providers.mailjawn.emulator.validation import (
    IDENTIFY_STRING_FIELDS,
    IdentifyInput,
    InvalidRequest,
    PatchInput,
    TrackInput,
    email_key,
    timestamp_from_epoch,
    validate_identify,
)

DEFAULT_TIMEZONE = "UTC"


class SubscriberNotFound(Exception):
    pass


@dataclass
class Tag:
    id: str
    name: str
    slug: str


@dataclass
class Subscriber:
    id: str
    email: str
    created: str
    modified: str
    first_seen: str
    last_seen: str
    subscribed_at: str | None
    name: str = ""
    status: str = "active"
    timezone: str = ""
    device_type: str = ""
    os_version: str = ""
    app_version: str = ""
    locale: str = ""
    sdk_version: str = ""
    source: str = ""
    custom_fields: dict[str, Any] = field(default_factory=dict)
    tag_slugs: list[str] = field(default_factory=list)


@dataclass
class Event:
    event_id: str
    subscriber_id: str
    event_name: str
    properties: dict[str, Any]
    occurred_at: str
    client_event_id: str | None


@dataclass
class ImportFailure:
    index: int
    email: str | None
    error: str


@dataclass
class ImportResult:
    imported: int = 0
    skipped: int = 0
    failed: int = 0
    errors: list[ImportFailure] = field(default_factory=list)

    def as_json(self) -> dict[str, Any]:
        return {
            "imported": self.imported,
            "skipped": self.skipped,
            "failed": self.failed,
            "errors": [asdict(error) for error in self.errors],
        }


@dataclass
class UpsertBehaviour:
    """What the document leaves open about writing an existing subscriber by email; each
    reading is a switch, so the client is tested against all of them.

    `import_updates_existing`: a bulk import updates an existing subscriber as identify
    does (counted imported), instead of counting it skipped.
    `clears_omitted`: an identify or import that updates a subscriber resets the string
    fields it leaves out (name, timezone, locale, device fields) to "".
    `import_replaces_custom_fields`: an import that updates a subscriber replaces its
    custom_fields instead of merging them (a harmful reading, for the client's probe).
    """

    import_updates_existing: bool = False
    clears_omitted: bool = False
    import_replaces_custom_fields: bool = False


@dataclass(frozen=True)
class ListQuery:
    status: str | None = None
    tag: str | None = None
    search: str | None = None
    limit: int = 50
    offset: int = 0


def merge_custom_fields(current: dict[str, Any], changes: dict[str, Any]) -> dict[str, Any]:
    """MailJawn merges custom_fields; a null value removes that key."""
    merged = dict(current)
    for key, value in changes.items():
        if value is None:
            merged.pop(key, None)
        else:
            merged[key] = value
    return merged


class SubscriberStore:
    def __init__(
        self, clock: Callable[[], float], behaviour: UpsertBehaviour | None = None
    ) -> None:
        self._clock = clock
        self.behaviour = behaviour or UpsertBehaviour()
        self._lock = threading.RLock()
        self._subscribers: dict[str, Subscriber] = {}  # by id, in creation order
        self._ids_by_email: dict[str, str] = {}
        self._tags: dict[str, Tag] = {}  # by slug
        self._events: dict[str, Event] = {}  # by event_id
        self._events_by_client_id: dict[str, str] = {}

    def _now(self) -> str:
        return timestamp_from_epoch(self._clock())

    # -- reading -------------------------------------------------------------

    def render(self, subscriber: Subscriber) -> dict[str, Any]:
        """The subscriber object exactly as the API shows it."""
        return {
            "id": subscriber.id,
            "email": subscriber.email,
            "name": subscriber.name,
            "status": subscriber.status,
            "timezone": subscriber.timezone,
            "effective_timezone": subscriber.timezone or DEFAULT_TIMEZONE,
            "first_seen": subscriber.first_seen,
            "last_seen": subscriber.last_seen,
            "subscribed_at": subscriber.subscribed_at,
            "device_type": subscriber.device_type,
            "os_version": subscriber.os_version,
            "app_version": subscriber.app_version,
            "locale": subscriber.locale,
            "sdk_version": subscriber.sdk_version,
            "custom_fields": dict(subscriber.custom_fields),
            "source": subscriber.source,
            "tags": [asdict(self._tags[slug]) for slug in subscriber.tag_slugs],
            "created": subscriber.created,
            "modified": subscriber.modified,
        }

    def get(self, subscriber_id: str) -> dict[str, Any]:
        with self._lock:
            return self.render(self._require(subscriber_id))

    def find_by_email(self, email: str) -> dict[str, Any] | None:
        with self._lock:
            subscriber_id = self._ids_by_email.get(email_key(email))
            return None if subscriber_id is None else self.render(self._subscribers[subscriber_id])

    def list_page(self, query: ListQuery) -> tuple[list[dict[str, Any]], int]:
        with self._lock:
            matching = [s for s in self._subscribers.values() if _matches(s, query)]
            page = matching[query.offset : query.offset + query.limit]
            return [self.render(s) for s in page], len(matching)

    def _require(self, subscriber_id: str) -> Subscriber:
        subscriber = self._subscribers.get(subscriber_id)
        if subscriber is None:
            raise SubscriberNotFound(subscriber_id)
        return subscriber

    # -- writing -------------------------------------------------------------

    def identify(self, data: IdentifyInput, default_source: str = "api") -> tuple[str, bool]:
        """Upsert by email. Returns (subscriber_id, created)."""
        with self._lock:
            existing_id = self._ids_by_email.get(email_key(data.email))
            if existing_id is None:
                return self._create(data, default_source).id, True
            self._update_from_identify(self._subscribers[existing_id], data)
            return existing_id, False

    def bulk_import(
        self, items: list[Any], refuse: Callable[[str], str | None] | None = None
    ) -> ImportResult:
        """Repeats within the request are skipped; existing emails are skipped too, or
        updated as identify does when `behaviour.import_updates_existing` (and counted
        imported: the answer has no other count for them).

        `refuse` (tests) names the error of an item that would otherwise be imported.
        """
        result = ImportResult()
        seen: set[str] = set()
        with self._lock:
            for index, item in enumerate(items):
                try:
                    data = validate_identify(item, f"subscribers[{index}]")
                except InvalidRequest as problem:
                    result.failed += 1
                    result.errors.append(ImportFailure(index, _email_of(item), problem.message))
                    continue
                key = email_key(data.email)
                existing = self._ids_by_email.get(key)
                repeated = key in seen
                seen.add(key)
                updates = self.behaviour.import_updates_existing
                if repeated or (existing is not None and not updates):
                    result.skipped += 1
                    continue
                refused = refuse(data.email) if refuse is not None else None
                if refused is not None:
                    result.failed += 1
                    result.errors.append(ImportFailure(index, data.email, refused))
                elif existing is None:
                    self._create(data, "import")
                    result.imported += 1
                else:
                    self._update_by_import(self._subscribers[existing], data)
                    result.imported += 1
        return result

    def _update_by_import(self, subscriber: Subscriber, data: IdentifyInput) -> None:
        if self.behaviour.import_replaces_custom_fields and data.custom_fields is not None:
            subscriber.custom_fields = {}
        self._update_from_identify(subscriber, data)

    def patch(self, subscriber_id: str, changes: PatchInput) -> dict[str, Any]:
        with self._lock:
            subscriber = self._require(subscriber_id)
            now = self._now()
            if changes.name is not None:
                subscriber.name = changes.name
            if changes.timezone is not None:
                subscriber.timezone = changes.timezone
            if changes.custom_fields is not None:
                subscriber.custom_fields = merge_custom_fields(
                    subscriber.custom_fields, changes.custom_fields
                )
            if changes.status is not None and changes.status != subscriber.status:
                if changes.status == "active":
                    subscriber.subscribed_at = now
                subscriber.status = changes.status
            subscriber.modified = now
            return self.render(subscriber)

    def delete(self, subscriber_id: str) -> None:
        with self._lock:
            subscriber = self._require(subscriber_id)
            del self._subscribers[subscriber_id]
            del self._ids_by_email[email_key(subscriber.email)]

    def subscribe_form(self, email: str, name: str, tag: str | None) -> None:
        """Public signup: create if new, add the tag; an existing status is left alone."""
        data = IdentifyInput(email=email, tags=[tag] if tag else [])
        if name:
            data.strings["name"] = name
        self.identify(data, default_source="form")

    def track(self, data: TrackInput) -> tuple[dict[str, Any], bool]:
        """Record an event. Returns (event body, created); a known client_event_id is a repeat."""
        with self._lock:
            subscriber = self._require(data.subscriber_id)
            if data.client_event_id in self._events_by_client_id:
                event = self._events[self._events_by_client_id[data.client_event_id]]
                return _render_event(event, created=False), False
            event = Event(
                event_id=str(uuid.uuid4()),
                subscriber_id=subscriber.id,
                event_name=data.event_name,
                properties=data.properties,
                occurred_at=data.occurred_at or self._now(),
                client_event_id=data.client_event_id,
            )
            self._events[event.event_id] = event
            if event.client_event_id is not None:
                self._events_by_client_id[event.client_event_id] = event.event_id
            # Only app_opened moves last_seen (the document's tip); timestamps sort as text.
            if event.event_name == "app_opened" and event.occurred_at > subscriber.last_seen:
                subscriber.last_seen = event.occurred_at
            return _render_event(event, created=True), True

    def seed(self, data: IdentifyInput, status: str, default_source: str) -> str:
        """Create a subscriber directly (tests); an existing email is an error."""
        with self._lock:
            if email_key(data.email) in self._ids_by_email:
                raise ValueError(f"subscriber {data.email!r} already exists")
            subscriber = self._create(data, default_source)
            subscriber.status = status
            if status != "active":
                subscriber.subscribed_at = None
            return subscriber.id

    def _create(self, data: IdentifyInput, default_source: str) -> Subscriber:
        now = self._now()
        subscriber = Subscriber(
            id=str(uuid.uuid4()),
            email=data.email,
            created=now,
            modified=now,
            first_seen=now,
            last_seen=now,
            subscribed_at=now,
            source=default_source,
        )
        for name, value in data.strings.items():
            setattr(subscriber, name, value)
        subscriber.custom_fields = merge_custom_fields({}, data.custom_fields or {})
        self._add_tags(subscriber, data.tags)
        self._subscribers[subscriber.id] = subscriber
        self._ids_by_email[email_key(subscriber.email)] = subscriber.id
        return subscriber

    def _update_from_identify(self, subscriber: Subscriber, data: IdentifyInput) -> None:
        # The email keeps its stored spelling; source records how the subscriber was
        # first added, so a later identify does not change it.
        for name in IDENTIFY_STRING_FIELDS:
            if name == "source":
                continue
            if name in data.strings:
                setattr(subscriber, name, data.strings[name])
            elif self.behaviour.clears_omitted:
                setattr(subscriber, name, "")
        if data.custom_fields is not None:
            subscriber.custom_fields = merge_custom_fields(
                subscriber.custom_fields, data.custom_fields
            )
        self._add_tags(subscriber, data.tags)
        subscriber.modified = self._now()

    def _add_tags(self, subscriber: Subscriber, slugs: list[str]) -> None:
        for slug in slugs:
            if slug not in self._tags:
                self._tags[slug] = Tag(id=str(uuid.uuid4()), name=slug, slug=slug)
            if slug not in subscriber.tag_slugs:
                subscriber.tag_slugs.append(slug)

    # -- persistence ---------------------------------------------------------

    def dump(self) -> dict[str, Any]:
        with self._lock:
            return {
                "subscribers": [asdict(s) for s in self._subscribers.values()],
                "tags": [asdict(t) for t in self._tags.values()],
                "events": [asdict(e) for e in self._events.values()],
            }

    def load(self, data: dict[str, Any]) -> None:
        subscribers = [Subscriber(**item) for item in data.get("subscribers", [])]
        tags = [Tag(**item) for item in data.get("tags", [])]
        events = [Event(**item) for item in data.get("events", [])]
        with self._lock:
            self._subscribers = {s.id: s for s in subscribers}
            self._ids_by_email = {email_key(s.email): s.id for s in subscribers}
            self._tags = {t.slug: t for t in tags}
            self._events = {e.event_id: e for e in events}
            self._events_by_client_id = {
                e.client_event_id: e.event_id for e in events if e.client_event_id is not None
            }


def _matches(subscriber: Subscriber, query: ListQuery) -> bool:
    if query.status is not None and subscriber.status != query.status:
        return False
    if query.tag is not None and query.tag not in subscriber.tag_slugs:
        return False
    if query.search:
        needle = query.search.lower()
        return needle in subscriber.email.lower() or needle in subscriber.name.lower()
    return True


def _email_of(item: Any) -> str | None:
    email = item.get("email") if isinstance(item, dict) else None
    return email if isinstance(email, str) else None


def _render_event(event: Event, created: bool) -> dict[str, Any]:
    return {
        "event_id": event.event_id,
        "subscriber_id": event.subscriber_id,
        "event_name": event.event_name,
        "created": created,
        "properties": dict(event.properties),
        "occurred_at": event.occurred_at,
    }
