"""The Mailchimp emulator against the behaviours in the API reference, over HTTP."""

from __future__ import annotations

import asyncio
import hashlib
import json
from typing import Any

import httpx
import pytest

from reconcile.providers.mailchimp.emulator.app import (
    MailchimpEmulator,
    create_mailchimp_emulator,
)
from reconcile.providers.mailchimp.emulator.settings import (
    SANDBOX_API_KEY,
    MailchimpEmulatorSettings,
)
from reconcile.sandbox.common import EmulatorTransport

BASE = "https://us1.api.mailchimp.com/3.0"


def md5(email: str) -> str:
    return hashlib.md5(email.lower().encode()).hexdigest()


def client(emulator: MailchimpEmulator, key: str = SANDBOX_API_KEY) -> httpx.Client:
    return httpx.Client(transport=_SyncBridge(emulator), base_url=BASE, auth=("anystring", key))


class _SyncBridge(httpx.BaseTransport):
    """Runs the async ASGI transport for a sync httpx client."""

    def __init__(self, emulator: MailchimpEmulator) -> None:
        self.transport = EmulatorTransport(app=emulator.app)

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        async def run() -> httpx.Response:
            request.stream = httpx.ByteStream(request.read())
            response = await self.transport.handle_async_request(request)
            body = await response.aread()
            return httpx.Response(
                response.status_code, headers=response.headers, content=body, request=request
            )

        return asyncio.run(run())


Setup = tuple[MailchimpEmulator, httpx.Client, str]


@pytest.fixture
def setup() -> Setup:
    emulator = create_mailchimp_emulator()
    list_id = emulator.seed_audience("Newsletter")
    return emulator, client(emulator), list_id


def make(**settings: Any) -> Setup:
    emulator = create_mailchimp_emulator(MailchimpEmulatorSettings(**settings))
    list_id = emulator.seed_audience("Newsletter")
    return emulator, client(emulator), list_id


def problem(response: httpx.Response, status: int, title: str) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    body: dict[str, Any] = response.json()
    assert body["title"] == title, body
    assert body["status"] == status
    assert body["instance"] == response.headers["x-request-id"]
    return body


# -- auth ------------------------------------------------------------------------


def test_auth_failures_are_401_problems(setup: Setup) -> None:
    emulator, _, _ = setup
    for key in ("wrong-us1", "0123456789abcdef0123456789abcdef-us2"):
        problem(client(emulator, key).get("/lists"), 401, "API Key Invalid")
    anonymous = httpx.Client(transport=_SyncBridge(emulator), base_url=BASE)
    problem(anonymous.get("/lists"), 401, "API Key Invalid")
    bearer = anonymous.get("/lists", headers={"Authorization": f"Bearer {SANDBOX_API_KEY}"})
    problem(bearer, 401, "API Key Invalid")


def test_any_user_name_and_ping(setup: Setup) -> None:
    emulator, _, _ = setup
    other = httpx.Client(
        transport=_SyncBridge(emulator), base_url=BASE, auth=("someone", SANDBOX_API_KEY)
    )
    assert other.get("/ping").json() == {"health_status": "Everything's Chimpy!"}


def test_settings_refuse_key_without_datacenter() -> None:
    with pytest.raises(ValueError, match="-usN"):
        MailchimpEmulatorSettings(api_keys=("plainkey",))


def test_unknown_route_and_method(setup: Setup) -> None:
    _, http, list_id = setup
    problem(http.get("/nothing"), 404, "Resource Not Found")
    response = http.delete(f"/lists/{list_id}/merge-fields")
    problem(response, 405, "Method Not Allowed")
    assert response.headers["allow"] == "GET, POST"


# -- audiences -------------------------------------------------------------------


def test_lists_and_one_list(setup: Setup) -> None:
    emulator, http, list_id = setup
    emulator.seed_member(list_id, "a@acme-widgets.io")
    emulator.seed_member(list_id, "b@acme-widgets.io", status="unsubscribed")
    body = http.get("/lists").json()
    assert body["total_items"] == 1
    assert body["lists"][0]["id"] == list_id
    one = http.get(f"/lists/{list_id}", params={"include_total_contacts": "true"}).json()
    assert one["stats"]["member_count"] == 1  # subscribed only
    assert one["stats"]["total_contacts"] == 2
    assert one["stats"]["merge_field_count"] == 4
    problem(http.get("/lists/nope"), 404, "Resource Not Found")


# -- merge fields ----------------------------------------------------------------


