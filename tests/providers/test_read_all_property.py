"""read_all fetches the pages a count implies at once: whatever order the answers come
back in, and whether the count is given, asked for, stale or missing, the items are
those of a sequential read, in order, each once. The answers are delayed at random so
pages complete out of order."""

from __future__ import annotations

import asyncio
import random
from typing import Any

import httpx
from hypothesis import given, settings
from hypothesis import strategies as st

from reconcile.providers.http import Page, Paging
from tests.providers.calls import run
from tests.providers.test_http_core import WidgetClient

COUNT_MODES = ("in_page", "asked", "asked_low", "asked_high", "none")


def paging(size: int) -> Paging:
    def read(answer: Any, _url: str) -> Page:
        total = answer.get("count")
        return Page(answer["items"], total if isinstance(total, int) else None)

    return Paging(size, "size", "from", read)


@settings(max_examples=150, deadline=None)
@given(
    items=st.integers(0, 40),
    page=st.integers(1, 7),
    mode=st.sampled_from(COUNT_MODES),
    seed=st.integers(0, 2**16),
)
def test_concurrent_pages_give_what_a_sequential_read_gives(
    items: int, page: int, mode: str, seed: int
) -> None:
    delays = random.Random(seed)
    offsets: list[int] = []

    async def handler(request: httpx.Request) -> httpx.Response:
        start, limit = int(request.url.params["from"]), int(request.url.params["size"])
        offsets.append(start)
        await asyncio.sleep(delays.random() / 1000)  # answers overtake one another
        count = items if mode == "in_page" else None
        return httpx.Response(
            200, json={"items": list(range(start, min(start + limit, items))), "count": count}
        )

    async def count() -> int:
        return {"asked": items, "asked_low": items // 2, "asked_high": items + 2 * page}[mode]

    counting = count if mode.startswith("asked") else None
    read = run(
        WidgetClient(handler), lambda client: client.read_all("/w", paging(page), count=counting)
    )

    assert read == list(range(items))
    assert len(offsets) == len(set(offsets)), "a page was asked for twice"
    assert all(offset % page == 0 for offset in offsets)
