"""The promise machine (issue #11), against every emulator: bounded runs for every test
run, and a soak (`pytest -m soak tests/test_promises.py`) that plays fresh seeds until
PROMISES_MINUTES (default 20) are spent, per provider. PROMISES_EXAMPLES raises the bounded
run's examples (default 10), e.g. to measure whether the machine finds a reverted fix."""

from __future__ import annotations

import os
import time

import pytest
from hypothesis import HealthCheck, Phase, settings
from hypothesis.stateful import run_state_machine_as_test

from tests.promises.machine import Counter, make_machine
from tests.promises.pools import POOLS

BOUNDED = settings(
    max_examples=int(os.environ.get("PROMISES_EXAMPLES", "10")),
    stateful_step_count=15,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)
SOAK = settings(
    BOUNDED,
    max_examples=10,
    stateful_step_count=40,
    phases=[Phase.generate, Phase.target, Phase.shrink, Phase.explain],
)

MailjetPromises = make_machine(POOLS["mailjet"])
MailJawnPromises = make_machine(POOLS["mailjawn"])
MailchimpPromises = make_machine(POOLS["mailchimp"])
MACHINES = {
    "mailjet": MailjetPromises,
    "mailjawn": MailJawnPromises,
    "mailchimp": MailchimpPromises,
}


@pytest.mark.parametrize("provider", sorted(MACHINES))
def test_promises_hold(provider: str) -> None:
    run_state_machine_as_test(MACHINES[provider], settings=BOUNDED)


@pytest.mark.soak
@pytest.mark.parametrize("provider", sorted(MACHINES))
def test_promises_soak(provider: str, capsys: pytest.CaptureFixture[str]) -> None:
    budget = float(os.environ.get("PROMISES_MINUTES", "20")) * 60
    deadline = time.monotonic() + budget
    rounds = 0
    steps_before, examples_before = Counter.steps, Counter.examples
    while time.monotonic() < deadline:
        rounds += 1  # a fresh random seed each round (no database, not derandomized)
        run_state_machine_as_test(MACHINES[provider], settings=SOAK)
        with capsys.disabled():
            print(
                f"\n{provider} promise soak: round {rounds}, "
                f"{Counter.examples - examples_before} runs, "
                f"{Counter.steps - steps_before} reconcile steps so far"
            )
