"""Crashes: `reconcile apply --auto-approve` in a subprocess is SIGKILLed when the served
emulator sees its N-th request (N drawn from a seed), either before the emulator acts on
that request or after it has (its answer then lost). Running apply again must converge
in one run, with nothing lost: unmanaged fields, properties, lists and unsubscribes as
seeded, and no duplicate contact.

Three seeds per provider run by default; `pytest -m soak` runs seeds 3 to 39 as well
(see tests/conftest.py).
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import pytest
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from reconcile.sandbox.common import CONTROL_PREFIX
from tests.reliability.accounts import ACCOUNTS, Account, MailjetAccount, apply_once
from tests.support import run, served

DEFAULT_SEEDS = range(3)
SOAK_SEEDS = range(3, 40)


class KillSwitch:
    """Wraps an emulator: on the `at`-th API request it SIGKILLs process `pid`, before the
    emulator acts on the request or (with `after`) once it has and is about to answer."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        self.lock = threading.Lock()
        self.seen = 0
        self.at = 0
        self.after = False
        self.pid: int | None = None
        self.fired = threading.Event()

    def arm(self, pid: int, at: int, after: bool) -> None:
        with self.lock:
            self.pid, self.at, self.after, self.seen = pid, at, after, 0

    def _kill(self) -> None:
        assert self.pid is not None
        os.kill(self.pid, signal.SIGKILL)
        self.fired.set()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"].startswith(CONTROL_PREFIX):
            await self.app(scope, receive, send)
            return
        with self.lock:
            self.seen += 1
            hit = self.pid is not None and self.seen == self.at and not self.fired.is_set()
        if hit and not self.after:
            self._kill()
            await Response(status_code=503)(scope, receive, send)  # to nobody
            return
        if not hit:
            await self.app(scope, receive, send)
            return

        async def kill_before_answering(message: Message) -> None:
            if message["type"] == "http.response.start":
                self._kill()
            await send(message)

        await self.app(scope, receive, kill_before_answering)


def fresh_account(provider_name: str) -> Account:
    account = ACCOUNTS[provider_name]()
    if isinstance(account, MailjetAccount):
        account.emulator.settings.job_polls_to_complete = 0  # the CLI polls every second
    return account


def requests_of_a_full_apply(provider_name: str, tmp_path: Path) -> int:
    """How many requests an uninterrupted apply makes, on a fresh copy of the account."""
    account = fresh_account(provider_name)
    attempt = run(apply_once(account, account.manifest(tmp_path), account.provider()))
    assert attempt.completed, attempt.problems()
    return len(account.control.calls())


_full_counts: dict[str, int] = {}


def kill_then_rerun(provider_name: str, seed: int, tmp_path: Path) -> None:
    if provider_name not in _full_counts:
        _full_counts[provider_name] = requests_of_a_full_apply(provider_name, tmp_path)
    rng = random.Random(f"{provider_name}-{seed}")
    at, after = rng.randint(1, _full_counts[provider_name]), rng.random() < 0.5
    account = fresh_account(provider_name)
    manifest_path = account.write_manifest(tmp_path)
    switch = KillSwitch(account.app)
    command = [sys.executable, "-m", "reconcile", "apply", "--auto-approve", str(manifest_path)]
    env: dict[str, Any] = dict(os.environ)

    with served(switch) as url:
        env.update(account.env(url))
        process = subprocess.Popen(
            command, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
        )
        switch.arm(process.pid, at, after)
        output, _ = process.communicate(timeout=60)
        assert switch.fired.is_set(), f"never killed (request {at}): {output}"
        assert process.returncode == -signal.SIGKILL, output

        again = run(apply_once(account, account.manifest(tmp_path), account.provider(url)))
        assert again.completed, (at, after, again.problems())
        check = run(apply_once(account, account.manifest(tmp_path), account.provider(url)))
        assert check.changes == 0, (at, after, check)
    account.assert_converged()


@pytest.mark.parametrize("seed", DEFAULT_SEEDS)
@pytest.mark.parametrize("provider_name", ACCOUNTS)
def test_apply_killed_at_a_random_request_then_rerun_converges(
    tmp_path: Path, provider_name: str, seed: int
) -> None:
    kill_then_rerun(provider_name, seed, tmp_path)


@pytest.mark.soak
@pytest.mark.parametrize("seed", SOAK_SEEDS)
@pytest.mark.parametrize("provider_name", ACCOUNTS)
def test_apply_killed_at_a_random_request_then_rerun_converges_soak(
    tmp_path: Path, provider_name: str, seed: int
) -> None:
    kill_then_rerun(provider_name, seed, tmp_path)
