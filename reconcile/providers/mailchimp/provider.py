"""Mailchimp provider: one audience; members are contacts, tags (static segments) are
lists, merge fields are properties, named by their merge tag.

Order: merge fields first; new members by batch subscribe (500 a call, existing ones
never overwritten); updates of existing members by batch subscribe with their whole
record re-read just before (or one PATCH each when that is fewer calls); tags by the
static-segment routes (500 adds and 500 removals a call); then permanent deletions, tag
deletions and merge-field deletions, in reverse order of dependency.

Consent: a member's status changes only where the manifest asks (an unsubscribe, or an
opt-in with consent recorded after the opt-out); every other write sends the status the
member has just before it. A cleaned (bounced) status is never changed, an archived
member is written only to bring them back with consent, and a pending member's record
is never rewritten with its status (that would mail them the opt-in again).
"""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Literal, TypeVar

from reconcile.diff import (
    Action,
    Change,
    Finding,
    Flag,
    ResourceType,
    contact_ref,
    list_ref,
    property_ref,
)
from reconcile.errors import ApiError, ConfigError
from reconcile.model import (
    EXCLUDED,
    NAME,
    ContactList,
    ContactValues,
    Namespace,
    PropertyDef,
    PropertyType,
    ProviderRecords,
    ReadScope,
    State,
    email_key,
)
from reconcile.providers.answers import of_request
from reconcile.providers.base import (
    ApplyReport,
    Cancellation,
    Capability,
    Provider,
    ProviderStats,
    records_of,
)
from reconcile.providers.mailchimp import records
from reconcile.providers.mailchimp.client import PAGE_SIZE, MailchimpClient
from reconcile.providers.mailchimp.records import (
    ARCHIVED,
    CLEANED,
    PENDING,
    SUBSCRIBED,
    UNSUBSCRIBED,
    Member,
    MergeField,
    Segment,
    TagNames,
    subscriber_hash,
    tag_key,
)
from reconcile.providers.runner import ChangeRunner, GuardedWrites, all_or_none

BATCH = 500  # members per batch subscribe, and per list of a static-segment batch
SINGLE_WRITE = 2  # calls to write one member alone: a read of them just before, the write
MAX_TAG_NAME = 50  # the only figure found (2013); longer names are refused offline
FRESHNESS_MARGIN = timedelta(seconds=60)  # clocks of Mailchimp's servers may differ
MEMBER_FIELDS = ",".join(
    f"members.{name}"
    for name in ("email_address", "status", "merge_fields", "tags", "tags_count", "last_changed")
)
FIELD_QUERY = {
    "fields": "merge_fields.merge_id,merge_fields.tag,merge_fields.name,merge_fields.type,"
    "merge_fields.required,merge_fields.options,total_items"
}
SEGMENT_QUERY = {"type": "static", "fields": "segments.id,segments.name,total_items"}
RESERVED_DOMAINS = ("example.com", "example.net", "example.org")
RESERVED_SUFFIXES = (".example", ".test", ".invalid", ".localhost")


def _named_domain(domain: str) -> bool:
    """A dotted name whose last label is not a number: neither `localhost` nor an IP."""
    labels = domain.strip("[]").split(".")
    return len(labels) > 1 and not labels[-1].isdigit() and ":" not in domain


def _reserved(domain: str) -> bool:
    """example.com and its subdomains, and the reserved top-level names (RFC 2606)."""
    subdomains = tuple(f".{name}" for name in RESERVED_DOMAINS)
    return domain in RESERVED_DOMAINS or domain.endswith(subdomains + RESERVED_SUFFIXES)


OptInStatus = Literal["subscribed", "pending"]
NewStatus = Literal["subscribed", "pending", "transactional"]


@dataclass
class MailchimpRecords(ProviderRecords):
    """What the read found besides the model: ids, raw records, and when it read them."""

    audience_id: str
    audience_name: str
    fields: dict[str, MergeField]  # by tag
    segments: dict[str, Segment]  # by tag_key(name)
    members: dict[str, Member]  # by email key
    changed_since: str | None  # the latest last_changed seen (UTC): later changes are news


@dataclass(frozen=True)
class Audience:
    id: str
    name: str


def _records(live: State) -> MailchimpRecords:
    found = records_of(live, MailchimpRecords)
    if found is None:
        raise ApiError("the live state given to apply was not read from Mailchimp")
    return found


