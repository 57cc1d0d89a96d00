"""The outside world: people and other tools acting on the account through the provider's
HTTP API (the emulator loaded from the sandbox's state file, saved back afterwards), and a
provider-neutral snapshot of the account for the invariants."""

from __future__ import annotations

import asyncio
import hashlib
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
    modified: datetime | None = None  # MailJawn, Mailchimp: the last write to the record
    opt_in_emails: int = 0  # Mailchimp: confirmation emails sent to them so far

    @property
    def opted_out(self) -> bool:
        """Mailchimp: pending, transactional, cleaned and archived count as excluded."""
        return self.status not in ("included", "active", "subscribed")


@dataclass
class Snapshot:
    people: dict[str, Person] = field(default_factory=dict)  # by email.lower()
    lists: set[str] = field(default_factory=set)
    properties: dict[str, tuple[str, int]] = field(default_factory=dict)  # name -> (type, id)
    raw: str = ""  # the whole state as saved, for "nothing was written"
    types: dict[str, str] = field(default_factory=dict)  # property -> the machine's type


CHIMP_AUDIENCE = "a1b2c3d4e5"  # the sandbox's audience (reconcile/providers/mailchimp/plugin.py)
CHIMP_TYPES = {"text": "str", "number": "int", "date": "datetime"}


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
    elif provider == "mailchimp":
        _chimp_snapshot(shot, data)
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
    shot.types = {name: kind for name, (kind, _) in shot.properties.items()}
    if provider == "mailchimp":
        shot.types = {n: CHIMP_TYPES.get(k, "str") for n, (k, _) in shot.properties.items()}
    return shot


def _chimp_snapshot(shot: Snapshot, data: dict[str, Any]) -> None:
    audience = (data.get("lists") or {}).get(CHIMP_AUDIENCE)
    if audience is None:
        return
    shot.properties = {f["tag"]: (f["type"], f["merge_id"]) for f in audience["merge_fields"]}
    segments = list(audience["segments"].values())
    shot.lists = {s["name"] for s in segments}
    for key, m in audience["members"].items():
        shot.people[m["email_address"].lower()] = Person(
            email=m["email_address"],
            name="",  # Mailchimp has no name field (FNAME, LNAME are merge fields)
            status=m["status"],
            properties=dict(m["merge_fields"]),
            lists={s["name"]: True for s in segments if key in s["members"]},
            list_unsubscribed_at={},
            unsubscribed_at=parse_time(m.get("unsubscribed_at"))
            if m["status"] == "unsubscribed"
            else None,
            modified=parse_time(m.get("last_changed")),
            opt_in_emails=int(m.get("opt_in_emails_sent", 0)),
        )


@dataclass
class Chimp:
    """What a Mailchimp act works with: the API (other tools), and the emulator's people
    helpers (a person unsubscribing through a campaign link, an address bouncing)."""

    http: httpx.AsyncClient
    emulator: Any
    list_id: str = CHIMP_AUDIENCE


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

    def act(self, action: Callable[[Any], Awaitable[T]]) -> T:
        emulator, credentials = create_emulator(self.provider, self.raw())
        transport = EmulatorTransport(app=emulator.app)
        if self.provider == "mailchimp":
            client = httpx.AsyncClient(
                transport=transport,
                base_url=f"http://mailchimp.sandbox/3.0/lists/{CHIMP_AUDIENCE}",
                auth=("someone", credentials["api_key"]),
            )

            async def run_chimp() -> T:
                async with client:
                    return await action(Chimp(client, emulator))

            result = asyncio.run(run_chimp())
            save_json_state(self.path, emulator.dump_state())
            return result
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


# ---- Mailchimp ------------------------------------------------------------------


def _hash(email: str) -> str:
    return hashlib.md5(email.strip().lower().encode(), usedforsecurity=False).hexdigest()


