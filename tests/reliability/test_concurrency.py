"""Concurrent applies and stale saved plans.

Two applies of the same manifest at once must end in the declared state with no
duplicates: planned together and then applied together (every create races: Mailjet
answers the loser MJ18 as the real API does, or returns the record as the seed
document says; a contact hidden from the listing, as the real API's eventual
consistency can, is created by both), and as two `reconcile apply` processes against a
served emulator. A saved plan applied after the account moved is refused (exit 1) and
writes nothing.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from starlette.types import ASGIApp, Receive, Scope, Send

from reconcile import engine
from reconcile.providers.base import ApplyReport
from reconcile.providers.mailjet.emulator.app import MailjetEmulatorSettings
from reconcile.sandbox.common import CONTROL_PREFIX
from tests.reliability.accounts import (
    ACCOUNTS,
    Account,
    MailchimpAccount,
    MailJawnAccount,
    MailjetAccount,
    apply_once,
    cli,
)
from tests.support import run, served

RACES: dict[str, Callable[[], Account]] = {
    "mailjet-real-api": lambda: MailjetAccount(MailjetEmulatorSettings(job_polls_to_complete=2)),
    "mailjet-seed-document": lambda: MailjetAccount(
        MailjetEmulatorSettings(
            duplicate_contact="return_existing",
            total_mode="full",
            contact_put="merge",
            job_polls_to_complete=2,
        )
    ),
    "mailjet-hidden-from-listing": lambda: _someone_else_created_solo(MailjetAccount()),
    "mailjawn": MailJawnAccount,
    "mailchimp": MailchimpAccount,
}


def _someone_else_created_solo(account: MailjetAccount) -> MailjetAccount:
    """solo@ exists already but the listing misses it (eventual consistency): both applies
    plan to create it, both get MJ18 and must update it, keeping what they don't manage."""
    account.emulator.seed_contact(
        "Solo@Example.com", name="Someone", excluded=True, properties={"legacy_score": 1.0}
    )
    account.emulator.hide_from_listing("solo@example.com")
    account.overrides["solo@example.com"] = {
        "name": "Solo",
        "excluded": True,
        "properties": {"tier": "solo", "legacy_score": 1.0},
        "lists": {"news": False, "beta": True},
    }
    return account


async def plan_both_then_apply_both(account: Account, directory: Path) -> list[ApplyReport]:
    """Both plan against the same live state, then apply at the same time."""
    manifest = account.manifest(directory)
    providers = [account.provider(), account.provider()]
    try:
        planned = [await engine.make_plan(manifest, provider) for provider in providers]
        assert all(not made.is_empty for made, _ in planned)
        account.control.latency_seconds = 0.001  # every request yields: the two interleave
        return list(
            await asyncio.gather(
                *(
                    engine.apply_plan(made, provider, live)
                    for (made, live), provider in zip(planned, providers, strict=True)
                )
            )
        )
    finally:
        for provider in providers:
            await provider.aclose()


@pytest.mark.parametrize("race", RACES)
def test_two_applies_planned_together_and_applied_together(tmp_path: Path, race: str) -> None:
    account = RACES[race]()

    reports = run(plan_both_then_apply_both(account, tmp_path))

    for report in reports:
        assert report.ok, [o for o in report.outcomes if o.status.value != "done"]
    if isinstance(account, MailjetAccount) and race != "mailjet-seed-document":
        duplicates = [c for c in account.control.calls("POST") if c.status == 400]
        assert duplicates, "the race never happened: no create was answered MJ18"
    if race == "mailjet-hidden-from-listing":
        assert isinstance(account, MailjetAccount)
        account.emulator.hide_from_listing("solo@example.com", hidden=False)  # caught up
    check = run(apply_once(account, account.manifest(tmp_path), account.provider()))
    assert check.changes == 0, check
    account.assert_converged()


class WritesAfterBothRead:
    """Holds every write until `readers` applies have started reading (their first request
    is a GET of `first_read`), so that each plans before the other writes anything."""

    def __init__(self, app: ASGIApp, first_read: str, readers: int = 2) -> None:
        self.app = app
        self.first_read = first_read
        self.readers = readers
        self.started = 0
        self.gave_up = False  # a write went ahead without both applies having read

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["method"] == "GET":
            if scope["path"] == self.first_read:
                self.started += 1
        elif scope["type"] == "http" and not scope["path"].startswith(CONTROL_PREFIX):
            deadline = time.monotonic() + 20
            while self.started < self.readers:
                if time.monotonic() > deadline:
                    self.gave_up = True
                    break
                await asyncio.sleep(0.005)
        await self.app(scope, receive, send)


FIRST_READ = {
    "mailjet": "/v3/REST/contactmetadata",
    "mailjawn": "/api/v1/projects/00000000-0000-4000-8000-000000000001/subscribers/",
    "mailchimp": f"/3.0/lists/{MailchimpAccount.audience}",  # the audience, then the rest
}