def test_merge_fields_default_page_of_ten_and_paging(setup: Setup) -> None:
    emulator, http, list_id = setup
    for n in range(8):
        emulator.seed_merge_field(list_id, f"F{n}")
    first = http.get(f"/lists/{list_id}/merge-fields").json()
    assert first["total_items"] == 12
    assert len(first["merge_fields"]) == 10
    rest = http.get(f"/lists/{list_id}/merge-fields", params={"offset": 10}).json()
    assert [f["tag"] for f in rest["merge_fields"]] == ["F6", "F7"]
    tags = [f["tag"] for f in first["merge_fields"]][:4]
    assert tags == ["FNAME", "LNAME", "ADDRESS", "PHONE"]


def test_count_over_1000_rejected_by_default_or_clamped() -> None:
    _, http, list_id = make()
    problem(http.get(f"/lists/{list_id}/members", params={"count": 1001}), 400, "Invalid Resource")
    assert http.get(f"/lists/{list_id}/members", params={"count": 1000}).status_code == 200
    _, http, list_id = make(over_max_count="clamp")
    assert http.get(f"/lists/{list_id}/members", params={"count": 5000}).status_code == 200


def test_merge_field_create_update_delete(setup: Setup) -> None:
    _, http, list_id = setup
    created = http.post(
        f"/lists/{list_id}/merge-fields", json={"name": "LTV", "type": "number", "tag": "LTV"}
    )
    assert created.status_code == 200, created.text
    merge_id = created.json()["merge_id"]
    assert created.json()["list_id"] == list_id
    patched = http.patch(
        f"/lists/{list_id}/merge-fields/{merge_id}", json={"name": "Lifetime value"}
    )
    assert patched.json()["name"] == "Lifetime value"
    assert patched.json()["type"] == "number"
    untagged = http.post(f"/lists/{list_id}/merge-fields", json={"name": "X", "type": "text"})
    assert untagged.json()["tag"] == f"MMERGE{untagged.json()['merge_id']}"
    duplicate = http.post(
        f"/lists/{list_id}/merge-fields", json={"name": "Again", "type": "text", "tag": "LTV"}
    )
    problem(duplicate, 400, "Invalid Resource")
    bad_type = http.post(f"/lists/{list_id}/merge-fields", json={"name": "B", "type": "bool"})
    problem(bad_type, 400, "Invalid Resource")
    no_name = http.post(f"/lists/{list_id}/merge-fields", json={"type": "text"})
    assert problem(no_name, 400, "Invalid Resource")["errors"][0]["field"] == "name"
    assert http.delete(f"/lists/{list_id}/merge-fields/{merge_id}").status_code == 204
    problem(http.get(f"/lists/{list_id}/merge-fields/{merge_id}"), 404, "Resource Not Found")


def test_empty_choices_on_text_field_is_the_old_error(setup: Setup) -> None:
    _, http, list_id = setup
    response = http.patch(
        f"/lists/{list_id}/merge-fields/1", json={"name": "First", "options": {"choices": []}}
    )
    body = problem(response, 400, "Invalid Resource")
    assert "array assignment for options.choices" in body["detail"]


@pytest.mark.parametrize("tag", ["ltv", "LIFETIMEVALUE", "MY-TAG"])
def test_bad_merge_tag_rejected_by_default(tag: str) -> None:
    _, http, list_id = make()
    response = http.post(
        f"/lists/{list_id}/merge-fields", json={"name": "N", "type": "text", "tag": tag}
    )
    assert problem(response, 400, "Invalid Resource")["errors"][0]["field"] == "tag"


def test_bad_merge_tag_normalized_when_set() -> None:
    _, http, list_id = make(merge_tag_policy="normalize")
    response = http.post(
        f"/lists/{list_id}/merge-fields", json={"name": "N", "type": "text", "tag": "lifetimevalue"}
    )
    assert response.json()["tag"] == "LIFETIMEVA"


def test_merge_field_type_change_switch() -> None:
    _, http, list_id = make()
    body = {"name": "First Name", "type": "number"}
    problem(http.patch(f"/lists/{list_id}/merge-fields/1", json=body), 400, "Invalid Resource")
    _, http, list_id = make(merge_field_type_change="ignore")
    assert http.patch(f"/lists/{list_id}/merge-fields/1", json=body).json()["type"] == "text"


def test_merge_field_patch_name_requirement_switch() -> None:
    _, http, list_id = make()
    body = {"help_text": "hi"}
    problem(http.patch(f"/lists/{list_id}/merge-fields/1", json=body), 400, "Invalid Resource")
    _, http, list_id = make(patch_merge_field_requires_name=False)
    assert http.patch(f"/lists/{list_id}/merge-fields/1", json=body).status_code == 200


# -- members ---------------------------------------------------------------------


