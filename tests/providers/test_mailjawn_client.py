"""MailJawn client against the emulator (in-process over httpx's ASGI transport)."""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

import httpx
import pytest

from reconcile.providers.mailjawn.client import MailJawnClient
from reconcile.providers.mailjawn.emulator.app import (
    MailJawnEmulator,
    MailJawnEmulatorSettings,
    create_mailjawn_emulator,
)
from reconcile.providers.pacing import RetryPolicy
from reconcile.sandbox.common import Fault
from tests.providers.calls import FakeTime, error_of, run

KEY = "mj_test_0123456789_secret"
READ_ONLY_KEY = "mj_read_only_secret"
BASE_URL = "http://mailjawn.test"
FAST_RETRY = RetryPolicy(attempts=4, wait_initial=0.001, wait_max=0.01, wait_jitter=0.0)
SUBSCRIBERS = "/subscribers/"
IDENTIFY = "/subscribers/identify/"


def make_emulator(**settings: Any) -> MailJawnEmulator:
    """Unlimited rates unless a test asks for them."""
    options: dict[str, Any] = {
        "read_limit": 0,
        "write_limit": 0,
        "api_keys": {
            KEY: frozenset({"subscribers:read", "subscribers:write"}),
            READ_ONLY_KEY: frozenset({"subscribers:read"}),
        },
    }
    options.update(settings)
    return create_mailjawn_emulator(MailJawnEmulatorSettings(**options))


class Recorder(httpx.AsyncBaseTransport):
    """Passes requests to the emulator and keeps them (method, URL, JSON body) for asserts."""

    def __init__(self, emulator: MailJawnEmulator) -> None:
        self.inner = httpx.ASGITransport(app=emulator.app)
        self.requests: list[httpx.Request] = []

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        return await self.inner.handle_async_request(request)

    def bodies(self, method: str, path_end: str) -> list[Any]:
        return [
            json.loads(r.content)
            for r in self.requests
            if r.method == method and r.url.path.endswith(path_end)
        ]


class TimingRecorder(Recorder):
    def __init__(self, emulator: MailJawnEmulator) -> None:
        super().__init__(emulator)
        self.sent: list[float] = []

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        self.sent.append(time.monotonic())
        return await super().handle_async_request(request)


def make_client(
    emulator: MailJawnEmulator,
    *,
    key: str = KEY,
    project_id: str | None = None,
    transport: httpx.AsyncBaseTransport | None = None,
    **options: Any,
) -> MailJawnClient:
    settings: dict[str, Any] = {
        "reads_per_minute": 60_000,
        "writes_per_minute": 60_000,
        "retry": FAST_RETRY,
    }
    settings.update(options)
    return MailJawnClient(
        api_key=key,
        project_id=project_id or emulator.settings.project_id,
        base_url=BASE_URL,
        transport=transport or httpx.ASGITransport(app=emulator.app),
        **settings,
    )


def fake_time(client: MailJawnClient) -> FakeTime:
    fake = FakeTime()
    for pacer in (client.reads, client.writes):
        pacer.clock = fake.clock
        pacer.sleep = fake.sleep
    return fake


# ---- paging -------------------------------------------------------------------------------


@pytest.mark.parametrize(("seeded", "expected_calls"), [(250, 3), (200, 2), (0, 1)])
def test_list_all_pages_at_100_until_total(seeded: int, expected_calls: int) -> None:
    emulator = make_emulator()
    for n in range(seeded):
        emulator.seed_subscriber(f"user{n}@example.com")
    recorder = Recorder(emulator)

    records = run(
        make_client(emulator, transport=recorder), lambda c: c.list_all(SUBSCRIBERS, "subscribers")
    )

    assert len({r["email"] for r in records}) == seeded
    assert len(emulator.control.calls("GET")) == expected_calls
    pages = [(r.url.params["limit"], r.url.params["offset"]) for r in recorder.requests]
    assert pages == [("100", str(100 * n)) for n in range(expected_calls)]


def test_list_all_stops_at_the_first_total_when_the_total_keeps_growing() -> None:
    calls = 0

    def growing(request: httpx.Request) -> httpx.Response:
        nonlocal calls
        calls += 1
        if calls > 50:
            raise AssertionError("paging never stopped")
        offset = int(request.url.params["offset"])
        page = [{"email": f"u{offset + n}@example.com"} for n in range(100)]
        return httpx.Response(200, json={"subscribers": page, "total": offset + 1000})

    client = make_client(make_emulator(), transport=httpx.MockTransport(growing))
    records = run(client, lambda c: c.list_all(SUBSCRIBERS, "subscribers"))

    assert calls == 10
    assert len(records) == 1000


