"""MailJawn paced by the server's RateLimit-* headers (#15), against the emulator over
real HTTP. No test asserts a duration: either a fake clock drives the emulator and the
client's pacers alike (the sleeps and the moments the emulator counted requests are
exact), or in real time the emulator's own windows judge (it never had to refuse).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from reconcile.providers.mailjawn.client import MailJawnClient
from reconcile.providers.mailjawn.emulator.app import (
    ALL_SCOPES,
    MailJawnEmulator,
    MailJawnEmulatorSettings,
    create_mailjawn_emulator,
)
from reconcile.providers.pacing import Pacer, Quota, RetryPolicy, ServerPacer
from reconcile.sandbox.common import CONTROL_PREFIX, Fault
from tests.providers.calls import FakeTime
from tests.support import served

KEY = "mj_pacing_test_0123456789"
EPOCH = 1_800_000_000.0
FAST_RETRY = RetryPolicy(attempts=4, wait_initial=0.001, wait_max=0.01, wait_jitter=0.0)


@dataclass(frozen=True)
class Seen:
    moment: float  # by the emulator's clock, when it answered
    method: str
    status: int


class Stamped:
    """The emulator's app, noting when (by `clock`) and how each API request was answered."""

    def __init__(self, app: ASGIApp, clock: Callable[[], float]) -> None:
        self.app, self.clock = app, clock
        self.seen: list[Seen] = []

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"].startswith(CONTROL_PREFIX):
            await self.app(scope, receive, send)
            return

        async def noting(message: Message) -> None:
            if message["type"] == "http.response.start":
                self.seen.append(Seen(self.clock(), scope["method"], message["status"]))
            await send(message)

        await self.app(scope, receive, noting)

    def of(self, method: str) -> list[Seen]:
        return [s for s in self.seen if s.method == method]


def emulator(clock: Callable[[], float] = time.time, **settings: Any) -> MailJawnEmulator:
    options: dict[str, Any] = {"api_keys": {KEY: ALL_SCOPES}, "clock": clock, **settings}
    return create_mailjawn_emulator(MailJawnEmulatorSettings(**options))


def client_at(url: str, emu: MailJawnEmulator, fake: FakeTime | None = None) -> MailJawnClient:
    """The documented budgets (100 reads, 30 writes a minute) as the only configuration."""
    client = MailJawnClient(
        api_key=KEY, project_id=emu.settings.project_id, base_url=url, retry=FAST_RETRY
    )
    if fake is not None:
        for pacer in (client.reads, client.writes):
            pacer.clock, pacer.sleep = fake.clock, fake.sleep
        client.wall_clock = fake.clock
    return client


def shared_clock() -> FakeTime:
    """One fake clock for the emulator and the client: it moves only when the client sleeps."""
    fake = FakeTime()
    fake.now = EPOCH
    return fake


def seeded(emu: MailJawnEmulator, count: int) -> list[str]:
    return [emu.seed_subscriber(f"u{n}@example.com") for n in range(count)]


def against(
    emu: MailJawnEmulator,
    clock: Callable[[], float],
    work: Callable[[MailJawnClient, str], Awaitable[None]],
    fake: FakeTime | None = None,
) -> Stamped:
    """Serve the emulator over real HTTP, run `work` with a client of it; what it saw."""
    stamped = Stamped(emu.app, clock)
    with served(stamped) as url:
        client = client_at(url, emu, fake)

        async def main() -> None:
            try:
                await work(client, url)
            finally:
                await client.aclose()

        asyncio.run(main())
    return stamped


def rename(client: MailJawnClient, subscriber: str) -> Awaitable[Any]:
    return client.patch(f"/subscribers/{subscriber}/", {"name": f"New {subscriber}"})


def statuses(seen: list[Seen]) -> list[int]:
    return [s.status for s in seen]


# ---- a fake clock shared with the emulator: exact sleeps and windows -----------------------