@pytest.mark.parametrize("provider_name", ACCOUNTS)
def test_two_apply_processes_at_once(tmp_path: Path, provider_name: str) -> None:
    account = ACCOUNTS[provider_name]()
    if isinstance(account, MailjetAccount):
        account.emulator.settings.job_polls_to_complete = 0  # the CLI polls every second
    account.control.latency_seconds = 0.005
    manifest = str(account.write_manifest(tmp_path))
    command = [sys.executable, "-m", "reconcile", "apply", "--auto-approve", manifest]
    gate = WritesAfterBothRead(account.app, FIRST_READ[provider_name])

    with served(gate) as url:
        env = {**os.environ, **account.env(url)}
        processes = [
            subprocess.Popen(
                command, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
            )
            for _ in range(2)
        ]
        outputs = [process.communicate(timeout=120)[0] for process in processes]
        for process, output in zip(processes, outputs, strict=True):
            assert process.returncode == 0, output
            assert "Traceback" not in output
        account.control.latency_seconds = 0.0
        code, output = cli("plan", "--detailed-exitcode", manifest, env=account.env(url))
        assert code == 0, output
    assert not gate.gave_up  # both applies read before either wrote
    if isinstance(account, MailjetAccount):  # the losers of the create races got MJ18
        assert [c for c in account.control.calls("POST") if c.status == 400]
    elif isinstance(account, MailchimpAccount):
        # Both sent their batch subscribes (the new members, then the updates); the second
        # one's new members came back as existing (inside a 200) and were converged.
        batches = [c for c in account.control.calls("POST") if c.path == account.base]
        assert len(batches) == 4, batches
    else:  # both imported the new subscribers: one imported them, the other skipped them
        imports = [c for c in account.control.calls("POST") if c.path == FIRST_READ["mailjawn"]]
        assert len(imports) == 2
    account.assert_converged()


def _someone_applied_the_same_manifest(account: Account, directory: Path) -> str:
    attempt = run(apply_once(account, account.manifest(directory), account.provider()))
    assert attempt.completed, attempt.problems()
    return "was created by someone else since planning"


def _someone_edited_a_touched_contact(account: Account, _: Path) -> str:
    if isinstance(account, MailjetAccount):
        run(
            _mailjet_put(
                account, "old2@example.com", {"Name": "Edited", "IsExcludedFromCampaigns": False}
            )
        )
    elif isinstance(account, MailchimpAccount):
        run(_mailchimp_patch(account, account.email("old2"), {"merge_fields": {"SEATS": 77}}))
    else:
        assert isinstance(account, MailJawnAccount)
        run(_mailjawn_patch(account, "old2@example.com", {"custom_fields": {"seats": 77}}))
    return f"contact:{account.email('old2')} was changed since planning"


async def _mailjet_put(account: MailjetAccount, email: str, body: dict[str, object]) -> None:
    provider = account.provider()
    try:
        found = await provider.client.get(f"/contact/{email}")
        await provider.client.put(f"/contact/{found[0]['ID']}", body)
    finally:
        await provider.aclose()


async def _mailjawn_patch(account: MailJawnAccount, email: str, body: dict[str, object]) -> None:
    provider = account.provider()
    subscriber = account.emulator.subscriber(email)
    assert subscriber is not None
    try:
        await provider.client.patch(f"/subscribers/{subscriber['id']}/", body)
    finally:
        await provider.aclose()


async def _mailchimp_patch(account: MailchimpAccount, email: str, body: dict[str, object]) -> None:
    provider = account.provider()
    try:
        await provider.client.patch(f"/lists/{account.audience}/members/{email}", body)
    finally:
        await provider.aclose()


MOVES = {
    "same-manifest-applied-meanwhile": _someone_applied_the_same_manifest,
    "touched-contact-edited-meanwhile": _someone_edited_a_touched_contact,
}


@pytest.mark.parametrize("move", MOVES)
@pytest.mark.parametrize("provider_name", ACCOUNTS)
def test_stale_saved_plan_is_refused_and_writes_nothing(
    tmp_path: Path, provider_name: str, move: str
) -> None:
    account = ACCOUNTS[provider_name]()
    manifest = str(account.write_manifest(tmp_path))
    plan_file = str(tmp_path / "plan.json")

    with served(account.app) as url:
        env = account.env(url)
        code, output = cli("plan", manifest, "--out", plan_file, env=env)
        assert code == 0, output
        reason = MOVES[move](account, tmp_path)
        before, writes = account.snapshot()[0], len(account.writes())

        code, output = cli("apply", "--plan", plan_file, env=env)

    assert code == 1, output
    assert "live state moved since this plan was made; nothing was applied" in output
    assert reason in output
    assert "Traceback" not in output
    assert len(account.writes()) == writes, account.writes()[writes:]
    account.assert_untouched(before)
