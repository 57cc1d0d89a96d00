"""The outside world: people and other tools acting on the account through the provider's
HTTP API (the emulator loaded from the sandbox's state file, saved back afterwards), and a
provider-neutral snapshot of the account for the invariants."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

import httpx

from reconcile.sandbox.common import EmulatorTransport, load_json_state, save_json_state
from reconcile.sandbox.runtime import state_file
from tests.support import create_emulator

T = TypeVar("T")
REST = "/v3/REST"


def parse_time(text: str | None) -> datetime | None:
    if not text:
        return None
    moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


@dataclass(frozen=True)
class Person:
    email: str
    name: str
    status: str  # mailjet: included | excluded; mailjawn: its status
    properties: dict[str, Any]
    lists: dict[str, bool]  # list -> subscribed (False: unsubscribed, record kept)
    list_unsubscribed_at: dict[str, datetime | None]
    unsubscribed_at: datetime | None
    modified: datetime | None = None  # MailJawn: the time of the last write to the record

    @property
    def opted_out(self) -> bool:
        return self.status != "included" and self.status != "active"


@dataclass
class Snapshot:
    people: dict[str, Person] = field(default_factory=dict)  # by email.lower()
    lists: set[str] = field(default_factory=set)
    properties: dict[str, tuple[str, int]] = field(default_factory=dict)  # name -> (type, id)
    raw: str = ""  # the whole state as saved, for "nothing was written"


def snapshot(provider: str, raw: dict[str, Any] | None) -> Snapshot:
    data = raw or {}
    shot = Snapshot(raw=json.dumps(data, sort_keys=True))
    if provider == "mailjet":
        lists = {item["id"]: item["name"] for item in data.get("lists", [])}
        shot.lists = set(lists.values())
        shot.properties = {p["name"]: (p["datatype"], p["id"]) for p in data.get("properties", [])}
        by_contact: dict[int, list[dict[str, Any]]] = {}
        for m in data.get("memberships", []):
            by_contact.setdefault(m["contact_id"], []).append(m)
        for c in data.get("contacts", []):
            members = by_contact.get(c["id"], [])
            shot.people[c["email"].lower()] = Person(
                email=c["email"],
                name=c["name"],
                status="excluded" if c["excluded"] else "included",
                properties=dict(c["properties"]),
                lists={lists[m["list_id"]]: not m["is_unsubscribed"] for m in members},
                list_unsubscribed_at={
                    lists[m["list_id"]]: parse_time(m["unsubscribed_at"]) for m in members
                },
                unsubscribed_at=parse_time(c.get("unsubscribed_at")),
            )
    else:
        shot.lists = {t["slug"] for t in data.get("tags", [])}
        for s in data.get("subscribers", []):
            shot.people[s["email"].lower()] = Person(
                email=s["email"],
                name=s["name"],
                status=s["status"],
                properties=dict(s["custom_fields"]),
                lists=dict.fromkeys(s["tag_slugs"], True),
                list_unsubscribed_at={},
                unsubscribed_at=None,
                modified=parse_time(s.get("modified")),
            )
    return shot


class Account:
    """One sandbox account: its state file under a directory, reached over HTTP."""

    def __init__(self, provider: str, directory: Path) -> None:
        self.provider = provider
        self.path = directory / state_file(provider)

    def raw(self) -> dict[str, Any]:
        """The saved state; an account never used yet is the emulator's empty state."""
        saved = load_json_state(self.path)
        if saved is None:
            emulator, _ = create_emulator(self.provider, None)
            empty: dict[str, Any] = emulator.dump_state()
            return empty
        return saved

    def snapshot(self) -> Snapshot:
        return snapshot(self.provider, self.raw())

    def act(self, action: Callable[[httpx.AsyncClient], Awaitable[T]]) -> T:
        emulator, credentials = create_emulator(self.provider, self.raw())
        transport = EmulatorTransport(app=emulator.app)
        if self.provider == "mailjet":
            client = httpx.AsyncClient(
                transport=transport,
                base_url=f"http://mailjet.sandbox{REST}",
                auth=(credentials["api_key"], credentials["secret_key"]),
            )
        else:
            client = httpx.AsyncClient(
                transport=transport,
                base_url=f"http://mailjawn.sandbox/api/v1/projects/{credentials['project_id']}",
                headers={"Authorization": f"Bearer {credentials['api_key']}"},
            )

        async def run() -> T:
            async with client:
                return await action(client)

        result = asyncio.run(run())
        save_json_state(self.path, emulator.dump_state())
        return result


