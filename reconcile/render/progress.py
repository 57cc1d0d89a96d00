"""Progress while reading and applying: a rich bar on a terminal, a log line every few
seconds elsewhere (CI), nothing with --quiet. It samples the provider's counters, so the
providers know nothing about how progress is shown (and this knows no provider)."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Callable
from enum import StrEnum
from typing import Protocol

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn


class Counters(Protocol):
    """What progress reads of a provider's stats (providers.base.ProviderStats)."""

    @property
    def requests(self) -> int: ...
    @property
    def rate_limited(self) -> int: ...
    @property
    def waited_seconds(self) -> float: ...
    @property
    def jobs_pending(self) -> int: ...


Stats = Callable[[], Counters]
LOG_EVERY_SECONDS = 10.0
SAMPLE_SECONDS = 0.2


class ProgressMode(StrEnum):
    BAR = "bar"
    LOG = "log"
    QUIET = "quiet"


def choose_mode(console: Console, quiet: bool) -> ProgressMode:
    if quiet:
        return ProgressMode.QUIET
    return ProgressMode.BAR if console.is_terminal else ProgressMode.LOG


def describe(stats: Counters, since: Counters) -> str:
    requests = stats.requests - since.requests
    waited = stats.waited_seconds - since.waited_seconds
    parts = [f"{requests:,} requests", f"{waited:.0f} s waiting on rate limits"]
    if stats.jobs_pending:
        parts.append(f"{stats.jobs_pending} bulk jobs pending")
    if stats.rate_limited:
        parts.append(f"{stats.rate_limited} answered 429")
    return ", ".join(parts)


@contextlib.asynccontextmanager
async def watching(
    console: Console, mode: ProgressMode, label: str, stats: Stats, total: int | None = None
) -> AsyncIterator[None]:
    """Show progress of `label` until the block ends; `total` is the expected request count."""
    if mode is ProgressMode.QUIET:
        yield
        return
    since = stats()  # a snapshot: it does not change as requests go on
    task = asyncio.create_task(
        _bar(console, label, stats, since, total)
        if mode is ProgressMode.BAR
        else _log(console, label, stats, since)
    )
    try:
        yield
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
    # Only after success: a failure prints its own error instead.
    if mode is ProgressMode.LOG:
        console.print(f"{label}: done, {describe(stats(), since)}")


async def _bar(
    console: Console, label: str, stats: Stats, since: Counters, total: int | None
) -> None:
    columns = (
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TextColumn("{task.fields[detail]}"),
    )
    with Progress(*columns, console=console, transient=True) as progress:
        task = progress.add_task(label, total=total, detail="")
        while True:
            now = stats()
            done = now.requests - since.requests
            progress.update(task, completed=done, detail=describe(now, since))
            await asyncio.sleep(SAMPLE_SECONDS)


async def _log(console: Console, label: str, stats: Stats, since: Counters) -> None:
    started = time.monotonic()
    while True:
        await asyncio.sleep(LOG_EVERY_SECONDS)
        elapsed = time.monotonic() - started
        console.print(f"{label}: {elapsed:.0f} s, {describe(stats(), since)}")
