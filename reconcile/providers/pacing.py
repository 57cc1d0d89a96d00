"""Client-side pacing and retries, shared by both providers' clients.

A token bucket: a small burst (5% of the budget) lets short plans run at once, and
the refill rate is set so that burst + refill never exceeds the budget in any
window, fixed or sliding. A long plan then runs steadily at 95% of the limit
instead of in bursts that end in 429s. Several requests may be in flight at
once; only their starts are paced.

ServerPacer is for an API that states its windows (RateLimit-* headers): the server's
figures pace it, the configured budget is only the first guess.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Any

import httpx
import stamina
import stamina.instrumentation

from reconcile.providers.answers import explained, is_tls_failure

BURST_SHARE = 0.05
# Retries are counted in RequestStats and shown by the command line's progress; stamina's
# default hook would log a bare "stamina.retry_scheduled" line on stderr for each one.
stamina.instrumentation.set_on_retry_hooks([])


@dataclass
class Pacer:
    per_window: float
    window_seconds: float = 60.0
    clock: Callable[[], float] = time.monotonic
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep
    waited_seconds: float = 0.0
    _tokens: float = field(default=0.0, repr=False)
    _last: float | None = field(default=None, repr=False)

    @property
    def burst(self) -> float:
        return max(1.0, math.floor(self.per_window * BURST_SHARE))

    @property
    def rate(self) -> float:
        """Tokens per second: what is left of the budget once a burst is spent."""
        return max(self.per_window - self.burst, 1.0) / self.window_seconds

    async def wait_turn(self) -> None:
        delay = self._reserve()
        if delay > 0:
            self.waited_seconds += delay
            await self.sleep(delay)

    def _refill(self) -> float:
        now = self.clock()
        if self._last is None:
            self._tokens = self.burst
        else:
            self._tokens = min(self.burst, self._tokens + (now - self._last) * self.rate)
        self._last = now
        return now

    def _reserve(self) -> float:
        """Take a token (possibly one not refilled yet); return how long to wait for it."""
        self._refill()
        self._tokens -= 1
        return -self._tokens / self.rate if self._tokens < 0 else 0.0

    def hold_until(self, moment: float) -> None:
        """Start nothing before `moment` (a clock() value): the server asked us to wait."""
        now = self._refill()
        self._tokens = min(self._tokens, 1 - (moment - now) * self.rate)


SAME_WINDOW = 0.05  # seconds: Reset moments this close name the same window
# A wait this short is over: float noise in a clock() of 1.8e9 (the fake clocks that
# stand for the wall clock in tests) is larger than what is left after waiting it.
_SOON = 1e-6


@dataclass(frozen=True)
class Quota:
    """What one answer said of the window it was counted in: its limit, what remains of
    it, and when it ends (a clock() value, known to within `precision` seconds)."""

    limit: float | None
    remaining: float | None
    reset_at: float | None
    precision: float = SAME_WINDOW


@dataclass
class _Turn:
    granted: bool = False
    settled: bool = False


_TURN: ContextVar[_Turn | None] = ContextVar("reconcile_pacer_turn", default=None)


@dataclass
class ServerPacer(Pacer):
    """Paced by the server's own figures once an answer gives them; until then (and
    whenever answers stop giving them) by a Pacer's bucket on the configured budget.

    The server counts fixed windows. Within one, the lowest Remaining an answer gave is
    the server's count after the last request it counted, whatever order the answers
    arrive in; every request sent and not answered yet may have been counted since. So
    `remaining - unanswered` requests may start at once, none when that is used up, and
    at the window's end a new window holds the last Limit. An answer whose Reset is
    earlier than the current window's grants nothing. `per_window` becomes the server's
    Limit. Each request must be sent inside `sending()`, so that one never answered
    (lost connection, cancelled) gives its place back.
    """

    _known: bool = field(default=False, repr=False)
    _remaining: float = field(default=0.0, repr=False)
    _window_end: float | None = field(default=None, repr=False)
    _unanswered: int = field(default=0, repr=False)
    _held_until: float = field(default=0.0, repr=False)
    _news: asyncio.Event | None = field(default=None, repr=False)
    _news_loop: asyncio.AbstractEventLoop | None = field(default=None, repr=False)

    @property
    def unanswered(self) -> int:
        return self._unanswered

    async def wait_turn(self) -> None:
        while (delay := self._turn()) is not None:
            before = self.clock()
            await self._nap(delay)
            self.waited_seconds += max(self.clock() - before, 0.0)

    def hold_until(self, moment: float) -> None:
        self._held_until = max(self._held_until, moment)

    @contextmanager
    def sending(self) -> Iterator[None]:
        """Around one request: a turn given inside and never answered is given back."""
        turn = _Turn()
        token = _TURN.set(turn)
        try:
            yield
        finally:
            _TURN.reset(token)
            if turn.granted and not turn.settled:
                turn.settled = True
                self._give_back()

    def observe(self, quota: Quota) -> None:
        """An answer came (in the context of its `sending()`), with what it said."""
        self._settle()
        if quota.limit is not None and quota.limit >= 1:
            self.per_window = quota.limit
        if quota.remaining is None or quota.reset_at is None:
            if self._known:  # back to the bucket, from a full burst
                self._known, self._last = False, None
        else:
            self._learn(max(quota.remaining, 0.0), quota.reset_at, quota.precision)
        self._notify()

    def refused(self, until: float, limit: float | None) -> None:
        """A 429 said when to come back: nothing starts before, and a new window then."""
        self._settle()
        if limit is not None and limit >= 1:
            self.per_window = limit
        self._known, self._remaining, self._window_end = True, 0.0, until
        self.hold_until(until)
        self._notify()

    def _learn(self, remaining: float, reset_at: float, precision: float) -> None:
        if reset_at <= self.clock():
            return  # counted in a window that is over
        end = self._window_end
        if not self._known or end is None or reset_at > end + precision:
            self._known, self._remaining, self._window_end = True, remaining, reset_at
        elif reset_at >= end - precision:
            self._remaining = min(self._remaining, remaining)

    def _turn(self) -> float | None:
        """None when a request may start now (counted as sent), else how long to wait
        before asking again (inf: until an answer comes)."""
        now = self.clock()
        if self._held_until - now > _SOON:
            return self._held_until - now
        delay = self._window_delay(now) if self._known else self._bucket_delay()
        if delay is None:
            self._grant()
        return delay

    def _bucket_delay(self) -> float | None:
        self._refill()
        delay = (1 - self._tokens) / self.rate
        if delay > _SOON:
            return delay
        self._tokens -= 1
        return None

    def _window_delay(self, now: float) -> float | None:
        if self._window_end is not None and self._window_end - now <= _SOON:
            self._remaining, self._window_end = self.per_window, None
        if self._remaining - self._unanswered >= 1:
            return None
        return math.inf if self._window_end is None else self._window_end - now

    def _grant(self) -> None:
        self._unanswered += 1
        turn = _TURN.get()
        if turn is not None:
            turn.granted = True

    def _settle(self) -> None:
        turn = _TURN.get()
        if turn is not None:
            if not turn.granted or turn.settled:
                return
            turn.settled = True
        self._give_back()

    def _give_back(self) -> None:
        self._unanswered = max(self._unanswered - 1, 0)
        self._notify()

    async def _nap(self, delay: float) -> None:
        """Sleep `delay`, or less if an answer brings news first."""
        waits: set[asyncio.Future[Any]] = {asyncio.ensure_future(self._news_event().wait())}
        if math.isfinite(delay):
            waits.add(asyncio.ensure_future(self.sleep(delay)))
        try:
            await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for waiting in waits:
                waiting.cancel()

    def _news_event(self) -> asyncio.Event:
        loop = asyncio.get_running_loop()
        if self._news is None or self._news_loop is not loop:
            self._news, self._news_loop = asyncio.Event(), loop
        return self._news

    def _notify(self) -> None:
        if self._news is not None:
            self._news.set()
            self._news = None


class RetryableStatus(Exception):
    """An answer worth retrying (429, 5xx); carries the response for the final error.
    `throttled`: the server refused it for load (a 429, or what an API says instead), so
    nothing was done and it may always be sent again."""

    def __init__(self, response: httpx.Response, *, throttled: bool | None = None) -> None:
        self.response = response
        self.throttled = response.status_code == 429 if throttled is None else throttled
        super().__init__(f"HTTP {response.status_code}")


@dataclass(frozen=True)
class RetryPolicy:
    """Backoff for retryable failures (stamina): exponential with jitter, capped."""

    attempts: int = 6
    wait_initial: float = 1.0
    wait_max: float = 60.0
    wait_jitter: float = 1.0


def _retryable(idempotent: bool) -> Callable[[Exception], bool]:
    """Throttled answers always (nothing was done); 5xx and lost connections only when
    repeating is safe."""

    def retryable(error: Exception) -> bool:
        if isinstance(error, RetryableStatus):
            return error.throttled or idempotent
        if is_tls_failure(error):
            return False  # a wrong scheme or a bad certificate does not heal by waiting
        if isinstance(error, httpx.ConnectError | httpx.ConnectTimeout | httpx.PoolTimeout):
            return True  # never reached the server
        return idempotent and isinstance(error, httpx.TransportError)

    return retryable


async def send_with_retries(  # noqa: PLR0917 (one call site, in order of use)
    policy: RetryPolicy,
    stats: RequestStats,
    idempotent: bool,
    send: Callable[[], Awaitable[httpx.Response]],
    worth_retrying: Callable[[httpx.Response], bool],
    throttled: Callable[[httpx.Response], bool] = lambda response: response.status_code == 429,
) -> httpx.Response:
    """`send` until it answers something not worth retrying, backing off per `policy`.

    Raises RetryableStatus with the last answer when the attempts run out, and the
    transport error (explained: which timeout, TLS...) when a connection failure may
    not be repeated or keeps happening.
    """
    first = True
    try:
        async for attempt in stamina.retry_context(
            on=_retryable(idempotent),
            attempts=policy.attempts,
            wait_initial=policy.wait_initial,
            wait_max=policy.wait_max,
            wait_jitter=policy.wait_jitter,
        ):
            with attempt:
                if not first:
                    stats.retries += 1
                first = False
                response = await send()
                if worth_retrying(response):
                    raise RetryableStatus(response, throttled=throttled(response))
                return response
    except httpx.TransportError as error:
        raise explained(error) from error
    raise AssertionError("unreachable: stamina re-raises the last error")  # pragma: no cover


@dataclass
class RequestStats:
    requests: int = 0
    by_method: dict[str, int] = field(default_factory=dict)
    retries: int = 0
    rate_limited: int = 0

    def count(self, method: str) -> None:
        self.requests += 1
        self.by_method[method] = self.by_method.get(method, 0) + 1
