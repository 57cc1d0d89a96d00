"""What every provider offers the engine: capabilities, read, apply, and the apply report."""

from __future__ import annotations

import asyncio
import contextlib
from abc import ABC, abstractmethod
from collections.abc import Awaitable, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import ClassVar, TypeVar

from reconcile.diff import (
    Action,
    Change,
    Finding,
    Ref,
    ResourceType,
    contact_ref,
    list_ref,
    property_ref,
)
from reconcile.errors import ApiError
from reconcile.model import ProviderRecords, ReadScope, State


class Capability(StrEnum):
    PROPERTY_DEFINITIONS = "property definitions"  # definitions exist remotely and are written
    REMOVE_LIST_MEMBER = "remove a list member"
    LIST_UNSUBSCRIBE = "unsubscribe from one list"
    DELETE_LIST = "delete a list"
    HARD_DELETE = "delete a contact (erasure)"
    ARCHIVE = "archive a contact"
    RENAME_LIST = "rename a list"  # in place: members and unsubscribes kept (renamed_from:)
    RENAME_PROPERTY = "rename a property definition"  # in place: every value kept


class OutcomeStatus(StrEnum):
    DONE = "done"
    FAILED = "failed"
    SKIPPED = "skipped"


@dataclass(slots=True)
class Outcome:
    """What became of one change (not changed once made: a slots class is quicker to
    make than a frozen one, and a million of them hold the change, not its address)."""

    change: Change
    status: OutcomeStatus
    message: str = ""

    @property
    def address(self) -> str:
        return self.change.address


@dataclass
class ApplyReport:
    outcomes: list[Outcome] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)  # what apply found out about the API

    def note(self, text: str) -> None:
        self.notes.append(text)

    def done(self, change: Change, message: str = "") -> None:
        self.outcomes.append(Outcome(change, OutcomeStatus.DONE, message))

    def failed(self, change: Change, message: str) -> None:
        self.outcomes.append(Outcome(change, OutcomeStatus.FAILED, message))

    def skipped(self, change: Change, blocker: str) -> None:
        self.outcomes.append(Outcome(change, OutcomeStatus.SKIPPED, f"skipped: {blocker} failed"))

    def not_started(self, change: Change) -> None:
        self.outcomes.append(Outcome(change, OutcomeStatus.SKIPPED, INTERRUPTED))

    @property
    def interrupted(self) -> bool:
        return any(INTERRUPTED in o.message for o in self.outcomes)

    @property
    def ok(self) -> bool:
        return all(o.status is OutcomeStatus.DONE for o in self.outcomes)

    def count(self, status: OutcomeStatus) -> int:
        return sum(1 for o in self.outcomes if o.status is status)


T = TypeVar("T")
RecordsT = TypeVar("RecordsT", bound=ProviderRecords)


def records_of(live: State, kind: type[RecordsT]) -> RecordsT | None:
    """The provider's own part of `live` (None when the state was built, not read); a live
    state read by another provider is refused."""
    found = live.provider_records
    if found is None or isinstance(found, kind):
        return found
    raise ApiError(f"the live state was read by another provider ({type(found).__name__})")


INTERRUPTED = "not started: apply was interrupted"


