"""What a Mailjet apply holds of the contacts it reads again around bulk jobs (#15 item 6).

When Name/exclusion changes ride in jobs, every contact is read just before the jobs and
once more after them; on a million contacts, keeping each read whole held two more copies
of the account at once (over a GB). Only the contacts whose fields ride in the jobs are
kept; every record is still read and checked, and one excluded without UnsubscribedAt
anywhere in the account still shows that it does not stamp opt-outs. Over real HTTP
against the emulator."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from reconcile import engine
from reconcile.providers.base import INTERRUPTED, OutcomeStatus
from reconcile.providers.mailjet import provider as mailjet_provider
from reconcile.providers.mailjet.bulk import BulkWriter
from reconcile.providers.mailjet.emulator.app import (
    MailjetEmulator,
    MailjetEmulatorSettings,
    create_mailjet_emulator,
)
from reconcile.providers.mailjet.provider import Stamped
from tests.providers.test_mailjet_bulk_renames import (
    JOB,
    PEOPLE,
    apply,
    provider_at,
    puts,
    renamed_all,
)
from tests.support import load, run, served

OTHERS = 60  # contacts the manifest does not name: left alone


def account(*, stamping: bool = True, excluded_other: bool = False) -> MailjetEmulator:
    """PEOPLE contacts named "Old n", included; OTHERS more (the first one excluded with
    `excluded_other`)."""
    settings = MailjetEmulatorSettings(job_polls_to_complete=2, stamp_exclusion=stamping)
    emulator = create_mailjet_emulator(settings)
    for n in range(PEOPLE):
        emulator.seed_contact(f"p{n}@example.com", name=f"Old {n}")
    for n in range(OTHERS):
        emulator.seed_contact(f"other{n}@example.com", excluded=excluded_other and n == 0)
    return emulator


def kept_reads(monkeypatch: pytest.MonkeyPatch) -> list[set[str]]:
    """The contacts each read around the jobs keeps, as apply runs."""
    kept: list[set[str]] = []
    original = mailjet_provider._read_stamped

    async def recording(client: Any, wanted: Any) -> Stamped:
        read = await original(client, wanted)
        kept.append(set(read.contacts))
        return read

    monkeypatch.setattr(mailjet_provider, "_read_stamped", recording)
    return kept


def test_the_reads_around_the_jobs_keep_only_the_contacts_riding_in_them(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    emulator = account()
    kept = kept_reads(monkeypatch)

    _, report, _ = apply(emulator, renamed_all(tmp_path))

    assert report.ok, report.outcomes
    assert puts(emulator) == []  # the renames rode in the job
    renamed = {f"p{n}@example.com" for n in range(PEOPLE)}
    assert kept == [renamed, renamed]  # before the jobs and after: not the OTHERS
    listings = [c for c in emulator.control.calls("GET") if c.path == "/v3/REST/contact"]
    assert len(listings) >= 3  # the plan's read, and the two around the jobs: of everyone
    for n in range(PEOPLE):
        contact = emulator.contact(f"p{n}@example.com")
        assert contact is not None
        assert contact["Name"] == f"New {n}"


def test_an_unstamped_exclusion_outside_the_manifest_still_keeps_false_out_of_jobs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The one contact excluded without UnsubscribedAt is not among those kept: the read
    still tells the account does not stamp opt-outs, so every renamed (included) contact
    gets a read and a PUT instead of sending IsExcludedFromCampaigns false in a job."""
    emulator = account(stamping=False, excluded_other=True)
    kept = kept_reads(monkeypatch)

    _, report, _ = apply(emulator, renamed_all(tmp_path))

    assert report.ok, report.outcomes
    assert "other0@example.com" not in kept[0]
    assert len(puts(emulator)) == PEOPLE
    assert len([c for c in emulator.control.calls("POST") if c.path == JOB]) <= 1
    other = emulator.contact("other0@example.com")
    assert other is not None
    assert other["IsExcludedFromCampaigns"] is True