class MailchimpProvider(Provider):
    name = "mailchimp"
    capabilities = frozenset(
        {
            Capability.PROPERTY_DEFINITIONS,
            Capability.REMOVE_LIST_MEMBER,
            Capability.DELETE_LIST,
            Capability.HARD_DELETE,
            Capability.ARCHIVE,
            # PATCH /merge-fields/{merge_id} may change `tag`; merge_id (and the values held
            # under it) stays. No route renames a tag (static segment): RENAME_LIST is absent.
            Capability.RENAME_PROPERTY,
        }
    )
    address_change = (
        "a PUT of a member with another email_address renames that member, but a wrongly "
        "computed member hash looks the same, so reconcile never sends one"
    )

    def __init__(
        self,
        client: MailchimpClient,
        *,
        audience: str,
        status_if_new: NewStatus = "subscribed",
        opt_in_status: OptInStatus = "subscribed",
        skip_merge_validation: bool = False,
        labels: Mapping[str, str] | None = None,
        batch_size: int = BATCH,
        cancel: Cancellation | None = None,
    ) -> None:
        if not 1 <= batch_size <= BATCH:
            raise ValueError(f"batch_size must be 1..{BATCH}")
        self.client = client
        self.cancel = cancel or client.cancel
        self.audience_option = audience
        self.status_if_new = status_if_new
        self.opt_in_status = opt_in_status
        self.skip_merge_validation = skip_merge_validation
        self.labels = dict(labels or {})
        self.batch_size = batch_size
        self.guarded = GuardedWrites()

    async def aclose(self) -> None:
        await self.client.aclose()

    def identity(self, live: State | None) -> dict[str, str]:
        # The key names the account (a data centre's URL is shared by many) but is a
        # secret: a digest of it tells accounts apart without showing it.
        digest = hashlib.sha256(self.client.api_key.encode()).hexdigest()[:16]
        return {"url": self.client.base_url, "api_key_sha256": digest, **self.scope_of(live)}

    def scope_of(self, live: State | None) -> dict[str, str]:
        """The audience by its id, as resolved by the read (a name may move to another)."""
        return {} if live is None else {"audience": _records(live).audience_id}

    def target(self, live: State) -> str:
        found = records_of(live, MailchimpRecords)
        return f"audience {found.audience_name!r}, {found.audience_id}" if found else ""

    def stats(self) -> ProviderStats:
        return self.client.snapshot()

    # ---- the audience -----------------------------------------------------------------

    async def audience(self) -> Audience:
        """The audience the option names: its id, or a name unique in the account (found
        again by every read: a provider keeps nothing between read and apply)."""
        return await self._resolve(self.audience_option)

    async def _resolve(self, wanted: str) -> Audience:
        if wanted.isalnum():
            path = f"/lists/{wanted}"
            try:
                found = await self.client.get(path, {"fields": "id,name"})
            except ApiError as error:
                if error.status != 404:
                    raise
            else:
                return of_answer(_audience, found, "GET", self._url(path))
        every = await self.client.list_all(
            "/lists", "lists", {"fields": "lists.id,lists.name,total_items"}, keep=_audience
        )
        named = [found for found in every if found.name == wanted] or [
            found for found in every if found.name.casefold() == wanted.casefold()
        ]
        if len(named) == 1:
            return named[0]
        shown = ", ".join(f"{found.name!r} ({found.id})" for found in every[:10]) or "none"
        if named:
            ids = ", ".join(found.id for found in named)
            raise ConfigError(
                f"{len(named)} Mailchimp audiences are named {wanted!r} ({ids}); set the "
                "provider option audience to one of these ids"
            )
        raise ConfigError(
            f"no Mailchimp audience has the id or name {wanted!r} (the account has: {shown}); "
            "set the provider option audience to an audience id or unique name"
        )

    # ---- offline checks -----------------------------------------------------------------

    @classmethod
    def check_desired(cls, desired: State) -> list[Finding]:
        return [*_property_findings(desired), *_list_findings(desired), *_contact_findings(desired)]

    # ---- read ---------------------------------------------------------------------------

    async def read(self, scope: ReadScope) -> State:
        audience = await self.audience()
        base = f"/lists/{audience.id}"
        member_query = {"fields": MEMBER_FIELDS + ",total_items"}
        listing = self.client.list_all
        async with all_or_none() as group:  # one failing stops the others
            fields = group.create_task(
                listing(
                    f"{base}/merge-fields", "merge_fields", FIELD_QUERY, keep=records.merge_field
                )
            )
            segments = group.create_task(
                listing(f"{base}/segments", "segments", SEGMENT_QUERY, keep=records.segment)
            )
            members = group.create_task(
                listing(f"{base}/members", "members", member_query, keep=records.member)
            )
            archived = group.create_task(
                listing(
                    f"{base}/members",
                    "members",
                    {**member_query, "status": ARCHIVED},
                    keep=records.member,
                )
            )
        by_key: dict[str, Member] = {}
        for found in (*members.result(), *archived.result()):
            by_key.setdefault(found.key, found)  # one added meanwhile may show on two pages
        await self._read_every_tag(base, by_key)
        by_tag = {field.tag: field for field in fields.result()}
        segments_by_key = {tag_key(s.name): s for s in segments.result()}
        marks = [m.last_changed for m in by_key.values() if m.last_changed]
        found_records = MailchimpRecords(
            audience.id,
            audience.name,
            by_tag,
            segments_by_key,
            by_key,
            max(marks) if marks else None,
        )
        try:
            return _state(found_records, scope)
        except ApiError as error:  # a member's value its field's type can't read
            raise of_request(error, "GET", self._url(f"{base}/members")) from None

    async def read_against(self, desired: State, scope: ReadScope) -> State:
        """As read, with each number field typed as the manifest declares it (int or
        float: Mailchimp has one number type), and every label naming a declared field."""
        unknown = sorted(set(self.labels) - set(desired.properties))
        if unknown:
            raise ConfigError(
                f"the provider option labels names {', '.join(unknown)}, which the manifest "
                "does not declare as properties"
            )
        live = await self.read(scope)
        fields = _records(live).fields
        for name, want in desired.properties.items():
            have = live.properties.get(name)
            field = fields.get(name)
            numeric = (PropertyType.INT, PropertyType.FLOAT)
            if have and field and field.type == records.NUMBER and want.type in numeric:
                live.properties[name] = dataclasses.replace(have, type=want.type)
        return live

    def check_against(self, desired: State, live: State) -> list[Finding]:
        fields = _records(live).fields
        return [
            Finding(
                property_ref(name),
                f"is a Mailchimp {field.type} field, which reconcile does not manage (text, "
                "number and date fields only); remove it from the manifest",
            )
            for name in desired.properties
            if (field := fields.get(name)) is not None and field.property_type is None
        ]

    async def _read_every_tag(self, base: str, members: dict[str, Member]) -> None:
        """A member object lists at most 50 tags: read the rest from the member's route."""
        partial = [found for found in members.values() if not found.all_tags_read]

        async def every_tag(found: Member) -> None:
            names = await self.client.list_all(
                f"{base}/members/{found.hash}/tags",
                "tags",
                {"fields": "tags.name,total_items"},
                keep=lambda tag: records.tag_name(tag, found.email),
            )
            members[found.key] = dataclasses.replace(found, tags=frozenset(names))

        async with all_or_none() as group:
            for found in partial:
                group.create_task(every_tag(found))

    # ---- review and estimate -------------------------------------------------------------

    def review(self, changes: Sequence[Change], live: State) -> tuple[list[Change], list[Finding]]:
        """Drop what must never be written (with a warning for each): a bounced member's
        status, any write to an archived member (tags too) but a consented return, an
        archive Mailchimp refuses (pending, cleaned), a value cleared from a required
        field. Say that a deletion is permanent."""
        found = records_of(live, MailchimpRecords)
        fields = found.fields if found else {}
        members = found.members if found else {}
        kept: list[Change] = []
        warnings: list[Finding] = []
        # Archived members this plan brings back (with consent): their tags may be written.
        returning = {
            c.email
            for c in changes
            if c.type is ResourceType.CONTACT and Flag.RESUBSCRIBE in c.flags
        }
        for change in changes:
            status = _status_of(members, change.email) if change.type in PEOPLE else None
            if (
                change.type is ResourceType.MEMBERSHIP
                and status == ARCHIVED
                and change.email not in returning
            ):
                warnings.append(Finding(change.ref, ARCHIVED_UNTOUCHED))
                continue
            if change.type is not ResourceType.CONTACT:
                kept.append(change)
                continue
            if Flag.ARCHIVE in change.flags and status in (PENDING, CLEANED):
                warnings.append(
                    Finding(change.ref, f"is {status}: Mailchimp can't archive it; left as is")
                )
                continue
            if change.action is Action.DELETE:
                warnings.append(Finding(change.ref, PERMANENT))
                kept.append(change)
                continue
            if change.action is Action.UPDATE:
                reviewed = _reviewed_update(change, status, fields, warnings)
                if reviewed is not None:
                    kept.append(reviewed)
                continue
            kept.append(self._reviewed_creation(change, fields, warnings))
        return kept, warnings

    def _reviewed_creation(
        self, change: Change, fields: Mapping[str, MergeField], warnings: list[Finding]
    ) -> Change:
        """Say what a new member will not be: included, when status_if_new is not
        subscribed; accepted, when a required merge field has no value."""
        after = change.contact_after
        if not self.skip_merge_validation:
            given = {k for k, v in (after.properties or {}).items() if v is not None}
            missing = sorted(f.tag for f in fields.values() if f.required and f.tag not in given)
            if missing:
                warnings.append(
                    Finding(
                        change.ref,
                        f"{', '.join(missing)}: required in the Mailchimp audience, so this "
                        "new member will be refused; give a value, or set the provider option "
                        "skip_merge_validation: true",
                    )
                )
        if after.fields.get(EXCLUDED) is False and self.status_if_new != SUBSCRIBED:
            until = " until they confirm" if self.status_if_new == PENDING else ""
            warnings.append(
                Finding(
                    change.ref,
                    f"is created {self.status_if_new} (status_if_new), so not included in "
                    f"campaigns{until}; excluded_from_campaigns: false is left out of the "
                    "creation",
                )
            )
            return dataclasses.replace(change, after=after.without(EXCLUDED))
        return change

    def estimate_calls(self, changes: Sequence[Change], live: State) -> int:
        """Every request apply sends when nothing fails and nobody else writes meanwhile."""
        work = _Work.of(changes)
        found = records_of(live, MailchimpRecords)
        members = found.members if found else {}
        since = found.changed_since if found else None
        calls = len(work.property_creates) + 2 * len(work.property_replaces)
        calls += len(work.property_renames)
        calls += len(work.property_deletes) + len(work.list_deletes) + len(work.contact_deletes)
        calls += len(work.contact_archives)
        calls += _chunks(len(work.contact_creates), self.batch_size)
        calls += self._update_plan(work.contact_updates, members, since).calls
        calls += sum(
            _tag_calls(len(adds), len(removes), self.batch_size, new=name in work.new_lists)
            for name, (adds, removes) in work.tag_changes().items()
        )
        return calls

    def _update_plan(
        self, updates: Sequence[Change], members: Mapping[str, Member], since: str | None
    ) -> _Updates:
        """Batch subscribe (with its freshness reads) or one write each, whichever is fewer
        calls; a pending member is always written alone (its status is never resent)."""
        alone = [c for c in updates if _status_of(members, c.email) == PENDING]
        batched = [c for c in updates if c not in alone]
        one_by_one = SINGLE_WRITE * len(updates)
        in_batches = (
            _freshness_calls(members, since) + _chunks(len(batched), self.batch_size)
            if batched
            else 0
        ) + SINGLE_WRITE * len(alone)
        if batched and in_batches < one_by_one:
            return _Updates(batched, alone, in_batches)
        return _Updates([], list(updates), one_by_one)

    # ---- apply ----------------------------------------------------------------------------

    async def apply(self, changes: Sequence[Change], live: State) -> ApplyReport:
        found = _records(live)
        state = _ApplyState(
            base=f"/lists/{found.audience_id}",
            fields=dict(found.fields),
            segments=dict(found.segments),
            members=dict(found.members),
            changed_since=found.changed_since,
        )
        report = ApplyReport()
        run = ChangeRunner(report, self.cancel)
        work = _Work.of(changes)
        await run.run_each(work.property_renames, lambda c: self._rename_field(c, state))
        await run.run_each(work.property_creates, lambda c: self._create_field(c, state))
        await run.run_each(work.property_replaces, lambda c: self._replace_field(c, state))
        # Updates before creates: the freshness read then finds none of the new members.
        await self._update_members(work.contact_updates, run, state)
        await self._create_members(work.contact_creates, run, state)
        await self._write_tags(work, run, state)
        await run.run_each(work.contact_archives, lambda c: self._archive(c, state))
        await run.run_each(work.contact_deletes, lambda c: self._erase(c, state))
        await run.run_each(work.list_deletes, lambda c: self._delete_tag(c, state))
        await run.run_each(work.property_deletes, lambda c: self._delete_field(c, state))
        return report

    # -- merge fields

    async def _create_field(self, change: Change, state: _ApplyState) -> str:
        name = change.key[0]
        body = {
            "tag": name,
            "name": self.labels.get(name, name),
            "type": records.CREATED_TYPES[change.property_after.type],
        }
        path = f"{state.base}/merge-fields"
        try:
            answer = await self.client.post(path, body, idempotent=False)
            state.fields[name] = of_answer(records.merge_field, answer, "POST", self._url(path))
        except ApiError as error:
            # Created by someone else meanwhile, or created with an answer we could not
            # read: never POSTed again blindly, looked up instead.
            if self.cancel.requested:
                raise
            try:
                found = await self._field_named(state, name)
            except ApiError as lookup_error:
                raise ApiError(f"{error}; then, looking it up: {lookup_error}") from None
            if found is None:
                raise
            if found.type != body["type"]:
                raise ApiError(f"{error}; it exists now as a {found.type} field") from None
            state.fields[name] = found
            return "already there (created meanwhile)"
        return ""

    async def _field_named(self, state: _ApplyState, tag: str) -> MergeField | None:
        fields = await self.client.list_all(
            f"{state.base}/merge-fields", "merge_fields", keep=records.merge_field
        )
        return next((found for found in fields if found.tag == tag), None)

    def _url(self, path: str) -> str:
        return self.client.prefix + path

    async def _rename_field(self, change: Change, state: _ApplyState) -> str:
        """PATCH the tag of the field read under the old one: its merge_id, and every
        member's value of it, stay. The display name follows when it was the tag."""
        old, new = change.renamed_from, change.key[0]
        assert old is not None
        field = state.fields.get(old)
        if field is None:
            raise ApiError(f"merge field {old} (to be renamed {new}) is not in the audience")
        label = self.labels.get(new, new) if field.name == old else field.name
        path = f"{state.base}/merge-fields/{field.merge_id}"
        answer = await self.client.patch(path, {"tag": new, "name": label})
        renamed = of_answer(records.merge_field, answer, "PATCH", self._url(path))
        if renamed.tag != new:
            raise ApiError(f"PATCH {self._url(path)}: answered with tag {renamed.tag}, not {new}")
        del state.fields[old]
        state.fields[new] = renamed
        state.renamed[old] = new
        return ""

    async def _replace_field(self, change: Change, state: _ApplyState) -> str:
        await self._delete_field(change, state)
        state.replaced.add(change.key[0])  # its old values are gone: never written back
        return await self._create_field(change, state)

    async def _delete_field(self, change: Change, state: _ApplyState) -> str:
        field = state.fields.get(change.key[0])
        if field is None:
            return "already gone"
        await self.client.delete(f"{state.base}/merge-fields/{field.merge_id}")
        del state.fields[field.tag]
        return ""

    # -- new members

    async def _create_members(
        self, creates: list[Change], run: ChangeRunner, state: _ApplyState
    ) -> None:
        ready = _items(creates, run, lambda change: self._new_item(change, state))
        chunks = _split(ready, self.batch_size)
        results = await asyncio.gather(
            *(self._subscribe_new(chunk, state) for chunk in chunks), return_exceptions=True
        )
        existing: list[Change] = []
        for chunk, result in zip(chunks, results, strict=True):
            if isinstance(result, ApiError):
                for change, _ in chunk:
                    run.fail(change, str(result))
                continue
            if isinstance(result, BaseException):
                raise result
            for change, _ in chunk:
                if change.email in result.existing:
                    existing.append(change)
                elif change.email in result.failed:
                    run.fail(change, result.failed[change.email])
                else:
                    run.done(change)
        await asyncio.gather(*(self._converge(change, run, state) for change in existing))

    async def _subscribe_new(
        self, chunk: list[tuple[Change, dict[str, Any]]], state: _ApplyState
    ) -> _BatchOutcome:
        """One batch subscribe of new members; existing members are never overwritten by
        it (they come back as existing)."""
        params = {"skip_merge_validation": _flag(self.skip_merge_validation)}
        answer = await self.client.post(
            state.base,
            {"members": [item for _, item in chunk], "update_existing": False},
            params=params,
            idempotent=True,  # again, it creates nobody twice: existing ones are errors
        )
        outcome = _batch_outcome(answer, _sent_tags(chunk), self._url(state.base))
        for change, _ in chunk:
            if change.email not in outcome.failed and change.email not in outcome.existing:
                state.created[change.email] = change.contact_after.email or change.email
        return outcome

    def _new_item(self, change: Change, state: _ApplyState) -> dict[str, Any]:
        after = change.contact_after
        status = UNSUBSCRIBED if after.fields.get(EXCLUDED) is True else self.status_if_new
        values = {k: v for k, v in (after.properties or {}).items() if v is not None}
        return {
            "email_address": after.email or change.email,
            "status": status,
            "merge_fields": records.member_values(state.fields, {}, values),
        }

    async def _converge(self, change: Change, run: ChangeRunner, state: _ApplyState) -> None:
        """A member that exists after all (added by someone else since the plan): bring
        its values to the manifest, and its status only to unsubscribe it (a creation
        carries no consent to bring anyone back)."""
        path = f"{state.base}/members/{subscriber_hash(change.email)}"
        try:
            raw = await self.client.get(path, {"fields": MEMBER_BARE})
            current = of_answer(records.member, raw, "GET", self._url(path))
            if current.status == ARCHIVED:
                raise ApiError(
                    f"{current.email} is archived in Mailchimp (since the plan was made?): "
                    "not brought back; run plan again"
                )
            wanted = {
                tag: value
                for tag, value in (change.contact_after.properties or {}).items()
                if current.merge_fields.get(tag)
                != records.write_value(state.fields.get(tag), value)
            }
            values = records.member_values(state.fields, {}, wanted)
            body: dict[str, Any] = {"merge_fields": values} if values else {}
            excluded = change.contact_after.fields.get(EXCLUDED) is True
            if excluded and current.status not in (UNSUBSCRIBED, CLEANED):
                body["status"] = UNSUBSCRIBED
            if body:
                answer = await self.client.patch(path, body, {"skip_merge_validation": "true"})
                _raise_if_dropped(values, answer)
        except ApiError as error:
            run.fail(change, str(error))
            return
        state.members[current.key] = current
        run.done(change, "already in the audience (added meanwhile); its status left as it is")

    # -- updates of existing members

    async def _update_members(
        self, updates: list[Change], run: ChangeRunner, state: _ApplyState
    ) -> None:
        runnable = [c for c in updates if run.runnable(c)]
        plan = self._update_plan(runnable, state.members, state.changed_since)
        if plan.batched:
            try:
                fresh = await self._changed_since_read(state)
            except ApiError as error:
                for change in plan.batched:
                    run.fail(change, f"not written: reading who changed since the plan: {error}")
            else:
                await self._update_in_batches(plan.batched, fresh, run, state)
        await run.run_each(plan.alone, lambda change: self._update_one(change, state))

    async def _changed_since_read(self, state: _ApplyState) -> dict[str, Member]:
        """Members changed since the read (and a margin before it), archived ones too: their
        records as they are now, so a batch writes nobody back as they were."""
        params: dict[str, Any] = {"fields": MEMBER_FIELDS + ",total_items"}
        if state.changed_since is not None:
            params["since_last_changed"] = _since_query(state.changed_since)
        path = f"{state.base}/members"
        async with all_or_none() as group:
            current = group.create_task(
                self.client.list_all(path, "members", params, keep=records.member)
            )
            archived = group.create_task(
                self.client.list_all(
                    path, "members", {**params, "status": ARCHIVED}, keep=records.member
                )
            )
        return {found.key: found for found in (*current.result(), *archived.result())}

    async def _update_in_batches(
        self,
        changes: list[Change],
        fresh: Mapping[str, Member],
        run: ChangeRunner,
        state: _ApplyState,
    ) -> None:
        batched: list[tuple[Change, Member]] = []
        alone: list[Change] = []
        for change in changes:
            planned = state.members.get(change.email)
            now = fresh.get(change.email, planned)
            if planned is None or now is None:
                run.fail(
                    change, "not in the audience any more (deleted meanwhile?); run plan again"
                )
                continue
            problem = _moved(change, planned, now)
            if problem is not None:
                run.fail(change, problem)
            elif now.status == PENDING:
                alone.append(change)
            else:
                batched.append((change, now))
        current = {change.ref: now for change, now in batched}
        ready = _items(
            [change for change, _ in batched],
            run,
            lambda change: self._update_item(change, current[change.ref], state),
        )
        chunks = _split(ready, self.batch_size)
        await asyncio.gather(*(self._subscribe_existing(chunk, run, state) for chunk in chunks))
        await run.run_each(alone, lambda change: self._update_one(change, state))

    def _update_item(self, change: Change, now: Member, state: _ApplyState) -> dict[str, Any]:
        after = change.contact_after
        base = {
            state.renamed.get(tag, tag): v
            for tag, v in now.merge_fields.items()
            if tag not in state.replaced
        }
        return {
            "email_address": now.email,  # as Mailchimp holds it: a batch never renames
            "status": self._new_status(change, now.status),
            "merge_fields": records.member_values(state.fields, base, after.properties or {}),
        }

    def _new_status(self, change: Change, current: str) -> str:
        excluded = change.contact_after.fields.get(EXCLUDED)
        if excluded is True and current not in (UNSUBSCRIBED, CLEANED):
            return UNSUBSCRIBED
        if excluded is False and Flag.RESUBSCRIBE in change.flags and current != CLEANED:
            return self.opt_in_status
        return current

    async def _subscribe_existing(
        self, chunk: list[tuple[Change, dict[str, Any]]], run: ChangeRunner, state: _ApplyState
    ) -> None:
        changes = [change for change, _ in chunk]
        try:
            answer = await self.client.post(
                state.base,
                {"members": [item for _, item in chunk], "update_existing": True},
                params={"skip_merge_validation": "true"},  # their other values are theirs
                idempotent=True,  # every item carries its whole record: again is the same
            )
            outcome = _batch_outcome(answer, _sent_tags(chunk), self._url(state.base))
        except ApiError as error:
            for change in changes:
                run.fail(change, str(error))
            return
        for change in changes:
            if change.email in outcome.failed:
                run.fail(change, outcome.failed[change.email])
            elif change.email in outcome.existing:  # only new members are refused so
                run.fail(change, "the batch answer says it exists and was not updated")
            else:
                returned = Flag.RESUBSCRIBE in change.flags
                run.done(change, _opt_in_note(self.opt_in_status) if returned else "")

    async def _update_one(self, change: Change, state: _ApplyState) -> str:
        """One member, read again just before its write (archived or opted out since the
        plan: not written as planned): PATCH what changed, its status only to unsubscribe;
        a consented return PUTs the status (PUT revives an archived member, PATCH does not
        reportedly; no PATCH ever goes to an archived one)."""
        path = f"{state.base}/members/{subscriber_hash(change.email)}"
        after = change.contact_after
        values = {
            tag: records.write_value(state.fields.get(tag), value)
            for tag, value in (after.properties or {}).items()
        }
        body: dict[str, Any] = {"merge_fields": values} if values else {}
        planned = state.members.get(change.email)
        returning = Flag.RESUBSCRIBE in change.flags and after.fields.get(EXCLUDED) is False
        async with self.guarded.pair():
            read = self.client.get(path, {"fields": MEMBER_BARE})
            raw = await self.cancel.unless_requested(read, "GET", self._url(path))
            now = of_answer(records.member, raw, "GET", self._url(path))
            problem = _moved(change, planned, now) if planned else None
            if problem is not None:
                raise ApiError(problem)
            if returning and now.status == PENDING and self.opt_in_status == PENDING:
                # Already waiting for their confirmation: writing pending again would mail
                # them another one.
                if not body:
                    return ALREADY_PENDING
                answer = await self.client.patch(path, body, {"skip_merge_validation": "true"})
                _raise_if_dropped(values, answer)
                return ALREADY_PENDING
            if returning:
                if now.status == CLEANED:
                    raise ApiError(f"{now.email} bounced (cleaned): never re-subscribed")
                body["status"] = self.opt_in_status
                answer = await self.client.put(path, body, {"skip_merge_validation": "true"})
            else:
                if after.fields.get(EXCLUDED) is True and now.status not in (UNSUBSCRIBED, CLEANED):
                    body["status"] = UNSUBSCRIBED
                if not body:
                    return "nothing left to write"
                answer = await self.client.patch(path, body, {"skip_merge_validation": "true"})
        _raise_if_dropped(values, answer)
        return _opt_in_note(self.opt_in_status) if returning else ""

    # -- tags

    async def _write_tags(self, work: _Work, run: ChangeRunner, state: _ApplyState) -> None:
        list_creates = {change.list_name: change for change in work.list_creates}
        by_tag = work.tag_changes()
        names = sorted(set(by_tag) | set(list_creates))

        async def one_tag(name: str) -> None:
            adds, removes = by_tag.get(name, ([], []))
            creation = list_creates.get(name)
            segment_id: int | None = None
            if creation is not None:
                first, adds = adds[: self.batch_size], adds[self.batch_size :]
                segment_id, left = await self._create_tag(creation, first, run, state)
                adds = left + adds
            else:
                found = state.segments.get(tag_key(name))
                segment_id = found.id if found else None
            adds = [c for c in adds if run.runnable(c)]  # skipped when the tag failed
            removes = [c for c in removes if run.runnable(c)]
            if segment_id is None:
                for change in (*adds, *removes):
                    run.fail(change, f"tag {name!r} not found in the audience; run plan again")
                return
            await self._tag_batches(
                segment_id, name=name, adds=adds, removes=removes, run=run, state=state
            )

        await asyncio.gather(*(one_tag(name) for name in names))

    async def _create_tag(
        self, creation: Change, first: list[Change], run: ChangeRunner, state: _ApplyState
    ) -> tuple[int | None, list[Change]]:
        """The tag, with its first members in the same call: (its id, or None when it
        failed; the members still to add). A tag someone else made meanwhile, or one made
        with an answer we could not read, is looked up, never created twice."""
        if not run.runnable(creation):
            return None, first
        first = [change for change in first if run.runnable(change)]
        emails = [self._address(change.email, state) for change in first]
        body = {"name": creation.list_name, "static_segment": emails}
        path = f"{state.base}/segments"
        try:
            answer = await self.client.post(path, body, idempotent=False)
            made = of_answer(records.segment, answer, "POST", self._url(path))
        except ApiError as error:
            if self.cancel.requested:
                run.fail(creation, str(error))
                return None, first
            try:
                found = await self._tag_named(state, creation.list_name)
            except ApiError as lookup_error:
                found, error = None, ApiError(f"{error}; then, looking it up: {lookup_error}")
            if found is None:
                run.fail(creation, str(error))
                return None, first
            state.segments[tag_key(found.name)] = found
            run.done(creation, "already there (created meanwhile)")
            return found.id, first  # its members may not all be in: added again
        state.segments[tag_key(made.name)] = made
        run.done(creation)
        for change in first:
            run.done(change)
        return made.id, []

    async def _tag_named(self, state: _ApplyState, name: str) -> Segment | None:
        segments = await self.client.list_all(
            f"{state.base}/segments", "segments", {"type": "static"}, keep=records.segment
        )
        return next((s for s in segments if tag_key(s.name) == tag_key(name)), None)

    async def _tag_batches(
        self,
        segment_id: int,
        *,
        name: str,
        adds: list[Change],
        removes: list[Change],
        run: ChangeRunner,
        state: _ApplyState,
    ) -> None:
        path = f"{state.base}/segments/{segment_id}"
        add_chunks = _split(adds, self.batch_size)
        remove_chunks = _split(removes, self.batch_size)
        calls = max(len(add_chunks), len(remove_chunks))

        async def one_call(index: int) -> None:
            to_add = add_chunks[index] if index < len(add_chunks) else []
            to_remove = remove_chunks[index] if index < len(remove_chunks) else []
            body = {
                "members_to_add": [self._address(c.email, state) for c in to_add],
                "members_to_remove": [self._address(c.email, state) for c in to_remove],
            }
            try:
                answer = await self.client.post(path, body, idempotent=True)
                failed = _segment_errors(answer, self._url(path))
            except ApiError as error:
                for change in (*to_add, *to_remove):
                    run.fail(change, str(error))
                return
            for change in (*to_add, *to_remove):
                problem = failed.get(change.email)
                if problem is None:
                    run.done(change)
                else:
                    run.fail(change, f"POST {self._url(path)}: tag {name!r}: {problem}")

        await asyncio.gather(*(one_call(index) for index in range(calls)))

    def _address(self, key: str, state: _ApplyState) -> str:
        found = state.members.get(key)
        return found.email if found else state.created.get(key, key)

    async def _delete_tag(self, change: Change, state: _ApplyState) -> str:
        found = state.segments.get(tag_key(change.list_name))
        if found is None:
            return "already gone"
        await self.client.delete(f"{state.base}/segments/{found.id}")
        return ""

    # -- archiving and permanent deletion

    async def _archive(self, change: Change, state: _ApplyState) -> str:
        """DELETE on a member archives it (405 for a pending, cleaned or archived one)."""
        try:
            await self.client.delete(f"{state.base}/members/{subscriber_hash(change.email)}")
        except ApiError as error:
            if error.status != 404:
                raise
            return "already gone"
        return "archived: no campaigns reach them; the record and its history are kept"

    async def _erase(self, change: Change, state: _ApplyState) -> str:
        path = f"{state.base}/members/{subscriber_hash(change.email)}/actions/delete-permanent"
        try:
            await self.client.post(path, None, idempotent=True)
        except ApiError as error:
            if error.status != 404:
                raise
            return "already gone"
        return "permanently deleted: this address can never be added again through the API"


