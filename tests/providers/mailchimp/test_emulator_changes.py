"""Member filters and last_changed, the signup throttle, batch-subscribe and opt-in
switches, and the helpers that play people acting between a plan and an apply."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import httpx
import pytest

from reconcile.providers.mailchimp.emulator.app import (
    MailchimpEmulator,
    create_mailchimp_emulator,
)
from reconcile.providers.mailchimp.emulator.settings import MailchimpEmulatorSettings
from tests.providers.mailchimp.test_emulator import client, md5, problem

T0 = 1_637_707_918.0  # 2021-11-23T22:51:58+00:00, as in the reference's member example


class Clock:
    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> float:
        return self.now

    def tick(self, seconds: float = 1.0) -> None:
        self.now += seconds


Env = tuple[MailchimpEmulator, httpx.Client, str, Clock]


def env(**settings: Any) -> Env:
    clock = Clock()
    emulator = create_mailchimp_emulator(MailchimpEmulatorSettings(clock=clock, **settings))
    list_id = emulator.seed_audience("Newsletter")
    return emulator, client(emulator), list_id, clock


def iso(seconds: float) -> str:
    return datetime.fromtimestamp(seconds, UTC).replace(microsecond=0).isoformat()


def emails(http: httpx.Client, list_id: str, **params: Any) -> list[str]:
    response = http.get(f"/lists/{list_id}/members", params={"count": 1000, **params})
    assert response.status_code == 200, response.text
    return [m["email_address"] for m in response.json()["members"]]


def last_changed(http: httpx.Client, list_id: str, email: str) -> str:
    value: str = http.get(f"/lists/{list_id}/members/{md5(email)}").json()["last_changed"]
    return value


# -- GET members: time filters and sorting ----------------------------------------------


def test_last_changed_filters_compare_instants() -> None:
    emulator, http, list_id, clock = env()
    for name in ("a", "b", "c"):
        emulator.seed_member(list_id, f"{name}@acme-widgets.io")
        clock.tick(10)
    assert last_changed(http, list_id, "a@acme-widgets.io") == "2021-11-23T22:51:58+00:00"
    b_time = iso(T0 + 10)
    assert emails(http, list_id, since_last_changed=b_time) == [
        "b@acme-widgets.io",
        "c@acme-widgets.io",
    ]  # since is inclusive
    assert emails(http, list_id, before_last_changed=iso(T0 + 20)) == [
        "a@acme-widgets.io",
        "b@acme-widgets.io",
    ]  # before is exclusive
    same_instant = "2021-11-23T23:52:08+01:00"  # b's time, another offset
    assert emails(
        http, list_id, since_last_changed=same_instant, before_last_changed=iso(T0 + 11)
    ) == ["b@acme-widgets.io"]
    zulu = "2021-11-23T22:52:08.500Z"  # half a second after b
    assert emails(http, list_id, since_last_changed=zulu) == ["c@acme-widgets.io"]


@pytest.mark.parametrize(
    "name",
    [
        "since_last_changed",
        "before_last_changed",
        "unsubscribed_since",
        "since_timestamp_opt",
        "before_timestamp_opt",
    ],
)
@pytest.mark.parametrize(
    "value", ["yesterday", "2021-11-23T22:51:58", "2021-11-23", "2021-13-01T00:00:00+00:00"]
)
def test_malformed_timestamp_is_400_naming_the_parameter(name: str, value: str) -> None:
    _, http, list_id, _ = env()
    body = problem(
        http.get(f"/lists/{list_id}/members", params={name: value}), 400, "Invalid Resource"
    )
    assert body["errors"][0]["field"] == name
    assert name in body["detail"]


def test_unencoded_plus_in_query_is_refused() -> None:
    _, http, list_id, _ = env()
    # A '+' left unencoded in a query string means a space: the offset is lost.
    raw = f"/lists/{list_id}/members?since_last_changed=2021-11-23T22:51:58+00:00"
    problem(http.get(raw), 400, "Invalid Resource")
    encoded = f"/lists/{list_id}/members?since_last_changed=2021-11-23T22:51:58%2B00:00"
    assert http.get(encoded).status_code == 200


def test_unsubscribed_since() -> None:
    emulator, http, list_id, clock = env()
    emulator.seed_member(list_id, "early@acme-widgets.io", status="unsubscribed")
    later = emulator.seed_member(list_id, "later@acme-widgets.io")
    emulator.seed_member(list_id, "stays@acme-widgets.io")
    clock.tick(60)
    http.patch(f"/lists/{list_id}/members/{later}", json={"status": "unsubscribed"})
    clock.tick(60)
    http.patch(f"/lists/{list_id}/members/{later}", json={"merge_fields": {"FNAME": "L"}})
    since = iso(T0 + 60)
    assert emails(http, list_id, unsubscribed_since=since) == ["later@acme-widgets.io"]
    assert emails(http, list_id, unsubscribed_since=iso(T0)) == [
        "early@acme-widgets.io",
        "later@acme-widgets.io",
    ]
    assert emails(http, list_id, unsubscribed_since=iso(T0 + 61)) == []


def test_timestamp_opt_filters() -> None:
    emulator, http, list_id, clock = env()
    emulator.seed_member(list_id, "a@acme-widgets.io")
    clock.tick(30)
    emulator.seed_member(list_id, "b@acme-widgets.io")
    emulator.seed_member(list_id, "p@acme-widgets.io", status="pending")  # never opted in
    assert emails(http, list_id, since_timestamp_opt=iso(T0 + 1)) == ["b@acme-widgets.io"]
    assert emails(http, list_id, before_timestamp_opt=iso(T0 + 1)) == ["a@acme-widgets.io"]


def test_sort_by_last_changed_and_signup() -> None:
    emulator, http, list_id, clock = env()
    for name in ("a", "b", "c"):
        emulator.seed_member(list_id, f"{name}@acme-widgets.io")
        clock.tick(10)
    http.patch(f"/lists/{list_id}/members/{md5('a@acme-widgets.io')}", json={"vip": True})
    a, b, c = "a@acme-widgets.io", "b@acme-widgets.io", "c@acme-widgets.io"
    assert emails(http, list_id) == [a, b, c]  # unsorted: creation order
    assert emails(http, list_id, sort_field="last_changed") == [b, c, a]
    assert emails(http, list_id, sort_field="last_changed", sort_dir="ASC") == [b, c, a]
    assert emails(http, list_id, sort_field="last_changed", sort_dir="DESC") == [a, c, b]
    paged = [
        m["email_address"]
        for offset in (0, 2)
        for m in http.get(
            f"/lists/{list_id}/members",
            params={"sort_field": "last_changed", "sort_dir": "ASC", "count": 2, "offset": offset},
        ).json()["members"]
    ]
    assert paged == [b, c, a]
    signups = {a: "2020-01-02T00:00:00+00:00", b: "2020-01-01T00:00:00+00:00", c: ""}
    for email, when in signups.items():
        http.put(f"/lists/{list_id}/members/{md5(email)}", json={"timestamp_signup": when})
    assert emails(http, list_id, sort_field="timestamp_signup") == [c, b, a]  # "" first
    assert emails(http, list_id, sort_field="timestamp_signup", sort_dir="DESC") == [a, b, c]


@pytest.mark.parametrize(
    ("name", "value"), [("sort_field", "email_address"), ("sort_dir", "down"), ("sort_dir", "asc")]
)
def test_bad_sort_is_400_naming_the_parameter(name: str, value: str) -> None:
    _, http, list_id, _ = env()
    body = problem(
        http.get(f"/lists/{list_id}/members", params={name: value}), 400, "Invalid Resource"
    )
    assert body["errors"][0]["field"] == name


def test_vip_only_unique_email_id_and_unemulated_filters() -> None:
    emulator, http, list_id, _ = env()
    emulator.seed_member(list_id, "a@acme-widgets.io")
    key = emulator.seed_member(list_id, "v@acme-widgets.io")
    vip = http.patch(f"/lists/{list_id}/members/{key}", json={"vip": True}).json()
    assert emails(http, list_id, vip_only="true") == ["v@acme-widgets.io"]
    assert emails(http, list_id, unique_email_id=vip["unique_email_id"]) == ["v@acme-widgets.io"]
    body = problem(
        http.get(f"/lists/{list_id}/members", params={"interest_category_id": "x"}),
        400,
        "Invalid Resource",
    )
    assert body["errors"][0]["field"] == "interest_category_id"


# -- last_changed moves on every change --------------------------------------------------


def _tag(http: httpx.Client, list_id: str, key: str, name: str, status: str) -> None:
    response = http.post(
        f"/lists/{list_id}/members/{key}/tags", json={"tags": [{"name": name, "status": status}]}
    )
    assert response.status_code == 204


CHANGES: dict[str, Any] = {
    "status": lambda h, li, k, s: h.patch(
        f"/lists/{li}/members/{k}", json={"status": "unsubscribed"}
    ),
    "merge_fields": lambda h, li, k, s: h.put(
        f"/lists/{li}/members/{k}", json={"merge_fields": {"FNAME": "New"}}
    ),
    "other_field": lambda h, li, k, s: h.patch(f"/lists/{li}/members/{k}", json={"language": "fr"}),
    "rename": lambda h, li, k, s: h.put(
        f"/lists/{li}/members/{k}", json={"email_address": "renamed@acme-widgets.io"}
    ),
    "archive": lambda h, li, k, s: h.delete(f"/lists/{li}/members/{k}"),
    "tag_add": lambda h, li, k, s: _tag(h, li, k, "New", "active"),
    "tag_remove": lambda h, li, k, s: _tag(h, li, k, "Old", "inactive"),
    "segment_create": lambda h, li, k, s: h.post(
        f"/lists/{li}/segments", json={"name": "Made", "static_segment": ["m@acme-widgets.io"]}
    ),
    "segment_batch_add": lambda h, li, k, s: h.post(
        f"/lists/{li}/segments/{s['Empty']}", json={"members_to_add": ["m@acme-widgets.io"]}
    ),
    "segment_batch_remove": lambda h, li, k, s: h.post(
        f"/lists/{li}/segments/{s['Old']}", json={"members_to_remove": ["m@acme-widgets.io"]}
    ),
    "segment_member_add": lambda h, li, k, s: h.post(
        f"/lists/{li}/segments/{s['Empty']}/members", json={"email_address": "m@acme-widgets.io"}
    ),
    "segment_member_remove": lambda h, li, k, s: h.delete(
        f"/lists/{li}/segments/{s['Old']}/members/{k}"
    ),
    "tag_deleted": lambda h, li, k, s: h.delete(f"/lists/{li}/segments/{s['Old']}"),
    "batch_subscribe": lambda h, li, k, s: h.post(
        f"/lists/{li}",
        json={
            "update_existing": True,
            "members": [{"email_address": "m@acme-widgets.io", "status": "pending"}],
        },
    ),
    "batch_subscribe_merge": lambda h, li, k, s: h.post(
        f"/lists/{li}",
        json={
            "update_existing": True,
            "members": [
                {
                    "email_address": "m@acme-widgets.io",
                    "status": "subscribed",
                    "merge_fields": {"LNAME": "X"},
                }
            ],
        },
    ),
}


@pytest.mark.parametrize("change", sorted(CHANGES))
def test_every_change_moves_last_changed(change: str) -> None:
    emulator, http, list_id, clock = env()
    key = emulator.seed_member(list_id, "m@acme-widgets.io", tags=["Old"])
    segments = {"Old": http.get(f"/lists/{list_id}/segments").json()["segments"][0]["id"]}
    segments["Empty"] = emulator.seed_tag(list_id, "Empty")
    clock.tick(42.7)
    response = CHANGES[change](http, list_id, key, segments)
    if response is not None:
        assert response.status_code < 300, response.text
        if change.startswith("batch"):
            assert response.json()["error_count"] == 0
    email = "renamed@acme-widgets.io" if change == "rename" else "m@acme-widgets.io"
    assert last_changed(http, list_id, email) == iso(T0 + 42)  # whole seconds
    status = http.get(f"/lists/{list_id}/members/{md5(email)}").json()["status"]
    assert emails(http, list_id, since_last_changed=iso(T0 + 42), status=status) == [email]
    assert emails(http, list_id, before_last_changed=iso(T0 + 42), status=status) == []


def test_a_write_that_changes_nothing_leaves_last_changed() -> None:
    emulator, http, list_id, clock = env()
    key = emulator.seed_member(list_id, "m@acme-widgets.io", merge_fields={"FNAME": "M"})
    emulator.seed_tag(list_id, "T", ["m@acme-widgets.io"])
    clock.tick(100)
    http.put(f"/lists/{list_id}/members/{key}", json={"merge_fields": {"FNAME": "M"}})
    http.patch(f"/lists/{list_id}/members/{key}", json={"status": "subscribed"})
    _tag(http, list_id, key, "T", "active")
    _tag(http, list_id, key, "Absent", "inactive")
    assert last_changed(http, list_id, "m@acme-widgets.io") == iso(T0)
    assert emails(http, list_id, since_last_changed=iso(T0 + 1)) == []


# -- per-address signup throttle -------------------------------------------------------


THROTTLE = "has signed up to a lot of lists very recently; we're not allowing more signups for now"


def test_throttled_address_cannot_be_created() -> None:
    _, http, list_id, _ = env(throttled_addresses=frozenset({"busy@acme-widgets.io"}))
    for status in ("subscribed", "pending", "unsubscribed"):
        body = problem(
            http.post(
                f"/lists/{list_id}/members",
                json={"email_address": "Busy@Acme-Widgets.io", "status": status},
            ),
            400,
            "Invalid Resource",
        )
        assert body["detail"] == f"Busy@Acme-Widgets.io {THROTTLE}"
    put = http.put(
        f"/lists/{list_id}/members/{md5('busy@acme-widgets.io')}",
        json={"email_address": "busy@acme-widgets.io", "status_if_new": "subscribed"},
    )
    problem(put, 400, "Invalid Resource")
    problem(
        http.get(f"/lists/{list_id}/members/{md5('busy@acme-widgets.io')}"),
        404,
        "Resource Not Found",
    )
    other = {"email_address": "free@acme-widgets.io", "status": "subscribed"}
    assert http.post(f"/lists/{list_id}/members", json=other).status_code == 200


def test_throttled_address_cannot_be_resubscribed_but_may_change_otherwise() -> None:
    emulator, http, list_id, _ = env(throttled_addresses=frozenset({"busy@acme-widgets.io"}))
    key = emulator.seed_member(list_id, "busy@acme-widgets.io", status="unsubscribed")
    for status in ("subscribed", "pending"):
        response = http.patch(f"/lists/{list_id}/members/{key}", json={"status": status})
        assert THROTTLE in problem(response, 400, "Invalid Resource")["detail"]
    assert http.get(f"/lists/{list_id}/members/{key}").json()["status"] == "unsubscribed"
    fields = http.put(f"/lists/{list_id}/members/{key}", json={"merge_fields": {"FNAME": "B"}})
    assert fields.status_code == 200
    subscribed = emulator.seed_member(list_id, "Busy2@acme-widgets.io")
    emulator.settings.throttled_addresses = frozenset(
        {"busy@acme-widgets.io", "busy2@acme-widgets.io"}
    )
    same = http.put(f"/lists/{list_id}/members/{subscribed}", json={"status": "subscribed"})
    assert same.status_code == 200  # already subscribed: not a signup
    assert http.delete(f"/lists/{list_id}/members/{subscribed}").status_code == 204
    revive = http.put(f"/lists/{list_id}/members/{subscribed}", json={"status": "subscribed"})
    problem(revive, 400, "Invalid Resource")


def test_throttle_in_batch_subscribe_is_per_member() -> None:
    emulator, http, list_id, _ = env(throttled_addresses=frozenset({"busy@acme-widgets.io"}))
    emulator.seed_member(list_id, "old@acme-widgets.io", status="unsubscribed")
    emulator.settings.throttled_addresses = frozenset(
        {"busy@acme-widgets.io", "old@acme-widgets.io"}
    )
    body = http.post(
        f"/lists/{list_id}",
        json={
            "update_existing": True,
            "members": [
                {"email_address": "busy@acme-widgets.io", "status": "subscribed"},
                {"email_address": "new@acme-widgets.io", "status": "subscribed"},
                {"email_address": "old@acme-widgets.io", "status": "subscribed"},
            ],
        },
    ).json()
    assert [m["email_address"] for m in body["new_members"]] == ["new@acme-widgets.io"]
    assert body["error_count"] == 2
    assert {e["email_address"]: e["error_code"] for e in body["errors"]} == {
        "busy@acme-widgets.io": "ERROR_GENERIC",
        "old@acme-widgets.io": "ERROR_GENERIC",
    }
    assert all(THROTTLE in e["error"] for e in body["errors"])


def test_throttled_addresses_are_lower_cased() -> None:
    settings = MailchimpEmulatorSettings(throttled_addresses=frozenset({" Busy@Acme-Widgets.IO"}))
    assert settings.throttled_addresses == frozenset({"busy@acme-widgets.io"})


# -- batch subscribe switches ----------------------------------------------------------


def test_batch_existing_without_status_is_refused_by_default() -> None:
    emulator, http, list_id, _ = env()
    emulator.seed_member(list_id, "old@acme-widgets.io", status="unsubscribed")
    item = {"email_address": "old@acme-widgets.io", "merge_fields": {"FNAME": "O"}}
    body = http.post(f"/lists/{list_id}", json={"update_existing": True, "members": [item]}).json()
    assert body["total_updated"] == 0
    assert body["errors"] == [
        {
            "email_address": "old@acme-widgets.io",
            "error": "status: This value should not be blank.",
            "error_code": "ERROR_GENERIC",
            "field": "status",
            "field_message": "This value should not be blank.",
        }
    ]
    assert emulator.member(list_id, "old@acme-widgets.io")["merge_fields"]["FNAME"] == ""  # type: ignore[index]


def test_batch_existing_without_status_keeps_status_when_allowed() -> None:
    emulator, http, list_id, _ = env(batch_subscribe_existing_requires_status=False)
    emulator.seed_member(list_id, "old@acme-widgets.io", status="unsubscribed")
    item = {"email_address": "old@acme-widgets.io", "merge_fields": {"FNAME": "O"}}
    body = http.post(f"/lists/{list_id}", json={"update_existing": True, "members": [item]}).json()
    assert body["error_count"] == 0
    assert body["updated_members"][0]["status"] == "unsubscribed"
    assert body["updated_members"][0]["merge_fields"]["FNAME"] == "O"
    new = {"email_address": "new@acme-widgets.io"}
    still = http.post(f"/lists/{list_id}", json={"members": [new]}).json()
    assert still["errors"][0]["field"] == "status"  # new members always need it


@pytest.mark.parametrize("mode", ["merge", "replace"])
def test_batch_merge_fields_switch(mode: str) -> None:
    emulator, http, list_id, _ = env(batch_subscribe_merge_fields=mode)
    emulator.seed_member(
        list_id, "old@acme-widgets.io", merge_fields={"FNAME": "Old", "LNAME": "Kept?"}
    )
    item = {
        "email_address": "old@acme-widgets.io",
        "status": "subscribed",
        "merge_fields": {"FNAME": "New"},
    }
    body = http.post(f"/lists/{list_id}", json={"update_existing": True, "members": [item]}).json()
    merge = body["updated_members"][0]["merge_fields"]
    assert merge["FNAME"] == "New"
    assert merge["LNAME"] == ("Kept?" if mode == "merge" else "")
    bare = {"email_address": "old@acme-widgets.io", "status": "subscribed"}
    again = http.post(f"/lists/{list_id}", json={"update_existing": True, "members": [bare]})
    assert again.json()["updated_members"][0]["merge_fields"]["FNAME"] == (
        "New" if mode == "merge" else ""
    )


def test_batch_replace_checks_required_fields() -> None:
    emulator, http, list_id, _ = env(batch_subscribe_merge_fields="replace")
    emulator.seed_merge_field(list_id, "CITY", required=True)
    emulator.seed_member(list_id, "old@acme-widgets.io", merge_fields={"CITY": "Oslo"})
    item = {"email_address": "old@acme-widgets.io", "status": "subscribed", "merge_fields": {}}
    body = http.post(f"/lists/{list_id}", json={"update_existing": True, "members": [item]}).json()
    assert (body["errors"][0]["field"], body["errors"][0]["field_message"]) == (
        "CITY",
        "Please enter a value",
    )


# -- opt-in emails ---------------------------------------------------------------------


def test_repeating_pending_sends_another_opt_in() -> None:
    emulator, http, list_id, _ = env()
    key = md5("p@acme-widgets.io")
    created = http.put(
        f"/lists/{list_id}/members/{key}",
        json={"email_address": "p@acme-widgets.io", "status_if_new": "pending"},
    )
    assert created.json()["status"] == "pending"
    assert emulator.opt_in_emails_sent(list_id, "p@acme-widgets.io") == 1
    # status_if_new does not touch an existing member: no email
    http.put(f"/lists/{list_id}/members/{key}", json={"status_if_new": "pending"})
    assert emulator.opt_in_emails_sent(list_id, "p@acme-widgets.io") == 1
    http.put(f"/lists/{list_id}/members/{key}", json={"status": "pending"})
    http.patch(f"/lists/{list_id}/members/{key}", json={"status": "pending"})
    batch = {
        "update_existing": True,
        "members": [{"email_address": "p@acme-widgets.io", "status": "pending"}],
    }
    assert http.post(f"/lists/{list_id}", json=batch).json()["error_count"] == 0
    assert emulator.opt_in_emails_sent(list_id, "p@acme-widgets.io") == 4
    state = emulator.dump_state()
    assert state["lists"][list_id]["members"][key]["opt_in_emails_sent"] == 4
    assert emulator.opt_in_emails_sent(list_id, "nobody@acme-widgets.io") == 0


def test_repeating_pending_counts_once_when_switched_off() -> None:
    emulator, http, list_id, _ = env(pending_write_resends_opt_in=False)
    key = emulator.seed_member(list_id, "p@acme-widgets.io", status="pending")
    assert emulator.opt_in_emails_sent(list_id, key) == 1
    http.patch(f"/lists/{list_id}/members/{key}", json={"status": "pending"})
    assert emulator.opt_in_emails_sent(list_id, "p@acme-widgets.io") == 1
    http.patch(f"/lists/{list_id}/members/{key}", json={"status": "unsubscribed"})
    http.patch(f"/lists/{list_id}/members/{key}", json={"status": "pending"})
    assert emulator.opt_in_emails_sent(list_id, "p@acme-widgets.io") == 2


def test_subscribed_member_has_no_opt_in_email() -> None:
    emulator, http, list_id, _ = env()
    body = {"email_address": "s@acme-widgets.io", "status": "subscribed"}
    assert http.post(f"/lists/{list_id}/members", json=body).status_code == 200
    assert emulator.opt_in_emails_sent(list_id, "s@acme-widgets.io") == 0
    key = md5("s@acme-widgets.io")
    assert emulator.dump_state()["lists"][list_id]["members"][key]["opt_in_emails_sent"] == 0


# -- people acting between a plan and an apply ------------------------------------------


def test_self_unsubscribe_is_a_compliance_state() -> None:
    emulator, http, list_id, clock = env()
    key = emulator.seed_member(list_id, "me@acme-widgets.io")
    clock.tick(5)
    emulator.self_unsubscribe(list_id, "Me@acme-widgets.io")
    member = http.get(f"/lists/{list_id}/members/{key}").json()
    assert member["status"] == "unsubscribed"
    assert member["unsubscribe_reason"] != "N/A (Unsubscribed by admin)"
    assert member["last_changed"] == iso(T0 + 5)
    assert emails(http, list_id, unsubscribed_since=iso(T0 + 5)) == ["me@acme-widgets.io"]
    resub = http.put(f"/lists/{list_id}/members/{key}", json={"status": "subscribed"})
    problem(resub, 400, "Member In Compliance State")
    assert (
        http.patch(f"/lists/{list_id}/members/{key}", json={"status": "pending"}).status_code == 200
    )
    with pytest.raises(ValueError):
        emulator.self_unsubscribe(list_id, "nobody@acme-widgets.io")


def test_bounce_cleans() -> None:
    emulator, http, list_id, clock = env()
    key = emulator.seed_member(list_id, "b@acme-widgets.io")
    clock.tick(3)
    emulator.bounce(list_id, "b@acme-widgets.io")
    member = http.get(f"/lists/{list_id}/members/{key}").json()
    assert (member["status"], member["last_changed"]) == ("cleaned", iso(T0 + 3))
    problem(
        http.patch(f"/lists/{list_id}/members/{key}", json={"status": "subscribed"}),
        400,
        "Member In Compliance State",
    )
    delete = http.delete(f"/lists/{list_id}/members/{key}")
    problem(delete, 405, "Method Not Allowed")
    assert delete.headers["allow"] == "GET, PUT"


def test_archive_and_forget_helpers() -> None:
    emulator, http, list_id, clock = env()
    key = emulator.seed_member(list_id, "a@acme-widgets.io", tags=["T"])
    clock.tick(7)
    emulator.archive(list_id, "a@acme-widgets.io")
    member = http.get(f"/lists/{list_id}/members/{key}").json()
    assert (member["status"], member["last_changed"]) == ("archived", iso(T0 + 7))
    with pytest.raises(ValueError, match="cannot be removed"):
        emulator.archive(list_id, "a@acme-widgets.io")
    emulator.forget(list_id, key)
    problem(http.get(f"/lists/{list_id}/members/{key}"), 404, "Resource Not Found")
    again = http.post(
        f"/lists/{list_id}/members",
        json={"email_address": "a@acme-widgets.io", "status": "pending"},
    )
    problem(again, 400, "Forgotten Email Not Subscribed")
    with pytest.raises(ValueError):
        emulator.forget(list_id, key)
    with pytest.raises(ValueError):
        emulator.bounce("nolist", "a@acme-widgets.io")


# -- checks of existing behaviour against the reference ---------------------------------


def test_static_segments_page_with_count_offset_and_total() -> None:
    emulator, http, list_id, _ = env()
    for n in range(15):
        emulator.seed_tag(list_id, f"Tag {n:02}")
    first = http.get(f"/lists/{list_id}/segments", params={"type": "static"}).json()
    assert (len(first["segments"]), first["total_items"]) == (10, 15)
    rest = http.get(
        f"/lists/{list_id}/segments", params={"type": "static", "count": 10, "offset": 10}
    ).json()
    assert [s["name"] for s in rest["segments"]] == [f"Tag {n}" for n in range(10, 15)]
    assert rest["list_id"] == list_id
    assert (
        http.get(f"/lists/{list_id}/segments", params={"type": "saved"}).json()["total_items"] == 0
    )


def test_static_segment_ignores_addresses_not_on_the_list() -> None:
    emulator, http, list_id, _ = env()
    emulator.seed_member(list_id, "on@acme-widgets.io")
    created = http.post(
        f"/lists/{list_id}/segments",
        json={"name": "Mixed", "static_segment": ["ON@acme-widgets.io", "off@acme-widgets.io"]},
    )
    assert created.status_code == 200, created.text
    assert created.json()["member_count"] == 1
    members = http.get(f"/lists/{list_id}/segments/{created.json()['id']}/members").json()
    assert [m["email_address"] for m in members["members"]] == ["on@acme-widgets.io"]
    problem(
        http.get(f"/lists/{list_id}/members/{md5('off@acme-widgets.io')}"),
        404,
        "Resource Not Found",
    )


@pytest.mark.parametrize("key", ["members_to_add", "members_to_remove"])
def test_segment_batch_at_most_500_each(key: str) -> None:
    emulator, http, list_id, _ = env()
    segment_id = emulator.seed_tag(list_id, "T")
    five_hundred = [f"x{n}@acme-widgets.io" for n in range(500)]
    both = {"members_to_add": five_hundred, "members_to_remove": five_hundred}
    assert http.post(f"/lists/{list_id}/segments/{segment_id}", json=both).status_code == 200
    over = {key: [*five_hundred, "one-more@acme-widgets.io"]}
    body = problem(
        http.post(f"/lists/{list_id}/segments/{segment_id}", json=over), 400, "Invalid Resource"
    )
    assert key in body["detail"]


def test_fields_with_collection_prefix() -> None:
    emulator, http, list_id, _ = env()
    emulator.seed_member(list_id, "a@acme-widgets.io", merge_fields={"FNAME": "A", "LNAME": "B"})
    picked = http.get(
        f"/lists/{list_id}/members",
        params={"fields": "members.email_address,members.merge_fields.FNAME,total_items"},
    ).json()
    assert picked == {
        "members": [{"email_address": "a@acme-widgets.io", "merge_fields": {"FNAME": "A"}}],
        "total_items": 1,
    }
    dropped = http.get(
        f"/lists/{list_id}/members",
        params={"exclude_fields": "members.merge_fields,members.tags,_links"},
    ).json()
    assert "merge_fields" not in dropped["members"][0]
    assert "tags" not in dropped["members"][0]
    assert "_links" not in dropped
    segments = http.get(
        f"/lists/{list_id}/segments", params={"fields": "segments.name,total_items"}
    ).json()
    assert segments == {"segments": [], "total_items": 0}


@pytest.mark.parametrize("status", ["pending", "cleaned", "archived"])
def test_delete_refused_with_allow_get_put(status: str) -> None:
    emulator, http, list_id, _ = env()
    key = emulator.seed_member(list_id, "x@acme-widgets.io", status=status)
    response = http.delete(f"/lists/{list_id}/members/{key}")
    body = problem(response, 405, "Method Not Allowed")
    assert response.headers["allow"] == "GET, PUT"
    assert body["detail"] == (
        "This list member cannot be removed. Can not archive a contact that is bounced, "
        "pending or archived"
    )