class Cancellation:
    """One run's Ctrl-C, made by the command line and handed to the clients and provider.

    Before apply begins, a stop ends the run at once. Once it has begun, a stop lets the
    writes in flight finish and starts nothing new; whether any write went out decides
    what the command line may say was changed.
    """

    def __init__(self) -> None:
        self.requested = False
        self.applying = False  # apply has begun: a stop now lets the writes in flight finish
        self.wrote = False  # a write request went out: some change may have landed
        self._events: dict[asyncio.AbstractEventLoop, asyncio.Event] = {}

    def request(self) -> None:
        self.requested = True
        for event in self._events.values():
            event.set()

    async def wait(self) -> None:
        """Returns once a stop is requested (an event of the running loop's own)."""
        loop = asyncio.get_running_loop()
        event = self._events.get(loop)
        if event is None:
            event = asyncio.Event()
            self._events = {loop: event}  # earlier loops are gone
        if self.requested:
            event.set()
        await event.wait()

    async def unless_requested(self, work: Awaitable[T], method: str, path: str) -> T:
        """`work` (a wait for a rate-limit slot, or a read that only prepares a write), given
        up as soon as a stop is requested: after Ctrl-C, queued writes end at once instead
        of each first waiting for its turn."""
        if self.requested:
            if asyncio.iscoroutine(work):
                work.close()  # never started
            raise ApiError(INTERRUPTED, method=method, path=path)
        task = asyncio.ensure_future(work)
        stop = asyncio.ensure_future(self.wait())
        try:
            await asyncio.wait({task, stop}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            stop.cancel()
            if not task.done():  # stopped, or this wait was cancelled: the work ends too
                task.cancel()
        if not task.done():
            with contextlib.suppress(asyncio.CancelledError):
                await task
            raise ApiError(INTERRUPTED, method=method, path=path)
        return task.result()

    def refuse_when_requested(self, method: str, path: str) -> None:
        """Called just before a write goes out: after Ctrl-C no new write starts (reads and
        job polls go on, so jobs already submitted are followed to their end)."""
        if self.requested:
            raise ApiError(INTERRUPTED, method=method, path=path)


@dataclass(frozen=True)
class ProviderStats:
    """Counters for progress, reports and benchmarks; 0 where a provider has no such thing."""

    requests: int = 0
    retries: int = 0
    rate_limited: int = 0  # answers that said "too many requests"
    waited_seconds: float = 0.0  # time requests spent waiting on rate limits
    jobs_pending: int = 0  # asynchronous jobs submitted and not finished yet


def dependencies(change: Change) -> list[Ref]:
    """What a change needs to have succeeded first (only creations can fail them)."""
    if change.type is ResourceType.CONTACT and change.action is not Action.DELETE:
        return [property_ref(name) for name in change.contact_after.properties or {}]
    if change.type is ResourceType.MEMBERSHIP and change.action is not Action.DELETE:
        return [list_ref(change.list_name), contact_ref(change.email)]
    return []


def blocker(change: Change, failed: set[Ref]) -> str | None:
    """The address of a failed dependency of `change`, or None."""
    return next((dep.address for dep in dependencies(change) if dep in failed), None)


class Provider(ABC):
    """A provider reads live state in the neutral model and carries out planned changes.

    Subclasses own their API's semantics (full-replacement writes, ordering of
    definitions before data, bulk jobs); the engine sees only this interface.
    """

    name: ClassVar[str]
    capabilities: ClassVar[frozenset[Capability]]
    # What the provider offers for changing a contact's email address, for the message that
    # refuses a contact's renamed_from: reconcile never changes an address.
    address_change: ClassVar[str] = "it has no way to change a contact's address"
    sandbox_id: str | None = None  # set by the engine when it opened the built-in sandbox

    def identity(self, live: State | None) -> dict[str, str]:
        """The account's public identity: where it is served and an id, never a secret
        (`live`, as read from it, for what only a read finds: an audience's id; None
        before reading)."""
        return {}

    def target(self, live: State) -> str:
        """What the plan is against, for people, when the account is more than its
        credentials (an audience found by name in `live`'s read): shown with the provider's
        name."""
        return ""

    def account(self, live: State | None) -> dict[str, str]:
        """What a saved plan records and `apply --plan` checks: the same account, or refuse."""
        if self.sandbox_id is not None:
            return {"kind": "sandbox", "sandbox_id": self.sandbox_id, **self.scope_of(live)}
        return {"kind": "service", **self.identity(live)}

    def scope_of(self, live: State | None) -> dict[str, str]:
        """The part of the account a plan is about, when it is less than the whole one (a
        Mailchimp audience, found by the read `live`): part of `account` in the sandbox too."""
        return {}

    @abstractmethod
    async def read(self, scope: ReadScope) -> State:
        """Live state: all definitions, lists and contacts, memberships of scope.lists."""

    async def read_against(self, desired: State, scope: ReadScope) -> State:
        """Live state to compare `desired` with. Without remote property definitions
        (no PROPERTY_DEFINITIONS), the definitions are the manifest's own."""
        live = await self.read(scope)
        if Capability.PROPERTY_DEFINITIONS not in self.capabilities:
            live.properties = dict(desired.properties)
        return live

    @abstractmethod
    async def apply(self, changes: Sequence[Change], live: State) -> ApplyReport:
        """Carry out `changes` (already ordered) against `live` as read just before."""

    @classmethod
    def check_desired(cls, desired: State) -> list[Finding]:
        """Provider-specific manifest problems found offline (names it can't hold...)."""
        return []

    def check_against(self, desired: State, live: State) -> list[Finding]:
        """Manifest problems only the live account shows (a declared property that is a
        kind of field the provider can't manage): refused like validate's, file and line."""
        return []

    def review(self, changes: Sequence[Change], live: State) -> tuple[list[Change], list[Finding]]:
        """Drop changes this provider must never make (with a warning for each)."""
        return list(changes), []

    def estimate_calls(self, changes: Sequence[Change], live: State) -> int:
        """API calls apply will make for `changes` (writes and job polls)."""
        return len(changes)

    def estimate_assumes(self, changes: Sequence[Change], live: State) -> str:
        """What `estimate_calls` takes for granted that only apply can find out ("" when
        nothing): shown with the estimate."""
        return ""

    def estimate(self, changes: Sequence[Change], live: State) -> tuple[int, str]:
        """`estimate_calls` and `estimate_assumes` together (a provider whose two share
        costly work does it once)."""
        return self.estimate_calls(changes, live), self.estimate_assumes(changes, live)

    @abstractmethod
    async def aclose(self) -> None:
        """Release connections."""

    def stats(self) -> ProviderStats:
        """Counters for reports and benchmarks (requests made, time waiting on limits)."""
        return ProviderStats()