def test_a_page_without_total_is_an_error_naming_the_request() -> None:
    emulator = make_emulator()
    emulator.control.inject(Fault(status=200, body={"subscribers": []}, method="GET"))

    error = error_of(make_client(emulator), lambda c: c.list_all(SUBSCRIBERS, "subscribers"))

    assert "GET /api/v1/projects/" in str(error)
    assert "'total'" in str(error)


# ---- errors -------------------------------------------------------------------------------


def test_401_shows_the_api_message_and_points_at_the_key_variable() -> None:
    emulator = make_emulator()
    error = error_of(make_client(emulator, key="mj_wrong_key"), lambda c: c.get(SUBSCRIBERS))

    assert error.status == 401
    assert "Invalid API key." in str(error)
    assert "MAILJAWN_API_KEY" in str(error)
    assert "mj_wrong_key" not in str(error)


def test_403_names_the_missing_scope_from_the_message() -> None:
    emulator = make_emulator()
    client = make_client(emulator, key=READ_ONLY_KEY)
    body = {"email": "a@example.com", "trigger_automations": False}

    error = error_of(client, lambda c: c.post(IDENTIFY, body, idempotent=True))

    assert error.status == 403
    assert "the key lacks subscribers:write" in str(error)
    assert READ_ONLY_KEY not in str(error)


def test_403_without_a_scope_in_the_message_names_the_one_the_method_needs() -> None:
    emulator = make_emulator()
    emulator.control.inject(Fault(status=403, body={"error": "Forbidden"}))

    error = error_of(make_client(emulator), lambda c: c.get(SUBSCRIBERS))

    assert "Forbidden" in str(error)
    assert "the key lacks subscribers:read" in str(error)


def test_404_of_a_wrong_project_points_at_the_project_id() -> None:
    emulator = make_emulator()
    client = make_client(emulator, project_id="00000000-0000-4000-8000-00000000dead")

    error = error_of(client, lambda c: c.get(SUBSCRIBERS))

    assert error.status == 404
    assert "Project not found" in str(error)
    assert "MAILJAWN_PROJECT_ID" in str(error)


def test_404_of_a_gone_subscriber_says_to_plan_again() -> None:
    emulator = make_emulator()
    path = f"{SUBSCRIBERS}00000000-0000-4000-8000-00000000beef/"

    error = error_of(make_client(emulator), lambda c: c.patch(path, {"name": "x"}))

    assert error.status == 404
    assert "run plan again" in str(error)
    assert "MAILJAWN_PROJECT_ID" not in str(error)


def test_an_error_body_echoing_the_key_never_shows_it() -> None:
    emulator = make_emulator()
    emulator.control.inject(Fault(status=400, body={"error": f"key {KEY} is not allowed"}))

    error = error_of(make_client(emulator), lambda c: c.get(SUBSCRIBERS))

    assert KEY not in str(error)
    assert "is not allowed" in str(error)


def test_a_non_json_success_is_a_clear_error_and_not_a_traceback() -> None:
    emulator = make_emulator()
    emulator.control.inject(Fault(status=200, body="<html>maintenance</html>", method="GET"))

    error = error_of(make_client(emulator), lambda c: c.list_all(SUBSCRIBERS, "subscribers"))

    assert error.status == 200
    assert "not JSON" in str(error)
    assert f"GET /api/v1/projects/{emulator.settings.project_id}/subscribers/" in str(error)


def test_a_non_json_error_body_is_shown_and_an_import_is_not_resent() -> None:
    emulator = make_emulator()
    emulator.control.inject(Fault(status=502, body="<html>Bad gateway</html>", method="POST"))
    body = {"subscribers": [{"email": "a@example.com"}]}

    error = error_of(make_client(emulator), lambda c: c.post(SUBSCRIBERS, body, idempotent=False))

    assert error.status == 502
    assert "non-JSON error body (text/html" in str(error)
    assert "Bad gateway" in str(error)
    assert len(emulator.control.calls("POST")) == 1


def test_server_errors_are_retried_for_idempotent_requests() -> None:
    emulator = make_emulator()
    emulator.control.inject(Fault(status=503, method="GET", count=2))
    client = make_client(emulator)

    answer = run(client, lambda c: c.get(SUBSCRIBERS))

    assert answer["total"] == 0
    assert client.stats.retries == 2
    assert [r.status for r in emulator.control.calls("GET")] == [503, 503, 200]


