"""Ctrl-C during apply: the writes in flight finish, nothing new starts, the report says
what was done, and running apply again finishes the rest."""

from __future__ import annotations

import _thread
import os
import signal
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable, MutableMapping
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from reconcile import cli
from reconcile.cli import EXIT_INTERRUPTED
from reconcile.providers.mailjet.emulator.app import MailjetEmulator, create_mailjet_emulator
from reconcile.render.report import Applied
from reconcile.sandbox.common import Fault
from tests.support import served

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

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


def renaming_account(
    tmp_path: Path, requests_per_minute: int = 120
) -> tuple[MailjetEmulator, dict[str, str]]:
    """An account of RENAMES contacts and a manifest renaming each: a read and a PUT per
    contact, paced (by default at 120 requests a minute, so most writes wait their turn).
    Jobs of one contact each keep the renames on that path (else they ride in a job)."""
    emulator = create_mailjet_emulator()
    lines = [
        f"provider: {{type: mailjet, requests_per_minute: {requests_per_minute}, "
        "bulk_chunk_size: 1}",
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


UNPACED = 100_000
# In-process: the command runs in this process's main thread (its own signal handling),
# the emulator in a server thread that presses Ctrl-C at an exact moment of the exchange.


def pressing_ctrl_c(app: ASGIApp, method: str, path_prefix: str, times: int) -> ASGIApp:
    """`app`, which on the first `method` request under `path_prefix` presses Ctrl-C `times`
    times (a real SIGINT for the main thread: its handler and the event loop's wake-up) and
    then answers it."""
    pressed = False

    async def wrapped(scope: Scope, receive: Receive, send: Send) -> None:
        nonlocal pressed
        path = str(scope.get("path", ""))
        if not pressed and scope.get("method") == method and path.startswith(path_prefix):
            pressed = True
            for _ in range(times):
                _thread.interrupt_main(signal.SIGINT)
        await app(scope, receive, send)

    return wrapped


def apply_in_process(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, url: str, credentials: dict[str, str]
) -> tuple[int, str]:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("MAILJET_API_URL", url)
    for name, value in credentials.items():
        monkeypatch.setenv(name, value)
    args = ["apply", "--auto-approve", "--quiet", "audience.yaml"]
    result = CliRunner().invoke(cli.app, args)
    return result.exit_code, result.output


NOTHING_CHANGED = "Interrupted before any write; nothing was changed."
MAY_HAVE_LANDED = "Aborted during apply: writes were under way and some may have landed."


@pytest.mark.parametrize(
    ("pressed_during", "code", "said", "not_said"),
    [
        # Apply has begun (each rename first reads its contact again) but no write went
        # out: the old code said writes were under way and exited 1.
        ("GET", EXIT_INTERRUPTED, NOTHING_CHANGED, "may have landed"),
        ("PUT", 1, MAY_HAVE_LANDED, "nothing was changed"),
    ],
)
def test_two_ctrl_c_during_apply_say_only_what_is_true(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    pressed_during: str,
    code: int,
    said: str,
    not_said: str,
) -> None:
    emulator, credentials = renaming_account(tmp_path, UNPACED)
    app = pressing_ctrl_c(emulator.app, pressed_during, "/v3/REST/contact/", times=2)
    with served(app) as url:
        exit_code, output = apply_in_process(tmp_path, monkeypatch, url, credentials)

    assert bool(emulator.control.calls("PUT")) == (pressed_during == "PUT")
    assert exit_code == code, output
    assert said in output
    assert not_said not in output


def test_a_ctrl_c_while_the_report_prints_says_how_the_apply_ended(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Past the apply, Ctrl-C is Python's KeyboardInterrupt wherever the command is; typer
    # made it exit 130 ("interrupted before any write") although every write had landed.
    emulator, credentials = renaming_account(tmp_path, UNPACED)

    def interrupted(applied: Applied, output_format: object) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(cli, "_show_report", interrupted)
    with served(emulator.app) as url:
        code, output = apply_in_process(tmp_path, monkeypatch, url, credentials)

    assert len(emulator.control.calls("PUT")) == RENAMES
    assert code == 1, output
    assert "nothing was changed" not in output
    # The apply had ended: no "writes were under way", but what it did (it had said
    # "some may have landed" with no summary, although every change had).
    assert MAY_HAVE_LANDED not in output
    assert "Interrupted while printing the report; the apply had ended:" in output
    assert f"Apply complete: {RENAMES} done, 0 failed, 0 skipped." in output
