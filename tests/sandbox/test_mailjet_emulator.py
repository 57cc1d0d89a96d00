"""The Mailjet emulator, driven over HTTP (httpx ASGI transport) as a client would."""

from __future__ import annotations

import asyncio
import csv
import io
import json
import uuid
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import httpx
import pytest

from reconcile.providers.mailjet.emulator.app import (
    MailjetEmulator,
    MailjetEmulatorSettings,
    create_mailjet_emulator,
)
from reconcile.sandbox.common import Fault

T = TypeVar("T")
AUTH = ("sandbox-key", "sandbox-secret")
REST = "/v3/REST"
Scenario = Callable[[httpx.AsyncClient], Awaitable[T]]


def drive(emu: MailjetEmulator, scenario: Scenario[T], auth: tuple[str, str] | None = AUTH) -> T:
    async def main() -> T:
        transport = httpx.ASGITransport(app=emu.app)
        async with httpx.AsyncClient(
            transport=transport, base_url="http://mailjet.test", auth=auth
        ) as client:
            return await scenario(client)

    return asyncio.run(main())


def make(**settings: Any) -> MailjetEmulator:
    return create_mailjet_emulator(MailjetEmulatorSettings(**settings))


def assert_error(response: httpx.Response, status: int, fragment: str = "") -> Any:
    """Check a Mailjet error body; returns its ErrorMessage."""
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) == {"ErrorIdentifier", "ErrorInfo", "ErrorMessage", "StatusCode"}
    assert body["StatusCode"] == status
    uuid.UUID(body["ErrorIdentifier"])
    assert fragment in json.dumps(body["ErrorMessage"])
    return body["ErrorMessage"]


# ---- auth, errors, routing --------------------------------------------------


def test_requests_without_valid_basic_auth_get_401() -> None:
    emu = make()

    async def scenario(client: httpx.AsyncClient) -> None:
        assert_error(await client.get(f"{REST}/contact"), 401, "authentication")
        wrong = await client.get(f"{REST}/contact", auth=("sandbox-key", "nope"))
        assert_error(wrong, 401)
        bearer = await client.get(
            f"{REST}/contact", headers={"Authorization": "Bearer sandbox-key"}
        )
        assert_error(bearer, 401)
        ok = await client.get(f"{REST}/contact", auth=AUTH)
        assert ok.status_code == 200

    drive(emu, scenario, auth=None)


def test_unknown_route_answers_a_mailjet_error_body() -> None:
    emu = make()

    async def scenario(client: httpx.AsyncClient) -> None:
        assert_error(await client.get(f"{REST}/nosuchresource"), 404)
        assert_error(await client.patch(f"{REST}/contact/1", json={}), 405)

    drive(emu, scenario)


# ---- paging -----------------------------------------------------------------


def test_paging_defaults_limits_and_page_sized_total() -> None:
    emu = make()
    ids = [emu.seed_contact(f"user{i:02d}@example.com") for i in range(25)]

    async def scenario(client: httpx.AsyncClient) -> None:
        first = (await client.get(f"{REST}/contact")).json()
        assert first["Count"] == 10
        assert first["Total"] == 10  # real API: Total is the page size
        assert [c["ID"] for c in first["Data"]] == ids[:10]
        last = (await client.get(f"{REST}/contact", params={"Limit": 10, "Offset": 20})).json()
        assert [c["ID"] for c in last["Data"]] == ids[20:]
        assert (last["Count"], last["Total"]) == (5, 5)
        big = (await client.get(f"{REST}/contact", params={"Limit": 1000})).json()
        assert big["Count"] == 25
        assert_error(await client.get(f"{REST}/contact", params={"Limit": 1001}), 400, "Limit")
        assert_error(await client.get(f"{REST}/contact", params={"Offset": "x"}), 400)
        counted = (await client.get(f"{REST}/contact", params={"countOnly": 1})).json()
        assert (counted["Count"], counted["Data"], counted["Total"]) == (25, [], 25)

    drive(emu, scenario)


def test_total_mode_full_reports_the_whole_collection() -> None:
    emu = make(total_mode="full")
    for i in range(12):
        emu.seed_contact(f"user{i}@example.com")

    async def scenario(client: httpx.AsyncClient) -> None:
        page = (await client.get(f"{REST}/contact", params={"Limit": 5})).json()
        assert (page["Count"], page["Total"]) == (5, 12)

    drive(emu, scenario)


def test_unknown_filter_is_refused() -> None:
    emu = make()

    async def scenario(client: httpx.AsyncClient) -> None:
        response = await client.get(f"{REST}/listrecipient", params={"ContactID": 1})
        assert_error(response, 400, "ContactID")

    drive(emu, scenario)


# ---- /contact ---------------------------------------------------------------


def test_create_contact_returns_the_full_record() -> None:
    emu = make()

    async def scenario(client: httpx.AsyncClient) -> None:
        response = await client.post(
            f"{REST}/contact", json={"Email": "new@example.com", "Name": "New"}
        )
        assert response.status_code == 201
        body = response.json()
        assert (body["Count"], body["Total"]) == (1, 1)
        record = body["Data"][0]
        assert record["Email"] == "new@example.com"
        assert record["Name"] == "New"
        assert record["IsExcludedFromCampaigns"] is False
        for key in ("ID", "CreatedAt", "LastActivityAt", "DeliveredCount", "UnsubscribedAt"):
            assert key in record
        for key in ("UnsubscribedBy", "IsOptInPending", "IsSpamComplaining"):
            assert key in record
        fetched = await client.get(f"{REST}/contact/{record['ID']}")
        assert fetched.json()["Data"][0] == record

    drive(emu, scenario)


