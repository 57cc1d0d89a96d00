"""Consent while a Mailjet bulk job waits (hostile-tester findings on #15 item 5).

A job item sends IsExcludedFromCampaigns as read just before the jobs; the real service
can leave a job queued for minutes, so someone may opt out in between and the job would
bring them back. After the jobs the contacts are read again: whoever now reads included
with a new UnsubscribedAt is excluded again at once and their change fails, saying so.
On an account that does not stamp UnsubscribedAt no item sends false. Over real HTTP
against the emulator; the opt-out is a PUT through the emulator's own API, made right
after the job is posted (the emulator runs a job on a later poll).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import httpx

from reconcile import engine
from reconcile.manifest.loader import Manifest
from reconcile.providers.base import INTERRUPTED, ApplyReport, OutcomeStatus
from reconcile.providers.mailjet.emulator.app import (
    MailjetEmulator,
    MailjetEmulatorSettings,
    create_mailjet_emulator,
)
from reconcile.providers.mailjet.provider import FALLBACK
from tests.providers.test_mailjet_bulk_renames import (
    JOB,
    PEOPLE,
    account,
    provider_at,
    puts,
    renamed_all,
)
from tests.support import consent_now, load, plan_with, run, served

Action = Callable[[], Awaitable[None]]


def after_first_job_post(app: Any, action: Action) -> Any:
    """`app`, with `action` run once, just after the first job POST is answered."""
    fired = False

    async def wrapped(scope: Any, receive: Any, send: Any) -> None:
        nonlocal fired
        await app(scope, receive, send)
        is_job = scope["type"] == "http" and scope["method"] == "POST" and scope["path"] == JOB
        if is_job and not fired:
            fired = True
            await action()

    return wrapped


async def put_contact(emulator: MailjetEmulator, email: str, **fields: Any) -> None:
    """Someone else (or the person, through Mailjet) writes the contact: a PUT through
    the emulator's API, every editable field sent."""
    record = emulator.contact(email)
    assert record is not None
    body = {"Name": record["Name"], "IsExcludedFromCampaigns": record["IsExcludedFromCampaigns"]}
    body.update(fields)
    transport = httpx.ASGITransport(app=emulator.app)
    auth = (emulator.settings.api_key, emulator.settings.secret_key)
    async with httpx.AsyncClient(transport=transport, base_url="http://mj", auth=auth) as http:
        answer = await http.put(f"/v3/REST/contact/{record['ID']}", json=body)
        assert answer.status_code in (200, 304), answer.text


def apply_with(
    emulator: MailjetEmulator, manifest: Manifest, meanwhile: Action
) -> tuple[ApplyReport, int, int]:
    """Plan, then apply with `meanwhile` run when the first job is posted: the report, the
    requests apply sent and the plan's estimate."""

    async def plan_apply(url: str) -> tuple[ApplyReport, int, int]:
        provider = provider_at(url, emulator)
        try:
            made, live = await engine.make_plan(manifest, provider)
            assert made.estimate is not None
            before = provider.client.stats.requests
            report = await engine.apply_plan(made, provider, live, force=True)
            return report, provider.client.stats.requests - before, made.estimate.api_calls
        finally:
            await provider.aclose()

    with served(after_first_job_post(emulator.app, meanwhile)) as url:
        return run(plan_apply(url))


def outcome(report: ApplyReport, email: str) -> Any:
    (found,) = [o for o in report.outcomes if o.address == f"contact:{email}"]
    return found


def test_an_opt_out_while_the_job_waits_is_not_undone(tmp_path: Path) -> None:
    """Renames only: p1 (included) excludes themselves after the job is posted; the job
    then sends them IsExcludedFromCampaigns false. They end excluded, and the report says
    what happened; everyone else is renamed."""
    emulator = account()

    async def opts_out() -> None:
        await put_contact(emulator, "p1@example.com", IsExcludedFromCampaigns=True)

    report, sent, estimate = apply_with(emulator, renamed_all(tmp_path), opts_out)

    p1 = emulator.contact("p1@example.com")
    assert p1 is not None
    assert p1["IsExcludedFromCampaigns"] is True
    assert p1["Name"] == "New 1"
    told = outcome(report, "p1@example.com")
    assert told.status is OutcomeStatus.FAILED
    assert "opted out" in told.message
    assert "excluded again" in told.message
    others = [o for o in report.outcomes if o.address != "contact:p1@example.com"]
    assert all(o.status is OutcomeStatus.DONE for o in others), others
    assert sent == estimate + 1  # the re-exclusion, beyond what was estimated
    for n in range(PEOPLE):
        contact = emulator.contact(f"p{n}@example.com")
        assert contact is not None
        assert contact["Name"] == f"New {n}"
        assert contact["IsExcludedFromCampaigns"] is (n % 4 == 0 or n == 1)


