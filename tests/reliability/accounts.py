"""A seeded account on each emulator, the manifest that reconciles it, the whole account
as it must end, and the runs (engine or command line) the reliability tests share.

The account holds what an apply must never touch: contacts outside the manifest, an
unmanaged property (Mailjet `legacy_score`, MailJawn `crm_id`) and an unmanaged list
(`partners` / tag `signup-form`), excluded contacts whose exclusion the manifest does not
manage, and someone who unsubscribed (from `news` on Mailjet; status `unsubscribed` on
MailJawn, plus a `bounced` one) whom the manifest lists without consent to re-subscribe.
The manifest creates a property and a list, creates contacts (bulk jobs / imports and
single calls), updates properties, renames one contact and excludes another.

`expected()` is the whole account after convergence, written out; `snapshot()` reads the
emulator back (every contact by lower-case email) and names duplicated emails.
"""

from __future__ import annotations

import re
from abc import ABC, abstractmethod
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import httpx
from typer.testing import CliRunner

from reconcile import engine
from reconcile.cli import app as cli_app
from reconcile.errors import ReconcileError
from reconcile.manifest.loader import Manifest
from reconcile.providers.base import ApplyReport, OutcomeStatus, Provider
from reconcile.providers.mailchimp.client import MailchimpClient
from reconcile.providers.mailchimp.emulator.app import (
    MailchimpEmulator,
    create_mailchimp_emulator,
)
from reconcile.providers.mailchimp.emulator.settings import MailchimpEmulatorSettings
from reconcile.providers.mailchimp.provider import MailchimpProvider
from reconcile.providers.mailjawn.client import MailJawnClient
from reconcile.providers.mailjawn.emulator.app import (
    MailJawnEmulatorSettings,
    create_mailjawn_emulator,
)
from reconcile.providers.mailjawn.provider import MailJawnProvider
from reconcile.providers.mailjet.bulk import JobPolling
from reconcile.providers.mailjet.client import MailjetClient
from reconcile.providers.mailjet.emulator.app import (
    MailjetEmulatorSettings,
    create_mailjet_emulator,
)
from reconcile.providers.mailjet.provider import MailjetProvider
from reconcile.providers.pacing import RetryPolicy
from reconcile.sandbox.common import EmulatorControl, EmulatorTransport
from tests.support import FAST_RETRY, load, run

Record = dict[str, Any]
FAST_POLLING = JobPolling(first_wait=0.001, max_wait=0.01, timeout=5)
# Every request names itself: "GET /v3/REST/contact ...", "POST /api/v1/projects/...".
NAMES_A_REQUEST = re.compile(r"\b(GET|POST|PUT|PATCH|DELETE) /\S+")
# The command line's environment for fast retries (the backoff, not the attempts).
FAST_RETRY_ENV = {"RECONCILE_RETRY_WAIT": "0.001", "RECONCILE_RETRY_WAIT_MAX": "0.01"}

KEEP = range(3)  # not in the manifest at all
OLD = range(6)  # in the manifest: properties and a list change; old1 is renamed
NEW = range(6)  # created by the apply (bulk jobs / imports)
# The account stays under 20 contacts even when converged: below the safety thresholds'
# min_records, so a re-run after a partial apply is never refused for its update share.


def _old_name(n: int) -> str:
    return "Renamed One" if n == 1 else f"Old {n}"