def test_create_contact_validation_errors() -> None:
    emu = make()

    async def scenario(client: httpx.AsyncClient) -> None:
        bad_email = await client.post(f"{REST}/contact", json={"Email": "not-an-email"})
        assert assert_error(bad_email, 400) == {"Email": "Invalid email"}
        read_only = await client.post(f"{REST}/contact", json={"Email": "a@x.com", "ID": 5})
        assert_error(read_only, 400, "MJ19")
        delivered = await client.post(
            f"{REST}/contact", json={"Email": "a@x.com", "DeliveredCount": 3}
        )
        assert_error(delivered, 400, "MJ19")
        unknown = await client.post(f"{REST}/contact", json={"Email": "a@x.com", "Nickname": "a"})
        assert_error(unknown, 400, "Nickname")
        wrong_type = await client.post(
            f"{REST}/contact", json={"Email": "a@x.com", "IsExcludedFromCampaigns": "yes"}
        )
        assert "IsExcludedFromCampaigns" in assert_error(wrong_type, 400)
        not_json = await client.post(f"{REST}/contact", content=b"{nope")
        assert_error(not_json, 400, "json")

    drive(emu, scenario)
    assert emu.contact("a@x.com") is None


def test_duplicate_contact_is_mj18_case_insensitively_by_default() -> None:
    emu = make()
    emu.seed_contact("alice@example.com", name="Alice")

    async def scenario(client: httpx.AsyncClient) -> None:
        response = await client.post(f"{REST}/contact", json={"Email": "ALICE@example.com"})
        assert_error(
            response,
            400,
            'MJ18 A Contact resource with value \\"ALICE@example.com\\" for Email already exists.',
        )

    drive(emu, scenario)


def test_duplicate_contact_returns_existing_record_in_seed_mode() -> None:
    emu = make(duplicate_contact="return_existing")
    contact_id = emu.seed_contact("alice@example.com", name="Alice", excluded=True)

    async def scenario(client: httpx.AsyncClient) -> None:
        response = await client.post(
            f"{REST}/contact", json={"Email": "alice@example.com", "Name": "Other"}
        )
        assert response.status_code == 201
        record = response.json()["Data"][0]
        assert record["ID"] == contact_id
        assert record["Name"] == "Alice"
        assert record["IsExcludedFromCampaigns"] is True

    drive(emu, scenario)
    assert emu.contact("alice@example.com") == emu.contact("ALICE@example.com")


def test_get_contact_by_id_or_url_encoded_email() -> None:
    emu = make()
    contact_id = emu.seed_contact("a+tag@example.com", name="A")

    async def scenario(client: httpx.AsyncClient) -> None:
        by_email = await client.get(f"{REST}/contact/a%2Btag%40example.com")
        assert by_email.json()["Data"][0]["ID"] == contact_id
        by_id = await client.get(f"{REST}/contact/{contact_id}")
        assert by_id.json()["Data"][0]["Email"] == "a+tag@example.com"
        assert_error(await client.get(f"{REST}/contact/missing%40example.com"), 404)
        assert_error(await client.get(f"{REST}/contact/999"), 404)

    drive(emu, scenario)


def test_contact_email_filter() -> None:
    emu = make()
    emu.seed_contact("a@example.com")
    b_id = emu.seed_contact("b@example.com")

    async def scenario(client: httpx.AsyncClient) -> None:
        found = (await client.get(f"{REST}/contact", params={"Email": "B@example.com"})).json()
        assert [c["ID"] for c in found["Data"]] == [b_id]

    drive(emu, scenario)


def test_put_contact_replaces_omitted_editable_fields_by_default() -> None:
    emu = make()
    contact_id = emu.seed_contact("bob@example.com", name="Bob", excluded=True)

    async def scenario(client: httpx.AsyncClient) -> None:
        response = await client.put(f"{REST}/contact/{contact_id}", json={"Name": "Robert"})
        assert response.status_code == 200
        record = response.json()["Data"][0]
        assert record["Name"] == "Robert"
        assert record["IsExcludedFromCampaigns"] is False  # omitted -> reset to default

    drive(emu, scenario)
    assert emu.contact("bob@example.com") is not None


def test_put_contact_merges_in_merge_mode() -> None:
    emu = make(contact_put="merge")
    contact_id = emu.seed_contact("bob@example.com", name="Bob", excluded=True)

    async def scenario(client: httpx.AsyncClient) -> None:
        response = await client.put(f"{REST}/contact/{contact_id}", json={"Name": "Robert"})
        record = response.json()["Data"][0]
        assert (record["Name"], record["IsExcludedFromCampaigns"]) == ("Robert", True)

    drive(emu, scenario)


