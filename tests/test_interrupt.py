"""Ctrl-C during apply: the writes in flight finish, nothing new starts, the report says
what was done, and running apply again finishes the rest."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from reconcile.sandbox.common import Fault
from reconcile.sandbox.mailjet import MailjetEmulator, create_mailjet_emulator
from tests.support import served

PROPERTIES = 40
MANIFEST = "provider: {type: mailjet, requests_per_minute: 240}\nproperties:\n" + "".join(
    f"  p{n:02d}: {{type: str}}\n" for n in range(PROPERTIES)
)


def reconcile_command(*args: str) -> list[str]:
    return [str(Path(sys.executable).parent / "reconcile"), *args]


def test_ctrl_c_stops_after_the_writes_in_flight_and_a_rerun_finishes(tmp_path: Path) -> None:
    (tmp_path / "audience.yaml").write_text(MANIFEST, encoding="utf-8")
    emulator = create_mailjet_emulator()
    emulator.control.latency_seconds = 0.05
    with served(emulator.app) as url:
        env = {
            **os.environ,
            "MAILJET_API_URL": url,
            "MAILJET_API_KEY": emulator.settings.api_key,
            "MAILJET_SECRET_KEY": emulator.settings.secret_key,
        }
        command = reconcile_command("apply", "--auto-approve", "--quiet", "audience.yaml")
        process = subprocess.Popen(
            command, cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT
        )
        deadline = time.monotonic() + 60
        while len(emulator.control.calls("POST")) < 15 and time.monotonic() < deadline:
            time.sleep(0.01)
        process.send_signal(signal.SIGINT)
        output = process.communicate(timeout=60)[0].decode()
        created = len(emulator.control.calls("POST"))

        assert process.returncode == 1, output
        assert "Stopping: finishing the requests in flight" in output
        assert "Apply interrupted:" in output
        assert "not started: apply was interrupted" in output
        assert "Traceback" not in output
        assert 15 <= created < PROPERTIES  # stopped early, after what was in flight
        assert f"Apply interrupted: {created} done" in output

        again = subprocess.run(
            command, check=False, cwd=tmp_path, env=env, capture_output=True, text=True
        )
        assert again.returncode == 0, again.stdout + again.stderr
        assert f"Apply complete: {PROPERTIES - created} done, 0 failed" in again.stdout
        plan = subprocess.run(
            reconcile_command("plan", "--quiet", "--detailed-exitcode", "audience.yaml"),
            check=False,
            cwd=tmp_path,
            env=env,
            capture_output=True,
            text=True,
        )
        assert plan.returncode == 0, plan.stdout


RENAMES = 40


def renaming_account(tmp_path: Path) -> tuple[MailjetEmulator, dict[str, str]]:
    """An account of RENAMES contacts and a manifest renaming each: a read and a PUT per
    contact, paced at 120 requests a minute, so most writes wait for their turn."""
    emulator = create_mailjet_emulator()
    lines = [
        "provider: {type: mailjet, requests_per_minute: 120}",
        "safety: {max_update_share: 1.0}",
    ]
    lines.append("contacts:")
    for n in range(RENAMES):
        emulator.seed_contact(f"p{n}@example.com", f"Old {n}")
        lines.append(f"  - {{email: p{n}@example.com, name: New {n}}}")
    (tmp_path / "audience.yaml").write_text("\n".join(lines) + "\n", encoding="utf-8")
    return emulator, {
        "MAILJET_API_KEY": emulator.settings.api_key,
        "MAILJET_SECRET_KEY": emulator.settings.secret_key,
    }


def start_apply(tmp_path: Path, url: str, credentials: dict[str, str]) -> subprocess.Popen[bytes]:
    env = {**os.environ, "MAILJET_API_URL": url, **credentials}
    command = reconcile_command("apply", "--auto-approve", "--quiet", "audience.yaml")
    return subprocess.Popen(
        command, cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT
    )


def wait_for_puts(emulator: MailjetEmulator, count: int) -> None:
    deadline = time.monotonic() + 60
    while len(emulator.control.calls("PUT")) < count and time.monotonic() < deadline:
        time.sleep(0.01)


def test_ctrl_c_ends_queued_writes_and_their_reads_at_once(tmp_path: Path) -> None:
    emulator, credentials = renaming_account(tmp_path)
    with served(emulator.app) as url:
        process = start_apply(tmp_path, url, credentials)
        wait_for_puts(emulator, 3)
        process.send_signal(signal.SIGINT)
        at_signal = len(emulator.control.calls())
        output = process.communicate(timeout=120)[0].decode()
        after_signal = len(emulator.control.calls()) - at_signal

    assert process.returncode == 1, output
    assert "Apply interrupted:" in output
    # Only what was already under way (at most 4 in flight, each a read then its PUT)
    # goes out: the queued renames neither read nor write.
    assert after_signal <= 8, after_signal
    assert len(emulator.control.calls("PUT")) < RENAMES


def test_a_second_ctrl_c_during_writes_never_claims_nothing_changed(tmp_path: Path) -> None:
    emulator, credentials = renaming_account(tmp_path)
    # Slow PUTs only: whenever one has answered, others are in flight for seconds, past the
    # second Ctrl-C (the reads before them are given up at once on the first).
    emulator.control.inject(Fault(kind="latency", seconds=3.0, method="PUT", count=RENAMES))
    with served(emulator.app) as url:
        process = start_apply(tmp_path, url, credentials)
        wait_for_puts(emulator, 1)
        process.send_signal(signal.SIGINT)
        time.sleep(0.2)
        process.send_signal(signal.SIGINT)
        output = process.communicate(timeout=120)[0].decode()

    assert process.returncode == 1, output
    assert "nothing was changed" not in output
    assert "Aborted during apply: writes were under way and some may have landed" in output
    assert "Traceback" not in output
