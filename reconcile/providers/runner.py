"""Runs a provider's write steps over changes and records each change's outcome once.

Steps run concurrently (the clients pace the requests). A change whose dependency
failed is skipped, not tried; a step that covers several changes (one call for all
of a contact's lists) succeeds or fails for all of them together.
"""

from __future__ import annotations

import asyncio
from collections import defaultdict
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from contextlib import asynccontextmanager

from reconcile.diff import Change, Ref
from reconcile.errors import ApiError
from reconcile.model import email_key
from reconcile.providers.base import INTERRUPTED, ApplyReport, Cancellation, blocker

Step = Callable[[Change], Awaitable[str | None]]
GroupStep = Callable[[str, list[Change]], Awaitable[None]]
GUARDED_PAIRS = 4  # read-then-write pairs open at once (the clients' requests in flight)


class GuardedWrites:
    """Keeps a guard read next to the write it guards (is this person still opted out as
    planned? what is their record now?). Steps run gathered: without a bound every
    step's read goes out first and the writes follow, minutes later at a paced rate, so
    an opt-out made in between would be overwritten. With it, at most a few requests
    pass between a read and its write."""

    def __init__(self, pairs: int = GUARDED_PAIRS) -> None:
        self.pairs = pairs
        self._open: dict[asyncio.AbstractEventLoop, asyncio.Semaphore] = {}

    @asynccontextmanager
    async def pair(self) -> AsyncIterator[None]:
        loop = asyncio.get_running_loop()
        if loop not in self._open:
            self._open = {loop: asyncio.Semaphore(self.pairs)}  # earlier loops are gone
        async with self._open[loop]:
            yield


@asynccontextmanager
async def all_or_none() -> AsyncIterator[asyncio.TaskGroup]:
    """Tasks that succeed together: when one fails, the others are cancelled and awaited
    before its error (the first one, not an ExceptionGroup) propagates, so no request is
    left in flight on a client that is about to close."""
    try:
        async with asyncio.TaskGroup() as group:
            yield group
    except BaseExceptionGroup as failed:
        raise _first(failed) from None


def _first(group: BaseExceptionGroup[BaseException]) -> BaseException:
    error = group.exceptions[0]
    return _first(error) if isinstance(error, BaseExceptionGroup) else error


def contact_of(change: Change) -> str:
    """The email key of the contact a contact or membership change concerns."""
    return email_key(change.email)


class ChangeRunner:
    def __init__(self, report: ApplyReport, cancel: Cancellation) -> None:
        cancel.applying = True
        self.cancel = cancel
        self.report = report
        self.failed: set[Ref] = set()
        self.pending: set[Ref] = set()  # first step done, a second one to come (finish_each)

    def runnable(self, change: Change) -> bool:
        """False (and reported skipped) when something it depends on failed, or when a stop
        was requested (Ctrl-C) before it started."""
        if self.cancel.requested:
            self.failed.add(change.ref)
            self.report.not_started(change)
            return False
        blocking = blocker(change, self.failed)
        if blocking is None:
            return True
        self.failed.add(change.ref)
        self.report.skipped(change, blocking)
        return False

    def done(self, change: Change, message: str = "") -> None:
        self.pending.discard(change.ref)
        self.report.done(change, message)

    def fail(self, change: Change, message: str) -> None:
        started = change.ref in self.pending  # its first write landed (start_each)
        self.pending.discard(change.ref)
        self.failed.add(change.ref)
        if message.endswith(INTERRUPTED) and not started:  # never sent anything
            self.report.not_started(change)
        elif started:
            self.report.failed(
                change, f"partly done: its first write landed, then: {message}; run plan again"
            )
        else:
            self.report.failed(change, message)

    def mark_carried(self, changes: Iterable[Change]) -> None:
        """Changes carried out by another change's write (memberships riding in a contact's
        creation): done, unless a dependency failed."""
        for change in changes:
            if self.runnable(change):
                self.done(change)

    async def run_each(self, changes: Iterable[Change], step: Step) -> None:
        """`step` once per runnable change, which is then done (or failed)."""
        runnable = [change for change in changes if self.runnable(change)]
        await asyncio.gather(*(self._one(change, step, last=True) for change in runnable))

    async def start_each(self, changes: Iterable[Change], step: Step) -> None:
        """The first of two steps per runnable change: `finish_each` completes it."""
        runnable = [change for change in changes if self.runnable(change)]
        await asyncio.gather(*(self._one(change, step, last=False) for change in runnable))

    async def finish_each(self, changes: Iterable[Change], step: Step) -> None:
        """The second step of each change whose first one (`start_each`) succeeded."""
        waiting = [change for change in changes if change.ref in self.pending]
        await asyncio.gather(*(self._one(change, step, last=True) for change in waiting))

    async def run_per_contact(self, changes: Iterable[Change], step: GroupStep) -> None:
        """One `step` call per contact, covering all of that contact's changes."""
        by_contact: dict[str, list[Change]] = defaultdict(list)
        for change in changes:
            by_contact[contact_of(change)].append(change)
        await asyncio.gather(
            *(self.run_as_one(key, group, step) for key, group in by_contact.items())
        )

    async def run_as_one(self, key: str, changes: list[Change], step: GroupStep) -> None:
        """One write covering several changes: all done or all failed together."""
        runnable = [change for change in changes if self.runnable(change)]
        if not runnable:
            return
        try:
            await step(key, runnable)
        except ApiError as error:
            for change in runnable:
                self.fail(change, str(error))
            return
        for change in runnable:
            self.done(change)

    async def _one(self, change: Change, step: Step, *, last: bool) -> None:
        try:
            message = await step(change)
        except ApiError as error:
            self.fail(change, str(error))
            return
        if last:
            self.done(change, message or "")
        else:
            self.pending.add(change.ref)