def test_put_contact_without_change_is_304_with_empty_body() -> None:
    emu = make()
    contact_id = emu.seed_contact("bob@example.com", name="Bob")

    async def scenario(client: httpx.AsyncClient) -> None:
        same = await client.put(
            f"{REST}/contact/{contact_id}",
            json={"Name": "Bob", "IsExcludedFromCampaigns": False},
        )
        assert same.status_code == 304
        assert same.content == b""

    drive(emu, scenario)


def test_put_contact_read_only_and_unknown_fields() -> None:
    emu = make()
    contact_id = emu.seed_contact("bob@example.com", name="Bob")

    async def scenario(client: httpx.AsyncClient) -> None:
        email = await client.put(f"{REST}/contact/{contact_id}", json={"Email": "new@example.com"})
        assert_error(email, 400, "MJ19")
        created = await client.put(f"{REST}/contact/{contact_id}", json={"CreatedAt": "x"})
        assert_error(created, 400, "MJ19")
        unknown = await client.put(f"{REST}/contact/{contact_id}", json={"Colour": "red"})
        assert_error(unknown, 400, "Colour")
        assert_error(await client.put(f"{REST}/contact/424242", json={"Name": "x"}), 404)

    drive(emu, scenario)
    assert emu.contact("bob@example.com") is not None


def test_v3_contact_delete_is_405_like_the_real_api() -> None:
    emu = make()
    contact_id = emu.seed_contact("bob@example.com")

    async def scenario(client: httpx.AsyncClient) -> None:
        assert_error(await client.delete(f"{REST}/contact/{contact_id}"), 405)

    drive(emu, scenario)
    assert emu.contact("bob@example.com") is not None


def test_v3_contact_delete_when_enabled_removes_data_and_memberships() -> None:
    emu = make(v3_contact_delete=True)
    emu.seed_property("dept")
    list_id = emu.seed_list("news")
    contact_id = emu.seed_contact(
        "bob@example.com", properties={"dept": "x"}, lists={"news": False}
    )

    async def scenario(client: httpx.AsyncClient) -> None:
        response = await client.delete(f"{REST}/contact/{contact_id}")
        assert response.status_code == 204
        assert_error(await client.get(f"{REST}/contact/{contact_id}"), 404)
        members = await client.get(f"{REST}/listrecipient", params={"ContactsList": list_id})
        assert members.json()["Data"] == []
        assert_error(await client.get(f"{REST}/contactdata/{contact_id}"), 404)

    drive(emu, scenario)


def test_v4_gdpr_delete_erases_the_contact() -> None:
    emu = make()
    contact_id = emu.seed_contact("bob@example.com")

    async def scenario(client: httpx.AsyncClient) -> None:
        response = await client.delete(f"/v4/contacts/{contact_id}")
        assert response.status_code in (200, 204)
        assert_error(await client.delete(f"/v4/contacts/{contact_id}"), 404)

    drive(emu, scenario)
    assert emu.contact("bob@example.com") is None


def test_hidden_contact_is_missing_from_listing_but_blocks_create() -> None:
    emu = make()
    contact_id = emu.seed_contact("late@example.com")
    emu.hide_from_listing("late@example.com")

    async def scenario(client: httpx.AsyncClient) -> None:
        listing = await client.get(f"{REST}/contact", params={"Email": "late@example.com"})
        assert listing.json()["Data"] == []
        direct = await client.get(f"{REST}/contact/late%40example.com")
        assert direct.json()["Data"][0]["ID"] == contact_id
        create = await client.post(f"{REST}/contact", json={"Email": "late@example.com"})
        assert_error(create, 400, "MJ18")

    drive(emu, scenario)


# ---- /contactmetadata -------------------------------------------------------


def test_contactmetadata_lifecycle() -> None:
    emu = make()

    async def scenario(client: httpx.AsyncClient) -> None:
        created = await client.post(
            f"{REST}/contactmetadata", json={"Name": "seats", "Datatype": "int"}
        )
        assert created.status_code == 201
        record = created.json()["Data"][0]
        assert record == {
            "ID": record["ID"],
            "Name": "seats",
            "Datatype": "int",
            "NameSpace": "static",
        }
        by_name = await client.get(f"{REST}/contactmetadata/seats")
        assert by_name.json()["Data"][0]["ID"] == record["ID"]
        duplicate = await client.post(
            f"{REST}/contactmetadata", json={"Name": "seats", "Datatype": "str"}
        )
        assert_error(duplicate, 400, "MJ18")
        bad_type = await client.post(
            f"{REST}/contactmetadata", json={"Name": "x", "Datatype": "integer"}
        )
        assert "Datatype" in assert_error(bad_type, 400)
        bad_namespace = await client.post(
            f"{REST}/contactmetadata", json={"Name": "x", "Datatype": "str", "NameSpace": "y"}
        )
        assert_error(bad_namespace, 400, "NameSpace")
        retype = await client.put(
            f"{REST}/contactmetadata/{record['ID']}", json={"Datatype": "str"}
        )
        assert_error(retype, 400, "Datatype")
        historic = await client.put(
            f"{REST}/contactmetadata/{record['ID']}", json={"NameSpace": "historic"}
        )
        assert historic.json()["Data"][0]["NameSpace"] == "historic"
        same = await client.put(f"{REST}/contactmetadata/{record['ID']}", json={"Datatype": "int"})
        assert same.status_code == 304

    drive(emu, scenario)


