"""Faults against both emulators: 5xx, 429 (with and without Retry-After), resets before
and after the server acted, read timeouts (including writes that land after the client
gave up), slow answers, bulk jobs ending in Error, per-contact failures in jobs/imports.

Every scenario: the first apply either completes (and then a plan is empty) or stops
with a report that names the failing request or job; the outage then ends and at most
three re-runs converge to exactly the declared account, with everything unmanaged as
seeded (no duplicate, no lost property value, nobody re-subscribed).

Random mixes of faults run for two seeds by default; `pytest -m soak` runs 40 per
provider (see tests/conftest.py).
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from reconcile.sandbox.common import Fault
from tests.reliability.accounts import (
    ACCOUNTS,
    NEW,
    Account,
    MailchimpAccount,
    MailJawnAccount,
    MailjetAccount,
    apply_once,
    cli,
    reruns,
    settle,
)
from tests.support import run, served

# Roles of requests, per provider: which method and path a fault aims at.
TARGETS: dict[str, dict[str, dict[str, str]]] = {
    "mailjet": {
        "read": {"method": "GET"},
        "create": {"method": "POST", "path": "/v3/REST/contact"},
        "definition": {"method": "POST", "path": "/v3/REST/contactmetadata"},
        "bulk": {"method": "POST", "path": "/v3/REST/contact/managemanycontacts"},
        "update": {"method": "PUT"},
        "lists": {"method": "POST", "path_contains": "/managecontactslists"},
    },
    "mailjawn": {  # {subscribers}: the collection's path (bulk import), filled in by aimed()
        "read": {"method": "GET"},
        "create": {"method": "POST", "path": "{subscribers}"},
        "bulk": {"method": "POST", "path": "{subscribers}"},
        "update": {"method": "PATCH"},
        "lists": {"method": "POST", "path_contains": "/subscribers/identify/"},
    },
    # {audience}: /3.0/lists/<id>. Creates and updates both go by batch subscribe (a POST
    # to the audience); "update" is the PATCH of a member written alone (the pending one);
    # "lists" is the static-segment batch route (tags).
    "mailchimp": {
        "read": {"method": "GET"},
        "create": {"method": "POST", "path": "{audience}"},
        "definition": {"method": "POST", "path": "{audience}/merge-fields"},
        "bulk": {"method": "POST", "path": "{audience}"},
        "update": {"method": "PATCH"},
        "lists": {"method": "POST", "path_contains": "/segments/"},
    },
}
WRITES = {"mailjet": ("POST", "PUT"), "mailjawn": ("POST", "PATCH"), "mailchimp": ("POST", "PATCH")}


def aimed(account: Account, role: str, **fault: object) -> Fault:
    """Inject a fault aimed at one role of request (see TARGETS)."""
    target = {**TARGETS[account.provider_name][role], "path": role_path(account, role)}
    made = Fault(**{**target, **fault})  # type: ignore[arg-type]
    account.control.inject(made)
    return made


def role_path(account: Account, role: str) -> str:
    """The exact path a role's requests go to ("" when it is not one path)."""
    path = TARGETS[account.provider_name][role].get("path", "")
    if isinstance(account, MailJawnAccount):
        return path.format(subscribers=account.subscribers_path)
    if isinstance(account, MailchimpAccount):
        return path.format(audience=account.base)
    return path


def throttled(account: Account) -> object:
    if account.provider_name == "mailjet":
        return {"ErrorInfo": "", "ErrorMessage": "Too many requests", "StatusCode": 429}
    if account.provider_name == "mailchimp":
        return {
            "title": "Too Many Requests",
            "status": 429,
            "detail": "You have exceeded the limit of 10 simultaneous connections.",
        }
    return {"detail": "Request was throttled."}


Inject = Callable[[Account], list[Fault]]


@dataclass(frozen=True)
class Scenario:
    name: str
    inject: Inject
    completes: bool  # the first run carries everything out despite the faults
    served: bool = False  # over real HTTP (timeouts need a real socket)
    read_timeout: float = 5.0


def _server_errors_on_reads(account: Account) -> list[Fault]:
    return [aimed(account, "read", status=503, count=4)]


def _server_errors_on_writes(account: Account) -> list[Fault]:
    return [
        aimed(account, "bulk", status=500, count=1),
        aimed(account, "update", status=502, count=2),
        aimed(account, "lists", status=503, count=1),
    ]


def _outage_on_writes(account: Account) -> list[Fault]:
    return [
        account_fault(account, Fault(status=503, method=method, count=1000))
        for method in WRITES[account.provider_name]
    ]


def account_fault(account: Account, fault: Fault) -> Fault:
    account.control.inject(fault)
    return fault


def _rate_limited(account: Account) -> list[Fault]:
    return [account_fault(account, Fault(status=429, body=throttled(account), count=5))]


def _rate_limited_with_retry_after(account: Account) -> list[Fault]:
    headers = {"Retry-After": "0.05"}
    return [
        account_fault(account, Fault(status=429, body=throttled(account), headers=headers, count=5))
    ]