# ---- what apply works with ---------------------------------------------------------------

MEMBER_BARE = "email_address,status,merge_fields,tags,tags_count,last_changed"
PEOPLE = (ResourceType.CONTACT, ResourceType.MEMBERSHIP)
ALREADY_PENDING = "already pending: Mailchimp mailed them a confirmation; none sent again"
ARCHIVED_UNTOUCHED = (
    "is archived in Mailchimp: reconcile writes nothing to an archived member, tags "
    "included (a member write would bring them back); to bring them back, set "
    "excluded_from_campaigns: false with opted_in_at"
)
PERMANENT = (
    "is deleted permanently: Mailchimp never lets this address be added again through the "
    "API (only the person can come back, through a Mailchimp signup form)"
)


@dataclass
class _ApplyState:
    base: str
    fields: dict[str, MergeField]
    segments: dict[str, Segment]
    members: dict[str, Member]
    changed_since: str | None
    created: dict[str, str] = dataclasses.field(default_factory=dict)  # key -> as written
    replaced: set[str] = dataclasses.field(default_factory=set)  # merge tags recreated
    renamed: dict[str, str] = dataclasses.field(default_factory=dict)  # old tag -> new tag


@dataclass(frozen=True)
class _Updates:
    batched: list[Change]
    alone: list[Change]
    calls: int