def test_deleting_a_property_removes_its_values() -> None:
    emu = make()
    property_id = emu.seed_property("dept")
    emu.seed_property("seats", "int")
    emu.seed_contact("a@example.com", properties={"dept": "Eng", "seats": 2})

    async def scenario(client: httpx.AsyncClient) -> None:
        response = await client.delete(f"{REST}/contactmetadata/{property_id}")
        assert response.status_code == 204
        assert_error(await client.get(f"{REST}/contactmetadata/dept"), 404)

    drive(emu, scenario)
    contact = emu.contact("a@example.com")
    assert contact is not None
    assert contact["Properties"] == {"seats": 2}


# ---- /contactslist ----------------------------------------------------------


def test_contactslist_lifecycle() -> None:
    emu = make()

    async def scenario(client: httpx.AsyncClient) -> None:
        created = await client.post(f"{REST}/contactslist", json={"Name": "news"})
        assert created.status_code == 201
        record = created.json()["Data"][0]
        assert set(record) == {"ID", "Name", "Address", "IsDeleted", "SubscriberCount", "CreatedAt"}
        assert (record["SubscriberCount"], record["IsDeleted"]) == (0, False)
        assert_error(await client.post(f"{REST}/contactslist", json={"Name": "news"}), 400, "MJ18")
        read_only = await client.post(
            f"{REST}/contactslist", json={"Name": "other", "SubscriberCount": 3}
        )
        assert_error(read_only, 400, "MJ19")
        await client.post(f"{REST}/contactslist", json={"Name": "beta"})
        filtered = await client.get(f"{REST}/contactslist", params={"Name": "beta"})
        assert [lst["Name"] for lst in filtered.json()["Data"]] == ["beta"]
        not_deleted = await client.get(f"{REST}/contactslist", params={"IsDeleted": "false"})
        assert not_deleted.json()["Count"] == 2
        renamed = await client.put(f"{REST}/contactslist/{record['ID']}", json={"Name": "weekly"})
        assert renamed.json()["Data"][0]["Name"] == "weekly"
        clash = await client.put(f"{REST}/contactslist/{record['ID']}", json={"Name": "beta"})
        assert_error(clash, 400, "MJ18")

    drive(emu, scenario)


def test_deleting_a_list_removes_its_memberships() -> None:
    emu = make()
    list_id = emu.seed_list("news")
    emu.seed_list("other")
    emu.seed_contact("a@example.com", lists={"news": False, "other": True})
    emu.seed_contact("b@example.com", lists={"news": True})

    async def scenario(client: httpx.AsyncClient) -> None:
        before = await client.get(f"{REST}/contactslist/{list_id}")
        assert before.json()["Data"][0]["SubscriberCount"] == 1  # unsubscribed not counted
        assert (await client.delete(f"{REST}/contactslist/{list_id}")).status_code == 204
        assert_error(await client.get(f"{REST}/contactslist/{list_id}"), 404)

    drive(emu, scenario)
    contact = emu.contact("a@example.com")
    assert contact is not None
    assert contact["Lists"] == {"other": True}


# ---- /contactdata -----------------------------------------------------------


def test_contactdata_put_merges_and_null_clears() -> None:
    emu = make()
    emu.seed_property("dept")
    emu.seed_property("seats", "int")
    emu.seed_property("city")
    contact_id = emu.seed_contact(
        "a@example.com", properties={"dept": "Eng", "seats": 3, "city": "Oslo"}
    )

    async def scenario(client: httpx.AsyncClient) -> None:
        response = await client.put(
            f"{REST}/contactdata/{contact_id}",
            json={"Data": [{"Name": "dept", "Value": "Sales"}, {"Name": "city", "Value": None}]},
        )
        assert response.status_code == 200
        record = response.json()["Data"][0]
        assert record["ContactID"] == contact_id
        assert record["Data"] == [
            {"Name": "dept", "Value": "Sales"},
            {"Name": "seats", "Value": 3},
        ]
        same = await client.put(
            f"{REST}/contactdata/{contact_id}", json={"Data": [{"Name": "seats", "Value": 3}]}
        )
        assert same.status_code == 304

    drive(emu, scenario)


def test_contactdata_rejects_undefined_names_and_wrong_types() -> None:
    emu = make()
    emu.seed_property("seats", "int")
    contact_id = emu.seed_contact("a@example.com", properties={"seats": 1})

    async def scenario(client: httpx.AsyncClient) -> None:
        undefined = await client.put(
            f"{REST}/contactdata/{contact_id}", json={"Data": [{"Name": "nope", "Value": 1}]}
        )
        assert assert_error(undefined, 400) == 'Invalid key name: "nope"'
        wrong = await client.put(
            f"{REST}/contactdata/{contact_id}",
            json={"Data": [{"Name": "seats", "Value": "many"}]},
        )
        assert "seats" in assert_error(wrong, 400)
        read_only = await client.put(
            f"{REST}/contactdata/{contact_id}", json={"ContactID": 1, "Data": []}
        )
        assert_error(read_only, 400, "MJ19")

    drive(emu, scenario)
    contact = emu.contact("a@example.com")
    assert contact is not None
    assert contact["Properties"] == {"seats": 1}