def test_member_post_get_and_merge_values(setup: Setup) -> None:
    emulator, http, list_id = setup
    emulator.seed_merge_field(list_id, "LTV", type="number")
    response = http.post(
        f"/lists/{list_id}/members",
        json={
            "email_address": "Alice@Acme-Widgets.io",
            "status": "subscribed",
            "merge_fields": {"FNAME": "Alice", "LTV": 15.5, "email_address": "x", "lname": "y"},
            "tags": ["VIP"],
        },
    )
    assert response.status_code == 200, response.text
    member = response.json()
    assert member["id"] == md5("alice@acme-widgets.io")
    assert member["merge_fields"] == {
        "FNAME": "Alice",
        "LNAME": "",
        "ADDRESS": "",
        "PHONE": "",
        "LTV": 15.5,
    }
    assert member["full_name"] == "Alice"
    assert [t["name"] for t in member["tags"]] == ["VIP"]
    again = http.get(f"/lists/{list_id}/members/{member['id']}")
    assert again.json()["email_address"] == "Alice@Acme-Widgets.io"
    exists = http.post(
        f"/lists/{list_id}/members",
        json={"email_address": "alice@acme-widgets.io", "status": "subscribed"},
    )
    body = problem(exists, 400, "Member Exists")
    assert "type" not in body


def test_member_value_errors(setup: Setup) -> None:
    emulator, http, list_id = setup
    emulator.seed_merge_field(list_id, "LTV", type="number")
    base = {"email_address": "bob@acme-widgets.io", "status": "subscribed"}
    bad_number = http.post(f"/lists/{list_id}/members", json={**base, "merge_fields": {"LTV": "x"}})
    body = problem(bad_number, 400, "Invalid Resource")
    assert body["detail"] == "Your merge fields were invalid."
    assert body["errors"] == [{"field": "LTV", "message": "Please enter a number"}]
    boolean = http.post(f"/lists/{list_id}/members", json={**base, "merge_fields": {"FNAME": True}})
    problem(boolean, 400, "Invalid Resource")
    null = http.post(f"/lists/{list_id}/members", json={**base, "merge_fields": {"FNAME": None}})
    problem(null, 400, "Invalid Resource")
    address = {"ADDRESS": {"addr1": "1 Main St"}}
    incomplete = http.post(f"/lists/{list_id}/members", json={**base, "merge_fields": address})
    assert problem(incomplete, 400, "Invalid Resource")["errors"][0]["message"] == (
        "Please enter a complete address"
    )
    fake = http.post(
        f"/lists/{list_id}/members", json={"email_address": "foo@example.com", "status": "pending"}
    )
    assert "looks fake or invalid" in problem(fake, 400, "Invalid Resource")["detail"]
    junk = http.post(f"/lists/{list_id}/members", json={"email_address": "AAAAA", "status": "x"})
    assert problem(junk, 400, "Invalid Resource")["detail"] == (
        "Please provide a valid email address."
    )


def test_required_merge_field_and_skip_validation(setup: Setup) -> None:
    emulator, http, list_id = setup
    emulator.seed_member(list_id, "old@acme-widgets.io")
    emulator.seed_merge_field(list_id, "MMERGE4", required=True)
    patch = http.patch(f"/lists/{list_id}/members/{md5('old@acme-widgets.io')}", json={"vip": True})
    body = problem(patch, 400, "Invalid Resource")
    assert body["errors"] == [{"field": "MMERGE4", "message": "Please enter a value"}]
    skipped = http.patch(
        f"/lists/{list_id}/members/{md5('old@acme-widgets.io')}",
        params={"skip_merge_validation": "true"},
        json={"vip": True},
    )
    assert skipped.json()["vip"] is True


def test_put_merges_and_clears_with_empty_string(setup: Setup) -> None:
    emulator, http, list_id = setup
    key = emulator.seed_member(
        list_id, "sam@acme-widgets.io", merge_fields={"FNAME": "Sam", "LNAME": "Ba"}
    )
    put = http.put(f"/lists/{list_id}/members/{key}", json={"merge_fields": {"FNAME": "Samba"}})
    assert put.json()["merge_fields"]["LNAME"] == "Ba"
    cleared = http.put(f"/lists/{list_id}/members/{key}", json={"merge_fields": {"LNAME": ""}})
    assert cleared.json()["merge_fields"]["LNAME"] == ""
    assert cleared.json()["merge_fields"]["FNAME"] == "Samba"