def _ok(response: httpx.Response) -> httpx.Response:
    if response.status_code >= 400:
        raise WorldRefused(f"{response.request.method} {response.request.url}: {response.text}")
    return response


class WorldRefused(Exception):
    """The provider refused what a person or tool tried (e.g. a duplicate): nothing happened."""


# ---- Mailjet ------------------------------------------------------------------


async def mj_contact(client: httpx.AsyncClient, email: str) -> dict[str, Any]:
    # by filter, not /contact/{email}: an address may hold a slash
    answer = _ok(await client.get("/contact", params={"Email": email, "Limit": 10}))
    found = answer.json()["Data"]
    if not found:
        raise WorldRefused(f"no contact {email}")
    data: dict[str, Any] = found[0]
    return data


async def mj_list_id(client: httpx.AsyncClient, name: str) -> int:
    answer = _ok(await client.get("/contactslist", params={"Name": name, "Limit": 1000}))
    for item in answer.json()["Data"]:
        if item["Name"] == name:
            return int(item["ID"])
    raise WorldRefused(f"no list {name!r}")


async def mj_membership(client: httpx.AsyncClient, email: str, list_name: str) -> dict[str, Any]:
    contact = await mj_contact(client, email)
    list_id = await mj_list_id(client, list_name)
    answer = _ok(
        await client.get(
            "/listrecipient", params={"ContactsList": list_id, "Contact": contact["ID"]}
        )
    )
    found = answer.json()["Data"]
    if not found:
        raise WorldRefused(f"{email} is not on {list_name!r}")
    member: dict[str, Any] = found[0]
    return member


def mj_set_member(email: str, list_name: str, unsubscribed: bool) -> Callable[..., Any]:
    async def act(client: httpx.AsyncClient) -> None:
        member = await mj_membership(client, email, list_name)
        _ok(
            await client.put(
                f"/listrecipient/{member['ID']}", json={"IsUnsubscribed": unsubscribed}
            )
        )

    return act


def mj_join(email: str, list_name: str) -> Callable[..., Any]:
    """A signup form: a new, subscribed membership."""

    async def act(client: httpx.AsyncClient) -> None:
        contact = await mj_contact(client, email)
        list_id = await mj_list_id(client, list_name)
        body = {"ContactID": contact["ID"], "ListID": list_id, "IsUnsubscribed": False}
        _ok(await client.post("/listrecipient", json=body))

    return act


def mj_put_contact(email: str, name: str | None, excluded: bool | None) -> Callable[..., Any]:
    """PUT replaces editable fields, so a careful tool sends both."""

    async def act(client: httpx.AsyncClient) -> None:
        contact = await mj_contact(client, email)
        body = {
            "Name": contact["Name"] if name is None else name,
            "IsExcludedFromCampaigns": (
                contact["IsExcludedFromCampaigns"] if excluded is None else excluded
            ),
        }
        _ok(await client.put(f"/contact/{contact['ID']}", json=body))

    return act


def mj_set_value(email: str, prop: str, value: Any) -> Callable[..., Any]:
    async def act(client: httpx.AsyncClient) -> None:
        contact = await mj_contact(client, email)
        body = {"Data": [{"Name": prop, "Value": value}]}
        _ok(await client.put(f"/contactdata/{contact['ID']}", json=body))

    return act