@dataclass
class _Work:
    property_creates: list[Change] = dataclasses.field(default_factory=list)
    property_replaces: list[Change] = dataclasses.field(default_factory=list)
    property_deletes: list[Change] = dataclasses.field(default_factory=list)
    list_creates: list[Change] = dataclasses.field(default_factory=list)
    list_deletes: list[Change] = dataclasses.field(default_factory=list)
    contact_creates: list[Change] = dataclasses.field(default_factory=list)
    contact_updates: list[Change] = dataclasses.field(default_factory=list)
    contact_deletes: list[Change] = dataclasses.field(default_factory=list)
    contact_archives: list[Change] = dataclasses.field(default_factory=list)
    memberships: list[Change] = dataclasses.field(default_factory=list)
    property_renames: list[Change] = dataclasses.field(default_factory=list)

    @property
    def new_lists(self) -> set[str]:
        return {change.list_name for change in self.list_creates}

    @classmethod
    def of(cls, changes: Iterable[Change]) -> _Work:
        work = cls()
        for change in changes:
            work._add(change)
        return work

    def _add(self, change: Change) -> None:
        kind, action = change.type, change.action
        if kind is ResourceType.MEMBERSHIP:
            self.memberships.append(change)
            return
        if Flag.ARCHIVE in change.flags:
            self.contact_archives.append(change)
            return
        if Flag.RENAME in change.flags:
            self.property_renames.append(change)  # lists are never renamed here
            return
        groups: dict[tuple[ResourceType, Action], list[Change]] = {
            (ResourceType.PROPERTY, Action.CREATE): self.property_creates,
            (ResourceType.PROPERTY, Action.UPDATE): self.property_replaces,
            (ResourceType.PROPERTY, Action.DELETE): self.property_deletes,
            (ResourceType.LIST, Action.CREATE): self.list_creates,
            (ResourceType.LIST, Action.DELETE): self.list_deletes,
            (ResourceType.CONTACT, Action.CREATE): self.contact_creates,
            (ResourceType.CONTACT, Action.UPDATE): self.contact_updates,
            (ResourceType.CONTACT, Action.DELETE): self.contact_deletes,
        }
        groups[(kind, action)].append(change)

    def tag_changes(self) -> dict[str, tuple[list[Change], list[Change]]]:
        """(adds, removes) by tag, in plan order."""
        by_tag: dict[str, tuple[list[Change], list[Change]]] = defaultdict(lambda: ([], []))
        for change in self.memberships:
            adds, removes = by_tag[change.list_name]
            (removes if change.action is Action.DELETE else adds).append(change)
        for change in self.list_creates:
            by_tag.setdefault(change.list_name, ([], []))
        return dict(by_tag)