def test_put_creates_with_status_if_new_and_requires_it(setup: Setup) -> None:
    _, http, list_id = setup
    key = md5("new@acme-widgets.io")
    missing = http.put(
        f"/lists/{list_id}/members/{key}", json={"email_address": "new@acme-widgets.io"}
    )
    problem(missing, 400, "Invalid Resource")
    created = http.put(
        f"/lists/{list_id}/members/{key}",
        json={"email_address": "new@acme-widgets.io", "status_if_new": "pending"},
    )
    assert created.json()["status"] == "pending"
    # status_if_new does not touch an existing member
    again = http.put(
        f"/lists/{list_id}/members/{key}",
        json={"email_address": "new@acme-widgets.io", "status_if_new": "subscribed"},
    )
    assert again.json()["status"] == "pending"
    problem(
        http.patch(f"/lists/{list_id}/members/{md5('x@acme-widgets.io')}", json={}),
        404,
        "Resource Not Found",
    )


def test_email_change_renames_or_member_exists(setup: Setup) -> None:
    emulator, http, list_id = setup
    old = emulator.seed_member(list_id, "old@acme-widgets.io", tags=["T"])
    emulator.seed_member(list_id, "taken@acme-widgets.io")
    taken = http.put(
        f"/lists/{list_id}/members/{old}", json={"email_address": "taken@acme-widgets.io"}
    )
    problem(taken, 400, "Member Exists")
    renamed = http.put(
        f"/lists/{list_id}/members/{old}", json={"email_address": "new@acme-widgets.io"}
    )
    assert renamed.json()["id"] == md5("new@acme-widgets.io")
    assert [t["name"] for t in renamed.json()["tags"]] == ["T"]
    problem(http.get(f"/lists/{list_id}/members/{old}"), 404, "Resource Not Found")


def test_members_paging_fields_and_status_filter(setup: Setup) -> None:
    emulator, http, list_id = setup
    for n in range(25):
        emulator.seed_member(
            list_id, f"m{n:02}@acme-widgets.io", status="subscribed" if n % 5 else "unsubscribed"
        )
    page = http.get(f"/lists/{list_id}/members").json()
    assert page["total_items"] == 25
    assert len(page["members"]) == 10
    seen: list[str] = []
    offset = 0
    while True:
        chunk = http.get(
            f"/lists/{list_id}/members",
            params={"count": 7, "offset": offset, "fields": "members.email_address,total_items"},
        ).json()
        assert set(chunk) == {"members", "total_items"}
        seen += [m["email_address"] for m in chunk["members"]]
        assert all(set(m) == {"email_address"} for m in chunk["members"])
        offset += 7
        if offset >= chunk["total_items"]:
            break
    assert len(set(seen)) == 25
    unsubscribed = http.get(f"/lists/{list_id}/members", params={"status": "unsubscribed"}).json()
    assert unsubscribed["total_items"] == 5
    problem(
        http.get(f"/lists/{list_id}/members", params={"status": "gone"}), 400, "Invalid Resource"
    )
    excluded = http.get(
        f"/lists/{list_id}/members", params={"exclude_fields": "members._links,email_address"}
    ).json()
    assert "_links" not in excluded["members"][0]
    assert "email_address" in excluded["members"][0]  # a bare name has no effect on collections


# -- status transitions and compliance --------------------------------------------------


def test_admin_unsubscribe_can_be_reversed(setup: Setup) -> None:
    emulator, http, list_id = setup
    key = emulator.seed_member(list_id, "u@acme-widgets.io")
    unsub = http.patch(f"/lists/{list_id}/members/{key}", json={"status": "unsubscribed"})
    assert unsub.json()["unsubscribe_reason"] == "N/A (Unsubscribed by admin)"
    resub = http.put(f"/lists/{list_id}/members/{key}", json={"status": "subscribed"})
    assert resub.json()["status"] == "subscribed"
    assert "unsubscribe_reason" not in resub.json()


def test_api_unsubscribe_compliance_switch() -> None:
    emulator, http, list_id = make(api_unsubscribe_is_compliance=True)
    key = emulator.seed_member(list_id, "u@acme-widgets.io")
    http.patch(f"/lists/{list_id}/members/{key}", json={"status": "unsubscribed"})
    resub = http.put(f"/lists/{list_id}/members/{key}", json={"status": "subscribed"})
    problem(resub, 400, "Member In Compliance State")


@pytest.mark.parametrize("method", ["PUT", "PATCH", "POST"])
def test_self_unsubscribed_member_is_in_compliance_state(setup: Setup, method: str) -> None:
    emulator, http, list_id = setup
    email = "self@acme-widgets.io"
    key = emulator.seed_member(list_id, email, status="unsubscribed", compliance=True)
    path = f"/lists/{list_id}/members" + ("" if method == "POST" else f"/{key}")
    body = {"email_address": email, "status": "subscribed"}
    response = http.request(method, path, json=body)
    if method == "POST":
        problem(response, 400, "Member Exists")
        return
    detail = problem(response, 400, "Member In Compliance State")["detail"]
    assert "cannot be subscribed" in detail
    pending = http.request(method, path, json={"status": "pending"})
    assert pending.json()["status"] == "pending"  # the documented way back