# ---- pacing and 429 ---------------------------------------------------------------------


def test_429_waits_exactly_retry_after_without_backoff_on_top() -> None:
    emulator = make_emulator()
    throttled = {"detail": "Request was throttled. Expected available in 0.25 seconds."}
    emulator.control.inject(
        Fault(status=429, body=throttled, headers={"Retry-After": "0.25"}, method="GET", count=2)
    )
    client = make_client(emulator)
    fake = fake_time(client)

    run(client, lambda c: c.get(SUBSCRIBERS))

    assert fake.sleeps == [0.25, 0.25]
    assert (client.stats.retries, client.stats.rate_limited) == (2, 2)
    assert [r.status for r in emulator.control.calls("GET")] == [429, 429, 200]


def test_429_without_retry_after_backs_off_and_retries() -> None:
    emulator = make_emulator()
    emulator.control.inject(Fault(status=429, body={"detail": "slow down"}, method="PATCH"))
    seeded = emulator.seed_subscriber("a@example.com")
    client = make_client(emulator)

    run(client, lambda c: c.patch(f"{SUBSCRIBERS}{seeded}/", {"name": "A"}))

    assert client.stats.retries == 1
    assert [r.status for r in emulator.control.calls("PATCH")] == [429, 200]
    assert (emulator.subscriber("a@example.com") or {})["name"] == "A"


def test_a_lower_ratelimit_limit_slows_that_lane_only() -> None:
    emulator = make_emulator(write_limit=30, read_limit=100)
    client = make_client(emulator, reads_per_minute=600, writes_per_minute=600)
    body = {"email": "a@example.com", "trigger_automations": False}

    async def one_of_each(c: MailJawnClient) -> None:
        await c.post(IDENTIFY, body, idempotent=True)
        await c.get(SUBSCRIBERS)

    run(client, one_of_each)

    assert client.writes.per_window == 30
    assert client.reads.per_window == 100


@pytest.mark.parametrize("reset", ["1800000000.4", "0.4"])  # a timestamp, or seconds
def test_remaining_zero_holds_the_lane_until_reset(reset: str) -> None:
    emulator = make_emulator()
    exhausted = {"RateLimit-Limit": "100", "RateLimit-Remaining": "0", "RateLimit-Reset": reset}
    page = {"subscribers": [], "total": 0, "limit": 100, "offset": 0}
    emulator.control.inject(Fault(status=200, body=page, headers=exhausted, method="GET"))
    client = make_client(emulator)
    client.wall_clock = lambda: 1_800_000_000.0
    fake = fake_time(client)

    async def twice(c: MailJawnClient) -> None:
        await c.get(SUBSCRIBERS)
        await c.get(SUBSCRIBERS)
        await c.post(IDENTIFY, {"email": "a@example.com"}, idempotent=True)

    run(client, twice)

    assert fake.sleeps == [0.4]  # the second GET; the write lane was not held
    assert len(emulator.control.calls("GET")) == 2


def test_a_hold_also_stops_requests_already_waiting_for_their_turn() -> None:
    emulator = make_emulator()
    exhausted = {"RateLimit-Remaining": "0", "RateLimit-Reset": str(time.time() + 0.6)}
    page = {"subscribers": [], "total": 0}
    emulator.control.inject(Fault(status=200, body=page, headers=exhausted, method="GET"))
    emulator.control.latency_seconds = 0.05  # the 1st answer comes while the 2nd is waiting
    recorder = TimingRecorder(emulator)
    # 10 per second: the 2nd and 3rd are asleep for their turn when the 1st answer comes.
    client = make_client(emulator, transport=recorder, reads_per_minute=600, window_seconds=1)

    async def three_at_once(c: MailJawnClient) -> None:
        await asyncio.gather(*(c.get(SUBSCRIBERS) for _ in range(3)))

    run(client, three_at_once)

    first, *later = recorder.sent
    assert len(later) == 2
    assert all(moment - first >= 0.45 for moment in later)


def test_real_window_limits_are_kept_without_429() -> None:
    emulator = make_emulator(read_limit=3, time_scale=60)  # 3 reads per second
    client = make_client(emulator, reads_per_minute=6000, window_seconds=1.0)

    async def seven(c: MailJawnClient) -> None:
        for _ in range(7):
            await c.get(SUBSCRIBERS)

    run(client, seven)

    statuses = [r.status for r in emulator.control.calls("GET")]
    assert statuses.count(429) <= 1
    assert statuses.count(200) == 7
