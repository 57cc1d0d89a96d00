"""Ctrl-C during apply: the writes in flight finish, nothing new starts, the report says
what was done, and running apply again finishes the rest."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from reconcile.sandbox.mailjet import create_mailjet_emulator
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