def test_cleaned_member_cannot_be_subscribed(setup: Setup) -> None:
    emulator, http, list_id = setup
    key = emulator.seed_member(list_id, "bounce@acme-widgets.io")
    assert (
        http.patch(f"/lists/{list_id}/members/{key}", json={"status": "cleaned"}).status_code == 200
    )
    problem(
        http.patch(f"/lists/{list_id}/members/{key}", json={"status": "subscribed"}),
        400,
        "Member In Compliance State",
    )


def test_archived_is_not_a_write_status(setup: Setup) -> None:
    emulator, http, list_id = setup
    key = emulator.seed_member(list_id, "a@acme-widgets.io")
    problem(
        http.patch(f"/lists/{list_id}/members/{key}", json={"status": "archived"}),
        400,
        "Invalid Resource",
    )


def test_archive_delete_and_405s(setup: Setup) -> None:
    emulator, http, list_id = setup
    key = emulator.seed_member(list_id, "a@acme-widgets.io", tags=["T"])
    assert http.delete(f"/lists/{list_id}/members/{key}").status_code == 204
    archived = http.get(f"/lists/{list_id}/members/{key}").json()
    assert archived["status"] == "archived"
    assert [t["name"] for t in archived["tags"]] == ["T"]
    again = http.delete(f"/lists/{list_id}/members/{key}")
    problem(again, 405, "Method Not Allowed")
    assert again.headers["allow"] == "GET, PUT"
    pending = emulator.seed_member(list_id, "p@acme-widgets.io", status="pending")
    problem(http.delete(f"/lists/{list_id}/members/{pending}"), 405, "Method Not Allowed")
    problem(
        http.delete(f"/lists/{list_id}/members/{md5('no@acme-widgets.io')}"),
        404,
        "Resource Not Found",
    )
    revived = http.put(f"/lists/{list_id}/members/{key}", json={"status": "subscribed"})
    assert revived.json()["status"] == "subscribed"


def test_archived_listing_switch() -> None:
    for include in (False, True):
        emulator, http, list_id = make(list_members_includes_archived=include)
        emulator.seed_member(list_id, "a@acme-widgets.io", status="archived")
        emulator.seed_member(list_id, "b@acme-widgets.io")
        total = http.get(f"/lists/{list_id}/members").json()["total_items"]
        assert total == (2 if include else 1)
        only = http.get(f"/lists/{list_id}/members", params={"status": "archived"}).json()
        assert only["total_items"] == 1


def test_patch_revives_archived_switch() -> None:
    for revives in (False, True):
        emulator, http, list_id = make(patch_revives_archived=revives)
        key = emulator.seed_member(list_id, "a@acme-widgets.io", status="archived")
        patched = http.patch(f"/lists/{list_id}/members/{key}", json={"status": "subscribed"})
        assert patched.json()["status"] == ("subscribed" if revives else "archived")


def test_post_revives_archived_switch() -> None:
    body = {"email_address": "a@acme-widgets.io", "status": "subscribed"}
    emulator, http, list_id = make()
    emulator.seed_member(list_id, "a@acme-widgets.io", status="archived")
    assert http.post(f"/lists/{list_id}/members", json=body).json()["status"] == "subscribed"
    emulator, http, list_id = make(post_revives_archived=False)
    emulator.seed_member(list_id, "a@acme-widgets.io", status="archived")
    problem(http.post(f"/lists/{list_id}/members", json=body), 400, "Member Exists")


def test_patch_transactional_switch() -> None:
    for accepted in (True, False):
        emulator, http, list_id = make(patch_accepts_transactional=accepted)
        key = emulator.seed_member(list_id, "t@acme-widgets.io")
        response = http.patch(f"/lists/{list_id}/members/{key}", json={"status": "transactional"})
        assert response.status_code == (200 if accepted else 400)


