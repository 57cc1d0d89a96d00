"""The bounds the benchmarks measure against (bench/bounds.py): pure arithmetic."""

from __future__ import annotations

import pytest

from bench.bounds import Bound, Budget, collection_chain


@pytest.mark.parametrize(
    ("items", "total_in_page", "trips"),
    [
        (0, False, 1),  # one short page says it all
        (999, False, 1),
        (1000, False, 3),  # full page, count, then the empty page after it
        (1500, False, 3),  # first page, count, the rest at once
        (2000, False, 4),  # ... and the empty page after a full last one
        (1000, True, 1),  # the total says there is no more
        (1001, True, 2),  # first page with its total, the rest at once
    ],
)
def test_a_collections_round_trips(items: int, total_in_page: bool, trips: int) -> None:
    assert collection_chain(items, 1000, total_in_page=total_in_page) == trips


def test_the_bound_is_the_slower_of_the_rate_limit_and_the_chain_of_round_trips() -> None:
    rate_bound = Bound((Budget(100, 200), Budget(30, 30)), chain=4, latency=0.3)
    assert rate_bound.rate_seconds == 60.0  # 30 writes at 30 a minute outweigh 100 reads
    assert rate_bound.seconds == 60.0
    assert rate_bound.ratio(72.0) == pytest.approx(1.2)
    latency_bound = Bound((Budget(2, 1200),), chain=4, latency=0.3)
    assert latency_bound.seconds == pytest.approx(1.2)
    assert latency_bound.as_json(0.6)["ratio"] == pytest.approx(0.5)