def test_contactdata_accepts_parseable_strings_and_stores_typed_values() -> None:
    emu = make()
    for name, datatype in [("n", "int"), ("f", "float"), ("b", "bool"), ("d", "datetime")]:
        emu.seed_property(name, datatype)
    contact_id = emu.seed_contact("a@example.com")

    async def scenario(client: httpx.AsyncClient) -> None:
        values = {"n": "3", "f": "2.5", "b": "true", "d": "2024-05-01T12:00:00+02:00"}
        body = {"Data": [{"Name": k, "Value": v} for k, v in values.items()]}
        response = await client.put(f"{REST}/contactdata/{contact_id}", json=body)
        assert response.status_code == 200
        bad_bool = await client.put(
            f"{REST}/contactdata/{contact_id}", json={"Data": [{"Name": "b", "Value": "yes"}]}
        )
        assert_error(bad_bool, 400, "b")

    drive(emu, scenario)
    contact = emu.contact("a@example.com")
    assert contact is not None
    assert contact["Properties"] == {"n": 3, "f": 2.5, "b": True, "d": "2024-05-01T10:00:00Z"}


def test_contactdata_collection_and_single_shapes() -> None:
    emu = make()
    emu.seed_property("dept")
    first = emu.seed_contact("a@example.com", properties={"dept": "Eng"})
    second = emu.seed_contact("b@example.com")

    async def scenario(client: httpx.AsyncClient) -> None:
        listing = (await client.get(f"{REST}/contactdata", params={"Limit": 1})).json()
        assert listing["Count"] == 1
        assert listing["Data"] == [
            {"ContactID": first, "ID": first, "Data": [{"Name": "dept", "Value": "Eng"}]}
        ]
        single = (await client.get(f"{REST}/contactdata/{second}")).json()
        assert single["Data"] == [{"ContactID": second, "ID": second, "Data": []}]

    drive(emu, scenario)


# ---- /listrecipient ---------------------------------------------------------


def test_listrecipient_lifecycle_and_filters() -> None:
    emu = make()
    news = emu.seed_list("news")
    beta = emu.seed_list("beta")
    alice = emu.seed_contact("alice@example.com")
    bob = emu.seed_contact("bob@example.com", lists={"beta": True})

    async def scenario(client: httpx.AsyncClient) -> None:
        created = await client.post(
            f"{REST}/listrecipient", json={"ContactID": alice, "ListID": news}
        )
        assert created.status_code == 201
        record = created.json()["Data"][0]
        assert record["ListName"] == "news"
        assert (record["IsUnsubscribed"], record["IsActive"]) == (False, True)
        for key in ("ID", "SubscribedAt", "UnsubscribedAt"):
            assert key in record
        duplicate = await client.post(
            f"{REST}/listrecipient", json={"ContactID": alice, "ListID": news}
        )
        assert_error(duplicate, 400, "MJ18")
        missing = await client.post(
            f"{REST}/listrecipient", json={"ContactID": alice, "ListID": 77}
        )
        assert_error(missing, 400, "ListID")

        async def ids(**params: Any) -> list[int]:
            page = await client.get(f"{REST}/listrecipient", params=params)
            return [m["ContactID"] for m in page.json()["Data"]]

        assert await ids(ContactsList=beta) == [bob]
        assert await ids(Contact=alice) == [alice]
        assert await ids(ContactEmail="BOB@example.com") == [bob]
        assert await ids(Unsub="true") == [bob]
        assert await ids(Unsub="false") == [alice]

        updated = await client.put(
            f"{REST}/listrecipient/{record['ID']}", json={"IsUnsubscribed": True}
        )
        assert updated.json()["Data"][0]["IsUnsubscribed"] is True
        unchanged = await client.put(
            f"{REST}/listrecipient/{record['ID']}", json={"IsUnsubscribed": True}
        )
        assert unchanged.status_code == 304
        moved = await client.put(f"{REST}/listrecipient/{record['ID']}", json={"ListID": beta})
        assert_error(moved, 400, "MJ19")
        assert (await client.delete(f"{REST}/listrecipient/{record['ID']}")).status_code == 204
        assert_error(await client.get(f"{REST}/listrecipient/{record['ID']}"), 404)

    drive(emu, scenario)


# ---- /contact/{id}/managecontactslists --------------------------------------


def test_managecontactslists_actions() -> None:
    emu = make()
    ids = {name: emu.seed_list(name) for name in ("force", "noforce", "gone", "unsub", "fresh")}
    contact_id = emu.seed_contact(
        "a@example.com",
        lists={"force": True, "noforce": True, "gone": False, "unsub": False},
    )
    actions = [
        {"ListID": ids["force"], "Action": "addforce"},
        {"ListID": ids["noforce"], "Action": "addnoforce"},
        {"ListID": ids["gone"], "Action": "remove"},
        {"ListID": ids["unsub"], "Action": "unsub"},
        {"ListID": ids["fresh"], "Action": "addnoforce"},
    ]

    async def scenario(client: httpx.AsyncClient) -> None:
        response = await client.post(
            f"{REST}/contact/{contact_id}/managecontactslists", json={"ContactsLists": actions}
        )
        assert response.status_code == 201
        assert response.json()["Data"] == [{"ContactsLists": actions}]

    drive(emu, scenario)
    contact = emu.contact("a@example.com")
    assert contact is not None
    assert contact["Lists"] == {"force": False, "noforce": True, "unsub": True, "fresh": False}