def _rate_limit_storm(account: Account) -> list[Fault]:
    return [account_fault(account, Fault(status=429, body=throttled(account), count=1000))]


def _resets(account: Account) -> list[Fault]:
    """Dropped before the server acted (reads, a single create) and after it did (writes)."""
    faults = [
        aimed(account, "read", kind="reset"),
        aimed(account, "update", kind="reset_after"),
        aimed(account, "bulk", kind="reset_after"),
        aimed(account, "lists", kind="reset_after"),
    ]
    if isinstance(account, MailjetAccount):  # on MailJawn the bulk import is the create
        faults.append(aimed(account, "create", kind="reset"))
    return faults


def _timeouts(account: Account) -> list[Fault]:
    return [
        aimed(account, "read", kind="latency", seconds=0.6),
        aimed(account, "bulk", kind="latency", seconds=0.6),
        aimed(account, "update", kind="latency", seconds=0.6),
    ]


def _slow(account: Account) -> list[Fault]:
    account.control.latency_seconds = 0.01
    return [aimed(account, "bulk", kind="latency", seconds=0.3)]


def _bulk_fails(account: Account) -> list[Fault]:
    if isinstance(account, MailjetAccount):
        account.emulator.fail_jobs(1, "Internal error while processing the job")
        return []
    return [aimed(account, "bulk", status=503, count=1000)]


def _per_contact_failures(account: Account) -> list[Fault]:
    if isinstance(account, MailjetAccount):
        account.emulator.fail_in_jobs(["new2@example.com", "old3@example.com"])
    elif isinstance(account, MailchimpAccount):
        # Mailchimp's per-member failures come inside the batch subscribe's 200: the
        # signup throttle refuses these two until the outage ends (clear_faults).
        throttle(account, [account.email("new2"), account.email("new5")])
    else:
        assert isinstance(account, MailJawnAccount)
        account.emulator.fail_in_imports(["new2@example.com", "new5@example.com"])
    return []


SCENARIOS = [
    Scenario("5xx-on-reads", _server_errors_on_reads, completes=True),
    Scenario("5xx-on-writes", _server_errors_on_writes, completes=True),
    Scenario("5xx-outage-on-writes", _outage_on_writes, completes=False),
    Scenario("429-without-retry-after", _rate_limited, completes=True),
    Scenario("429-with-retry-after", _rate_limited_with_retry_after, completes=True),
    Scenario("429-storm", _rate_limit_storm, completes=False),
    Scenario("connection-resets", _resets, completes=True),
    Scenario("read-timeouts", _timeouts, completes=True, served=True, read_timeout=0.25),
    Scenario("slow-answers", _slow, completes=True, served=True),
    Scenario("bulk-fails-whole", _bulk_fails, completes=False),
    Scenario("bulk-per-contact-failures", _per_contact_failures, completes=False),
]


def throttle(account: MailchimpAccount, emails: list[str]) -> None:
    settings = account.emulator.settings
    settings.throttled_addresses = settings.throttled_addresses | {e.lower() for e in emails}


def item_faults_left(account: Account) -> bool:
    if isinstance(account, MailjetAccount):
        faults = account.emulator.job_faults
        return faults.error_jobs > 0 or bool(faults.failing_emails)
    if isinstance(account, MailchimpAccount):
        # The throttle is not used up: it is "left" when no batch subscribe ever met it.
        bulk = role_path(account, "bulk")
        met = any(c.path == bulk and c.status == 200 for c in account.control.calls("POST"))
        return bool(account.emulator.settings.throttled_addresses) and not met
    assert isinstance(account, MailJawnAccount)
    return bool(account.emulator.import_faults.failing_emails)


@pytest.mark.parametrize("provider_name", ACCOUNTS)
@pytest.mark.parametrize("scenario", SCENARIOS, ids=[s.name for s in SCENARIOS])
def test_fault_then_reruns_converge(tmp_path: Path, provider_name: str, scenario: Scenario) -> None:
    account = ACCOUNTS[provider_name]()
    manifest = account.manifest(tmp_path)
    faults = scenario.inject(account)
    counts = [fault.count for fault in faults]
    timeout = httpx.Timeout(scenario.read_timeout, connect=2.0)

    if scenario.served:
        with served(account.app) as url:
            first = run(apply_once(account, manifest, account.provider(url, timeout=timeout)))
            fired = [f.count < n for f, n in zip(faults, counts, strict=True)]
            left = item_faults_left(account)
            attempts = settle(
                account, manifest, first, provider=lambda: account.provider(url, timeout=timeout)
            )
    else:
        first = run(apply_once(account, manifest, account.provider()))
        fired = [f.count < n for f, n in zip(faults, counts, strict=True)]
        left = item_faults_left(account)
        attempts = settle(account, manifest, first)

    assert all(fired), f"some injected faults never fired: {faults}"
    assert not left, "the job/import failures asked for never happened"
    assert first.completed is scenario.completes, first.problems()
    assert reruns(attempts) <= (0 if scenario.completes else 1), attempts
    account.assert_converged()