def test_an_opt_out_again_while_a_consented_lift_waits_is_not_undone(tmp_path: Path) -> None:
    """p0 was excluded, consented later (opted_in_at) and the plan lifts the exclusion;
    while the job waits they are re-included elsewhere and opt out again (a new
    UnsubscribedAt). The job lifts it anyway; they are excluded again at once."""
    emulator = account()
    consent = consent_now()
    contacts = "".join(
        f"  - {{email: p{n}@example.com, name: New {n}}}\n" for n in range(1, PEOPLE)
    )
    manifest = load(
        tmp_path,
        "provider: mailjet\ncontacts:\n"
        f'  - {{email: p0@example.com, excluded_from_campaigns: false, opted_in_at: "{consent}"}}\n'
        f"{contacts}",
    )

    async def opts_out_again() -> None:
        await put_contact(emulator, "p0@example.com", IsExcludedFromCampaigns=False)
        await put_contact(emulator, "p0@example.com", IsExcludedFromCampaigns=True)

    report, _, _ = apply_with(emulator, manifest, opts_out_again)

    p0 = emulator.contact("p0@example.com")
    assert p0 is not None
    assert p0["IsExcludedFromCampaigns"] is True
    told = outcome(report, "p0@example.com")
    assert told.status is OutcomeStatus.FAILED
    assert "opted out" in told.message
    assert "excluded again" in told.message
    assert puts(emulator)  # the re-exclusion went out
    # The next plan does not lift it again: the opt-out is after the consent.
    again = run(plan_with(emulator, manifest))
    assert not [c for c in again.changes if c.address == "contact:p0@example.com"]


def test_a_consented_lift_that_nobody_touches_is_done(tmp_path: Path) -> None:
    """The read after the jobs does not mistake the lift itself for an opt-out."""
    emulator = account()
    consent = consent_now()
    contacts = "".join(
        f"  - {{email: p{n}@example.com, name: New {n}}}\n" for n in range(1, PEOPLE)
    )
    manifest = load(
        tmp_path,
        "provider: mailjet\ncontacts:\n"
        f'  - {{email: p0@example.com, excluded_from_campaigns: false, opted_in_at: "{consent}"}}\n'
        f"{contacts}",
    )

    async def nothing() -> None:
        return None

    report, sent, estimate = apply_with(emulator, manifest, nothing)

    assert report.ok, report.outcomes
    assert sent == estimate
    p0 = emulator.contact("p0@example.com")
    assert p0 is not None
    assert p0["IsExcludedFromCampaigns"] is False
    assert puts(emulator) == []


def test_an_account_that_does_not_stamp_opt_outs_never_gets_false_in_a_job(
    tmp_path: Path,
) -> None:
    """Without UnsubscribedAt an opt-out made while the job waits could not be found
    afterwards: contacts whose item would send false get a read and a PUT instead (a
    one-request window), and the one who opts out meanwhile stays excluded."""
    settings = MailjetEmulatorSettings(job_polls_to_complete=2, stamp_exclusion=False)
    emulator = create_mailjet_emulator(settings)
    for n in range(PEOPLE):
        emulator.seed_contact(f"p{n}@example.com", name=f"Old {n}", excluded=n % 4 == 0)
    included = [n for n in range(PEOPLE) if n % 4]

    async def opts_out() -> None:
        await put_contact(emulator, "p1@example.com", IsExcludedFromCampaigns=True)

    report, _, _ = apply_with(emulator, renamed_all(tmp_path), opts_out)

    assert report.ok, report.outcomes
    jobs = [c for c in emulator.control.calls("POST") if c.path == JOB]
    assert len(jobs) == 1  # the excluded ones' renames still ride in it
    assert len(puts(emulator)) == len(included) + 1  # theirs, and the opt-out
    for n in range(PEOPLE):
        contact = emulator.contact(f"p{n}@example.com")
        assert contact is not None
        assert contact["Name"] == f"New {n}"
        assert contact["IsExcludedFromCampaigns"] is (n % 4 == 0 or n == 1)


