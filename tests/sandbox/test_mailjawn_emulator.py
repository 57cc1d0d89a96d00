"""The MailJawn emulator, driven over HTTP through httpx's ASGI transport."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import httpx
import pytest

from reconcile.providers.mailjawn.emulator.app import (
    ALL_SCOPES,
    MailJawnEmulator,
    MailJawnEmulatorSettings,
    create_mailjawn_emulator,
)
from reconcile.sandbox.common import Fault

KEY = "mj_sandbox_key"
READ_ONLY_KEY = "mj_read_only"
PROJECT = MailJawnEmulatorSettings().project_id
API = f"/api/v1/projects/{PROJECT}/"
RATE_HEADERS = ("RateLimit-Limit", "RateLimit-Remaining", "RateLimit-Reset")
SUBSCRIBER_KEYS = {
    "id",
    "email",
    "name",
    "status",
    "timezone",
    "effective_timezone",
    "first_seen",
    "last_seen",
    "subscribed_at",
    "device_type",
    "os_version",
    "app_version",
    "locale",
    "sdk_version",
    "custom_fields",
    "source",
    "tags",
    "created",
    "modified",
}

T = TypeVar("T")


class FakeClock:
    def __init__(self, now: float = 1_740_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def make_emulator(**overrides: Any) -> MailJawnEmulator:
    settings = MailJawnEmulatorSettings(
        api_keys={KEY: ALL_SCOPES, READ_ONLY_KEY: frozenset({"subscribers:read"})},
        **overrides,
    )
    return create_mailjawn_emulator(settings)


def with_client(emu: MailJawnEmulator, work: Callable[[httpx.AsyncClient], Awaitable[T]]) -> T:
    async def run() -> T:
        transport = httpx.ASGITransport(app=emu.app)
        async with httpx.AsyncClient(transport=transport, base_url="http://mailjawn.test") as c:
            return await work(c)

    return asyncio.run(run())


def call(
    emu: MailJawnEmulator,
    method: str,
    path: str,
    *,
    key: str | None = KEY,
    project: str = PROJECT,
    **kwargs: Any,
) -> httpx.Response:
    headers: dict[str, str] = dict(kwargs.pop("headers", {}))
    if key is not None:
        headers["Authorization"] = f"Bearer {key}"
    url = f"/api/v1/projects/{project}/{path}"
    return with_client(emu, lambda c: c.request(method, url, headers=headers, **kwargs))


def identify(emu: MailJawnEmulator, **body: Any) -> httpx.Response:
    return call(emu, "POST", "subscribers/identify/", json=body)


# -- authentication, scopes, project, paths -----------------------------------


def test_missing_key_is_401_without_rate_limit_headers() -> None:
    response = call(make_emulator(), "GET", "subscribers/", key=None)
    assert response.status_code == 401
    assert "error" in response.json()
    assert "RateLimit-Limit" not in response.headers


def test_unknown_key_is_401() -> None:
    response = call(make_emulator(), "GET", "subscribers/", key="mj_nope")
    assert response.status_code == 401
    assert set(response.json()) == {"error"}


def test_basic_auth_is_not_accepted() -> None:
    emu = make_emulator()
    response = call(emu, "GET", "subscribers/", key=None, auth=(KEY, ""))
    assert response.status_code == 401


def test_missing_scope_is_403_naming_the_scope() -> None:
    emu = make_emulator()
    response = call(
        emu, "POST", "subscribers/identify/", key=READ_ONLY_KEY, json={"email": "a@b.io"}
    )
    assert response.status_code == 403
    assert response.json() == {"error": "API key lacks scope subscribers:write"}
    assert emu.subscriber("a@b.io") is None
    assert call(emu, "GET", "subscribers/", key=READ_ONLY_KEY).status_code == 200


def test_events_need_events_write_scope() -> None:
    emu = make_emulator()
    subscriber_id = emu.seed_subscriber("a@b.io")
    body = {"subscriber_id": subscriber_id, "event_name": "x"}
    response = call(emu, "POST", "events/track/", key=READ_ONLY_KEY, json=body)
    assert response.status_code == 403
    assert "events:write" in response.json()["error"]


def test_unknown_project_is_404() -> None:
    other = "00000000-0000-4000-8000-00000000dead"
    response = call(make_emulator(), "GET", "subscribers/", project=other)
    assert response.status_code == 404
    assert response.json() == {"error": "Project not found"}


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "subscribers"),
        ("POST", "subscribers/identify"),
        ("POST", "events/track"),
        ("GET", "subscribers/identify/extra/"),
    ],
)
def test_path_without_trailing_slash_is_404(method: str, path: str) -> None:
    response = call(make_emulator(), method, path, json={"email": "a@b.io"})
    assert response.status_code == 404
    assert "error" in response.json()


def test_wrong_method_is_405() -> None:
    response = call(make_emulator(), "PUT", "subscribers/", json={})
    assert response.status_code == 405
    assert "GET" in response.headers["Allow"]


# -- identify ------------------------------------------------------------------


def test_identify_creates_then_updates_matching_email_case_insensitively() -> None:
    emu = make_emulator()
    first = identify(emu, email="Jane@Example.com", name="Jane")
    assert first.status_code == 200
    assert first.json()["created"] is True
    second = identify(emu, email="jane@example.COM", name="Jane Doe")
    assert second.json() == {"subscriber_id": first.json()["subscriber_id"], "created": False}
    stored = emu.subscriber("jane@example.com")
    assert stored is not None
    assert stored["name"] == "Jane Doe"
    assert stored["email"] == "Jane@Example.com"  # the first spelling is kept


def test_identify_merges_custom_fields_and_null_removes_a_key() -> None:
    emu = make_emulator()
    identify(emu, email="a@b.io", custom_fields={"plan": "pro", "seats": 3, "team": "x"})
    identify(emu, email="a@b.io", custom_fields={"plan": "enterprise", "team": None})
    stored = emu.subscriber("a@b.io")
    assert stored is not None
    assert stored["custom_fields"] == {"plan": "enterprise", "seats": 3}


def test_identify_adds_tags_and_never_removes_them() -> None:
    emu = make_emulator()
    identify(emu, email="a@b.io", tags=["vip"])
    identify(emu, email="a@b.io", tags=["early-adopter"])
    identify(emu, email="a@b.io", tags=[])
    stored = emu.subscriber("a@b.io")
    assert stored is not None
    assert [tag["slug"] for tag in stored["tags"]] == ["vip", "early-adopter"]
    vip = stored["tags"][0]
    assert set(vip) == {"id", "name", "slug"}
    assert vip["name"] == "vip"


def test_a_tag_keeps_its_id_across_subscribers() -> None:
    emu = make_emulator()
    identify(emu, email="a@b.io", tags=["vip"])
    identify(emu, email="c@d.io", tags=["vip"])
    first, second = emu.subscriber("a@b.io"), emu.subscriber("c@d.io")
    assert first is not None
    assert second is not None
    assert first["tags"] == second["tags"]


def test_identify_sets_the_sdk_fields() -> None:
    emu = make_emulator()
    identify(
        emu,
        email="a@b.io",
        timezone="America/New_York",
        device_type="iPhone",
        os_version="iOS 17.2",
        app_version="2.3.1",
        locale="en_US",
        sdk_version="1.0.0",
        source="sdk",
        trigger_automations=False,
    )
    stored = emu.subscriber("a@b.io")
    assert stored is not None
    assert stored["effective_timezone"] == "America/New_York"
    assert (stored["device_type"], stored["locale"], stored["source"]) == ("iPhone", "en_US", "sdk")


@pytest.mark.parametrize(
    ("body", "fragment"),
    [
        ({"email": "not-an-email"}, "email"),
        ({"name": "No Email"}, "email"),
        ({"email": "a@b.io", "status": "active"}, "status"),
        ({"email": "a@b.io", "nickname": "x"}, "nickname"),
        ({"email": "a@b.io", "name": 5}, "name"),
        ({"email": "a@b.io", "name": None}, "name"),
        ({"email": "a@b.io", "custom_fields": ["x"]}, "custom_fields"),
        ({"email": "a@b.io", "tags": "vip"}, "tags"),
        ({"email": "a@b.io", "tags": ["Not A Slug"]}, "tags"),
        ({"email": "a@b.io", "timezone": "Mars/Olympus"}, "timezone"),
        ({"email": "a@b.io", "trigger_automations": "yes"}, "trigger_automations"),
    ],
)
def test_identify_rejects_invalid_bodies(body: dict[str, Any], fragment: str) -> None:
    emu = make_emulator()
    response = identify(emu, **body)
    assert response.status_code == 400
    assert fragment in response.json()["error"]
    assert emu.dump_state()["subscribers"] == []


def test_identify_requires_a_json_body() -> None:
    emu = make_emulator()
    form = call(emu, "POST", "subscribers/identify/", data={"email": "a@b.io"})
    assert form.status_code == 415
    broken = call(
        emu,
        "POST",
        "subscribers/identify/",
        content=b"{nope",
        headers={"Content-Type": "application/json"},
    )
    assert broken.status_code == 400
    assert emu.subscriber("a@b.io") is None


def test_concurrent_identifies_of_one_email_create_one_subscriber() -> None:
    emu = make_emulator(write_limit=0)

    async def burst(client: httpx.AsyncClient) -> list[httpx.Response]:
        headers = {"Authorization": f"Bearer {KEY}"}
        url = f"{API}subscribers/identify/"
        return await asyncio.gather(
            *(client.post(url, headers=headers, json={"email": "a@b.io"}) for _ in range(20))
        )

    responses = with_client(emu, burst)
    assert sum(r.json()["created"] for r in responses) == 1
    assert len({r.json()["subscriber_id"] for r in responses}) == 1


# -- subscriber object, get, patch, delete ---------------------------------------


def test_get_answers_the_documented_subscriber_object() -> None:
    emu = make_emulator()
    subscriber_id = emu.seed_subscriber("a@b.io", name="A", custom_fields={"plan": "pro"})
    response = call(emu, "GET", f"subscribers/{subscriber_id}/")
    assert response.status_code == 200
    body = response.json()
    assert set(body) == SUBSCRIBER_KEYS
    assert body["id"] == subscriber_id
    assert body["status"] == "active"
    assert body["effective_timezone"] == "UTC"
    assert body["created"].endswith("Z")
    assert body == emu.subscriber("A@B.IO")


def test_unknown_subscriber_is_404() -> None:
    emu = make_emulator()
    for method in ("GET", "PATCH", "DELETE"):
        response = call(
            emu, method, "subscribers/550e8400-e29b-41d4-a716-446655440000/", json={"name": "x"}
        )
        assert response.status_code == 404, method
        assert response.json() == {"error": "Subscriber not found"}


def test_patch_merges_and_answers_the_updated_subscriber() -> None:
    emu = make_emulator()
    subscriber_id = emu.seed_subscriber(
        "a@b.io", name="A", custom_fields={"plan": "pro", "seats": 2}, tags=["vip"]
    )
    body = {"custom_fields": {"plan": "enterprise", "seats": None}, "status": "unsubscribed"}
    response = call(emu, "PATCH", f"subscribers/{subscriber_id}/", json=body)
    assert response.status_code == 200
    updated = response.json()
    assert updated["custom_fields"] == {"plan": "enterprise"}
    assert updated["status"] == "unsubscribed"
    assert updated["name"] == "A"  # not mentioned, so unchanged
    assert [tag["slug"] for tag in updated["tags"]] == ["vip"]
    assert updated == emu.subscriber("a@b.io")


@pytest.mark.parametrize(
    ("body", "fragment"),
    [
        ({"email": "new@b.io"}, "email"),
        ({"tags": ["vip"]}, "tags"),
        ({"id": "x"}, "id"),
        ({"source": "api"}, "source"),
        ({"name": 3}, "name"),
        ({"custom_fields": "plan=pro"}, "custom_fields"),
        ({"status": "deleted"}, "status"),
    ],
)
def test_patch_rejects_other_fields_and_wrong_types(body: dict[str, Any], fragment: str) -> None:
    emu = make_emulator()
    subscriber_id = emu.seed_subscriber("a@b.io", name="A")
    before = emu.subscriber("a@b.io")
    response = call(emu, "PATCH", f"subscribers/{subscriber_id}/", json=body)
    assert response.status_code == 400
    assert fragment in response.json()["error"]
    assert emu.subscriber("a@b.io") == before


def test_delete_answers_204_and_the_subscriber_is_gone() -> None:
    emu = make_emulator()
    subscriber_id = emu.seed_subscriber("a@b.io")
    response = call(emu, "DELETE", f"subscribers/{subscriber_id}/")
    assert response.status_code == 204
    assert response.content == b""
    assert call(emu, "GET", f"subscribers/{subscriber_id}/").status_code == 404
    assert emu.subscriber("a@b.io") is None


# -- list ----------------------------------------------------------------------


def seed_people(emu: MailJawnEmulator) -> None:
    emu.seed_subscriber("alice@example.com", name="Alice", tags=["vip"])
    emu.seed_subscriber("bob@example.com", name="Bob", status="unsubscribed", tags=["vip"])
    emu.seed_subscriber("carol@other.org", name="Carol Example")
    emu.seed_subscriber("dave@other.org", name="Dave", status="bounced")


def emails(response: httpx.Response) -> list[str]:
    return [item["email"] for item in response.json()["subscribers"]]


def test_list_defaults_and_creation_order() -> None:
    emu = make_emulator()
    seed_people(emu)
    response = call(emu, "GET", "subscribers/")
    assert response.status_code == 200
    body = response.json()
    assert (body["total"], body["limit"], body["offset"]) == (4, 50, 0)
    assert emails(response) == [
        "alice@example.com",
        "bob@example.com",
        "carol@other.org",
        "dave@other.org",
    ]
    assert all(set(item) == SUBSCRIBER_KEYS for item in body["subscribers"])


@pytest.mark.parametrize(
    ("params", "expected"),
    [
        ({"status": "active"}, ["alice@example.com", "carol@other.org"]),
        ({"status": "bounced"}, ["dave@other.org"]),
        ({"tag": "vip"}, ["alice@example.com", "bob@example.com"]),
        ({"tag": "unknown-tag"}, []),
        ({"search": "EXAMPLE"}, ["alice@example.com", "bob@example.com", "carol@other.org"]),
        ({"search": "dav"}, ["dave@other.org"]),
        ({"status": "active", "tag": "vip"}, ["alice@example.com"]),
    ],
)
def test_list_filters(params: dict[str, str], expected: list[str]) -> None:
    emu = make_emulator()
    seed_people(emu)
    response = call(emu, "GET", "subscribers/", params=params)
    assert emails(response) == expected
    assert response.json()["total"] == len(expected)


def test_list_pages_with_total_of_all_matches() -> None:
    emu = make_emulator()
    seed_people(emu)
    first = call(emu, "GET", "subscribers/", params={"limit": 3})
    second = call(emu, "GET", "subscribers/", params={"limit": 3, "offset": 3})
    assert emails(first) == ["alice@example.com", "bob@example.com", "carol@other.org"]
    assert emails(second) == ["dave@other.org"]
    assert first.json()["total"] == second.json()["total"] == 4
    beyond = call(emu, "GET", "subscribers/", params={"offset": 10})
    assert emails(beyond) == []


@pytest.mark.parametrize(
    "params",
    [
        {"limit": "0"},
        {"limit": "101"},
        {"limit": "ten"},
        {"offset": "-1"},
        {"status": "deleted"},
        {"status": ""},
    ],
)
def test_list_rejects_bad_parameters(params: dict[str, str]) -> None:
    response = call(make_emulator(), "GET", "subscribers/", params=params)
    assert response.status_code == 400
    assert next(iter(params)) in response.json()["error"]


def test_list_accepts_limit_100() -> None:
    response = call(make_emulator(), "GET", "subscribers/", params={"limit": "100"})
    assert response.status_code == 200
    assert response.json()["limit"] == 100


# -- bulk import ---------------------------------------------------------------


def test_bulk_import_skips_existing_fails_invalid_and_imports_the_rest() -> None:
    emu = make_emulator()
    emu.seed_subscriber("old@b.io", name="Old")
    items: list[Any] = [
        {"email": "new@b.io", "name": "New", "tags": ["imported"]},
        {"email": "OLD@b.io", "name": "Changed"},
        {"email": "broken"},
        {"email": "x@b.io", "colour": "red"},
        {"email": "y@b.io", "name": 7},
        {"email": "new@B.io", "name": "Again"},
        "not an object",
    ]
    response = call(emu, "POST", "subscribers/", json={"subscribers": items})
    assert response.status_code == 200
    body = response.json()
    assert (body["imported"], body["skipped"], body["failed"]) == (1, 2, 4)
    assert [(e["index"], e["email"]) for e in body["errors"]] == [
        (2, "broken"),
        (3, "x@b.io"),
        (4, "y@b.io"),
        (6, None),
    ]
    assert all(isinstance(e["error"], str) and e["error"] for e in body["errors"])
    old, new = emu.subscriber("old@b.io"), emu.subscriber("new@b.io")
    assert old is not None
    assert old["name"] == "Old"  # skipped, not updated
    assert new is not None
    assert new["name"] == "New"
    assert [tag["slug"] for tag in new["tags"]] == ["imported"]
    assert emu.subscriber("x@b.io") is None


@pytest.mark.parametrize(
    "body",
    [
        {"subscribers": []},
        {"subscribers": [{"email": f"u{i}@b.io"} for i in range(4)]},
        {"subscribers": {"email": "a@b.io"}},
        {},
        {"subscribers": [{"email": "a@b.io"}], "trigger_automations": False},
    ],
)
def test_bulk_import_rejects_bad_envelopes(body: dict[str, Any]) -> None:
    emu = make_emulator(max_import=3)
    response = call(emu, "POST", "subscribers/", json=body)
    assert response.status_code == 400
    assert emu.dump_state()["subscribers"] == []


def test_bulk_import_accepts_exactly_max_import() -> None:
    emu = make_emulator(max_import=3)
    items = [{"email": f"u{i}@b.io"} for i in range(3)]
    response = call(emu, "POST", "subscribers/", json={"subscribers": items})
    assert response.json()["imported"] == 3


# -- rate limits ---------------------------------------------------------------


def test_every_answer_carries_rate_limit_headers() -> None:
    emu = make_emulator()
    subscriber_id = emu.seed_subscriber("a@b.io")
    answers = [
        call(emu, "GET", "subscribers/"),
        call(emu, "GET", f"subscribers/{subscriber_id}/"),
        call(emu, "GET", "subscribers/", params={"limit": 0}),
        call(emu, "GET", "subscribers/", project="00000000-0000-4000-8000-00000000dead"),
        call(emu, "GET", "subscribers/", key="mj_unknown"),
        call(emu, "POST", "subscribers/identify/", key=READ_ONLY_KEY, json={"email": "c@d.io"}),
        call(emu, "POST", "subscribers/identify/", json={"email": "bad"}),
        call(emu, "DELETE", f"subscribers/{subscriber_id}/"),
    ]
    assert [r.status_code for r in answers] == [200, 200, 400, 404, 401, 403, 400, 204]
    for response in answers:
        assert all(name in response.headers for name in RATE_HEADERS), response.status_code


def test_read_and_write_buckets_are_counted_separately() -> None:
    emu = make_emulator()
    read = call(emu, "GET", "subscribers/")
    write = identify(emu, email="a@b.io")
    second_read = call(emu, "GET", "subscribers/")
    assert (read.headers["RateLimit-Limit"], read.headers["RateLimit-Remaining"]) == ("100", "99")
    assert (write.headers["RateLimit-Limit"], write.headers["RateLimit-Remaining"]) == ("30", "29")
    assert second_read.headers["RateLimit-Remaining"] == "98"


def test_head_and_options_count_as_reads() -> None:
    emu = make_emulator()
    head = call(emu, "HEAD", "subscribers/")
    options = call(emu, "OPTIONS", "subscribers/")
    assert head.status_code == options.status_code == 200
    assert head.headers["RateLimit-Limit"] == "100"
    assert options.headers["RateLimit-Remaining"] == "98"
    assert "POST" in options.headers["Allow"]


def test_settings_refuse_a_non_positive_time_scale() -> None:
    with pytest.raises(ValueError, match="time_scale"):
        MailJawnEmulatorSettings(time_scale=0)


def test_each_key_has_its_own_bucket() -> None:
    emu = make_emulator(read_limit=1)
    assert call(emu, "GET", "subscribers/").status_code == 200
    assert call(emu, "GET", "subscribers/").status_code == 429
    assert call(emu, "GET", "subscribers/", key=READ_ONLY_KEY).status_code == 200


def test_write_limit_answers_429_with_retry_after_until_the_window_resets() -> None:
    clock = FakeClock()
    emu = make_emulator(write_limit=2, clock=clock)
    assert identify(emu, email="a@b.io").status_code == 200
    clock.now += 15
    assert identify(emu, email="b@b.io").status_code == 200
    throttled = identify(emu, email="c@b.io")
    assert throttled.status_code == 429
    assert throttled.headers["Retry-After"] == "45"
    assert throttled.json() == {
        "detail": "Request was throttled. Expected available in 45 seconds."
    }
    assert throttled.headers["RateLimit-Limit"] == "2"
    assert throttled.headers["RateLimit-Remaining"] == "0"
    assert throttled.headers["RateLimit-Reset"] == str(1_740_000_000 + 60)
    assert emu.subscriber("c@b.io") is None
    assert call(emu, "GET", "subscribers/").status_code == 200  # reads are unaffected
    clock.now += 45
    assert identify(emu, email="c@b.io").status_code == 200


def test_time_scale_shrinks_the_window_and_gives_decimal_retry_after() -> None:
    clock = FakeClock()
    emu = make_emulator(write_limit=1, time_scale=600, clock=clock)
    assert identify(emu, email="a@b.io").status_code == 200
    clock.now += 0.025
    throttled = identify(emu, email="b@b.io")
    assert throttled.status_code == 429
    assert float(throttled.headers["Retry-After"]) == pytest.approx(0.075)
    assert float(throttled.headers["RateLimit-Reset"]) == pytest.approx(1_740_000_000.1)
    clock.now += 0.08
    assert identify(emu, email="b@b.io").status_code == 200


def test_limit_zero_means_unlimited_without_headers() -> None:
    emu = make_emulator(read_limit=0)
    responses = [call(emu, "GET", "subscribers/") for _ in range(3)]
    assert [r.status_code for r in responses] == [200, 200, 200]
    assert "RateLimit-Limit" not in responses[-1].headers


# -- public subscribe ----------------------------------------------------------


def test_subscribe_needs_no_key_and_tags_the_subscriber() -> None:
    emu = make_emulator()
    body = {"email": "visitor@example.com", "name": "Site Visitor", "tag": "newsletter"}
    response = call(emu, "POST", "subscribe/", key=None, json=body)
    assert response.status_code == 200
    assert response.json() == {"status": "subscribed", "email": "visitor@example.com"}
    stored = emu.subscriber("visitor@example.com")
    assert stored is not None
    assert stored["name"] == "Site Visitor"
    assert [tag["slug"] for tag in stored["tags"]] == ["newsletter"]


def test_subscribe_accepts_a_form_post_and_rejects_a_bad_email() -> None:
    emu = make_emulator()
    form = call(emu, "POST", "subscribe/", key=None, data={"email": "f@b.io", "tag": "news"})
    assert form.status_code == 200
    assert emu.subscriber("f@b.io") is not None
    bad = call(emu, "POST", "subscribe/", key=None, json={"email": "nope"})
    assert bad.status_code == 400


def test_subscribe_is_limited_to_ten_a_minute_per_ip() -> None:
    emu = make_emulator()
    statuses = [
        call(emu, "POST", "subscribe/", key=None, json={"email": f"v{i}@b.io"}).status_code
        for i in range(11)
    ]
    assert statuses == [200] * 10 + [429]


# -- events --------------------------------------------------------------------


def test_track_creates_then_deduplicates_by_client_event_id() -> None:
    emu = make_emulator()
    subscriber_id = emu.seed_subscriber("a@b.io")
    body = {
        "subscriber_id": subscriber_id,
        "event_name": "purchase",
        "properties": {"screen": "home", "duration_seconds": 120},
        "occurred_at": "2026-02-21T14:30:00Z",
        "client_event_id": "550e8400-e29b-41d4-a716-446655440001",
    }
    first = call(emu, "POST", "events/track/", json=body)
    assert first.status_code == 201
    assert first.json()["created"] is True
    assert first.json()["occurred_at"] == "2026-02-21T14:30:00Z"
    again = call(emu, "POST", "events/track/", json=body)
    assert again.status_code == 200
    assert again.json() == {**first.json(), "created": False}


def test_app_opened_moves_last_seen_and_other_events_do_not() -> None:
    emu = make_emulator()
    subscriber_id = emu.seed_subscriber("a@b.io")
    later = "2099-01-01T00:00:00Z"
    body = {"subscriber_id": subscriber_id, "event_name": "clicked", "occurred_at": later}
    call(emu, "POST", "events/track/", json=body)
    stored = emu.subscriber("a@b.io")
    assert stored is not None
    assert stored["last_seen"] != later
    call(emu, "POST", "events/track/", json={**body, "event_name": "app_opened"})
    stored = emu.subscriber("a@b.io")
    assert stored is not None
    assert stored["last_seen"] == later


def test_track_rejects_unknown_subscriber_and_bad_fields() -> None:
    emu = make_emulator()
    subscriber_id = emu.seed_subscriber("a@b.io")
    missing = {"subscriber_id": "550e8400-e29b-41d4-a716-446655440000", "event_name": "x"}
    assert call(emu, "POST", "events/track/", json=missing).status_code == 404
    too_long = {"subscriber_id": subscriber_id, "event_name": "x" * 101}
    assert call(emu, "POST", "events/track/", json=too_long).status_code == 400
    bad_id = {"subscriber_id": "nope", "event_name": "x"}
    assert call(emu, "POST", "events/track/", json=bad_id).status_code == 400


# -- control plane and state ---------------------------------------------------


def test_an_injected_fault_answers_once_then_normal_service_resumes() -> None:
    emu = make_emulator()
    emu.control.inject(Fault(status=500, method="GET", path_contains="/subscribers/"))
    assert call(emu, "GET", "subscribers/").status_code == 500
    assert call(emu, "GET", "subscribers/").status_code == 200
    assert [r.status for r in emu.control.calls("GET")] == [500, 200]


def test_faults_can_be_injected_over_http() -> None:
    emu = make_emulator()
    queued = with_client(emu, lambda c: c.post("/_emulator/faults", json={"status": 503}))
    assert queued.json() == {"queued": 1}
    assert identify(emu, email="a@b.io").status_code == 503
    assert emu.subscriber("a@b.io") is None


def test_state_round_trips_through_dump_and_load() -> None:
    emu = make_emulator()
    subscriber_id = emu.seed_subscriber(
        "a@b.io", name="A", custom_fields={"plan": "pro"}, tags=["vip"], locale="en_US"
    )
    emu.seed_subscriber("b@b.io", status="complained")
    call(
        emu,
        "POST",
        "events/track/",
        json={
            "subscriber_id": subscriber_id,
            "event_name": "app_opened",
            "client_event_id": "550e8400-e29b-41d4-a716-446655440001",
        },
    )
    dumped = json.loads(json.dumps(emu.dump_state()))
    copy = create_mailjawn_emulator(state=dumped)
    assert copy.dump_state() == emu.dump_state()
    assert copy.subscriber("a@b.io") == emu.subscriber("a@b.io")
    listed = call(copy, "GET", "subscribers/")
    assert [s["email"] for s in listed.json()["subscribers"]] == ["a@b.io", "b@b.io"]
    identify(copy, email="c@b.io", tags=["vip"])
    stored = copy.subscriber("c@b.io")
    original = emu.subscriber("a@b.io")
    assert stored is not None
    assert original is not None
    assert stored["tags"] == original["tags"]  # the loaded tag keeps its id


def test_state_can_be_replaced_over_http() -> None:
    emu = make_emulator()
    emu.seed_subscriber("a@b.io")
    empty = with_client(emu, lambda c: c.put("/_emulator/state", json={"subscribers": []}))
    assert empty.json()["subscribers"] == []
    assert emu.subscriber("a@b.io") is None


def test_seed_subscriber_refuses_bad_input() -> None:
    emu = make_emulator()
    emu.seed_subscriber("a@b.io")
    with pytest.raises(ValueError, match="already exists"):
        emu.seed_subscriber("A@b.io")
    with pytest.raises(ValueError, match="status"):
        emu.seed_subscriber("c@b.io", status="gone")
    with pytest.raises(ValueError, match="favourite_colour"):
        emu.seed_subscriber("d@b.io", favourite_colour="red")