def test_permanent_delete_then_re_add_refused(setup: Setup) -> None:
    emulator, http, list_id = setup
    email = "gone@acme-widgets.io"
    key = emulator.seed_member(list_id, email, tags=["T"])
    assert http.post(f"/lists/{list_id}/members/{key}/actions/delete-permanent").status_code == 204
    problem(http.get(f"/lists/{list_id}/members/{key}"), 404, "Resource Not Found")
    for status in ("subscribed", "pending"):
        post = http.post(
            f"/lists/{list_id}/members", json={"email_address": email, "status": status}
        )
        assert (
            "permanently deleted" in problem(post, 400, "Forgotten Email Not Subscribed")["detail"]
        )
        put = http.put(
            f"/lists/{list_id}/members/{key}",
            json={"email_address": email, "status_if_new": status},
        )
        problem(put, 400, "Forgotten Email Not Subscribed")
    batch = http.post(
        f"/lists/{list_id}", json={"members": [{"email_address": email, "status": "subscribed"}]}
    )
    assert batch.json()["errors"][0]["error_code"] == "ERROR_GENERIC"
    problem(
        http.post(f"/lists/{list_id}/members/{key}/actions/delete-permanent"),
        404,
        "Resource Not Found",
    )


# -- batch subscribe --------------------------------------------------------------------


def test_batch_subscribe_mixed_results(setup: Setup) -> None:
    emulator, http, list_id = setup
    emulator.seed_merge_field(list_id, "LTV", type="number")
    emulator.seed_member(list_id, "old@acme-widgets.io")
    emulator.seed_member(list_id, "locked@acme-widgets.io", status="unsubscribed", compliance=True)
    members = [
        {"email_address": "new@acme-widgets.io", "status": "subscribed"},
        {"email_address": "old@acme-widgets.io", "status": "subscribed"},
        {
            "email_address": "bad@acme-widgets.io",
            "status": "subscribed",
            "merge_fields": {"LTV": "x"},
        },
        {"email_address": "foo@example.com", "status": "subscribed"},
    ]
    response = http.post(f"/lists/{list_id}", json={"members": members})
    assert response.status_code == 200
    body = response.json()
    assert [m["email_address"] for m in body["new_members"]] == ["new@acme-widgets.io"]
    assert body["total_created"] == 1
    assert body["total_updated"] == 0
    assert body["error_count"] == 3
    codes = {e["email_address"]: e["error_code"] for e in body["errors"]}
    assert codes["old@acme-widgets.io"] == "ERROR_CONTACT_EXISTS"
    assert codes["bad@acme-widgets.io"] == "ERROR_GENERIC"
    bad = next(e for e in body["errors"] if e["email_address"] == "bad@acme-widgets.io")
    assert (bad["field"], bad["field_message"]) == ("LTV", "Please enter a number")
    updating = http.post(
        f"/lists/{list_id}",
        json={
            "update_existing": True,
            "members": [
                {"email_address": "old@acme-widgets.io", "status": "unsubscribed"},
                {"email_address": "locked@acme-widgets.io", "status": "subscribed"},
            ],
        },
    ).json()
    assert [m["status"] for m in updating["updated_members"]] == ["unsubscribed"]
    assert updating["errors"][0]["email_address"] == "locked@acme-widgets.io"


def test_batch_subscribe_limits_and_duplicates(setup: Setup) -> None:
    _, http, list_id = setup
    too_many = [
        {"email_address": f"m{n}@acme-widgets.io", "status": "subscribed"} for n in range(501)
    ]
    problem(http.post(f"/lists/{list_id}", json={"members": too_many}), 400, "Invalid Resource")
    twice = [
        {"email_address": "d@acme-widgets.io", "status": "pending"},
        {"email_address": "D@acme-widgets.io", "status": "subscribed"},
    ]
    strict = http.post(f"/lists/{list_id}", json={"members": twice}).json()
    assert strict["total_created"] == 1
    assert strict["error_count"] == 1
    lax = http.post(
        f"/lists/{list_id}",
        params={"skip_duplicate_check": "true"},
        json={"members": [{**m, "email_address": "e" + m["email_address"][1:]} for m in twice]},
    ).json()
    assert lax["error_count"] == 0
    assert lax["new_members"][0]["status"] == "pending"  # the first one wins


@pytest.mark.parametrize("policy", ["ignore", "apply", "reject"])
def test_batch_subscribe_tags_switch(policy: str) -> None:
    _, http, list_id = make(batch_subscribe_tags=policy)
    item = {"email_address": "t@acme-widgets.io", "status": "subscribed", "tags": ["VIP"]}
    body = http.post(f"/lists/{list_id}", json={"members": [item]}).json()
    if policy == "reject":
        assert body["error_count"] == 1
        return
    tags = [t["name"] for t in body["new_members"][0]["tags"]]
    assert tags == ([] if policy == "ignore" else ["VIP"])


# -- tags and segments ------------------------------------------------------------------


