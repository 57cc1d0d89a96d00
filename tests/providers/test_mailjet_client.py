"""Mailjet client behaviour over HTTP to the emulator: paging, errors, retries, pacing."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
import pytest
import respx

from reconcile.errors import ApiError
from reconcile.providers.mailjet.client import MailjetClient
from reconcile.providers.mailjet.emulator.app import (
    MailjetEmulatorSettings,
    create_mailjet_emulator,
)
from reconcile.providers.pacing import Pacer
from reconcile.sandbox.common import Fault
from tests.support import FAST_RETRY, load, mailjet_provider, plan_and_apply, run, served


def test_paging_reads_every_page_at_once_whatever_total_says() -> None:
    """Total is the page size on the real API: past a full first page, the count comes from
    countOnly=1, and the pages it implies are fetched at once."""
    emulator = create_mailjet_emulator()  # real API: Total is the page size
    for n in range(2001):
        emulator.seed_contact(f"c{n}@example.com")
    provider = mailjet_provider(emulator)
    seen: list[str] = []

    async def hook(request: httpx.Request) -> None:
        seen.append(str(request.url.params))

    provider.client._http.event_hooks["request"].append(hook)
    records = run(provider.client.list_all("/contact"))
    run(provider.aclose())

    assert len({r["Email"] for r in records}) == 2001
    assert sorted(seen) == sorted(
        ["Limit=1000&Offset=0", "countOnly=1", "Limit=1000&Offset=1000", "Limit=1000&Offset=2000"]
    )


def test_a_small_collection_is_one_request_and_an_exact_multiple_is_confirmed() -> None:
    emulator = create_mailjet_emulator()
    for n in range(1000):
        emulator.seed_contact(f"c{n}@example.com")
    provider = mailjet_provider(emulator)
    records = run(provider.client.list_all("/contact"))
    run(provider.aclose())
    assert len(records) == 1000
    gets = [c for c in emulator.control.calls("GET") if c.path == "/v3/REST/contact"]
    assert len(gets) == 3  # the full page, the count, and the page after (added meanwhile?)


def test_get_is_retried_after_5xx_and_a_connection_reset() -> None:
    emulator = create_mailjet_emulator()
    emulator.seed_contact("a@example.com")
    emulator.control.inject(Fault(status=502, count=2))
    emulator.control.inject(Fault(kind="reset", method="GET"))
    provider = mailjet_provider(emulator)

    records = run(provider.client.list_all("/contact"))
    run(provider.aclose())

    assert [r["Email"] for r in records] == ["a@example.com"]
    assert provider.client.stats.retries == 3


def test_429_is_retried_with_backoff_until_it_passes() -> None:
    emulator = create_mailjet_emulator(MailjetEmulatorSettings())
    emulator.control.inject(Fault(status=429, count=3, body={"ErrorMessage": "Too many"}))
    provider = mailjet_provider(emulator)

    run(provider.client.list_all("/contactslist"))
    run(provider.aclose())

    assert provider.client.stats.rate_limited == 3
    assert provider.client.stats.retries == 3


def test_a_post_that_may_have_landed_is_looked_up_not_repeated(tmp_path: Path) -> None:
    emulator = create_mailjet_emulator()
    emulator.control.inject(Fault(status=500, method="POST", path_contains="/contact"))
    manifest = load(
        tmp_path,
        "provider: mailjet\ncontacts:\n  - email: once@example.com\n    name: Once\n",
    )

    _, report = run(plan_and_apply(emulator, manifest))

    assert report.ok, report.outcomes
    posts = [c for c in emulator.control.calls("POST") if c.path == "/v3/REST/contact"]
    assert [c.status for c in posts] == [500, 201]  # looked up (absent), then created once
    lookups = [c for c in emulator.control.calls("GET") if "once%40" in c.path or "once@" in c.path]
    assert len(lookups) == 1


def test_errors_name_the_request_and_show_the_message_whatever_its_shape() -> None:
    emulator = create_mailjet_emulator()
    provider = mailjet_provider(emulator)

    with pytest.raises(ApiError) as caught:
        run(provider.client.post("/contact", {"Email": "bad"}, idempotent=False))
    run(provider.aclose())

    message = str(caught.value)
    assert message.startswith("POST /v3/REST/contact answered 400: ")
    assert "Email: Invalid email" in message  # ErrorMessage was an object


def test_304_not_modified_is_success() -> None:
    emulator = create_mailjet_emulator()
    contact_id = emulator.seed_contact("same@example.com", name="Same")
    provider = mailjet_provider(emulator)

    body = {"Name": "Same", "IsExcludedFromCampaigns": False}
    answer = run(provider.client.put(f"/contact/{contact_id}", body))
    run(provider.aclose())

    assert answer == []
    assert emulator.control.calls("PUT")[0].status == 304


def test_html_error_page_and_malformed_json_are_clear_errors() -> None:
    emulator = create_mailjet_emulator()
    emulator.control.inject(Fault(status=400, body="<html><h1>Bad gateway</h1></html>"))
    provider = mailjet_provider(emulator)
    with pytest.raises(ApiError, match=r"GET /v3/REST/contact answered 400: non-JSON error body"):
        run(provider.client.get("/contact"))
    run(provider.aclose())

    with respx.mock(base_url="http://mailjet.test") as mock:
        mock.get("/v3/REST/contact").respond(200, text="{not json")
        client = MailjetClient(
            api_key="k", secret_key="s", base_url="http://mailjet.test", retry=FAST_RETRY
        )
        with pytest.raises(ApiError, match="not JSON; nothing was changed based on it"):
            run(client.get("/contact"))
        mock.get("/v3/REST/contactslist").respond(200, json={"Count": 1})
        with pytest.raises(ApiError, match="no Data list"):
            run(client.get("/contactslist"))


def test_credentials_never_appear_in_errors() -> None:
    emulator = create_mailjet_emulator()
    client = MailjetClient(
        api_key="visible-key",
        secret_key="super-secret-value",
        base_url="http://mailjet.test",
        transport=httpx.ASGITransport(app=emulator.app),
        retry=FAST_RETRY,
    )
    with pytest.raises(ApiError) as caught:
        run(client.get("/contact"))
    assert caught.value.status == 401
    assert "super-secret-value" not in str(caught.value)
    assert "MAILJET_SECRET_KEY" in str(caught.value)


def test_pacer_never_exceeds_the_budget_in_any_window() -> None:
    now = [0.0]

    async def fake_sleep(seconds: float) -> None:
        now[0] += seconds

    pacer = Pacer(200, clock=lambda: now[0], sleep=fake_sleep)

    async def take(count: int) -> list[float]:
        starts = []
        for _ in range(count):
            await pacer.wait_turn()
            starts.append(now[0])
        return starts

    starts = run(take(1000))
    for index, start in enumerate(starts):
        in_window = [s for s in starts[index:] if s < start + 60.0]
        assert len(in_window) <= 200
    per_minute = 1000 / (starts[-1] / 60.0)
    assert per_minute >= 0.9 * 200  # steady use of the budget, not a trickle


def test_a_real_dropped_connection_is_retried_for_reads() -> None:
    emulator = create_mailjet_emulator()
    emulator.seed_list("news")
    emulator.control.inject(Fault(kind="reset", method="GET"))
    with served(emulator.app) as url:
        client = MailjetClient(
            api_key=emulator.settings.api_key,
            secret_key=emulator.settings.secret_key,
            base_url=url,
            retry=FAST_RETRY,
        )

        async def read_then_close() -> list[Any]:
            try:
                return await client.list_all("/contactslist")
            finally:
                await client.aclose()

        lists = run(read_then_close())
    assert [item["Name"] for item in lists] == ["news"]
    assert client.stats.retries == 1