def test_ctrl_c_on_the_fallback_says_not_done_once(tmp_path: Path) -> None:
    """Jobs ignore the fields; Ctrl-C right after the read-back found that out: each
    contact's only write was the job that ignored its fields, so it is not done (not
    "partly done"), and the message says to run plan again once."""
    emulator = account(applies_fields=False)
    manifest = renamed_all(tmp_path)

    async def plan_apply(url: str) -> ApplyReport:
        provider = provider_at(url, emulator)
        read_back = provider._read_back

        async def read_back_then_ctrl_c(items: Any, live: Any) -> bool | None:
            found = await read_back(items, live)
            provider.cancel.request()
            return found

        provider._read_back = read_back_then_ctrl_c  # type: ignore[method-assign]
        try:
            made, live = await engine.make_plan(manifest, provider)
            return await engine.apply_plan(made, provider, live, force=True)
        finally:
            await provider.aclose()

    with served(emulator.app) as url:
        report = run(plan_apply(url))

    assert report.interrupted
    assert puts(emulator) == []
    contacts = [o for o in report.outcomes if o.address.startswith("contact:")]
    assert len(contacts) == PEOPLE
    for told in contacts:
        assert told.status is OutcomeStatus.FAILED
        assert told.message.startswith("not done: the bulk job"), told.message
        assert "did not apply them" in told.message
        assert "partly done" not in told.message
        assert told.message.count("run plan again") == 1, told.message
        assert INTERRUPTED in told.message
        assert FALLBACK not in told.message


def test_the_stamp_switch_can_be_flipped_on_a_running_emulator() -> None:
    emulator = account()

    async def switch(payload: dict[str, Any]) -> httpx.Response:
        transport = httpx.ASGITransport(app=emulator.app)
        async with httpx.AsyncClient(transport=transport, base_url="http://mj.test") as http:
            return await http.post("/_emulator/settings", json=payload)

    answer = run(switch({"stamp_exclusion": False}))
    assert answer.json()["stamp_exclusion"] is False
    assert emulator.settings.stamp_exclusion is False
    assert run(switch({"stamp_exclusion": "no"})).status_code == 400


def test_ctrl_c_while_the_job_waits_still_re_excludes_who_opted_out(tmp_path: Path) -> None:
    """Ctrl-C once the job is posted, and p1 opts out meanwhile: the job is followed to
    its end and re-includes p1; the read-back is not sent (a stop), so no change is
    claimed done, but the read after the jobs runs and p1 is excluded again, even after
    the stop (a repair of what the job did)."""
    emulator = account()
    manifest = renamed_all(tmp_path)
    stop: list[Callable[[], None]] = []

    async def opts_out_and_ctrl_c() -> None:
        await put_contact(emulator, "p1@example.com", IsExcludedFromCampaigns=True)
        stop[0]()

    async def plan_apply(url: str) -> ApplyReport:
        provider = provider_at(url, emulator)
        loop = asyncio.get_running_loop()

        def ctrl_c() -> None:  # from the server's thread, as a signal would
            loop.call_soon_threadsafe(provider.cancel.request)

        stop.append(ctrl_c)
        try:
            made, live = await engine.make_plan(manifest, provider)
            return await engine.apply_plan(made, provider, live, force=True)
        finally:
            await provider.aclose()

    with served(after_first_job_post(emulator.app, opts_out_and_ctrl_c)) as url:
        report = run(plan_apply(url))

    assert report.interrupted
    p1 = emulator.contact("p1@example.com")
    assert p1 is not None
    assert p1["IsExcludedFromCampaigns"] is True
    told = outcome(report, "p1@example.com")
    assert told.status is OutcomeStatus.FAILED
    assert "excluded again" in told.message
    for n in range(PEOPLE):
        if n == 1:
            continue
        other = outcome(report, f"p{n}@example.com")
        assert other.status is OutcomeStatus.FAILED
        assert other.message.startswith("maybe not done: the bulk job"), other.message
        assert "partly done" not in other.message
        assert other.message.count("run plan again") == 1