def _helper(name: str, email: str) -> Callable[..., Any]:
    """A person's own act, through the emulator's helper (no API call does it)."""

    async def act(chimp: Chimp) -> None:
        try:
            getattr(chimp.emulator, name)(chimp.list_id, email)
        except ValueError as refused:
            raise WorldRefused(f"{name} {email}: {refused}") from None

    act.__qualname__ = f"mc_{name}.act"
    return act


def mc_self_unsubscribe(email: str) -> Callable[..., Any]:
    """The person clicks the unsubscribe link of a campaign (compliance state)."""
    return _helper("self_unsubscribe", email)


def mc_bounce(email: str) -> Callable[..., Any]:
    return _helper("bounce", email)


def mc_archive(email: str) -> Callable[..., Any]:
    """Someone archives the member in the web app (DELETE: 405 for pending/cleaned)."""
    return _helper("archive", email)


def mc_forget(email: str) -> Callable[..., Any]:
    """Someone deletes the member permanently: it can never be added again by the API."""
    return _helper("forget", email)


def mc_member(email: str, status: str, **body: Any) -> Callable[..., Any]:
    """A signup form or another tool adds a member (POST: refused when present)."""

    async def act(chimp: Chimp) -> None:
        payload = {"email_address": email, "status": status, **body}
        _ok(await chimp.http.post("/members", json=payload))

    return act


def mc_patch(email: str, **body: Any) -> Callable[..., Any]:
    async def act(chimp: Chimp) -> None:
        _ok(await chimp.http.patch(f"/members/{_hash(email)}", json=body))

    return act


def mc_put(email: str, **body: Any) -> Callable[..., Any]:
    async def act(chimp: Chimp) -> None:
        _ok(await chimp.http.put(f"/members/{_hash(email)}", json=body))

    return act


def mc_tag(email: str, name: str, active: bool = True) -> Callable[..., Any]:
    async def act(chimp: Chimp) -> None:
        status = "active" if active else "inactive"
        body = {"tags": [{"name": name, "status": status}]}
        _ok(await chimp.http.post(f"/members/{_hash(email)}/tags", json=body))

    return act


async def mc_segment_id(chimp: Chimp, name: str) -> int:
    answer = _ok(await chimp.http.get("/segments", params={"type": "static", "count": 1000}))
    for item in answer.json()["segments"]:
        if item["name"].casefold() == name.casefold():
            return int(item["id"])
    raise WorldRefused(f"no tag {name!r}")


def mc_create_tag(name: str) -> Callable[..., Any]:
    async def act(chimp: Chimp) -> None:
        _ok(await chimp.http.post("/segments", json={"name": name, "static_segment": []}))

    return act


def mc_delete_tag(name: str) -> Callable[..., Any]:
    async def act(chimp: Chimp) -> None:
        segment_id = await mc_segment_id(chimp, name)
        _ok(await chimp.http.delete(f"/segments/{segment_id}"))

    return act


MC_FIELD_TYPES = {"str": "text", "int": "number", "float": "number", "datetime": "date"}


def mc_create_field(tag: str, kind: str) -> Callable[..., Any]:
    async def act(chimp: Chimp) -> None:
        body = {"tag": tag, "name": tag.title(), "type": MC_FIELD_TYPES.get(kind, "text")}
        _ok(await chimp.http.post("/merge-fields", json=body))

    return act


def mc_delete_field(tag: str) -> Callable[..., Any]:
    async def act(chimp: Chimp) -> None:
        answer = _ok(await chimp.http.get("/merge-fields", params={"count": 1000}))
        for item in answer.json()["merge_fields"]:
            if item["tag"] == tag:
                _ok(await chimp.http.delete(f"/merge-fields/{item['merge_id']}"))
                return
        raise WorldRefused(f"no merge field {tag}")

    return act


def mc_value(value: Any) -> Any:
    """A model value as a member write sends it: "" clears, a date as YYYY-MM-DD."""
    if value is None:
        return ""
    if isinstance(value, str) and value.endswith("T00:00:00Z"):
        return value[:10]
    return value