def test_managecontactslists_unsub_adds_a_non_member_as_unsubscribed() -> None:
    emu = make()
    list_id = emu.seed_list("news")
    contact_id = emu.seed_contact("a@example.com")

    async def scenario(client: httpx.AsyncClient) -> None:
        body = {"ContactsLists": [{"ListID": list_id, "Action": "unsub"}]}
        response = await client.post(f"{REST}/contact/{contact_id}/managecontactslists", json=body)
        assert response.status_code == 201

    drive(emu, scenario)
    contact = emu.contact("a@example.com")
    assert contact is not None
    assert contact["Lists"] == {"news": True}


def test_managecontactslists_errors() -> None:
    emu = make()
    list_id = emu.seed_list("news")
    contact_id = emu.seed_contact("a@example.com")

    async def scenario(client: httpx.AsyncClient) -> None:
        good = {"ContactsLists": [{"ListID": list_id, "Action": "addforce"}]}
        missing_contact = await client.post(f"{REST}/contact/999/managecontactslists", json=good)
        assert_error(missing_contact, 404)
        missing_list = {
            "ContactsLists": [
                {"ListID": list_id, "Action": "addforce"},
                {"ListID": 4242, "Action": "addforce"},
            ]
        }
        url = f"{REST}/contact/{contact_id}/managecontactslists"
        assert_error(await client.post(url, json=missing_list), 400, "4242")
        bad_action = {"ContactsLists": [{"ListID": list_id, "Action": "subscribe"}]}
        assert_error(await client.post(url, json=bad_action), 400, "subscribe")

    drive(emu, scenario)
    contact = emu.contact("a@example.com")
    assert contact is not None
    assert contact["Lists"] == {}  # the valid action of a refused request did not run


# ---- /contact/managemanycontacts --------------------------------------------


async def poll_until_done(client: httpx.AsyncClient, job_id: int) -> list[dict[str, Any]]:
    """Every poll's job record, up to and including the final one."""
    seen: list[dict[str, Any]] = []
    for _ in range(20):
        response = await client.get(f"{REST}/contact/managemanycontacts/{job_id}")
        assert response.status_code == 200
        seen.append(response.json()["Data"][0])
        if seen[-1]["Status"] in ("Completed", "Error"):
            return seen
    raise AssertionError(f"job {job_id} never finished: {seen[-1]}")


def test_managemanycontacts_job_lifecycle_and_upsert() -> None:
    emu = make()
    emu.seed_property("dept")
    emu.seed_property("seats", "int")
    list_id = emu.seed_list("news")
    emu.seed_contact(
        "old@example.com", name="Old", excluded=True, properties={"dept": "Eng", "seats": 2}
    )
    body = {
        "Contacts": [
            {"Email": "new@example.com", "Name": "New", "Properties": {"seats": "4"}},
            {"Email": "OLD@example.com", "Properties": {"seats": None}},
        ],
        "ContactsLists": [{"ListID": list_id, "Action": "addnoforce"}],
    }

    async def scenario(client: httpx.AsyncClient) -> list[dict[str, Any]]:
        posted = await client.post(f"{REST}/contact/managemanycontacts", json=body)
        assert posted.status_code == 201
        job_id = posted.json()["Data"][0]["JobID"]
        first = await client.get(f"{REST}/contact/managemanycontacts/{job_id}")
        assert first.json()["Data"][0]["Status"] == "Allocated"
        assert emu.contact("new@example.com") is None  # nothing visible yet
        return [first.json()["Data"][0], *await poll_until_done(client, job_id)]

    polls = drive(emu, scenario)
    assert [p["Status"] for p in polls] == ["Allocated", "In Progress", "In Progress", "Completed"]
    final = polls[-1]
    assert (final["Count"], final["Error"], final["ErrorFile"]) == (2, "", "")
    assert final["JobEnd"]
    assert final["JobStart"]
    assert final["ContactsLists"] == body["ContactsLists"]
    new = emu.contact("new@example.com")
    old = emu.contact("old@example.com")
    assert new is not None
    assert old is not None
    assert (new["Name"], new["Properties"], new["Lists"]) == ("New", {"seats": 4}, {"news": False})
    assert (old["Name"], old["IsExcludedFromCampaigns"]) == ("Old", True)  # omitted: kept
    assert old["Properties"] == {"dept": "Eng"}  # merged; null cleared seats


