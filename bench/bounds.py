"""What a run is measured against: the physical limits of the service it talks to.

No client can finish faster than its rate limits allow (calls / rate) nor faster than
the round trips that must follow one another allow (chain x latency). A run's ratio
is its wall time over the larger of the two; 1.0 is the physical limit. Below 1.0 is
possible for small runs: a per-minute limit lets the first calls out at once.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Budget:
    """Calls paced by one rate limit."""

    calls: int
    per_minute: float

    @property
    def seconds(self) -> float:
        return self.calls / self.per_minute * 60.0


@dataclass(frozen=True)
class Bound:
    budgets: tuple[Budget, ...]
    chain: int  # round trips that each need the answer of the one before
    latency: float  # seconds per round trip

    @property
    def rate_seconds(self) -> float:
        return max((budget.seconds for budget in self.budgets), default=0.0)

    @property
    def latency_seconds(self) -> float:
        return self.chain * self.latency

    @property
    def seconds(self) -> float:
        return max(self.rate_seconds, self.latency_seconds)

    def ratio(self, wall: float) -> float:
        return wall / self.seconds if self.seconds else float("inf")

    def as_json(self, wall: float) -> dict[str, float]:
        return {
            "rate_bound": self.rate_seconds,
            "latency_bound": self.latency_seconds,
            "chain": self.chain,
            "ratio": self.ratio(wall),
        }


def collection_chain(items: int, page: int, *, total_in_page: bool) -> int:
    """Round trips to read a collection whose pages can be fetched at once once their
    number is known: the first page; the count, unless the page gives it; the rest;
    and one more when the last page is exactly full (nothing else says it is the last)."""
    if items < page or (total_in_page and items == page):
        return 1
    trips = 1 if total_in_page else 2  # the first page, and the count
    if items > page:
        trips += 1  # every other page at once
    if not total_in_page and items % page == 0:
        trips += 1  # the empty page after a full last one
    return trips