def test_member_tags_read_write(setup: Setup) -> None:
    emulator, http, list_id = setup
    key = emulator.seed_member(list_id, "a@acme-widgets.io")
    emulator.seed_tag(list_id, "List One")
    write = http.post(
        f"/lists/{list_id}/members/{key}/tags",
        json={
            "tags": [{"name": "list one", "status": "active"}, {"name": "New", "status": "active"}]
        },
    )
    assert write.status_code == 204
    assert write.content == b""
    tags = http.get(f"/lists/{list_id}/members/{key}/tags").json()
    assert sorted(t["name"] for t in tags["tags"]) == ["List One", "New"]
    assert all(t["date_added"] for t in tags["tags"])
    http.post(
        f"/lists/{list_id}/members/{key}/tags",
        json={"tags": [{"name": "NEW", "status": "inactive"}]},
    )
    assert [t["name"] for t in http.get(f"/lists/{list_id}/members/{key}").json()["tags"]] == [
        "List One"
    ]
    # A body without the tags wrapper: 204 and nothing changed.
    unwrapped = http.post(
        f"/lists/{list_id}/members/{key}/tags", json=[{"name": "X", "status": "active"}]
    )
    assert unwrapped.status_code == 204
    assert http.get(f"/lists/{list_id}/tag-search").json()["total_items"] == 2
    assert (
        http.get(f"/lists/{list_id}/tag-search", params={"name": "lis"}).json()["tags"][0]["name"]
        == "List One"
    )
    problem(
        http.post(f"/lists/{list_id}/members/{md5('no@acme-widgets.io')}/tags", json={"tags": []}),
        404,
        "Resource Not Found",
    )


def test_tag_name_length_switch() -> None:
    for limit in (None, 50):
        emulator, http, list_id = make(max_tag_name_length=limit)
        key = emulator.seed_member(list_id, "a@acme-widgets.io")
        long_tag = {"tags": [{"name": "x" * 60, "status": "active"}]}
        response = http.post(f"/lists/{list_id}/members/{key}/tags", json=long_tag)
        assert response.status_code == (204 if limit is None else 400)


def test_static_segment_batch_add_remove(setup: Setup) -> None:
    emulator, http, list_id = setup
    for name in ("a", "b", "c"):
        emulator.seed_member(list_id, f"{name}@acme-widgets.io")
    created = http.post(
        f"/lists/{list_id}/segments",
        json={"name": "Friends", "static_segment": ["a@acme-widgets.io"]},
    ).json()
    segment_id = created["id"]
    assert created["type"] == "static"
    assert created["member_count"] == 1
    result = http.post(
        f"/lists/{list_id}/segments/{segment_id}",
        json={
            "members_to_add": ["b@acme-widgets.io", "c@acme-widgets.io", "nobody@acme-widgets.io"],
            "members_to_remove": ["a@acme-widgets.io"],
        },
    ).json()
    assert result["total_added"] == 2
    assert result["total_removed"] == 1
    assert result["errors"] == [
        {
            "email_addresses": ["nobody@acme-widgets.io"],
            "error": "Email addresses are not on the list.",
        }
    ]
    members = http.get(f"/lists/{list_id}/segments/{segment_id}/members").json()
    assert sorted(m["email_address"] for m in members["members"]) == [
        "b@acme-widgets.io",
        "c@acme-widgets.io",
    ]
    listing = http.get(f"/lists/{list_id}/segments", params={"type": "static"}).json()
    assert listing["total_items"] == 1
    assert listing["segments"][0]["member_count"] == 2
    too_many = [f"x{n}@acme-widgets.io" for n in range(501)]
    problem(
        http.post(f"/lists/{list_id}/segments/{segment_id}", json={"members_to_add": too_many}),
        400,
        "Invalid Resource",
    )
    assert http.delete(f"/lists/{list_id}/segments/{segment_id}").status_code == 204
    problem(http.get(f"/lists/{list_id}/segments/{segment_id}"), 404, "Resource Not Found")


def test_segment_unknown_addresses_switch() -> None:
    emulator, http, list_id = make(segment_batch_reports_unknown=False)
    segment_id = emulator.seed_tag(list_id, "T")
    result = http.post(
        f"/lists/{list_id}/segments/{segment_id}", json={"members_to_add": ["no@acme-widgets.io"]}
    ).json()
    assert result["errors"] == []
    assert result["total_added"] == 0