def test_managemanycontacts_per_contact_failures_produce_an_error_file() -> None:
    emu = make(job_polls_to_complete=0)
    emu.seed_property("seats", "int")
    emu.seed_property("score", "int", namespace="historic")
    list_id = emu.seed_list("news")
    body = {
        "Contacts": [
            {"Email": "ok@example.com"},
            {"Email": "broken-address"},
            {"Email": "ghost@example.com", "Properties": {"ghost": 1}},
            {"Email": "typed@example.com", "Properties": {"seats": "lots"}},
            {"Email": "hist@example.com", "Properties": {"score": 1}},
        ],
        "ContactsLists": [{"ListID": list_id, "Action": "addforce"}],
    }

    async def scenario(client: httpx.AsyncClient) -> tuple[dict[str, Any], str]:
        posted = await client.post(f"{REST}/contact/managemanycontacts", json=body)
        job = (await poll_until_done(client, posted.json()["Data"][0]["JobID"]))[-1]
        download = await client.get(job["ErrorFile"])
        assert download.status_code == 200
        return job, download.text

    job, text = drive(emu, scenario)
    assert job["Status"] == "Completed"
    assert "4" in job["Error"]
    assert job["ErrorFile"].startswith("http://mailjet.test/")
    rows = list(csv.DictReader(io.StringIO(text)))
    assert [r["email"] for r in rows] == [
        "broken-address",
        "ghost@example.com",
        "typed@example.com",
        "hist@example.com",
    ]
    assert 'Invalid key name: "ghost"' in rows[1]["error"]
    assert "seats" in rows[2]["error"]
    ok = emu.contact("ok@example.com")
    assert ok is not None
    assert ok["Lists"] == {"news": False}
    assert emu.contact("typed@example.com") is None


def test_managemanycontacts_missing_list_fails_the_whole_job() -> None:
    emu = make(job_polls_to_complete=1)
    body = {
        "Contacts": [{"Email": "a@example.com"}],
        "ContactsLists": [{"ListID": 9999, "Action": "addforce"}],
    }

    async def scenario(client: httpx.AsyncClient) -> list[dict[str, Any]]:
        posted = await client.post(f"{REST}/contact/managemanycontacts", json=body)
        return await poll_until_done(client, posted.json()["Data"][0]["JobID"])

    polls = drive(emu, scenario)
    assert [p["Status"] for p in polls] == ["Allocated", "Error"]
    assert "9999" in polls[-1]["Error"]
    assert emu.contact("a@example.com") is None


def test_managemanycontacts_over_the_job_size_limit_fails() -> None:
    emu = make(job_polls_to_complete=0, max_job_contacts=2)
    body = {"Contacts": [{"Email": f"u{i}@example.com"} for i in range(3)]}

    async def scenario(client: httpx.AsyncClient) -> dict[str, Any]:
        posted = await client.post(f"{REST}/contact/managemanycontacts", json=body)
        return (await poll_until_done(client, posted.json()["Data"][0]["JobID"]))[-1]

    job = drive(emu, scenario)
    assert job["Status"] == "Error"
    assert job["Error"]
    assert emu.contact("u0@example.com") is None


def test_managemanycontacts_malformed_requests_are_400() -> None:
    emu = make()

    async def scenario(client: httpx.AsyncClient) -> None:
        url = f"{REST}/contact/managemanycontacts"
        assert_error(await client.post(url, json={"Contacts": []}), 400, "Contacts")
        assert_error(await client.post(url, json={}), 400, "Contacts")
        no_email = {"Contacts": [{"Name": "x"}]}
        assert_error(await client.post(url, json=no_email), 400, "Email")
        bad_action = {"Contacts": [{"Email": "a@x.com"}], "ContactsLists": [{"ListID": 1}]}
        assert_error(await client.post(url, json=bad_action), 400)
        assert_error(await client.get(f"{url}/123"), 404)

    drive(emu, scenario)


# ---- rate limit, faults, state ----------------------------------------------


def test_rate_limit_answers_429_without_retry_headers_then_resets() -> None:
    emu = make(requests_per_minute=3, time_scale=600.0)  # window of 0.1 s

    async def scenario(client: httpx.AsyncClient) -> None:
        for _ in range(3):
            assert (await client.get(f"{REST}/contact")).status_code == 200
        limited = await client.get(f"{REST}/contact")
        assert_error(limited, 429)
        assert "retry-after" not in limited.headers
        assert not [h for h in limited.headers if "ratelimit" in h.lower()]
        await asyncio.sleep(0.15)
        assert (await client.get(f"{REST}/contact")).status_code == 200

    drive(emu, scenario)


def test_rate_limit_is_per_window_not_per_route() -> None:
    emu = make(requests_per_minute=2)

    async def scenario(client: httpx.AsyncClient) -> None:
        assert (await client.get(f"{REST}/contact")).status_code == 200
        assert (await client.get(f"{REST}/contactslist")).status_code == 200
        assert (await client.get(f"{REST}/contactmetadata")).status_code == 429

    drive(emu, scenario)


def test_settings_changed_on_a_live_emulator_take_effect() -> None:
    emu = make()
    emu.seed_contact("a@example.com")

    async def scenario(client: httpx.AsyncClient) -> None:
        emu.settings.requests_per_minute = 1
        emu.settings.duplicate_contact = "return_existing"
        again = await client.post(f"{REST}/contact", json={"Email": "a@example.com"})
        assert again.status_code == 201
        assert_error(await client.get(f"{REST}/contact"), 429)

    drive(emu, scenario)


def test_injected_fault_answers_once_then_service_resumes() -> None:
    emu = make()
    emu.control.inject(Fault(status=500, path_contains="/contact", method="GET"))

    async def scenario(client: httpx.AsyncClient) -> None:
        assert (await client.get(f"{REST}/contact")).status_code == 500
        assert (await client.get(f"{REST}/contact")).status_code == 200
        queued = await client.post("/_emulator/faults", json={"status": 503})
        assert queued.status_code == 200
        assert (await client.get(f"{REST}/contactslist")).status_code == 503

    drive(emu, scenario)
    assert [r.status for r in emu.control.calls("GET")] == [500, 200, 503]


