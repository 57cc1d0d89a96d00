"""Serve a seeded Mailchimp emulator for the benchmark (a separate process, real HTTP).

    python -m bench.serve_mailchimp --size 10000 --port 8321 [--latency 0.3] [--time-scale 1]

The account is bench.serve's in Mailchimp's shape: one audience (the sandbox's id)
whose members are bench.synthetic.live_contacts, each at a real-looking domain
(Mailchimp refuses example.com), with the five properties as merge fields named by
merge tags (the property name upper-cased, at most 10 characters: DEPARTMENT, SEATS,
SCORE, VIP, RENEWAL; vip as a number 1/0, since a merge field can't hold a bool, and
renewal as a date) and the three lists as tags (static segments). The emulator's clock
is set back while seeding: the latest change of any member was a day ago, and the
members before it changed --spread seconds apart (10 by default: 100,000 members over
12 days), so only a handful are within the provider's freshness margin (a minute
before the latest change it read). --spread 0 seeds them all at one moment, as a bulk
import would leave them.

The emulator allows 10 simultaneous connections (over that: 429) and every request
waits --latency / --time-scale seconds before it is served.

Two things keep the emulator's own processing time out of the product's figures:

- The emulator builds the view of every member matching a GET .../members query
  for each page it serves (O(members) a page, where Mailchimp reads an index), so
  this process keeps the last answer of each query and serves the next pages from
  it until anything writes: every request other than a GET empties that cache
  when it arrives and again when it has been answered, so no page is ever served
  from before a write that was answered ahead of it. Answers are the same.
- `GET /_bench/cpu` (answered outside the emulator, so never counted, delayed or
  limited) gives this process's CPU seconds so far: the runner takes differences
  around each phase and reports them (and the wall time less them) apart from the
  product's.
"""

from __future__ import annotations

import argparse
import json
import time
from typing import Any

import uvicorn
from starlette.types import ASGIApp, Receive, Scope, Send

from bench.synthetic import LISTS, PROPERTIES, live_contacts
from reconcile.providers.mailchimp.emulator.app import (
    MailchimpEmulator,
    create_mailchimp_emulator,
)
from reconcile.providers.mailchimp.emulator.settings import MailchimpEmulatorSettings
from reconcile.providers.mailchimp.emulator.store import MemberQuery
from reconcile.providers.mailchimp.plugin import SANDBOX_AUDIENCE

AUDIENCE_NAME, AUDIENCE_ID = SANDBOX_AUDIENCE
DOMAIN = "acme-widgets.io"  # example.com "looks fake or invalid" to Mailchimp
MAX_CONNECTIONS = 10
CPU_PATH = "/_bench/cpu"
SEEDED_AGO = 86_400.0  # seconds: the latest change of the audience was a day ago
SPREAD = 10.0  # seconds between the last changes of successive members (before that)
# Manifest type of each property on Mailchimp, and the merge field type it is created as.
MAILCHIMP_TYPES = {
    "str": "str",
    "int": "int",
    "float": "float",
    "bool": "int",
    "datetime": "datetime",
}
FIELD_TYPES = {"str": "text", "int": "number", "float": "number", "datetime": "date"}


def merge_tag(name: str) -> str:
    """A property's merge tag: its name upper-cased, at most 10 characters."""
    return name.upper()[:10]


def mailchimp_email(address: str) -> str:
    """bench.synthetic's address at a domain Mailchimp accepts."""
    local, _, _domain = address.rpartition("@")
    return f"{local}@{DOMAIN}"


def property_types() -> dict[str, str]:
    """Merge tag -> the manifest's property type on Mailchimp."""
    return {merge_tag(name): MAILCHIMP_TYPES[kind] for name, kind in PROPERTIES.items()}