def _state(found: MailchimpRecords, scope: ReadScope) -> State:
    names = TagNames(scope.lists)
    state = State(provider_records=found)
    for member in found.members.values():
        state.add_contact(member.contact(found.fields))
    for field in found.fields.values():
        kind = field.property_type
        if kind is PropertyType.FLOAT and _whole_numbers(state, field.tag):
            kind = PropertyType.INT  # Mailchimp has one number type: say int where it fits
        if kind is not None:
            state.properties[field.tag] = PropertyDef(field.tag, kind)
    for segment in found.segments.values():
        name = names(segment.name)
        state.lists[name] = ContactList(name)
    for member in found.members.values():
        for tag in member.tags:
            name = names(tag)
            state.lists.setdefault(name, ContactList(name))
            if scope.wants_members(name):
                state.memberships.put(name, member.key)
    return state


def _whole_numbers(state: State, tag: str) -> bool:
    return all(
        isinstance(value, int)
        for contact in state.contacts.values()
        if (value := contact.properties.get(tag)) is not None
    )


T = TypeVar("T")


def of_answer(read: Callable[[Any], T], answer: Any, method: str, url: str) -> T:
    """`read(answer)`; an answer it can't read is an error of the request that brought it."""
    try:
        return read(answer)
    except ApiError as error:
        raise of_request(error, method, url) from None


