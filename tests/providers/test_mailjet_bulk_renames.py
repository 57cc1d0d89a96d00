"""Name and exclusion changes of existing Mailjet contacts through bulk jobs (#15 item 5):
they ride in the jobs with both fields sent (the unmanaged one at its live value, an
exclusion lifted only with consent), the first job is read back, and a job that ignored
them makes each a read and a PUT, which the report says. Over HTTP against the emulator."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx

from reconcile import engine
from reconcile.manifest.loader import Manifest
from reconcile.plan import Plan
from reconcile.providers.base import ApplyReport, OutcomeStatus
from reconcile.providers.mailjet.client import MailjetClient
from reconcile.providers.mailjet.emulator.app import (
    MailjetEmulator,
    MailjetEmulatorSettings,
    create_mailjet_emulator,
)
from reconcile.providers.mailjet.provider import FALLBACK, MailjetProvider
from reconcile.providers.mailjet.routing import EXPECTED_POLLS, READ_BACK
from tests.providers.test_mailjet_bulk import FAST_POLLING
from tests.support import consent_now, load, plan_with, run, served

PEOPLE = 40
JOB = "/v3/REST/contact/managemanycontacts"


def account(*, applies_fields: bool = True) -> MailjetEmulator:
    """PEOPLE contacts named "Old n"; every fourth excluded; on no list."""
    settings = MailjetEmulatorSettings(
        job_polls_to_complete=2, bulk_updates_name_and_exclusion=applies_fields
    )
    emulator = create_mailjet_emulator(settings)
    for n in range(PEOPLE):
        emulator.seed_contact(f"p{n}@example.com", name=f"Old {n}", excluded=n % 4 == 0)
    return emulator


def renamed_all(tmp_path: Path, extra: str = "") -> Manifest:
    contacts = "".join(f"  - {{email: p{n}@example.com, name: New {n}}}\n" for n in range(PEOPLE))
    return load(tmp_path, f"provider: mailjet\ncontacts:\n{contacts}{extra}")


def provider_at(url: str, emulator: MailjetEmulator, chunk_size: int = 1000) -> MailjetProvider:
    """A provider talking to the emulator served at `url` (real HTTP)."""
    client = MailjetClient(
        api_key=emulator.settings.api_key,
        secret_key=emulator.settings.secret_key,
        base_url=url,
        requests_per_minute=1_000_000,
    )
    return MailjetProvider(client, bulk_chunk_size=chunk_size, polling=FAST_POLLING)


async def plan_apply(
    url: str, emulator: MailjetEmulator, manifest: Manifest
) -> tuple[Plan, ApplyReport, int]:
    """Over real HTTP: the plan, the report, and the requests apply sent."""
    provider = provider_at(url, emulator)
    try:
        made, live = await engine.make_plan(manifest, provider)
        before = provider.client.stats.requests
        report = await engine.apply_plan(made, provider, live, force=True)
        return made, report, provider.client.stats.requests - before
    finally:
        await provider.aclose()


def apply(emulator: MailjetEmulator, manifest: Manifest) -> tuple[Plan, ApplyReport, int]:
    with served(emulator.app) as url:
        return run(plan_apply(url, emulator, manifest))


def puts(emulator: MailjetEmulator) -> list[str]:
    return [c.path for c in emulator.control.calls("PUT") if c.path.startswith("/v3/REST/contact/")]


def test_renames_ride_in_one_job_with_the_live_exclusion(tmp_path: Path) -> None:
    emulator = account()

    made, report, sent = apply(emulator, renamed_all(tmp_path))

    assert report.ok, report.outcomes
    assert puts(emulator) == []  # not one PUT per renamed contact
    assert len([c for c in emulator.control.calls("POST") if c.path == JOB]) == 1
    assert made.estimate is not None
    assert sent == made.estimate.api_calls
    # fresh read, job, polls, read-back, read after the jobs
    assert sent == 1 + 1 + EXPECTED_POLLS + READ_BACK + 1
    assert "reading back 3 contact(s)" in made.estimate.assumes
    assert "Assumes bulk jobs apply the Name" in made.estimate.describe()
    for n in range(PEOPLE):
        contact = emulator.contact(f"p{n}@example.com")
        assert contact is not None
        assert contact["Name"] == f"New {n}"
        assert contact["IsExcludedFromCampaigns"] is (n % 4 == 0)  # unmanaged: as it was
    assert run(plan_with(emulator, renamed_all(tmp_path))).is_empty


def test_an_opt_out_after_planning_is_not_undone_by_the_job(tmp_path: Path) -> None:
    """The unmanaged exclusion is sent as it is just before the jobs, not as planned."""
    emulator = account()
    manifest = renamed_all(tmp_path)

    async def plan_opt_out_apply(url: str) -> ApplyReport:
        provider = provider_at(url, emulator)
        try:
            made, live = await engine.make_plan(manifest, provider)
            emulator.seed_unsubscribe("p1@example.com")  # opts out of everything, now
            return await engine.apply_plan(made, provider, live, force=True)
        finally:
            await provider.aclose()

    with served(emulator.app) as url:
        report = run(plan_opt_out_apply(url))

    assert report.ok, report.outcomes
    contact = emulator.contact("p1@example.com")
    assert contact is not None
    assert contact["Name"] == "New 1"
    assert contact["IsExcludedFromCampaigns"] is True


def test_exclusion_changes_ride_in_jobs_and_keep_consent(tmp_path: Path) -> None:
    """Excluding is always fine; lifting an exclusion needs the contact's opt-in (given
    after the opt-out); without it the person stays excluded (and is warned about)."""
    emulator = account()
    consent = consent_now()
    lines = ["provider: mailjet", "contacts:"]
    for n in range(PEOPLE):
        if n % 4 == 0:  # excluded live: half with consent to lift it, half without
            opt_in = f', opted_in_at: "{consent}"' if n % 8 == 0 else ""
            lines.append(f"  - {{email: p{n}@example.com, excluded_from_campaigns: false{opt_in}}}")
        else:
            lines.append(f"  - {{email: p{n}@example.com, excluded_from_campaigns: true}}")
    manifest = load(tmp_path, "\n".join(lines) + "\n")

    made, report, sent = apply(emulator, manifest)

    assert report.ok, report.outcomes
    assert puts(emulator) == []
    assert made.estimate is not None
    assert sent == made.estimate.api_calls
    for n in range(PEOPLE):
        contact = emulator.contact(f"p{n}@example.com")
        assert contact is not None
        assert contact["Name"] == f"Old {n}"  # unmanaged: its live value
        lifted = n % 8 == 0
        assert contact["IsExcludedFromCampaigns"] is (not lifted), n
    jobs = [c for c in emulator.control.calls("POST") if c.path == JOB]
    assert len(jobs) == 1


def test_a_job_that_ignores_the_fields_falls_back_to_puts(tmp_path: Path) -> None:
    emulator = account(applies_fields=False)
    manifest = renamed_all(tmp_path)

    made, report, sent = apply(emulator, manifest)

    assert report.ok, report.outcomes
    assert made.estimate is not None
    # The estimate assumed the job applies them; it said so, and what it costs otherwise.
    assert sent == made.estimate.api_calls + 2 * PEOPLE
    assert len(puts(emulator)) == PEOPLE
    fallen_back = [o for o in report.outcomes if o.message == FALLBACK]
    assert len(fallen_back) == PEOPLE
    assert all(o.status is OutcomeStatus.DONE for o in fallen_back)
    (note,) = report.notes
    assert "did not apply Name/IsExcludedFromCampaigns" in note
    for n in range(PEOPLE):
        contact = emulator.contact(f"p{n}@example.com")
        assert contact is not None
        assert contact["Name"] == f"New {n}"
        assert contact["IsExcludedFromCampaigns"] is (n % 4 == 0)
    assert run(plan_with(emulator, manifest)).is_empty


def test_the_fallback_covers_later_jobs_too(tmp_path: Path) -> None:
    """Chunks of 10: the first job is read back, the three after it never carry the
    fields; every contact is read and PUT, with properties and lists still in jobs."""
    emulator = account(applies_fields=False)
    emulator.seed_property("tier")
    emulator.seed_list("news")
    contacts = "".join(
        f"  - {{email: p{n}@example.com, name: New {n}, properties: {{tier: gold}}, "
        "lists: [news]}\n"
        for n in range(PEOPLE)
    )
    manifest = load(
        tmp_path,
        "provider: mailjet\nproperties: {tier: {type: str}}\nlists: {news: {}}\n"
        f"contacts:\n{contacts}",
    )

    async def apply_in_chunks(url: str) -> ApplyReport:
        provider = provider_at(url, emulator, chunk_size=10)
        try:
            made, live = await engine.make_plan(manifest, provider)
            return await engine.apply_plan(made, provider, live, force=True)
        finally:
            await provider.aclose()

    with served(emulator.app) as url:
        report = run(apply_in_chunks(url))

    assert report.ok, report.outcomes
    assert len(puts(emulator)) == PEOPLE
    assert len([c for c in emulator.control.calls("POST") if c.path == JOB]) == 4
    for n in range(PEOPLE):
        contact = emulator.contact(f"p{n}@example.com")
        assert contact is not None
        assert contact["Name"] == f"New {n}"
        assert contact["Properties"] == {"tier": "gold"}
        assert contact["Lists"] == {"news": False}
    assert run(plan_with(emulator, manifest)).is_empty


def test_the_emulator_switch_can_be_flipped_on_a_running_emulator(tmp_path: Path) -> None:
    """Over its control route, as a test of a served emulator in another process would."""
    emulator = account()

    async def switch() -> Any:
        transport = httpx.ASGITransport(app=emulator.app)
        async with httpx.AsyncClient(transport=transport, base_url="http://mj.test") as http:
            answer = await http.post(
                "/_emulator/settings", json={"bulk_updates_name_and_exclusion": False}
            )
            return answer.json()

    assert run(switch())["bulk_updates_name_and_exclusion"] is False
    _, report, _ = apply(emulator, renamed_all(tmp_path))
    assert report.ok
    assert len(puts(emulator)) == PEOPLE


def test_a_few_renames_stay_single_calls(tmp_path: Path) -> None:
    """Two renames: a read and a PUT each (4) is cheaper than a fresh read, a job and
    its poll and the read-back."""
    emulator = account()
    manifest = load(
        tmp_path,
        "provider: mailjet\ncontacts:\n  - {email: p1@example.com, name: A}\n"
        "  - {email: p2@example.com, name: B}\n",
    )
    made, report, sent = apply(emulator, manifest)
    assert report.ok
    assert len(puts(emulator)) == 2
    assert made.estimate is not None
    assert made.estimate.assumes == ""
    assert sent == made.estimate.api_calls == 4
