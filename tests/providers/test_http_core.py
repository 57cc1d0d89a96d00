"""The shared HTTP client core with a made-up API (no provider's): paging, error mapping,
retries, lanes, credentials and the cancellation token. httpx's MockTransport gives the
answers, since no emulator speaks this API; the providers' own client tests cover the
core again against their emulators."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Coroutine
from typing import Any, ClassVar, TypeVar

import httpx
import pytest

from reconcile.errors import ApiError
from reconcile.providers.base import INTERRUPTED, Cancellation, ProviderStats
from reconcile.providers.http import (
    RETRY_AFTER_MAX,
    AdaptiveLimit,
    ApiClient,
    BearerAuth,
    Lane,
    Page,
    Paging,
)
from reconcile.providers.pacing import Pacer, RetryPolicy
from tests.providers.calls import FakeTime, error_of, run

T = TypeVar("T")
Handler = Callable[[httpx.Request], httpx.Response]
AnyHandler = Handler | Callable[[httpx.Request], Coroutine[Any, Any, httpx.Response]]
FAST_RETRY = RetryPolicy(attempts=3, wait_initial=0.001, wait_max=0.002, wait_jitter=0.0)
UNLIMITED = 1_000_000.0
SECRET = "tok_very_secret"


def _page(answer: Any, url: str) -> Page:
    if not isinstance(answer, dict) or not isinstance(answer.get("items"), list):
        raise ApiError("answer has no items", method="GET", path=url)
    total = answer.get("count")
    return Page(answer["items"], total if isinstance(total, int) else None)


PAGES = Paging(2, "size", "from", _page)


class WidgetClient(ApiClient):
    service = "Widgets"
    url_setting = "WIDGETS_URL"
    message_fields = ("message", "detail")
    hints: ClassVar[dict[int, str]] = {404: "it is gone; plan again"}

    def __init__(
        self,
        handler: AnyHandler,
        *,
        reads: Pacer | None = None,
        writes: Pacer | None = None,
        cancel: Cancellation | None = None,
    ) -> None:
        reading = Lane(reads or Pacer(UNLIMITED), 4)
        super().__init__(
            base_url="http://widgets.test",
            prefix="/api",
            auth=BearerAuth(SECRET),
            reading=reading,
            writing=Lane(writes, 4) if writes is not None else reading,
            transport=httpx.MockTransport(handler),
            retry=FAST_RETRY,
            cancel=cancel,
        )

    def redact(self, text: str) -> str:
        return text.replace(SECRET, "tok_***")


class ExactWidgetClient(WidgetClient):
    exact_retry_after = True


def paced_by(fake: FakeTime, per_window: float = UNLIMITED, window: float = 60.0) -> Pacer:
    return Pacer(per_window, window, clock=fake.clock, sleep=fake.sleep)


def answering(*responses: httpx.Response) -> tuple[Handler, list[httpx.Request]]:
    """A handler giving `responses` in turn (the last one again), and the requests seen."""
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return responses[min(len(seen), len(responses)) - 1]

    return handler, seen


def catalogue(size: int, count: int | None = None) -> Handler:
    def handler(request: httpx.Request) -> httpx.Response:
        start, limit = int(request.url.params["from"]), int(request.url.params["size"])
        items = [{"n": n} for n in range(start, min(start + limit, size))]
        return httpx.Response(200, json={"items": items, "count": count})

    return handler


# ---- paging -----------------------------------------------------------------------------


@pytest.mark.parametrize(("size", "pages"), [(5, 3), (4, 3), (0, 1)])
def test_read_all_asks_page_after_page_until_a_short_one(size: int, pages: int) -> None:
    seen: list[httpx.Request] = []
    handler = catalogue(size)

    def recording(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return handler(request)

    items = run(WidgetClient(recording), lambda c: c.read_all("/widgets", PAGES, {"q": "x"}))

    assert [item["n"] for item in items] == list(range(size))
    assert [dict(r.url.params) for r in seen] == [
        {"q": "x", "size": "2", "from": str(2 * n)} for n in range(pages)
    ]


def test_read_all_stops_at_the_smallest_total_an_answer_gave() -> None:
    # Full pages forever, and a count that keeps growing: the first count is the bound.
    calls = 0

    def growing(request: httpx.Request) -> httpx.Response:
        nonlocal calls
        calls += 1
        start = int(request.url.params["from"])
        return httpx.Response(200, json={"items": [{}, {}], "count": 6 + start})

    items = run(WidgetClient(growing), lambda c: c.read_all("/widgets", PAGES))

    assert (calls, len(items)) == (3, 6)


def test_keep_turns_items_as_they_come_and_its_errors_name_the_request() -> None:
    def keep(item: dict[str, int]) -> int:
        if item["n"] == 3:
            raise ApiError("widget 3 has no name", path="/widgets/3")
        return item["n"] * 10

    assert run(WidgetClient(catalogue(3)), lambda c: c.read_all("/w", PAGES, keep=keep)) == [
        0,
        10,
        20,
    ]
    error = error_of(WidgetClient(catalogue(5)), lambda c: c.read_all("/w", PAGES, keep=keep))
    assert str(error).startswith("GET /api/w")
    assert "widget 3 has no name" in str(error)


def test_a_page_the_paging_cannot_read_is_an_error_naming_the_url() -> None:
    handler, _ = answering(httpx.Response(200, json={"rows": []}))

    error = error_of(WidgetClient(handler), lambda c: c.read_all("/widgets", PAGES))

    assert str(error).startswith("GET /api/widgets")
    assert "answer has no items" in str(error)


# ---- answers and errors -----------------------------------------------------------------


def test_the_first_message_field_the_answer_has_and_the_hint_of_its_status() -> None:
    handler, _ = answering(httpx.Response(404, json={"message": "", "detail": "no widget 7"}))

    error = error_of(WidgetClient(handler), lambda c: c.request("GET", "/widgets/7"))

    assert (error.status, error.method, error.path) == (404, "GET", "/api/widgets/7")
    assert "no widget 7" in str(error)
    assert "it is gone; plan again" in str(error)


def test_a_message_object_is_listed_field_by_field() -> None:
    body = {"message": {"name": "too long", "size": "negative"}}
    handler, _ = answering(httpx.Response(400, json=body))

    error = error_of(WidgetClient(handler), lambda c: c.request("POST", "/widgets"))

    assert "name: too long; size: negative" in str(error)


@pytest.mark.parametrize(
    ("response", "shown"),
    [
        (httpx.Response(400, json={"code": 17}), "{'code': 17}"),
        (httpx.Response(400, json=["bad", "worse"]), "['bad', 'worse']"),
        (
            httpx.Response(400, text="<h1>No</h1>", headers={"content-type": "text/html"}),
            "non-JSON error body (text/html): '<h1>No</h1>'",
        ),
    ],
)
def test_an_error_without_a_message_field_shows_what_the_body_says(
    response: httpx.Response, shown: str
) -> None:
    handler, _ = answering(response)

    error = error_of(WidgetClient(handler), lambda c: c.request("GET", "/widgets"))

    assert shown in str(error)


def test_server_errors_get_the_generic_hint_and_empty_successes_are_none() -> None:
    handler, _ = answering(httpx.Response(502, json={"message": "upstream"}))
    error = error_of(WidgetClient(handler), lambda c: c.request("DELETE", "/widgets/1"))
    assert "Widgets had a server error; re-run later to continue" in str(error)

    handler, _ = answering(httpx.Response(204), httpx.Response(304))
    client = WidgetClient(handler)

    async def both(c: ApiClient) -> list[Any]:
        return [await c.request("DELETE", "/widgets/1"), await c.request("PUT", "/w", body={})]

    assert run(client, both) == [None, None]


def test_secrets_an_answer_or_a_transport_error_echoes_are_redacted() -> None:
    handler, _ = answering(httpx.Response(401, json={"detail": f"token {SECRET} revoked"}))
    error = error_of(WidgetClient(handler), lambda c: c.request("GET", "/widgets"))
    assert SECRET not in str(error)
    assert "token tok_*** revoked" in str(error)

    def refused(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError(f"refused with {SECRET}", request=request)

    error = error_of(WidgetClient(refused), lambda c: c.request("GET", "/widgets"))
    assert SECRET not in str(error)
    assert "could not reach Widgets (ConnectError" in str(error)
    assert "check WIDGETS_URL and the network" in str(error)


# ---- retries ----------------------------------------------------------------------------


def test_5xx_is_retried_for_idempotent_methods_and_never_for_a_post() -> None:
    handler, seen = answering(httpx.Response(503), httpx.Response(200, json={"ok": True}))
    client = WidgetClient(handler)
    assert run(client, lambda c: c.request("PATCH", "/widgets/1", body={})) == {"ok": True}
    assert (len(seen), client.stats.retries) == (2, 1)

    handler, seen = answering(httpx.Response(503), httpx.Response(200, json={"ok": True}))
    error = error_of(WidgetClient(handler), lambda c: c.request("POST", "/widgets", body={}))
    assert (error.status, len(seen)) == (503, 1)

    handler, seen = answering(httpx.Response(503), httpx.Response(201, json={"ok": True}))
    repeatable = WidgetClient(handler)
    run(repeatable, lambda c: c.request("POST", "/widgets", body={}, idempotent=True))
    assert len(seen) == 2


def test_429_is_retried_with_backoff_and_counted_even_for_a_post() -> None:
    handler, seen = answering(httpx.Response(429), httpx.Response(201, json={}))
    client = WidgetClient(handler)

    run(client, lambda c: c.request("POST", "/widgets", body={}))

    assert len(seen) == 2
    assert (client.stats.rate_limited, client.stats.retries) == (1, 1)


def test_retry_after_is_waited_exactly_where_the_api_means_it() -> None:
    limited = httpx.Response(429, headers={"Retry-After": "1.5"})
    handler, seen = answering(limited, limited, httpx.Response(200, json={}))
    fake = FakeTime()
    client = ExactWidgetClient(handler, reads=paced_by(fake))

    run(client, lambda c: c.request("GET", "/widgets"))

    assert fake.sleeps == [1.5, 1.5]
    assert (len(seen), client.stats.retries, client.stats.rate_limited) == (3, 2, 2)


def test_a_retry_after_too_long_to_wait_ends_the_request() -> None:
    too_long = httpx.Response(429, headers={"Retry-After": str(RETRY_AFTER_MAX + 1)})
    handler, seen = answering(too_long)

    error = error_of(ExactWidgetClient(handler), lambda c: c.request("GET", "/widgets"))

    assert (error.status, len(seen)) == (429, 1)


# ---- lanes, credentials, stats ------------------------------------------------------------


def test_reads_and_writes_wait_in_their_own_lanes() -> None:
    handler, _ = answering(httpx.Response(200, json={}))
    reads, writes = FakeTime(), FakeTime()
    client = WidgetClient(handler, reads=paced_by(reads), writes=paced_by(writes, 2, 1.0))

    async def some_of_each(c: ApiClient) -> None:
        for _ in range(3):
            await c.request("GET", "/widgets")
            await c.request("PATCH", "/widgets/1", body={})

    run(client, some_of_each)

    assert reads.sleeps == []
    assert writes.sleeps == [1.0, 1.0]
    assert client.waited_seconds == 2.0


def test_a_lane_shared_by_reads_and_writes_counts_its_waits_once() -> None:
    handler, _ = answering(httpx.Response(200, json={}))
    fake = FakeTime()
    client = WidgetClient(handler, reads=paced_by(fake, 2, 1.0))

    async def three(c: ApiClient) -> None:
        for method in ("GET", "PATCH", "GET"):
            await c.request(method, "/widgets")

    run(client, three)

    assert client.waited_seconds == 2.0  # once, not once per lane
    assert client.snapshot(jobs_pending=2) == ProviderStats(
        requests=3, retries=0, rate_limited=0, waited_seconds=2.0, jobs_pending=2
    )


def test_credentials_go_only_where_the_caller_allows() -> None:
    handler, seen = answering(httpx.Response(200, text="file"))

    async def both(c: ApiClient) -> None:
        await c.send_once("GET", "/api/widgets")
        await c.send_once("GET", "http://files.test/errors.csv", credentials=False)

    run(WidgetClient(handler), both)

    assert seen[0].headers["Authorization"] == f"Bearer {SECRET}"
    assert "Authorization" not in seen[1].headers
    assert seen[1].url.host == "files.test"


# ---- the cancellation token ---------------------------------------------------------------


def test_after_a_stop_no_write_goes_out_but_reads_do() -> None:
    handler, seen = answering(httpx.Response(200, json={}))
    cancel = Cancellation()
    cancel.request()

    async def read_then_write(c: ApiClient) -> None:
        await c.request("GET", "/widgets")
        await c.request("POST", "/widgets", body={})

    error = error_of(WidgetClient(handler, cancel=cancel), read_then_write)

    assert [r.method for r in seen] == ["GET"]
    assert str(error).startswith(f"POST /api/widgets: {INTERRUPTED}")
    assert not cancel.wrote


def test_a_write_waiting_for_its_turn_ends_at_once_when_a_stop_comes() -> None:
    handler, seen = answering(httpx.Response(200, json={}))
    cancel = Cancellation()
    slow = Pacer(1, window_seconds=3600.0)  # the second write would wait an hour

    async def two_writes_then_stop(c: ApiClient) -> list[object]:
        async def stop_soon() -> None:
            await asyncio.sleep(0.05)
            cancel.request()

        return list(
            await asyncio.gather(
                c.request("PATCH", "/widgets/1", body={}),
                c.request("PATCH", "/widgets/2", body={}),
                stop_soon(),
                return_exceptions=True,
            )
        )

    first, second, _ = run(WidgetClient(handler, writes=slow, cancel=cancel), two_writes_then_stop)

    assert first == {}
    assert isinstance(second, ApiError)
    assert INTERRUPTED in str(second)
    assert len(seen) == 1
    assert cancel.wrote  # the first one went out


def test_wrote_says_whether_a_write_went_out_not_whether_one_was_asked_for() -> None:
    handler, _ = answering(httpx.Response(200, json={}))
    cancel = Cancellation()
    client = WidgetClient(handler, cancel=cancel)

    run(client, lambda c: c.request("GET", "/widgets"))
    assert not cancel.wrote

    client = WidgetClient(handler, cancel=cancel)
    run(client, lambda c: c.request("DELETE", "/widgets/1"))
    assert cancel.wrote


def test_each_run_has_its_own_token() -> None:
    handler, seen = answering(httpx.Response(200, json={}))
    stopped, other = Cancellation(), Cancellation()
    stopped.request()

    run(WidgetClient(handler, cancel=other), lambda c: c.request("POST", "/widgets", body={}))
    run(WidgetClient(handler), lambda c: c.request("POST", "/widgets", body={}))
    error_of(WidgetClient(handler, cancel=stopped), lambda c: c.request("POST", "/w", body={}))

    assert len(seen) == 2
    assert other.wrote
    assert not stopped.wrote


def test_unless_requested_gives_up_the_work_at_once_on_any_event_loop() -> None:
    cancel = Cancellation()

    async def hour() -> str:
        await asyncio.sleep(3600)
        return "never"

    async def stopped_meanwhile() -> None:
        asyncio.get_running_loop().call_later(0.02, cancel.request)
        await cancel.unless_requested(hour(), "PATCH", "/w")

    def fresh_loop(work: Coroutine[Any, Any, Any]) -> Any:
        return asyncio.run(work)

    assert fresh_loop(cancel.unless_requested(asyncio.sleep(0, "done"), "GET", "/w")) == "done"
    with pytest.raises(ApiError, match=INTERRUPTED):
        fresh_loop(stopped_meanwhile())
    with pytest.raises(ApiError, match=INTERRUPTED):  # requested already: never started
        fresh_loop(cancel.unless_requested(hour(), "PATCH", "/w"))
    assert (cancel.requested, cancel.applying, cancel.wrote) == (True, False, False)


def test_unless_requested_cancelled_from_outside_ends_its_work_too() -> None:
    # A second Ctrl-C cancels the whole run while reads for writes are waited on: they
    # must end with it, not go on against a client about to be closed.
    ended: list[str] = []

    async def read_for_a_write() -> None:
        try:
            await asyncio.sleep(3600)
        finally:
            ended.append("read")

    async def abort_while_waiting() -> list[str]:
        waiting = asyncio.create_task(
            Cancellation().unless_requested(read_for_a_write(), "GET", "/w")
        )
        await asyncio.sleep(0.01)
        waiting.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await waiting
        await asyncio.sleep(0)  # the work's own cancellation runs
        return list(ended)  # before asyncio.run would cancel what is left

    assert asyncio.run(abort_while_waiting()) == ["read"]


def test_an_adaptive_limit_halves_on_throttling_and_grows_back() -> None:
    limit = AdaptiveLimit(9)
    limit.throttled()
    assert limit.limit == 4.5
    limit.throttled()
    limit.throttled()
    limit.throttled()
    assert limit.limit == 1.0  # never below one
    for _ in range(200):
        limit.answered()
    assert limit.limit == 9.0  # never above its maximum


def test_an_adaptive_limit_holds_requests_beyond_it() -> None:
    limit = AdaptiveLimit(2)
    limit.throttled()  # one at a time now
    most = 0

    async def one() -> None:
        nonlocal most
        async with limit:
            most = max(most, limit.in_use)
            await asyncio.sleep(0.001)

    async def main() -> None:
        await asyncio.gather(*(one() for _ in range(5)))

    asyncio.run(main())
    assert most == 1
    assert limit.in_use == 0
