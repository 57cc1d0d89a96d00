"""Mailchimp's own reliability quirks, over HTTP against the emulator: the limit of 10
simultaneous connections (429 or a bare 403 over it), 5xx and resets on the two batch
routes (batch subscribe, static-segment batch), batch answers that omit a member or are
garbage, per-member errors inside a 200 (never retried), the emulator's switches for
what the reference leaves open, a read that fails half-way, and SIGKILL mid-apply.

Every apply is checked against the whole account (`MailchimpAccount.assert_converged`:
nobody duplicated, nobody re-subscribed or mailed another opt-in, unmanaged merge fields
and tags as seeded) and a second plan must be empty.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from starlette.types import Message, Receive, Scope, Send

from reconcile import engine
from reconcile.errors import ApiError
from reconcile.manifest.loader import Manifest
from reconcile.model import ReadScope
from reconcile.providers.base import OutcomeStatus
from reconcile.providers.mailchimp.emulator.settings import MailchimpEmulatorSettings
from reconcile.providers.pacing import RetryPolicy
from reconcile.sandbox.common import CONTROL_PREFIX, Fault
from tests.reliability.accounts import (
    NEW,
    Attempt,
    MailchimpAccount,
    apply_once,
    settle,
)
from tests.reliability.test_crashes import KillSwitch
from tests.support import FAST_RETRY, consent_now, load, run, served


def batch_posts(account: MailchimpAccount) -> list[int]:
    """Statuses of every batch subscribe the emulator answered."""
    return [c.status for c in account.control.calls("POST") if c.path == account.base]


def segment_batches(account: MailchimpAccount) -> list[int]:
    return [
        c.status
        for c in account.control.calls("POST")
        if c.path.startswith(f"{account.base}/segments/")
    ]


def converges_at_once(
    account: MailchimpAccount, attempt: Attempt, url: str, manifest: Manifest
) -> None:
    """The apply completed; the account is as declared and a second plan is empty."""
    assert attempt.completed, attempt.problems()
    check = run(apply_once(account, manifest, account.provider(url)))
    assert check.changes == 0, check
    account.assert_converged()


# Backoff long enough (with jitter) for refused requests to find a free connection.
PATIENT = RetryPolicy(attempts=30, wait_initial=0.01, wait_max=0.1, wait_jitter=0.05)


def served_apply(
    account: MailchimpAccount, tmp_path: Path, retry: RetryPolicy = FAST_RETRY
) -> None:
    """One apply over HTTP that must complete, then an empty plan."""
    manifest = account.manifest(tmp_path)
    with served(account.app) as url:
        attempt = run(apply_once(account, manifest, account.provider(url, retry=retry)))
        converges_at_once(account, attempt, url, manifest)


# ---- the connection limit ------------------------------------------------------------------


def test_nine_in_flight_never_meet_the_limit_of_ten(tmp_path: Path) -> None:
    """The default client (9 in flight) against the real limit (10): never refused, even
    with one call per member and tag change (batch_size 1) and slow answers."""
    account = MailchimpAccount(MailchimpEmulatorSettings(max_connections=10), batch_size=1)
    account.control.latency_seconds = 0.02

    served_apply(account, tmp_path)

    statuses = [c.status for c in account.control.calls()]
    assert 429 not in statuses
    assert 403 not in statuses
    assert account.emulator.connections.refused == 0
    assert len(account.writes()) > 9  # there were more writes than connections


@pytest.mark.parametrize("answer", ["429", "403"])
@pytest.mark.parametrize(
    ("emulator_limit", "client_limit"), [(10, 10), (4, 9)], ids=["10-10", "4-9"]
)
def test_over_the_connection_limit_the_apply_completes_through_backoff(
    tmp_path: Path, answer: str, emulator_limit: int, client_limit: int
) -> None:
    """More in flight than the emulator allows: it answers 429 problem+json or a bare 403
    (no body) to the extra ones, the client backs off and retries them (any request,
    writes included: a refused connection was never acted on)."""
    settings = MailchimpEmulatorSettings(
        max_connections=emulator_limit,
        over_connection_answer=answer,  # type: ignore[arg-type]
    )
    account = MailchimpAccount(settings, max_connections=client_limit, batch_size=1)
    account.control.latency_seconds = 0.02

    served_apply(account, tmp_path, retry=PATIENT)

    if emulator_limit < client_limit:  # at 10-10 a refusal is possible, not certain
        assert account.emulator.connections.refused > 0
        assert int(answer) in [c.status for c in account.control.calls()]


# ---- 5xx and resets on the batch routes ----------------------------------------------------


def _batch_faults(account: MailchimpAccount, kind: str) -> list[Fault]:
    """`kind` on the first two batch subscribes (new members, then updates) and on the
    first segment batch: a 500 before acting, or a reset after the server acted."""
    base = account.base
    faults = [
        Fault(kind="status", status=500, method="POST", path=base, count=2)
        if kind == "5xx"
        else Fault(kind="reset_after", method="POST", path=base, count=2),
        Fault(
            kind="status" if kind == "5xx" else "reset_after",
            status=503,
            method="POST",
            path_contains="/segments/",
            count=1,
        ),
    ]
    for fault in faults:
        account.control.inject(fault)
    return faults


@pytest.mark.parametrize("kind", ["5xx", "reset-after-acting"])
def test_batch_routes_survive_5xx_and_resets_without_duplicates(tmp_path: Path, kind: str) -> None:
    account = MailchimpAccount()
    faults = _batch_faults(account, kind)

    served_apply(account, tmp_path)

    assert all(fault not in account.control.faults for fault in faults), "a fault never fired"
    snapshot, duplicated = account.snapshot()
    assert not duplicated
    assert len(snapshot) == len(account.seeded) + len(NEW)  # new0..5, once each


# ---- batch answers that can't be trusted ---------------------------------------------------


def _new_members_answer(account: MailchimpAccount, emails: list[str]) -> dict[str, Any]:
    members = [{"email_address": email, "status": "subscribed"} for email in emails]
    return {
        "new_members": members,
        "updated_members": [],
        "errors": [],
        "total_created": len(members),
        "total_updated": 0,
        "error_count": 0,
    }


def _after_the_update_batch(account: MailchimpAccount) -> None:
    """Apply sends the batch of updated members first: let it through untouched, so the
    next fault meets the batch of new members."""
    account.control.inject(Fault(kind="latency", seconds=0, method="POST", path=account.base))


def test_a_batch_answer_that_omits_a_member_fails_only_that_member(tmp_path: Path) -> None:
    """The batch landed whole, but its answer does not mention new3: new3 is reported (and
    its tags skipped), everyone else is done; a re-run finds new3 there and converges."""
    account = MailchimpAccount()
    created = [account.email(f"new{n}") for n in NEW if n != 3]
    _after_the_update_batch(account)
    account.control.inject(
        Fault(
            kind="garble",
            status=200,
            body=_new_members_answer(account, created),
            method="POST",
            path=account.base,
        )
    )
    manifest = account.manifest(tmp_path)

    first = run(apply_once(account, manifest, account.provider()))

    assert first.report is not None
    new3 = f"contact:{account.email('new3')}"
    by_address = {o.address: o for o in first.report.outcomes}
    assert by_address[new3].status is OutcomeStatus.FAILED
    assert "does not mention this member" in by_address[new3].message
    not_done = {o.address for o in first.report.outcomes if o.status is not OutcomeStatus.DONE}
    assert not_done == {new3} | {f"membership:{t}/{account.email('new3')}" for t in NEW_TAGS}
    settle(account, manifest, first, max_reruns=1)
    account.assert_converged()


NEW_TAGS = ("news", "beta", "vip")


@pytest.mark.parametrize("body", ["<html>oops</html>", {"unexpected": True}], ids=["html", "json"])
def test_a_garbage_batch_answer_marks_nobody_done(tmp_path: Path, body: object) -> None:
    account = MailchimpAccount()
    _after_the_update_batch(account)
    account.control.inject(
        Fault(kind="garble", status=200, body=body, method="POST", path=account.base)
    )
    manifest = account.manifest(tmp_path)

    first = run(apply_once(account, manifest, account.provider()))

    assert first.report is not None
    created = {f"contact:{account.email(f'new{n}')}" for n in NEW}
    outcomes = {o.address: o.status for o in first.report.outcomes}
    assert {outcomes[address] for address in created} == {OutcomeStatus.FAILED}
    settle(account, manifest, first, max_reruns=1)
    account.assert_converged()


# ---- per-member errors inside a 200 --------------------------------------------------------

FAKE_DOMAIN = "throwaway-mail.net"


def test_per_member_errors_are_reported_never_retried_and_the_rest_applies(
    tmp_path: Path,
) -> None:
    """Inside the batch subscribe's 200: an address that 'looks fake', one under the
    signup throttle, and a consented re-subscribe of a member who unsubscribed themselves
    (Member In Compliance State). Each is reported on its contact; everybody else lands;
    no batch is sent twice."""
    settings = MailchimpEmulatorSettings(
        fake_domains=("example.com", FAKE_DOMAIN),
        throttled_addresses=frozenset({"throttled@acme-widgets.io"}),
    )
    account = MailchimpAccount(settings)
    consent = consent_now()  # after gone@ unsubscribed
    olds = "\n".join(
        f"  - {{email: {account.email(f'old{n}')}, properties: {{SEATS: {n + 20}}}}}"
        for n in range(1, 6)
    )
    manifest = load(
        tmp_path,
        f"""