class Account(ABC):
    """One seeded emulator and what reconciling it with `manifest_text()` must give."""

    provider_name: ClassVar[str]
    # The domain of every address in the account (Mailchimp refuses example.com).
    domain: ClassVar[str] = "example.com"
    app: Any
    control: EmulatorControl
    # What a test changed in the account before the apply (by lower-case email), as it
    # must end: expected() gives these instead of the scenario's own records.
    overrides: dict[str, Record]

    @abstractmethod
    def manifest_text(self) -> str: ...

    @abstractmethod
    def expected(self) -> dict[str, Record]: ...

    @abstractmethod
    def snapshot(self) -> tuple[dict[str, Record], list[str]]:
        """Every contact by lower-case email, and the emails held more than once."""

    @abstractmethod
    def provider(
        self,
        url: str | None = None,
        *,
        timeout: httpx.Timeout | None = None,
        retry: RetryPolicy = FAST_RETRY,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> Provider:
        """A provider with fast retries and no pacing: in-process, or over HTTP to `url`."""

    @abstractmethod
    def env(self, url: str) -> dict[str, str]:
        """The command line's environment for this account served at `url`."""

    @abstractmethod
    def clear_faults(self) -> None:
        """The outage is over: drop every injected fault that is left."""

    @abstractmethod
    def http_options(self) -> dict[str, Any]:
        """Authentication for a plain httpx client (tests that fetch raw answers)."""

    def email(self, local: str) -> str:
        """`local`@ the account's domain: new2 -> new2@example.com."""
        return f"{local}@{self.domain}"

    def real_answer(self, path: str, params: dict[str, Any] | None = None) -> Any:
        """The JSON the emulator answers GET `path` with (to build a damaged copy of it)."""

        async def get() -> Any:
            transport = httpx.ASGITransport(app=self.app)
            async with httpx.AsyncClient(
                transport=transport, base_url="http://emulator.test", **self.http_options()
            ) as http:
                answer = await http.get(path, params=params)
                answer.raise_for_status()
                return answer.json()

        return run(get())

    def manifest(self, directory: Path) -> Manifest:
        return load(directory, self.manifest_text())

    def write_manifest(self, directory: Path) -> Path:
        path = directory / "audience.yaml"
        path.write_text(self.manifest_text(), encoding="utf-8")
        return path

    def writes(self) -> list[str]:
        """Every request the emulator saw that was not a read."""
        return [f"{c.method} {c.path}" for c in self.control.calls() if c.method != "GET"]

    def assert_converged(self) -> None:
        """The account is exactly what the manifest asks, with everything else as seeded."""
        snapshot, duplicated = self.snapshot()
        assert not duplicated, f"duplicate contacts: {duplicated}"
        expected = self.expected()
        wrong = {
            email: {"expected": expected.get(email), "found": snapshot.get(email)}
            for email in sorted(set(expected) | set(snapshot))
            if expected.get(email) != snapshot.get(email)
        }
        assert not wrong, wrong

    def assert_untouched(self, before: dict[str, Record]) -> None:
        snapshot, duplicated = self.snapshot()
        assert not duplicated
        assert snapshot == before


# ---- Mailjet -----------------------------------------------------------------------------


class MailjetAccount(Account):
    provider_name = "mailjet"
    url = "http://mailjet.test"

    def __init__(self, settings: MailjetEmulatorSettings | None = None) -> None:
        self.emulator = create_mailjet_emulator(
            settings or MailjetEmulatorSettings(job_polls_to_complete=1)
        )
        self.app = self.emulator.app
        self.control = self.emulator.control
        self.overrides = {}
        jet = self.emulator
        jet.seed_property("tier")
        jet.seed_property("seats", "int")
        jet.seed_property("legacy_score", "float")
        for name in ("news", "beta", "partners"):
            jet.seed_list(name)
        for n in KEEP:
            jet.seed_contact(
                f"keep{n}@example.com",
                name=f"Keep {n}",
                excluded=n == 0,
                properties={"tier": "keep", "seats": n, "legacy_score": n + 0.5},
                lists={"partners": False},
            )
        for n in OLD:
            jet.seed_contact(
                f"old{n}@example.com",
                name=f"Old {n}",
                excluded=n == 0,
                properties={"tier": "bronze", "seats": n, "legacy_score": n + 0.25},
                lists={"news": False, "partners": False},
            )
        jet.seed_contact(
            "gone@example.com",
            name="Gone",
            properties={"tier": "bronze", "seats": 1, "legacy_score": 9.5},
            lists={"news": True},  # unsubscribed from a managed list
        )
        jet.seed_contact(
            "mover@example.com",
            name="Mover",
            properties={"tier": "bronze", "seats": 5, "legacy_score": 5.5},
            lists={"partners": False},
        )
        self.seeded, _ = self.snapshot()

    def manifest_text(self) -> str:
        lines = [
            "provider: {type: mailjet, requests_per_minute: 100000}",
            "properties: {tier: {type: str}, seats: {type: int}, score: {type: int}}",
            "lists: {news: {}, beta: {}, vip: {}}",
            "contacts:",
        ]
        for n in OLD:
            lines.append(f"  - email: old{n}@example.com")
            if n == 1:
                lines.append("    name: Renamed One")
            lines += [f"    properties: {{tier: gold, seats: {n + 10}}}", "    lists: [news, beta]"]
        lines += [
            "  - email: gone@example.com",
            "    properties: {seats: 99}",
            "    lists: [news, beta]",
            "  - email: mover@example.com",
            "    excluded_from_campaigns: true",
        ]
        for n in NEW:
            lines += [
                f"  - email: new{n}@example.com",
                f"    name: New {n}",
                f"    properties: {{tier: silver, seats: {n}, score: {n * 7}}}",
                "    lists: [news, beta, vip]",
            ]
        lines += [
            "  - email: solo@example.com",
            "    name: Solo",
            "    properties: {tier: solo}",
            "    lists: {news: subscribed, beta: unsubscribed}",
        ]
        return "\n".join(lines) + "\n"

    def expected(self) -> dict[str, Record]:
        want = {email: dict(record) for email, record in self.seeded.items()}
        for n in OLD:
            want[f"old{n}@example.com"] = {
                "name": _old_name(n),
                "excluded": n == 0,
                "properties": {"tier": "gold", "seats": n + 10, "legacy_score": n + 0.25},
                "lists": {"news": False, "beta": False, "partners": False},
            }
        want["gone@example.com"] = {
            "name": "Gone",
            "excluded": False,
            "properties": {"tier": "bronze", "seats": 99, "legacy_score": 9.5},
            "lists": {"news": True, "beta": False},  # still unsubscribed from news
        }
        want["mover@example.com"] = {**want["mover@example.com"], "excluded": True}
        for n in NEW:
            want[f"new{n}@example.com"] = {
                "name": f"New {n}",
                "excluded": False,
                "properties": {"tier": "silver", "seats": n, "score": n * 7},
                "lists": {"news": False, "beta": False, "vip": False},
            }
        want["solo@example.com"] = {
            "name": "Solo",
            "excluded": False,
            "properties": {"tier": "solo"},
            "lists": {"news": False, "beta": True},
        }
        return {**want, **self.overrides}

    def snapshot(self) -> tuple[dict[str, Record], list[str]]:
        state = self.emulator.dump_state()
        list_names = {item["id"]: item["name"] for item in state["lists"]}
        lists_of: dict[int, dict[str, bool]] = {}
        for membership in state["memberships"]:
            lists_of.setdefault(membership["contact_id"], {})[list_names[membership["list_id"]]] = (
                membership["is_unsubscribed"]
            )
        records: dict[str, Record] = {}
        emails = Counter(item["email"].lower() for item in state["contacts"])
        for item in state["contacts"]:
            records[item["email"].lower()] = {
                "name": item["name"],
                "excluded": item["excluded"],
                "properties": dict(item["properties"]),
                "lists": lists_of.get(item["id"], {}),
            }
        return records, sorted(email for email, count in emails.items() if count > 1)

    def provider(
        self,
        url: str | None = None,
        *,
        timeout: httpx.Timeout | None = None,
        retry: RetryPolicy = FAST_RETRY,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> MailjetProvider:
        if transport is None and url is None:
            transport = EmulatorTransport(app=self.app)
        client = MailjetClient(
            api_key=self.emulator.settings.api_key,
            secret_key=self.emulator.settings.secret_key,
            base_url=url or self.url,
            transport=transport,
            requests_per_minute=1_000_000,
            retry=retry,
            timeout=timeout,
        )
        return MailjetProvider(client, polling=FAST_POLLING)

    def env(self, url: str) -> dict[str, str]:
        return {
            "MAILJET_API_URL": url,
            "MAILJET_API_KEY": self.emulator.settings.api_key,
            "MAILJET_SECRET_KEY": self.emulator.settings.secret_key,
            **FAST_RETRY_ENV,
        }

    def http_options(self) -> dict[str, Any]:
        settings = self.emulator.settings
        return {"auth": httpx.BasicAuth(settings.api_key, settings.secret_key)}

    def clear_faults(self) -> None:
        with self.control.lock:
            self.control.faults.clear()
        faults = self.emulator.job_faults
        faults.error_jobs = 0
        faults.failing_emails.clear()


# ---- MailJawn ----------------------------------------------------------------------------

MAILJAWN_KEY = "mj_sandbox_key"


class MailJawnAccount(Account):
    provider_name = "mailjawn"
    url = "http://mailjawn.test"

    def __init__(self, settings: MailJawnEmulatorSettings | None = None) -> None:
        self.emulator = create_mailjawn_emulator(
            settings or MailJawnEmulatorSettings(read_limit=0, write_limit=0)
        )
        self.app = self.emulator.app
        self.control = self.emulator.control
        self.overrides = {}
        jawn = self.emulator
        for n in KEEP:
            jawn.seed_subscriber(
                f"keep{n}@example.com",
                f"Keep {n}",
                "unsubscribed" if n == 0 else "active",
                custom_fields={"tier": "keep", "seats": n, "crm_id": f"k{n}"},
                tags=["signup-form"],
            )
        for n in OLD:
            jawn.seed_subscriber(
                f"old{n}@example.com",
                f"Old {n}",
                "unsubscribed" if n == 0 else "active",
                custom_fields={"tier": "bronze", "seats": n, "crm_id": f"o{n}"},
                tags=["news", "signup-form"],
            )
        jawn.seed_subscriber(
            "gone@example.com",
            "Gone",
            "unsubscribed",
            custom_fields={"tier": "bronze", "seats": 1, "crm_id": "g"},
            tags=["news"],
        )
        jawn.seed_subscriber(
            "mover@example.com",
            "Mover",
            custom_fields={"tier": "bronze", "seats": 5, "crm_id": "m"},
            tags=["signup-form"],
        )
        jawn.seed_subscriber("bounce@example.com", "Bounce", "bounced", {"crm_id": "b"})
        self.seeded, _ = self.snapshot()

    def manifest_text(self) -> str:
        lines = [
            "provider: {type: mailjawn, reads_per_minute: 100000, writes_per_minute: 100000}",
            "properties: {tier: {type: str}, seats: {type: int}, score: {type: int}}",
            "lists: {news: {}, beta: {}, vip: {}}",
            "contacts:",
        ]
        for n in OLD:
            lines.append(f"  - email: old{n}@example.com")
            if n == 1:
                lines.append("    name: Renamed One")
            lines += [f"    properties: {{tier: gold, seats: {n + 10}}}", "    lists: [news, beta]"]
        lines += [
            "  - email: gone@example.com",  # status unsubscribed: stays so
            "    properties: {seats: 99}",
            "    lists: [news, beta]",
            "  - email: mover@example.com",
            "    excluded_from_campaigns: true",
            "  - email: bounce@example.com",  # bounced: never changed (a warning)
            "    excluded_from_campaigns: false",
        ]
        for n in NEW:
            lines += [
                f"  - email: new{n}@example.com",
                f"    name: New {n}",
                f"    properties: {{tier: silver, seats: {n}, score: {n * 7}}}",
                "    lists: [news, beta, vip]",
            ]
        lines += [
            "  - email: solo@example.com",
            "    name: Solo",
            "    properties: {tier: solo}",
            "    lists: [news]",
        ]
        return "\n".join(lines) + "\n"

    def expected(self) -> dict[str, Record]:
        want = {email: dict(record) for email, record in self.seeded.items()}
        # A tag reaches an unsubscribed subscriber only through an upsert, which might
        # re-activate them: never sent (a warning), so old0 and gone do not get beta.
        for n in OLD:
            tags = {"news": False, "signup-form": False} | ({} if n == 0 else {"beta": False})
            want[f"old{n}@example.com"] = {
                "name": _old_name(n),
                "excluded": "unsubscribed" if n == 0 else "active",
                "properties": {"tier": "gold", "seats": n + 10, "crm_id": f"o{n}"},
                "lists": tags,
            }
        want["gone@example.com"] = {
            "name": "Gone",
            "excluded": "unsubscribed",
            "properties": {"tier": "bronze", "seats": 99, "crm_id": "g"},
            "lists": {"news": False},
        }
        want["mover@example.com"] = {**want["mover@example.com"], "excluded": "unsubscribed"}
        for n in NEW:
            want[f"new{n}@example.com"] = {
                "name": f"New {n}",
                "excluded": "active",
                "properties": {"tier": "silver", "seats": n, "score": n * 7},
                "lists": {"news": False, "beta": False, "vip": False},
            }
        want["solo@example.com"] = {
            "name": "Solo",
            "excluded": "active",
            "properties": {"tier": "solo"},
            "lists": {"news": False},
        }
        return {**want, **self.overrides}

    def snapshot(self) -> tuple[dict[str, Record], list[str]]:
        state = self.emulator.dump_state()
        records: dict[str, Record] = {}
        emails = Counter(item["email"].lower() for item in state["subscribers"])
        for item in state["subscribers"]:
            records[item["email"].lower()] = {
                "name": item["name"],
                "excluded": item["status"],
                "properties": dict(item["custom_fields"]),
                "lists": dict.fromkeys(item["tag_slugs"], False),
            }
        return records, sorted(email for email, count in emails.items() if count > 1)

    def provider(
        self,
        url: str | None = None,
        *,
        timeout: httpx.Timeout | None = None,
        retry: RetryPolicy = FAST_RETRY,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> MailJawnProvider:
        if transport is None and url is None:
            transport = EmulatorTransport(app=self.app)
        client = MailJawnClient(
            api_key=MAILJAWN_KEY,
            project_id=self.emulator.settings.project_id,
            base_url=url or self.url,
            transport=transport,
            reads_per_minute=1_000_000,
            writes_per_minute=1_000_000,
            retry=retry,
            timeout=timeout,
        )
        return MailJawnProvider(client)

    def env(self, url: str) -> dict[str, str]:
        return {
            "MAILJAWN_API_URL": url,
            "MAILJAWN_API_KEY": MAILJAWN_KEY,
            "MAILJAWN_PROJECT_ID": self.emulator.settings.project_id,
            **FAST_RETRY_ENV,
        }

    def http_options(self) -> dict[str, Any]:
        return {"headers": {"Authorization": f"Bearer {MAILJAWN_KEY}"}}

    @property
    def subscribers_path(self) -> str:
        return f"/api/v1/projects/{self.emulator.settings.project_id}/subscribers/"

    def clear_faults(self) -> None:
        with self.control.lock:
            self.control.faults.clear()
        with self.emulator.import_faults.lock:
            self.emulator.import_faults.failing_emails.clear()


# ---- Mailchimp ---------------------------------------------------------------------------

MAILCHIMP_AUDIENCE = "a1b2c3d4e5"
MAILCHIMP_DOMAIN = "acme-widgets.io"
# Fewer members outside the manifest than the others have (and no solo@): with a member in
# each of Mailchimp's six statuses the converged audience stays under 20 (see NEW).
MAILCHIMP_KEEP = (1, 2)


def _at(local: str) -> str:
    return f"{local}@{MAILCHIMP_DOMAIN}"


class MailchimpAccount(Account):
    """One audience. Merge fields TIER, SEATS (managed) and LEGACY, LNAME (unmanaged); tags
    news, beta (declared `members: exact`: keep1 loses it) and partners (unmanaged).
    Members in every status: subscribed, unsubscribed by an admin (old0),
    self-unsubscribed through a campaign link (gone: in compliance, listed without
    consent, so never re-subscribed), cleaned (bounce: the manifest's
    excluded_from_campaigns: false is a warning), pending (updated alone, never mailed
    another opt-in) and archived (a change to it is dropped with a warning). Mailchimp
    has no name field: FNAME stands in for it (old1 is "renamed" through FNAME)."""

    provider_name = "mailchimp"
    domain = MAILCHIMP_DOMAIN
    url = "http://mailchimp.test"
    audience = MAILCHIMP_AUDIENCE

    def __init__(
        self,
        settings: MailchimpEmulatorSettings | None = None,
        *,
        max_connections: int = 9,
        batch_size: int = 500,
    ) -> None:
        self.emulator: MailchimpEmulator = create_mailchimp_emulator(
            settings or MailchimpEmulatorSettings()
        )
        self.app = self.emulator.app
        self.control = self.emulator.control
        self.overrides = {}
        self.max_connections = max_connections
        self.batch_size = batch_size  # 1: one call per member and tag change (many in flight)
        chimp, audience = self.emulator, self.audience
        chimp.seed_audience("Acme Newsletter", audience)
        chimp.seed_merge_field(audience, "TIER", "Tier")
        chimp.seed_merge_field(audience, "SEATS", "Seats", "number")
        chimp.seed_merge_field(audience, "LEGACY", "Legacy score", "number")
        for name in ("news", "beta", "partners"):
            chimp.seed_tag(audience, name)
        for n in MAILCHIMP_KEEP:
            chimp.seed_member(
                audience,
                _at(f"keep{n}"),
                "subscribed",
                merge_fields={"FNAME": f"Keep {n}", "TIER": "keep", "SEATS": n, "LEGACY": n + 0.5},
                tags=["partners", "beta"] if n == 1 else ["partners"],
            )
        for n in OLD:
            chimp.seed_member(
                audience,
                _at(f"old{n}"),
                "unsubscribed" if n == 0 else "subscribed",
                merge_fields={
                    "FNAME": f"Old {n}",
                    "LNAME": "Person",
                    "TIER": "bronze",
                    "SEATS": n,
                    "LEGACY": n + 0.25,
                },
                tags=["news", "partners"],
            )
        chimp.seed_member(
            audience,
            _at("gone"),
            "unsubscribed",
            merge_fields={"FNAME": "Gone", "TIER": "bronze", "SEATS": 1, "LEGACY": 9.5},
            tags=["news"],
            compliance=True,  # unsubscribed through a campaign link
        )
        chimp.seed_member(
            audience,
            _at("mover"),
            merge_fields={"FNAME": "Mover", "TIER": "bronze", "SEATS": 5, "LEGACY": 5.5},
            tags=["partners"],
        )
        chimp.seed_member(audience, _at("bounce"), "cleaned", merge_fields={"LEGACY": 1.5})
        chimp.seed_member(
            audience, _at("pending"), "pending", merge_fields={"TIER": "bronze", "LEGACY": 2.5}
        )
        chimp.seed_member(
            audience,
            _at("archived"),
            "archived",
            merge_fields={"TIER": "bronze", "LEGACY": 3.5},
            tags=["news"],
        )
        self.seeded, _ = self.snapshot()

    def manifest_text(self) -> str:
        lines = [
            f"provider: {{type: mailchimp, audience: {self.audience}}}",
            "properties:",
            "  FNAME: {type: str}",
            "  TIER: {type: str}",
            "  SEATS: {type: int}",
            "  SCORE: {type: int}",
            "lists: {news: {}, beta: {members: exact}, vip: {}}",
            "contacts:",
        ]
        for n in OLD:
            lines.append(f"  - email: {_at(f'old{n}')}")
            renamed = "FNAME: Renamed One, " if n == 1 else ""
            lines += [
                f"    properties: {{{renamed}TIER: gold, SEATS: {n + 10}}}",
                "    lists: [news, beta]",
            ]
        lines += [
            f"  - email: {_at('gone')}",  # self-unsubscribed: stays so
            "    properties: {SEATS: 99}",
            "    lists: [news, beta]",
            f"  - email: {_at('mover')}",
            "    excluded_from_campaigns: true",
            f"  - email: {_at('bounce')}",  # cleaned: never changed (a warning)
            "    excluded_from_campaigns: false",
            f"  - email: {_at('pending')}",  # pending: updated alone, no opt-in resent
            "    properties: {TIER: gold}",
            f"  - email: {_at('archived')}",  # archived: never written (a warning)
            "    properties: {TIER: gold}",
        ]
        for n in NEW:
            lines += [
                f"  - email: {_at(f'new{n}')}",
                f"    properties: {{FNAME: New {n}, TIER: silver, SEATS: {n}, SCORE: {n * 7}}}",
                "    lists: [news, beta, vip]",
            ]
        return "\n".join(lines) + "\n"

    def expected(self) -> dict[str, Record]:
        want = {email: dict(record) for email, record in self.seeded.items()}
        for n in OLD:
            want[_at(f"old{n}")] = {
                "status": "unsubscribed" if n == 0 else "subscribed",
                "properties": {
                    "FNAME": "Renamed One" if n == 1 else f"Old {n}",
                    "LNAME": "Person",
                    "TIER": "gold",
                    "SEATS": n + 10,
                    "LEGACY": n + 0.25,
                },
                "lists": ["beta", "news", "partners"],
                "opt_ins": 0,
            }
        want[_at("keep1")] = {**want[_at("keep1")], "lists": ["partners"]}  # beta is exact
        gone = want[_at("gone")]
        want[_at("gone")] = {
            **gone,
            "properties": {**gone["properties"], "SEATS": 99},
            "lists": ["beta", "news"],
        }
        want[_at("mover")] = {**want[_at("mover")], "status": "unsubscribed"}
        pending = want[_at("pending")]
        want[_at("pending")] = {**pending, "properties": {**pending["properties"], "TIER": "gold"}}
        for n in NEW:
            want[_at(f"new{n}")] = {
                "status": "subscribed",
                "properties": {"FNAME": f"New {n}", "TIER": "silver", "SEATS": n, "SCORE": n * 7},
                "lists": ["beta", "news", "vip"],
                "opt_ins": 0,
            }
        return {**want, **self.overrides}

    def snapshot(self) -> tuple[dict[str, Record], list[str]]:
        audience = self.emulator.dump_state()["lists"][self.audience]
        tags: dict[str, list[str]] = {}
        for segment in audience["segments"].values():
            for key in segment["members"]:
                tags.setdefault(key, []).append(segment["name"])
        records: dict[str, Record] = {}
        members = audience["members"]
        emails = Counter(item["email_address"].lower() for item in members.values())
        for key, item in members.items():
            records[item["email_address"].lower()] = {
                "status": item["status"],
                "properties": dict(item["merge_fields"]),
                "lists": sorted(tags.get(key, [])),
                "opt_ins": item.get("opt_in_emails_sent", 0),
            }
        return records, sorted(email for email, count in emails.items() if count > 1)

    def provider(
        self,
        url: str | None = None,
        *,
        timeout: httpx.Timeout | None = None,
        retry: RetryPolicy = FAST_RETRY,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> MailchimpProvider:
        if transport is None and url is None:
            transport = EmulatorTransport(app=self.app)
        client = MailchimpClient(
            api_key=self.emulator.settings.api_keys[0],
            base_url=url or self.url,
            max_in_flight=self.max_connections,
            transport=transport,
            retry=retry,
            timeout=timeout,
        )
        return MailchimpProvider(client, audience=self.audience, batch_size=self.batch_size)

    def env(self, url: str) -> dict[str, str]:
        return {
            "MAILCHIMP_API_URL": url,
            "MAILCHIMP_API_KEY": self.emulator.settings.api_keys[0],
            **FAST_RETRY_ENV,
        }

    def http_options(self) -> dict[str, Any]:
        return {"auth": httpx.BasicAuth("reliability", self.emulator.settings.api_keys[0])}

    @property
    def base(self) -> str:
        """The audience's path: batch subscribe is a POST to it."""
        return f"/3.0/lists/{self.audience}"

    def clear_faults(self) -> None:
        with self.control.lock:
            self.control.faults.clear()
        self.emulator.settings.throttled_addresses = frozenset()


ACCOUNTS: dict[str, Callable[[], Account]] = {
    "mailjet": MailjetAccount,
    "mailjawn": MailJawnAccount,
    "mailchimp": MailchimpAccount,
}


# ---- runs --------------------------------------------------------------------------------


@dataclass
class Attempt:
    """One plan-and-apply: how many changes it planned, and how it ended."""

    changes: int = 0
    warnings: list[str] = field(default_factory=list)
    report: ApplyReport | None = None
    error: str | None = None

    @property
    def completed(self) -> bool:
        return self.error is None and (self.report is None or self.report.ok)

    def problems(self) -> list[str]:
        """What a user is shown about what did not apply."""
        if self.error is not None:
            return [self.error]
        if self.report is None:
            return []
        return [
            f"{o.status.value}: {o.address}: {o.message}"
            for o in self.report.outcomes
            if o.status is not OutcomeStatus.DONE
        ]


async def apply_once(account: Account, manifest: Manifest, provider: Provider) -> Attempt:
    """Plan and apply with `provider` (closed afterwards); a ReconcileError is the outcome."""
    try:
        made, live = await engine.make_plan(manifest, provider)
        attempt = Attempt(len(made.changes), list(made.warnings))
        if made.is_empty:
            return attempt
        attempt.report = await engine.apply_plan(made, provider, live)
        return attempt
    except ReconcileError as error:
        return Attempt(error=str(error))
    finally:
        await provider.aclose()


def assert_clear(attempt: Attempt) -> None:
    """A run that stopped says why, naming the request or the job, never a traceback."""
    for problem in attempt.problems():
        assert "Traceback" not in problem
        if problem.startswith("skipped: "):
            assert re.search(r": skipped: \S+ failed$", problem), problem
        else:
            named = NAMES_A_REQUEST.search(problem) or re.search(r"bulk job \d+", problem)
            assert named, f"does not name the request: {problem}"


def settle(
    account: Account,
    manifest: Manifest,
    first: Attempt,
    *,
    max_reruns: int = 3,
    provider: Callable[[], Provider] | None = None,
) -> list[Attempt]:
    """After a first (faulty) run: the outage ends, apply again until a plan is empty.

    Returns every attempt, the first included; the last one planned no changes. A run
    that reported success must leave nothing to do.
    """
    assert_clear(first)
    account.clear_faults()
    attempts = [first]
    while True:
        attempt = run(apply_once(account, manifest, (provider or account.provider)()))
        previous = attempts[-1]
        if previous.completed and previous.report is not None:
            assert attempt.changes == 0, f"reported done, yet a plan still has {attempt}"
        attempts.append(attempt)
        if attempt.changes == 0 and attempt.error is None:
            return attempts
        assert_clear(attempt)
        assert len(attempts) - 1 <= max_reruns, f"not converged after {max_reruns} re-runs"


def reruns(attempts: list[Attempt]) -> int:
    """Re-runs that had something to apply (the last attempt only confirmed convergence)."""
    return len(attempts) - 2


# ---- the command line ----------------------------------------------------------------------

_runner = CliRunner()


def cli(*args: str, env: dict[str, str]) -> tuple[int, str]:
    result = _runner.invoke(cli_app, list(args), env=env)
    return result.exit_code, result.output