def random_faults(account: Account, rng: random.Random) -> list[Fault]:
    """A few faults of any kind, aimed anywhere, each firing one to three times."""
    made: list[Fault] = []
    for _ in range(rng.randint(2, 5)):
        role = rng.choice(list(TARGETS[account.provider_name]))
        count = rng.randint(1, 3)
        kind = rng.choice(["status", "status", "reset", "reset_after", "latency"])
        if kind == "status":
            status = rng.choice([429, 500, 502, 503, 504])
            body = throttled(account) if status == 429 else None
            made.append(aimed(account, role, status=status, body=body, count=count))
        else:
            made.append(aimed(account, role, kind=kind, seconds=0.001, count=count))
    if rng.random() < 0.3 and isinstance(account, MailjetAccount):
        account.emulator.fail_jobs(1)
    if rng.random() < 0.3:
        victims = rng.sample([account.email(f"new{n}") for n in NEW], 2)
        if isinstance(account, MailjetAccount):
            account.emulator.fail_in_jobs(victims)
        elif isinstance(account, MailchimpAccount):
            throttle(account, victims)
        else:
            assert isinstance(account, MailJawnAccount)
            account.emulator.fail_in_imports(victims)
    return made


def _mixed_round(tmp_path: Path, provider_name: str, seed: int) -> None:
    account = ACCOUNTS[provider_name]()
    manifest = account.manifest(tmp_path)
    random_faults(account, random.Random(f"{provider_name}-{seed}"))
    first = run(apply_once(account, manifest, account.provider()))
    attempts = settle(account, manifest, first)
    assert reruns(attempts) <= 3
    account.assert_converged()


@pytest.mark.parametrize("provider_name", ACCOUNTS)
@pytest.mark.parametrize("seed", [0, 1])
def test_random_fault_mix_converges(tmp_path: Path, provider_name: str, seed: int) -> None:
    _mixed_round(tmp_path, provider_name, seed)


@pytest.mark.soak
@pytest.mark.parametrize("provider_name", ACCOUNTS)
def test_random_fault_mix_converges_soak(tmp_path: Path, provider_name: str) -> None:
    for seed in range(2, 42):
        round_dir = tmp_path / f"round{seed}"
        round_dir.mkdir()
        _mixed_round(round_dir, provider_name, seed)


@pytest.mark.parametrize("provider_name", ACCOUNTS)
def test_command_line_outage_reports_then_rerun_converges(
    tmp_path: Path, provider_name: str
) -> None:
    account = ACCOUNTS[provider_name]()
    if isinstance(account, MailjetAccount):
        account.emulator.settings.job_polls_to_complete = 0  # the CLI polls every second
    manifest = str(account.write_manifest(tmp_path))
    _outage_on_writes(account)

    with served(account.app) as url:
        env = account.env(url)
        code, output = cli("apply", "--auto-approve", manifest, env=env)
        assert code == 1, output
        assert "Traceback" not in output
        failures = [line for line in output.splitlines() if line.strip().startswith("failed: ")]
        assert failures, output
        for line in failures:
            assert "answered 503" in line or "bulk job" in line, line
        assert "Some changes did not apply; fix the cause and run apply again to finish." in (
            output
        )
        account.clear_faults()
        code, output = cli("apply", "--auto-approve", manifest, env=env)
        assert code == 0, output
        code, output = cli("plan", "--detailed-exitcode", manifest, env=env)
        assert code == 0, output
    account.assert_converged()


def successful_bulk_posts(account: Account) -> int:
    """Bulk writes the emulator carried out (Mailjet jobs posted, MailJawn imports)."""
    bulk = role_path(account, "bulk")
    return sum(
        1
        for call in account.control.calls("POST")
        if call.path == bulk and 200 <= call.status < 300
    )


@pytest.mark.parametrize("provider_name", ACCOUNTS)
def test_a_bulk_write_that_timed_out_still_lands_once_more_and_nothing_doubles(
    tmp_path: Path, provider_name: str
) -> None:
    baseline = ACCOUNTS[provider_name]()
    assert run(apply_once(baseline, baseline.manifest(tmp_path), baseline.provider())).completed
    account = ACCOUNTS[provider_name]()
    manifest = account.manifest(tmp_path)
    aimed(account, "bulk", kind="latency", seconds=0.5)
    timeout = httpx.Timeout(0.2, connect=2.0)

    with served(account.app) as url:
        first = run(apply_once(account, manifest, account.provider(url, timeout=timeout)))
        deadline = time.monotonic() + 5
        while successful_bulk_posts(account) <= successful_bulk_posts(baseline):
            assert time.monotonic() < deadline, "the timed-out bulk write never landed"
            time.sleep(0.05)
        check = run(apply_once(account, manifest, account.provider(url, timeout=timeout)))

    assert first.completed, first.problems()
    assert successful_bulk_posts(account) == successful_bulk_posts(baseline) + 1
    assert check.changes == 0, check
    account.assert_converged()