def test_segment_members_hide_unsubscribed_unless_asked(setup: Setup) -> None:
    emulator, http, list_id = setup
    emulator.seed_member(list_id, "s@acme-widgets.io", tags=["T"])
    emulator.seed_member(list_id, "u@acme-widgets.io", status="unsubscribed", tags=["T"])
    segment_id = http.get(f"/lists/{list_id}/segments").json()["segments"][0]["id"]
    path = f"/lists/{list_id}/segments/{segment_id}/members"
    assert http.get(path).json()["total_items"] == 1
    assert http.get(path, params={"include_unsubscribed": "true"}).json()["total_items"] == 2


# -- connections, state ---------------------------------------------------------------


async def _concurrent(emulator: MailchimpEmulator, n: int) -> list[httpx.Response]:
    transport = EmulatorTransport(app=emulator.app)
    async with httpx.AsyncClient(
        transport=transport, base_url=BASE, auth=("u", SANDBOX_API_KEY)
    ) as http:
        return await asyncio.gather(*(http.get("/ping") for _ in range(n)))


@pytest.mark.parametrize("answer", ["429", "403"])
def test_eleventh_simultaneous_connection_refused(answer: str) -> None:
    emulator = create_mailchimp_emulator(MailchimpEmulatorSettings(over_connection_answer=answer))  # type: ignore[arg-type]
    emulator.control.latency_seconds = 0.2
    responses = asyncio.run(_concurrent(emulator, 12))
    statuses = sorted(r.status_code for r in responses)
    assert statuses.count(200) == 10
    refused = [r for r in responses if r.status_code != 200]
    assert {r.status_code for r in refused} == {int(answer)}
    if answer == "429":
        body = refused[0].json()
        assert body["detail"] == "You have exceeded the limit of 10 simultaneous connections."
        assert "retry-after" not in refused[0].headers
    else:
        assert refused[0].content == b""
    emulator.control.latency_seconds = 0
    assert all(r.status_code == 200 for r in asyncio.run(_concurrent(emulator, 3)))


def test_state_round_trip(setup: Setup) -> None:
    emulator, http, list_id = setup
    emulator.seed_merge_field(list_id, "LTV", type="number")
    key = emulator.seed_member(list_id, "a@acme-widgets.io", merge_fields={"LTV": 3}, tags=["T"])
    emulator.seed_member(list_id, "gone@acme-widgets.io")
    http.post(f"/lists/{list_id}/members/{md5('gone@acme-widgets.io')}/actions/delete-permanent")
    state = json.loads(json.dumps(emulator.dump_state()))
    restored = create_mailchimp_emulator(state=state)
    again = client(restored)
    assert (
        again.get(f"/lists/{list_id}/members/{key}").json()
        == http.get(f"/lists/{list_id}/members/{key}").json()
    )
    problem(
        again.post(
            f"/lists/{list_id}/members",
            json={"email_address": "gone@acme-widgets.io", "status": "pending"},
        ),
        400,
        "Forgotten Email Not Subscribed",
    )
    assert restored.dump_state() == state
    with pytest.raises(ValueError):
        create_mailchimp_emulator(state={"nope": 1})


def test_control_state_route(setup: Setup) -> None:
    _, http, list_id = setup
    assert (
        http.get("https://us1.api.mailchimp.com/_emulator/state").json()["lists"][list_id]["name"]
        == "Newsletter"
    )


def test_put_without_status_revives_archived_to_its_old_status(setup: Setup) -> None:
    emulator, http, list_id = setup
    key = emulator.seed_member(list_id, "a@acme-widgets.io", status="unsubscribed")
    http.patch(f"/lists/{list_id}/members/{key}", json={"status": "subscribed"})
    http.patch(f"/lists/{list_id}/members/{key}", json={"status": "unsubscribed"})
    assert http.delete(f"/lists/{list_id}/members/{key}").status_code == 204
    revived = http.put(f"/lists/{list_id}/members/{key}", json={"merge_fields": {"FNAME": "A"}})
    assert revived.json()["status"] == "unsubscribed"


def test_fields_on_one_resource_and_method_override(setup: Setup) -> None:
    emulator, http, list_id = setup
    key = emulator.seed_member(list_id, "a@acme-widgets.io", merge_fields={"FNAME": "A"})
    one = http.get(
        f"/lists/{list_id}/members/{key}", params={"fields": "status,merge_fields.FNAME"}
    )
    assert one.json() == {"status": "subscribed", "merge_fields": {"FNAME": "A"}}
    override = http.post(
        f"/lists/{list_id}/members/{key}",
        headers={"X-HTTP-Method-Override": "PATCH"},
        json={"status": "unsubscribed"},
    )
    assert override.json()["status"] == "unsubscribed"
    raw = http.patch(
        f"/lists/{list_id}/members/{key}",
        content=b"{not json",
        headers={"Content-Type": "application/json"},
    )
    problem(raw, 400, "JSON Parse Error")
