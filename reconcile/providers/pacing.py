"""Client-side pacing to a requests-per-window budget, shared by both providers' clients.

Requests get evenly spaced start slots, so a limit is used steadily instead of in
bursts that end in 429s. Several requests may be in flight at once; only their
starts are spaced.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field


@dataclass
class Pacer:
    per_window: float
    window_seconds: float = 60.0
    clock: Callable[[], float] = time.monotonic
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep
    waited_seconds: float = 0.0
    _next_slot: float = field(default=0.0, repr=False)

    @property
    def interval(self) -> float:
        return self.window_seconds / self.per_window

    async def wait_turn(self) -> None:
        now = self.clock()
        slot = max(now, self._next_slot)
        self._next_slot = slot + self.interval
        delay = slot - now
        if delay > 0:
            self.waited_seconds += delay
            await self.sleep(delay)

    def hold_until(self, moment: float) -> None:
        """Start nothing before `moment` (a clock() value): the server asked us to wait."""
        self._next_slot = max(self._next_slot, moment)


@dataclass
class RequestStats:
    requests: int = 0
    by_method: dict[str, int] = field(default_factory=dict)
    retries: int = 0
    rate_limited: int = 0

    def count(self, method: str) -> None:
        self.requests += 1
        self.by_method[method] = self.by_method.get(method, 0) + 1