@pytest.mark.parametrize("renames", [False, True])
def test_each_jobs_items_are_made_only_when_it_is_sent(tmp_path: Path, renames: bool) -> None:
    """The bodies of every job were once all built before the first was sent (a quarter
    GB at a million contacts). With two jobs sent at a time, the k-th job's items are made
    only once at least k - 1 jobs have gone out; every change still lands."""
    emulator = account()
    made: list[int] = []  # jobs sent (their POST answered) when each job was built
    sent = 0
    sending = 2

    class Recording(BulkWriter):
        async def run(self, actions: Any, works: Any, build: Any, settle: Any) -> None:
            def counted(chunk: Any) -> Any:
                made.append(sent)
                return build(chunk)

            await super().run(actions, works, counted, settle)

        async def _send(self, actions: Any, items: Any) -> Any:
            # Counted here, as the answer arrives: the emulator records a call only after
            # answering it, so its count can lag behind what the client has seen.
            nonlocal sent
            result = await super()._send(actions, items)
            sent += 1
            return result

    async def applied(url: str) -> Any:
        provider = provider_at(url, emulator, chunk_size=5)
        bulk = provider.bulk
        provider.bulk = Recording(provider.client, bulk.polling, 5, bulk.cancel, sending)
        try:
            plan, live = await engine.make_plan(manifest, provider)
            return await engine.apply_plan(plan, provider, live, force=True)
        finally:
            await provider.aclose()

    people = "".join(
        f"  - {{email: {'p' if renames else 'n'}{n}@example.com, name: New {n}}}\n"
        for n in range(PEOPLE)
    )
    manifest = load(tmp_path, f"provider: mailjet\ncontacts:\n{people}")
    with served(emulator.app) as url:
        report = run(applied(url))

    assert report.ok, report.outcomes
    jobs = PEOPLE // 5
    assert len(made) >= jobs
    assert all(posted >= k - sending + 1 for k, posted in enumerate(made)), made
    names = {
        n: emulator.contact(f"{'p' if renames else 'n'}{n}@example.com") for n in range(PEOPLE)
    }
    assert all(c is not None and c["Name"] == f"New {n}" for n, c in names.items())


def test_ctrl_c_between_jobs_sends_no_more_and_says_what_never_started(tmp_path: Path) -> None:
    """Items are made as each job's turn comes: a stop requested then leaves the jobs not
    sent yet unsent, their changes "not started", while those sent end as they ended."""
    emulator = account()
    stop_at = 3  # the stop comes as the third job is made, before it is sent

    class Stopping(BulkWriter):
        async def run(self, actions: Any, works: Any, build: Any, settle: Any) -> None:
            made = 0

            def counted(chunk: Any) -> Any:
                nonlocal made
                made += 1
                if made == stop_at:
                    self.cancel.request()
                return build(chunk)

            await super().run(actions, works, counted, settle)

    async def applied(url: str) -> Any:
        provider = provider_at(url, emulator, chunk_size=5)
        bulk = provider.bulk
        provider.bulk = Stopping(provider.client, bulk.polling, 5, bulk.cancel, 1)
        try:
            plan, live = await engine.make_plan(manifest, provider)
            return await engine.apply_plan(plan, provider, live, force=True)
        finally:
            await provider.aclose()

    people = "".join(f"  - {{email: n{n}@example.com, name: New {n}}}\n" for n in range(PEOPLE))
    manifest = load(tmp_path, f"provider: mailjet\ncontacts:\n{people}")
    with served(emulator.app) as url:
        report = run(applied(url))

    posted = [c for c in emulator.control.calls("POST") if c.path == JOB]
    assert len(posted) == stop_at - 1
    created = {
        f"contact:n{n}@example.com" for n in range(PEOPLE) if emulator.contact(f"n{n}@example.com")
    }
    assert len(created) == 5 * (stop_at - 1)
    for outcome in report.outcomes:
        if outcome.address in created:
            assert outcome.status is OutcomeStatus.DONE, outcome
        else:
            assert outcome.status is OutcomeStatus.SKIPPED, outcome
            assert outcome.message == INTERRUPTED
    assert report.interrupted