def _audience(record: Any) -> Audience:
    found_id = record.get("id") if isinstance(record, Mapping) else None
    name = record.get("name") if isinstance(record, Mapping) else None
    if not isinstance(found_id, str) or not isinstance(name, str):
        raise records.misread(f"expected an audience with an id and a name, got {record!r}")
    return Audience(found_id, name)


def _status_of(members: Mapping[str, Member], key: str) -> str | None:
    found = members.get(key)
    return found.status if found else None


def _reviewed_update(
    change: Change,
    status: str | None,
    fields: Mapping[str, MergeField],
    warnings: list[Finding],
) -> Change | None:
    after, before = change.contact_after, change.contact_before
    if status == ARCHIVED and Flag.RESUBSCRIBE not in change.flags:
        warnings.append(Finding(change.ref, ARCHIVED_UNTOUCHED))
        return None
    if status == CLEANED and after.fields.get(EXCLUDED) is False:
        warnings.append(
            Finding(
                change.ref,
                "bounced (cleaned in Mailchimp); reconcile never changes a cleaned status, "
                "so excluded_from_campaigns stays true",
            )
        )
        after, before = after.without(EXCLUDED), before.without(EXCLUDED)
        flags = change.flags - {Flag.RESUBSCRIBE}  # nobody is brought back by it now
    else:
        flags = change.flags
    cleared = [
        name
        for name, value in (after.properties or {}).items()
        if value is None and (field := fields.get(name)) is not None and field.required
    ]
    if cleared:
        warnings.append(
            Finding(
                change.ref,
                f"{', '.join(cleared)}: required in the Mailchimp audience, so its value "
                "can't be cleared; left as it is",
            )
        )
        after = _without_properties(after, cleared)
        before = _without_properties(before, cleared)
    if after.is_empty:
        return None
    if after == change.contact_after:
        return change
    return dataclasses.replace(change, before=before, after=after, flags=flags)