def test_dump_and_load_round_trip() -> None:
    emu = make(job_polls_to_complete=0)
    emu.seed_property("seats", "int")
    emu.seed_list("news")
    emu.seed_contact("a@example.com", name="A", properties={"seats": 2}, lists={"news": True})

    async def post_job(client: httpx.AsyncClient) -> int:
        posted = await client.post(
            f"{REST}/contact/managemanycontacts", json={"Contacts": [{"Email": "b@example.com"}]}
        )
        job_id: int = posted.json()["Data"][0]["JobID"]
        return job_id

    job_id = drive(emu, post_job)
    dumped = json.loads(json.dumps(emu.dump_state()))
    copy = create_mailjet_emulator(MailjetEmulatorSettings(job_polls_to_complete=0), dumped)
    assert copy.dump_state() == emu.dump_state()
    assert copy.contact("a@example.com") == emu.contact("a@example.com")

    async def continue_on_copy(client: httpx.AsyncClient) -> int:
        job = (await poll_until_done(client, job_id))[-1]
        assert job["Status"] == "Completed"
        created = await client.post(f"{REST}/contact", json={"Email": "c@example.com"})
        new_id: int = created.json()["Data"][0]["ID"]
        return new_id

    new_id = drive(copy, continue_on_copy)
    assert copy.contact("b@example.com") is not None
    a = copy.contact("a@example.com")
    b = copy.contact("b@example.com")
    assert a is not None
    assert b is not None
    assert new_id > max(a["ID"], b["ID"])


def test_state_control_route_loads_state_over_http() -> None:
    source = make()
    source.seed_contact("a@example.com")
    target = make()

    async def scenario(client: httpx.AsyncClient) -> None:
        loaded = await client.put("/_emulator/state", json=source.dump_state())
        assert loaded.status_code == 200
        found = await client.get(f"{REST}/contact/a%40example.com")
        assert found.status_code == 200

    drive(target, scenario)


def test_seed_helpers_refuse_undefined_references() -> None:
    emu = make()
    with pytest.raises(KeyError):
        emu.seed_contact("a@example.com", properties={"nope": 1})
    with pytest.raises(KeyError):
        emu.seed_contact("a@example.com", lists={"nope": False})
    assert emu.contact("a@example.com") is None


# ---- benchmark timing -------------------------------------------------------------


def test_latency_can_include_the_emulators_own_processing_and_counts_it() -> None:
    """Benchmarks keep the emulator's CPU out of the client's time: the answer waits what
    is left of the latency after processing; overruns (processing alone longer) are
    counted. Switched on and read over the control routes, as bench.run does."""
    emu = make()
    emu.seed_contact("a@example.com", "A", False, {}, {})

    async def scenario(client: httpx.AsyncClient) -> tuple[Any, Any, Any, Any]:
        switched = await client.post(
            "/_emulator/settings",
            json={"latency_seconds": 0.2, "latency_includes_processing": True},
        )
        found = await client.get(f"{REST}/contact/a@example.com")
        missing = await client.get(f"{REST}/contact/nobody@example.com")
        emu.control.latency_seconds = 1e-9  # any processing overruns this
        await client.get(f"{REST}/contactslist")
        timing = await client.get("/_emulator/timing")
        return switched.json(), (found.status_code, missing.status_code), timing.json(), found

    switched, statuses, timing, found = drive(emu, scenario)

    assert switched["latency_includes_processing"] is True
    assert statuses == (200, 404)
    assert found.json()["Data"][0]["Email"] == "a@example.com"
    assert (timing["answers"], timing["overruns"]) == (3, 1)
    assert timing["seconds"] >= timing["longest"] > 0
    assert [(r.path, r.status) for r in emu.control.calls("GET")][-3:] == [
        (f"{REST}/contact/a@example.com", 200),
        (f"{REST}/contact/nobody@example.com", 404),
        (f"{REST}/contactslist", 200),
    ]


def test_cached_listings_serve_what_a_scan_would_and_never_from_before_a_write() -> None:
    """bench.serve's cache (cache_listings): the same pages as without it, and a write
    (a POST, or a job's status poll, which runs the job) empties it."""
    emu = make()
    for n in range(5):
        emu.seed_contact(f"p{n}@example.com", f"P{n}", False, {}, {})
    emu.cache_listings()

    async def scenario(client: httpx.AsyncClient) -> tuple[list[str], list[str], int]:
        first = (await client.get(f"{REST}/contact", params={"Limit": 3})).json()["Data"]
        created = await client.post(f"{REST}/contact", json={"Email": "new@example.com"})
        rest = (await client.get(f"{REST}/contact", params={"Limit": 3, "Offset": 3})).json()
        return [c["Email"] for c in first], [c["Email"] for c in rest["Data"]], created.status_code

    first, rest, created = drive(emu, scenario)

    assert created == 201
    assert first == ["p0@example.com", "p1@example.com", "p2@example.com"]
    assert rest == ["p3@example.com", "p4@example.com", "new@example.com"]