@pytest.mark.parametrize(
    ("limit", "window", "writes"),
    [
        (20, 6.0, 40),  # a limit above the configured 30 a minute: used
        (10, 6.0, 40),  # the case: 10 writes per 6 s
        (3, 2.0, 9),  # a window shorter than the configured minute: Reset says so
    ],
)
def test_remaining_is_spent_at_once_then_the_lane_waits_for_reset(
    limit: int, window: float, writes: int
) -> None:
    fake = shared_clock()
    emu = emulator(fake.clock, write_limit=limit, window_seconds=window)
    ids = seeded(emu, writes)

    async def one_by_one(client: MailJawnClient, _: str) -> None:
        for subscriber in ids:
            await rename(client, subscriber)

    seen = against(emu, fake.clock, one_by_one, fake).of("PATCH")

    assert statuses(seen) == [200] * writes  # no 429, the first request included
    assert [s.moment - EPOCH for s in seen] == [(n // limit) * window for n in range(writes)]
    assert fake.sleeps == [window] * (-(-writes // limit) - 1)


def test_limits_changed_mid_run_are_followed_up_and_down() -> None:
    fake = shared_clock()
    emu = emulator(fake.clock, write_limit=5, window_seconds=6.0)
    ids = seeded(emu, 24)
    # Before the 6th write (the window has spent its 5): 12. Before the 20th (2 spent of
    # the third window): 3, so the server has 1 left where the client believed 10.
    changes = {5: {"write_limit": 12}, 19: {"write_limit": 3}}

    async def with_changes(client: MailJawnClient, url: str) -> None:
        async with httpx.AsyncClient(base_url=url) as control:
            for n, subscriber in enumerate(ids):
                if n in changes:
                    answer = await control.post(f"{CONTROL_PREFIX}/settings", json=changes[n])
                    answer.raise_for_status()
                await rename(client, subscriber)

    seen = against(emu, fake.clock, with_changes, fake).of("PATCH")

    assert statuses(seen) == [200] * 24
    windows = [0.0] * 5 + [6.0] * 12 + [12.0] * 3 + [18.0] * 3 + [24.0]
    assert [s.moment - EPOCH for s in seen] == windows
    assert fake.sleeps == [6.0] * 4


def test_a_429_waits_exactly_its_retry_after() -> None:
    fake = shared_clock()
    emu = emulator(fake.clock, write_limit=10, window_seconds=6.0)
    ids = seeded(emu, 4)

    async def lowered_under_the_client(client: MailJawnClient, _: str) -> None:
        for subscriber in ids[:3]:
            await rename(client, subscriber)
        emu.set_limits(write_limit=2)  # 3 counted: the next is refused
        fake.now += 1.5  # Retry-After: ceil(6 - 1.5) = 5; Reset is 4.5 s away
        await rename(client, ids[3])

    seen = against(emu, fake.clock, lowered_under_the_client, fake).of("PATCH")

    assert statuses(seen) == [200, 200, 200, 429, 200]
    assert fake.sleeps == [5.0]
    assert seen[-1].moment - seen[-2].moment == 5.0


def test_reads_and_writes_are_paced_apart() -> None:
    fake = shared_clock()
    emu = emulator(fake.clock, read_limit=3, write_limit=2, window_seconds=6.0)
    ids = seeded(emu, 3)

    async def interleaved(client: MailJawnClient, _: str) -> None:
        await rename(client, ids[0])
        await rename(client, ids[1])  # the write window is spent
        for _read in range(3):
            await client.get("/subscribers/")  # reads go on at once
        assert fake.sleeps == []
        await rename(client, ids[2])

    seen = against(emu, fake.clock, interleaved, fake)

    assert 429 not in statuses(seen.seen)
    assert fake.sleeps == [6.0]


def test_without_ratelimit_headers_the_configured_budget_paces_as_before() -> None:
    fake = shared_clock()
    emu = emulator(fake.clock, read_limit=0, write_limit=0)  # unlimited: no headers
    ids = seeded(emu, 8)

    async def one_by_one(client: MailJawnClient, _: str) -> None:
        for subscriber in ids:
            await rename(client, subscriber)

    seen = against(emu, fake.clock, one_by_one, fake).of("PATCH")

    before = FakeTime()
    holding = Pacer(30, 60.0, clock=before.clock, sleep=before.sleep)  # the old pacing

    async def turns() -> None:
        for _ in ids:
            await holding.wait_turn()

    asyncio.run(turns())
    assert statuses(seen) == [200] * 8
    assert fake.sleeps == before.sleeps
    assert len(fake.sleeps) == 7  # a burst of 1, then 30 a minute


# ---- real time, requests in flight at once: the emulator never has to refuse ---------------


def test_concurrent_reads_and_writes_answered_out_of_order_are_never_refused() -> None:
    # 10 writes and 8 reads per 0.5 s window (6 s shrunk 12 times: decimal Reset).
    emu = emulator(read_limit=8, write_limit=10, window_seconds=6.0, time_scale=12)
    ids = seeded(emu, 40)
    for n in range(40):  # answers come back out of order
        emu.control.inject(Fault(kind="latency", seconds=(n * 7 % 5) * 0.01, method="PATCH"))

    async def all_at_once(client: MailJawnClient, _: str) -> None:
        writes = [rename(client, subscriber) for subscriber in ids]
        reads = [client.get("/subscribers/") for _ in range(24)]
        await asyncio.gather(*writes, *reads)

    seen = against(emu, time.time, all_at_once)

    assert statuses(seen.of("PATCH")) == [200] * 40
    assert statuses(seen.of("GET")) == [200] * 24


def test_a_limit_raised_mid_run_is_used_at_once_in_the_next_window() -> None:
    emu = emulator(write_limit=4, window_seconds=6.0, time_scale=12)  # 0.5 s windows
    ids = seeded(emu, 40)

    async def raised_between(client: MailJawnClient, url: str) -> None:
        await asyncio.gather(*(rename(client, subscriber) for subscriber in ids[:8]))
        async with httpx.AsyncClient(base_url=url) as control:
            await control.post(f"{CONTROL_PREFIX}/settings", json={"write_limit": 16})
        await asyncio.gather(*(rename(client, subscriber) for subscriber in ids[8:]))

    seen = against(emu, time.time, raised_between).of("PATCH")

    assert statuses(seen) == [200] * 40
    window = 0.5
    moments = [s.moment for s in seen[8:]]
    most_in_a_window = max(
        sum(1 for m in moments if start <= m < start + window) for start in moments
    )
    assert most_in_a_window > 4  # more than the old limit: the new one was used


# ---- the pacer alone ---------------------------------------------------------------------


async def answered_in_order(pacer: ServerPacer, order: list[int], quotas: list[Quota]) -> None:
    """Send len(quotas) requests at once; answer them in `order`, each with its quota."""
    gates = [asyncio.Event() for _ in quotas]

    async def one(n: int) -> None:
        with pacer.sending():
            await pacer.wait_turn()
            await gates[n].wait()
            pacer.observe(quotas[n])

    tasks = [asyncio.ensure_future(one(n)) for n in range(len(quotas))]
    await asyncio.sleep(0)
    for n in order:
        gates[n].set()
        await asyncio.sleep(0)
    await asyncio.gather(*tasks)


async def turns_before_a_wait(pacer: ServerPacer, fake: FakeTime) -> int:
    """How many requests start (none answered yet) before one has to wait."""
    taken = 0
    while not fake.sleeps:
        await pacer.wait_turn()
        taken += 1
    return taken - 1


def test_answers_out_of_order_grant_only_what_the_latest_count_left() -> None:
    fake = FakeTime()
    pacer = ServerPacer(30, 60.0, clock=fake.clock, sleep=fake.sleep)
    end = fake.now + 6
    probe = [Quota(10, 9, end)]

    async def scenario() -> int:
        await answered_in_order(pacer, [0], probe)
        # 4 at once, counted A, B, C, D by the server, answered D first and A last.
        quotas = [Quota(10, remaining, end) for remaining in (8, 7, 6, 5)]
        await answered_in_order(pacer, [3, 1, 2, 0], quotas)
        return await turns_before_a_wait(pacer, fake)

    assert asyncio.run(scenario()) == 5
    assert fake.sleeps == [6.0]


def test_an_answer_from_an_earlier_window_grants_nothing() -> None:
    fake = FakeTime()
    pacer = ServerPacer(30, 60.0, clock=fake.clock, sleep=fake.sleep)
    start = fake.now

    async def scenario() -> int:
        await answered_in_order(pacer, [0], [Quota(10, 0, start + 6)])
        fake.now = start + 6  # a new window: 10 again
        late = [Quota(10, 5, start + 12), Quota(10, 9, start + 6)]  # the 2nd: the old window
        await answered_in_order(pacer, [0, 1], late)
        return await turns_before_a_wait(pacer, fake)

    assert asyncio.run(scenario()) == 5


def test_a_request_never_answered_gives_its_place_back() -> None:
    fake = FakeTime()
    pacer = ServerPacer(30, 60.0, clock=fake.clock, sleep=fake.sleep)

    async def lost() -> None:
        with pacer.sending():
            await pacer.wait_turn()
            raise httpx.ConnectError("lost")

    with pytest.raises(httpx.ConnectError):
        asyncio.run(lost())
    assert pacer.unanswered == 0


def test_settings_endpoint_changes_limits_and_window() -> None:
    settings_keys = ("latency_seconds", "read_limit", "write_limit", "window_seconds")
    emu = emulator(write_limit=30, window_seconds=60.0)
    transport = httpx.ASGITransport(app=emu.app)

    async def change() -> httpx.Response:
        async with httpx.AsyncClient(transport=transport, base_url="http://emu.test") as http:
            settings = {"read_limit": 500, "write_limit": 120, "window_seconds": 10}
            return await http.post(f"{CONTROL_PREFIX}/settings", json=settings)

    answer = asyncio.run(change())

    assert answer.status_code == 200
    assert {k: answer.json()[k] for k in settings_keys} == {
        "latency_seconds": 0.0,
        "read_limit": 500,
        "write_limit": 120,
        "window_seconds": 10.0,
    }
    assert (emu.settings.read_limit, emu.settings.write_limit) == (500, 120)


def test_settings_endpoint_refuses_a_window_that_is_not_positive() -> None:
    emu = emulator(write_limit=30, window_seconds=60.0)
    transport = httpx.ASGITransport(app=emu.app)

    async def change() -> httpx.Response:
        async with httpx.AsyncClient(transport=transport, base_url="http://emu.test") as http:
            return await http.post(f"{CONTROL_PREFIX}/settings", json={"window_seconds": 0})

    answer = asyncio.run(change())
    assert answer.status_code == 400
    assert "window_seconds must be positive" in answer.json()["error"]
    assert emu.settings.window_seconds == 60.0