def _without_properties(values: ContactValues, names: Iterable[str]) -> ContactValues:
    dropped = set(names)
    kept = {k: v for k, v in (values.properties or {}).items() if k not in dropped}
    return dataclasses.replace(values, properties=kept or None)


def _moved(change: Change, planned: Member, now: Member) -> str | None:
    """Why a member's write must not go ahead as planned, or None."""
    if Flag.RESUBSCRIBE in change.flags and (
        now.status != planned.status or now.last_changed != planned.last_changed
    ):
        return (
            f"{now.email} changed since planning (opted out again?); not brought back "
            "(run plan again)"
        )
    if now.status == ARCHIVED and Flag.RESUBSCRIBE not in change.flags:
        return f"{now.email} was archived since planning: not written (it would bring them back)"
    return None


def _raise_if_dropped(values: Mapping[str, Any], answer: Any) -> None:
    problem = dropped_fields(values, answer)
    if problem:
        raise ApiError(problem)


def _items(
    changes: Iterable[Change], run: ChangeRunner, build: Callable[[Change], dict[str, Any]]
) -> list[tuple[Change, dict[str, Any]]]:
    """(change, its batch item) for each runnable change; one that can't be built fails."""
    ready = []
    for change in changes:
        if not run.runnable(change):
            continue
        try:
            ready.append((change, build(change)))
        except ApiError as error:
            run.fail(change, str(error))
    return ready