def manifest_values(values: dict[str, Any]) -> dict[str, Any]:
    """bench.synthetic's property values as the Mailchimp manifest gives them."""
    result: dict[str, Any] = {}
    for name, value in values.items():
        kind = PROPERTIES[name]
        if kind == "bool":
            result[merge_tag(name)] = 1 if value else 0
        elif kind == "datetime":  # midnight UTC, `...T00:00:00Z`: a date field's value
            result[merge_tag(name)] = str(value)
        else:
            result[merge_tag(name)] = value
    return result


def stored_values(values: dict[str, Any]) -> dict[str, Any]:
    """The same values as Mailchimp holds them (a date as YYYY-MM-DD)."""
    return {
        tag: value[:10] if property_types()[tag] == "datetime" else value
        for tag, value in manifest_values(values).items()
    }


class Clock:
    """The emulator's clock, set back while seeding."""

    def __init__(self) -> None:
        self.behind = 0.0

    def __call__(self) -> float:
        return time.time() - self.behind


def seeded(
    size: int, settings: MailchimpEmulatorSettings, clock: Clock, spread: float
) -> MailchimpEmulator:
    emulator = create_mailchimp_emulator(settings)
    clock.behind = SEEDED_AGO
    emulator.seed_audience(AUDIENCE_NAME, AUDIENCE_ID)
    for tag, kind in property_types().items():
        emulator.seed_merge_field(AUDIENCE_ID, tag, tag.title(), FIELD_TYPES[kind])
    for name in LISTS:
        emulator.seed_tag(AUDIENCE_ID, name)
    for index, (address, _name, values, lists) in enumerate(live_contacts(size)):
        clock.behind = SEEDED_AGO + index * spread
        emulator.seed_member(
            AUDIENCE_ID, mailchimp_email(address), merge_fields=stored_values(values), tags=lists
        )
    clock.behind = 0.0
    return emulator


class MemberPages:
    """The store's member listing, kept per query until `clear()`."""

    def __init__(self, emulator: MailchimpEmulator) -> None:
        self.listing = emulator.store.list_members
        self.kept: dict[str, list[dict[str, Any]]] = {}
        setattr(emulator.store, "list_members", self.list_members)  # noqa: B010 (a method)

    def list_members(self, list_id: str, query: MemberQuery) -> list[dict[str, Any]]:
        key = f"{list_id} {query!r}"
        found = self.kept.get(key)
        if found is None:
            found = self.kept[key] = self.listing(list_id, query)
        return found

    def clear(self) -> None:
        self.kept.clear()


class BenchProbe:
    """Answers GET /_bench/cpu with this process's CPU seconds; empties the member pages
    around every write; passes every request on to the emulator."""

    def __init__(self, app: ASGIApp, pages: MemberPages) -> None:
        self.app = app
        self.pages = pages

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        if scope["path"] != CPU_PATH:
            if scope["method"] == "GET":
                await self.app(scope, receive, send)
                return
            self.pages.clear()
            try:
                await self.app(scope, receive, send)
            finally:
                self.pages.clear()
            return
        body = json.dumps({"cpu": time.process_time()}).encode()
        headers = [(b"content-type", b"application/json"), (b"content-length", b"%d" % len(body))]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": body})


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--size", type=int, required=True)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--time-scale", type=float, default=1.0)
    parser.add_argument("--latency", type=float, default=0.3, help="seconds per request")
    parser.add_argument(
        "--spread",
        type=float,
        default=SPREAD,
        help="seconds between the last changes of successive members (0: all at once)",
    )
    args = parser.parse_args()
    clock = Clock()
    settings = MailchimpEmulatorSettings(max_connections=MAX_CONNECTIONS, clock=clock)
    emulator = seeded(args.size, settings, clock, args.spread)
    emulator.control.latency_seconds = args.latency / args.time_scale
    app = BenchProbe(emulator.app, MemberPages(emulator))
    uvicorn.run(app, host="127.0.0.1", port=args.port, log_level="warning")


if __name__ == "__main__":
    main()