def mj_create_contact(email: str, name: str, lists: list[str]) -> Callable[..., Any]:
    async def act(client: httpx.AsyncClient) -> None:
        created = _ok(await client.post("/contact", json={"Email": email, "Name": name}))
        contact_id = created.json()["Data"][0]["ID"]
        for list_name in lists:
            list_id = await mj_list_id(client, list_name)
            body = {"ContactID": contact_id, "ListID": list_id}
            _ok(await client.post("/listrecipient", json=body))

    return act


def mj_delete_contact(email: str) -> Callable[..., Any]:
    async def act(client: httpx.AsyncClient) -> None:
        contact = await mj_contact(client, email)
        answer = await client.delete(f"/contact/{contact['ID']}")
        if answer.status_code in (404, 405):  # the real v3 has no DELETE: GDPR route
            answer = await client.delete(f"http://mailjet.sandbox/v4/contacts/{contact['ID']}")
        _ok(answer)

    return act


def mj_create_list(name: str) -> Callable[..., Any]:
    async def act(client: httpx.AsyncClient) -> None:
        _ok(await client.post("/contactslist", json={"Name": name}))

    return act


def mj_rename_list(name: str, new_name: str) -> Callable[..., Any]:
    async def act(client: httpx.AsyncClient) -> None:
        list_id = await mj_list_id(client, name)
        _ok(await client.put(f"/contactslist/{list_id}", json={"Name": new_name}))

    return act


def mj_delete_list(name: str) -> Callable[..., Any]:
    async def act(client: httpx.AsyncClient) -> None:
        list_id = await mj_list_id(client, name)
        _ok(await client.delete(f"/contactslist/{list_id}"))

    return act


def mj_create_property(name: str, datatype: str) -> Callable[..., Any]:
    async def act(client: httpx.AsyncClient) -> None:
        body = {"Name": name, "Datatype": datatype, "NameSpace": "static"}
        _ok(await client.post("/contactmetadata", json=body))

    return act


def mj_delete_property(name: str) -> Callable[..., Any]:
    async def act(client: httpx.AsyncClient) -> None:
        answer = _ok(await client.get("/contactmetadata", params={"Limit": 1000}))
        for item in answer.json()["Data"]:
            if item["Name"] == name:
                _ok(await client.delete(f"/contactmetadata/{item['ID']}"))
                return
        raise WorldRefused(f"no property {name!r}")

    return act


# ---- MailJawn -----------------------------------------------------------------


async def jawn_find(client: httpx.AsyncClient, email: str) -> dict[str, Any]:
    answer = _ok(await client.get("/subscribers/", params={"search": email, "limit": 100}))
    for item in answer.json()["subscribers"]:
        if item["email"].lower() == email.lower():
            found: dict[str, Any] = item
            return found
    raise WorldRefused(f"no subscriber {email}")


def jawn_patch(email: str, **changes: Any) -> Callable[..., Any]:
    async def act(client: httpx.AsyncClient) -> dict[str, Any]:
        subscriber = await jawn_find(client, email)
        answer = _ok(await client.patch(f"/subscribers/{subscriber['id']}/", json=changes))
        patched: dict[str, Any] = answer.json()
        return patched

    return act


def jawn_identify(email: str, **fields: Any) -> Callable[..., Any]:
    async def act(client: httpx.AsyncClient) -> None:
        _ok(await client.post("/subscribers/identify/", json={"email": email, **fields}))

    return act


def jawn_signup(email: str, tag: str) -> Callable[..., Any]:
    async def act(client: httpx.AsyncClient) -> None:
        _ok(await client.post("/subscribe/", json={"email": email, "tag": tag}))

    return act


def jawn_delete(email: str) -> Callable[..., Any]:
    async def act(client: httpx.AsyncClient) -> None:
        subscriber = await jawn_find(client, email)
        _ok(await client.delete(f"/subscribers/{subscriber['id']}/"))

    return act