def _chunks(count: int, size: int) -> int:
    return -(-count // size)


def _tag_calls(adds: int, removes: int, size: int, *, new: bool) -> int:
    """A new tag is created with its first `size` members; then `size` adds and `size`
    removals a call."""
    if new:
        return 1 + max(_chunks(max(adds - size, 0), size), _chunks(removes, size))
    return max(_chunks(adds, size), _chunks(removes, size))


def _split(items: Sequence[Any], size: int) -> list[Any]:
    return [list(items[i : i + size]) for i in range(0, len(items), size)]


def _flag(value: bool) -> str:
    return "true" if value else "false"


def _since(moment: str) -> datetime:
    """The latest change the read saw (UTC `...Z`), less a margin for clocks."""
    return datetime.strptime(moment, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC) - FRESHNESS_MARGIN


def _since_query(moment: str) -> str:
    """`since_last_changed` as Mailchimp's query wants it (+00:00)."""
    return _since(moment).isoformat()


def _freshness_calls(members: Mapping[str, Member], since: str | None) -> int:
    """Pages of the two freshness reads (the audience, the archived) when nobody else
    writes meanwhile: the members changed within the margin of the read's latest change."""
    threshold = None if since is None else _since(since).strftime("%Y-%m-%dT%H:%M:%SZ")
    recent = [
        m for m in members.values() if threshold is None or (m.last_changed or "") >= threshold
    ]
    archived = sum(1 for m in recent if m.status == ARCHIVED)
    return _pages(len(recent) - archived) + _pages(archived)


def _pages(count: int) -> int:
    return max(1, _chunks(count, PAGE_SIZE))


def _opt_in_note(status: str) -> str:
    if status == PENDING:
        return "status pending: Mailchimp mails them a confirmation first"
    return ""


@dataclass
class _BatchOutcome:
    """Members of a batch subscribe that did not land: their errors by email key, and the
    addresses it refused as already in the audience."""

    failed: dict[str, str] = dataclasses.field(default_factory=dict)
    existing: set[str] = dataclasses.field(default_factory=set)


def _sent_tags(chunk: Sequence[tuple[Change, dict[str, Any]]]) -> dict[str, list[str]]:
    """The merge tags each member's item carried, by email key."""
    return {change.email: list(item.get("merge_fields", {})) for change, item in chunk}


def _batch_outcome(answer: Any, sent: Mapping[str, list[str]], path: str) -> _BatchOutcome:
    """Who of `sent` the answer did not create or update (or updated without a merge field
    it was sent: Mailchimp drops an unknown tag without a word); one it does not mention
    at all is an error too."""
    if not isinstance(answer, Mapping):
        raise ApiError(
            f"batch subscribe answered {str(answer)[:200]}; run plan again to see what landed",
            method="POST",
            path=path,
        )
    keys = list(sent)
    seen: set[str] = set()
    outcome = _BatchOutcome()
    for group in ("new_members", "updated_members"):
        for item in answer.get(group) or []:
            email = item.get("email_address") if isinstance(item, Mapping) else None
            if not isinstance(email, str):
                continue
            seen.add(email_key(email))
            problem = dropped_fields(sent.get(email_key(email), []), item)
            if problem:
                outcome.failed[email_key(email)] = f"POST {path} (batch subscribe): {problem}"
    for item in answer.get("errors") or []:
        email = item.get("email_address") if isinstance(item, Mapping) else None
        if not isinstance(email, str):
            continue
        if item.get("error_code") == "ERROR_CONTACT_EXISTS":
            outcome.existing.add(email_key(email))
        else:
            error = _member_error(item)
            outcome.failed[email_key(email)] = f"POST {path} (batch subscribe): {error}"
    for key in keys:
        if key not in seen and key not in outcome.failed and key not in outcome.existing:
            outcome.failed[key] = (
                f"POST {path}: the batch answer does not mention this member; run plan again "
                "to see whether it landed"
            )
    return outcome


def dropped_fields(tags: Iterable[str], answer: Any) -> str:
    """What a member write lost without an error: merge tags sent that the member it
    answered does not hold (the field is gone from the audience), or ""."""
    held = answer.get("merge_fields") if isinstance(answer, Mapping) else None
    if not isinstance(held, Mapping):
        return ""
    missing = [tag for tag in tags if tag not in held]
    if not missing:
        return ""
    return (
        f"Mailchimp dropped merge field {', '.join(missing)} (no longer in the audience?): "
        "the value was not saved; run plan again"
    )


def _member_error(item: Mapping[str, Any]) -> str:
    text = str(item.get("error") or "refused")
    field, message = item.get("field"), item.get("field_message")
    if field or message:
        text += f" ({field or '?'}: {message or ''})"
    if "compliance state" in text.lower():
        text += " — they unsubscribed, bounced or are under review: not retried"
    elif "signed up to a lot of lists" in text.lower():
        text += " — Mailchimp's per-address throttle: try this one again in a day"
    elif "permanently deleted" in text.lower() or "forgotten email" in text.lower():
        text += (
            " — Mailchimp never takes this address again through the API (only the person, "
            "through a signup form): remove the contact from the manifest"
        )
    return text


def _segment_errors(answer: Any, path: str) -> dict[str, str]:
    if not isinstance(answer, Mapping):
        raise ApiError(
            f"answered {str(answer)[:200]}; run plan again to see what landed",
            method="POST",
            path=path,
        )
    failed: dict[str, str] = {}
    for item in answer.get("errors") or []:
        if not isinstance(item, Mapping):
            continue
        for email in item.get("email_addresses") or []:
            if isinstance(email, str):
                failed[email_key(email)] = str(item.get("error") or "refused")
    return failed


# ---- offline checks ----------------------------------------------------------------------


def _property_findings(desired: State) -> Iterable[Finding]:
    for name, definition in desired.properties.items():
        ref = property_ref(name)
        problem = records.tag_problem(name)
        if problem:
            yield Finding(ref, f"{problem} (a property is a merge field, named by its tag)")
        if definition.type is PropertyType.BOOL:
            yield Finding(
                ref,
                "is bool, which Mailchimp merge fields can't hold (it refuses true/false); "
                "declare it str with values like 'yes'/'no', or int with 1/0",
            )
        if definition.namespace is not Namespace.STATIC:
            yield Finding(ref, "Mailchimp has no historic properties; remove namespace")


def _list_findings(desired: State) -> Iterable[Finding]:
    seen: dict[str, str] = {}
    for name in desired.lists:
        ref = list_ref(name)
        if name != name.strip() or not name.strip():
            yield Finding(ref, "a Mailchimp tag name can't start or end with spaces, or be empty")
        if len(name) > MAX_TAG_NAME:
            yield Finding(ref, f"is longer than {MAX_TAG_NAME} characters, the tag name limit")
        other = seen.setdefault(tag_key(name), name)
        if other != name:
            yield Finding(
                ref,
                f"differs from list {other!r} only in case; Mailchimp tags compare without "
                "case, so they would be one tag",
            )


def _contact_findings(desired: State) -> Iterable[Finding]:
    dates = {
        name
        for name, definition in desired.properties.items()
        if definition.type is PropertyType.DATETIME
    }
    for key, contact in desired.contacts.items():
        ref = contact_ref(key)
        if NAME.value in contact.fields:
            yield Finding(
                ref,
                "Mailchimp has no name field; declare FNAME and LNAME as properties (str) and "
                "give each contact's values there",
                (NAME.value,),
            )
        local, _, domain = contact.email.rpartition("@")
        domain = domain.lower()
        if _reserved(domain):
            yield Finding(
                ref,
                f"{contact.email!r}: Mailchimp refuses addresses at reserved domains such as "
                f"{domain} as fake or invalid; use a real domain",
            )
        elif not _named_domain(domain):
            yield Finding(
                ref,
                f"{contact.email!r}: Mailchimp takes addresses at a domain name (like "
                "acme.io), not at an IP address or a bare host name",
            )
        if not domain.isascii():
            yield Finding(
                ref,
                f"{contact.email!r}: write the domain in its xn-- (punycode) form; reconcile "
                "sends Mailchimp ASCII addresses only",
            )
        if not local.isascii():
            yield Finding(
                ref,
                f"{contact.email!r}: Mailchimp takes no address with letters beyond ASCII "
                "before the @",
            )
        for name, value in contact.properties.items():
            at = ("properties", name)
            if value == "":
                yield Finding(
                    ref,
                    "Mailchimp keeps an empty value as no value; write null (or leave it out)",
                    at,
                )
            if name in dates and isinstance(value, str) and not value.endswith("T00:00:00Z"):
                yield Finding(
                    ref,
                    f"{value!r} has a time of day, but a Mailchimp date field holds a date only "
                    "(it would be lost); give midnight UTC, or declare the property str",
                    at,
                )
