"""MailJawn's rate limits: per API key, reads and writes in separate fixed windows.

Every answer carries RateLimit-Limit / -Remaining / -Reset for the bucket the
request was counted in; a 429 adds Retry-After and DRF's throttle message.

Time scaling: the effective window is window_seconds / time_scale. With
time_scale <= 1 Retry-After is a whole number of seconds (at least 1) and
RateLimit-Reset a whole unix timestamp, as the real API sends them. With
time_scale > 1 both are decimals with millisecond precision (e.g. "0.095"), so
tests that shrink the window to a fraction of a second can honour them. Both are
rounded up: waiting what they say is never too early.

Limits and the window may change while serving (`set_limit`, `set_window`); the
window under way keeps its start and what it has counted.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

from starlette.responses import JSONResponse, Response

from reconcile.sandbox.common import FixedWindowLimiter

READ_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


@dataclass(frozen=True)
class Quota:
    """The state of one bucket after counting a request."""

    limit: int
    remaining: int
    reset_epoch: float
    allowed: bool


class RateLimits:
    def __init__(
        self,
        limits: dict[str, int],
        window_seconds: float,
        time_scale: float,
        clock: Callable[[], float],
    ) -> None:
        window = window_seconds / time_scale
        self._time_scale = time_scale
        self._whole_seconds = time_scale <= 1
        self._clock = clock
        self._limiters = {
            bucket: FixedWindowLimiter(limit, window, clock) for bucket, limit in limits.items()
        }

    def hit(self, bucket: str, key: str) -> Quota | None:
        """Count a request; None when the bucket is unlimited (limit 0): no headers then."""
        limiter = self._limiters[bucket]
        if limiter.limit <= 0:
            return None
        allowed, remaining, reset_epoch = limiter.hit(key)
        return Quota(limiter.limit, remaining, reset_epoch, allowed)

    def set_limit(self, bucket: str, limit: int) -> None:
        """From the next request on (0: unlimited, no headers)."""
        self._limiters[bucket].limit = limit

    def set_window(self, window_seconds: float) -> None:
        for limiter in self._limiters.values():
            limiter.window_seconds = window_seconds / self._time_scale

    def headers(self, quota: Quota | None) -> dict[str, str]:
        if quota is None:
            return {}
        return {
            "RateLimit-Limit": str(quota.limit),
            "RateLimit-Remaining": str(quota.remaining),
            "RateLimit-Reset": self._epoch_text(quota.reset_epoch),
        }

    def throttled(self, quota: Quota) -> Response:
        retry_after = self._seconds_text(quota.reset_epoch - self._clock())
        return JSONResponse(
            {"detail": f"Request was throttled. Expected available in {retry_after} seconds."},
            status_code=429,
            headers={"Retry-After": retry_after, **self.headers(quota)},
        )

    def _seconds_text(self, seconds: float) -> str:
        if self._whole_seconds:
            return str(max(1, math.ceil(seconds)))
        return f"{max(_ms_up(seconds), 0.001):.3f}"

    def _epoch_text(self, epoch: float) -> str:
        return str(math.ceil(epoch)) if self._whole_seconds else f"{_ms_up(epoch):.3f}"


def _ms_up(seconds: float) -> float:
    return math.ceil(seconds * 1000 - 1e-6) / 1000  # not up past float noise


def bucket_for_method(method: str) -> str:
    return "read" if method in READ_METHODS else "write"