provider: {{type: mailchimp, audience: {account.audience}}}
properties: {{SEATS: {{type: int}}}}
contacts:
  - {{email: fine1@acme-widgets.io, properties: {{SEATS: 1}}}}
  - {{email: fake@{FAKE_DOMAIN}, properties: {{SEATS: 2}}}}
  - {{email: throttled@acme-widgets.io, properties: {{SEATS: 3}}}}
  - {{email: fine2@acme-widgets.io, properties: {{SEATS: 4}}}}
  - email: {account.email("gone")}
    excluded_from_campaigns: false
    opted_in_at: "{consent}"
{olds}
""",
    )

    first = run(apply_once(account, manifest, account.provider()))

    assert first.report is not None
    failed = {
        o.address: o.message for o in first.report.outcomes if o.status is not OutcomeStatus.DONE
    }
    assert set(failed) == {
        f"contact:fake@{FAKE_DOMAIN}",
        "contact:throttled@acme-widgets.io",
        f"contact:{account.email('gone')}",
    }, failed
    assert "looks fake or invalid" in failed[f"contact:fake@{FAKE_DOMAIN}"]
    assert "signed up to a lot of lists" in failed["contact:throttled@acme-widgets.io"]
    assert "compliance state" in failed[f"contact:{account.email('gone')}"]
    assert batch_posts(account) == [200, 200]  # new members, then updates: each once
    assert [c for c in account.control.calls() if c.method in ("PUT", "PATCH")] == []
    snapshot, duplicated = account.snapshot()
    assert not duplicated
    assert snapshot[account.email("gone")]["status"] == "unsubscribed"
    assert snapshot["fine1@acme-widgets.io"]["properties"] == {"SEATS": 1}
    assert snapshot["fine2@acme-widgets.io"]["properties"] == {"SEATS": 4}
    assert "throttled@acme-widgets.io" not in snapshot
    assert f"fake@{FAKE_DOMAIN}" not in snapshot
    for n in range(1, 6):
        assert snapshot[account.email(f"old{n}")]["properties"]["SEATS"] == n + 20


# ---- the emulator's switches ---------------------------------------------------------------


def test_batch_subscribe_replacing_merge_fields_keeps_the_unmanaged_ones(tmp_path: Path) -> None:
    """With batch subscribe making an existing member's merge fields exactly those sent,
    LNAME and LEGACY (not in the manifest) survive: every item carries the whole record."""
    account = MailchimpAccount(MailchimpEmulatorSettings(batch_subscribe_merge_fields="replace"))
    served_apply(account, tmp_path)
    assert batch_posts(account) == [200, 200]  # the updates did go by batch subscribe


@pytest.mark.parametrize("requires_status", [True, False])
def test_batch_subscribe_with_or_without_required_status(
    tmp_path: Path, requires_status: bool
) -> None:
    settings = MailchimpEmulatorSettings(batch_subscribe_existing_requires_status=requires_status)
    account = MailchimpAccount(settings)
    served_apply(account, tmp_path)


def _plan_lines(account: MailchimpAccount, tmp_path: Path) -> list[tuple[str, str, str]]:
    async def plan() -> list[tuple[str, str, str]]:
        provider = account.provider()
        try:
            made, _ = await engine.make_plan(account.manifest(tmp_path), provider)
        finally:
            await provider.aclose()
        return sorted((str(c.ref), c.action.value, repr(c.after)) for c in made.changes) + [
            ("warning", "", warning) for warning in made.warnings
        ]

    return run(plan())


def test_archived_members_in_the_listing_or_not_plan_the_same(tmp_path: Path) -> None:
    hidden = MailchimpAccount(MailchimpEmulatorSettings(list_members_includes_archived=False))
    shown = MailchimpAccount(MailchimpEmulatorSettings(list_members_includes_archived=True))

    planned = _plan_lines(hidden, tmp_path)

    assert planned == _plan_lines(shown, tmp_path)
    assert not [line for line in planned if "archived@" in line[0] and line[1] != ""]
    for account in (hidden, shown):
        attempt = run(apply_once(account, account.manifest(tmp_path), account.provider()))
        assert attempt.completed, attempt.problems()
        account.assert_converged()


def test_pending_member_is_never_mailed_another_opt_in(tmp_path: Path) -> None:
    account = MailchimpAccount()
    served_apply(account, tmp_path)
    pending = account.emulator.member(account.audience, account.email("pending"))
    assert pending is not None
    assert pending["status"] == "pending"
    assert account.emulator.opt_in_emails_sent(account.audience, account.email("pending")) == 1
    assert [c for c in account.control.calls() if c.method == "PATCH"]  # it was updated


# ---- a read that fails half-way ------------------------------------------------------------


def test_a_failed_read_leaves_no_request_running(tmp_path: Path) -> None:
    """The merge fields answer garbage while the member listings are still on their way:
    the read fails, and nothing it started may be left running (a request in flight after
    the error is a connection left open, reported by Python as an unclosed socket)."""
    account = MailchimpAccount()
    account.control.inject(
        Fault(status=200, body="<html>portal</html>", method="GET", path_contains="/merge-fields")
    )
    account.control.inject(
        Fault(kind="latency", seconds=0.5, method="GET", path=f"{account.base}/members", count=2)
    )

    async def read() -> list[asyncio.Task[Any]]:
        provider = account.provider()
        try:
            with pytest.raises(ApiError):
                await provider.read(ReadScope(every_list=True))
            return [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
        finally:
            await provider.aclose()

    left = run(read())

    assert left == [], f"{len(left)} requests still running after the read failed"


# ---- SIGKILL -------------------------------------------------------------------------------


class KillAt(KillSwitch):
    """SIGKILLs the apply when the emulator has acted on the first POST whose path starts
    with `prefix` (its answer never reaches the process)."""

    def __init__(self, account: MailchimpAccount, prefix: str, exact: bool) -> None:
        super().__init__(account.app)
        self.prefix = prefix
        self.exact = exact

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path = scope.get("path", "")
        matches = scope["type"] == "http" and scope.get("method") == "POST"
        matches = matches and (path == self.prefix if self.exact else path.startswith(self.prefix))
        if not matches or path.startswith(CONTROL_PREFIX) or self.fired.is_set():
            await self.app(scope, receive, send)
            return

        async def kill_before_answering(message: Message) -> None:
            if message["type"] == "http.response.start" and not self.fired.is_set():
                self._kill()
            await send(message)

        await self.app(scope, receive, kill_before_answering)


@pytest.mark.parametrize(
    ("where", "exact"),
    [("", True), ("/segments/", False), ("/merge-fields", True)],
    ids=["batch-subscribe", "segment-batch", "merge-field"],
)
def test_sigkill_after_a_batch_landed_then_replan_converges(
    tmp_path: Path, where: str, exact: bool
) -> None:
    account = MailchimpAccount()
    manifest_path = account.write_manifest(tmp_path)
    prefix = account.base + where
    switch = KillAt(account, prefix, exact)
    command = [sys.executable, "-m", "reconcile", "apply", "--auto-approve", str(manifest_path)]

    with served(switch) as url:
        env = {**os.environ, **account.env(url)}
        process = subprocess.Popen(
            command, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
        )
        switch.pid = process.pid
        output, _ = process.communicate(timeout=60)
        assert switch.fired.is_set(), output
        assert process.returncode == -signal.SIGKILL, output

        manifest = account.manifest(tmp_path)
        again = run(apply_once(account, manifest, account.provider(url)))
        converges_at_once(account, again, url, manifest)
