"""The command line as a user runs it: sandbox flow, exit codes, saved plans, refusals."""

from __future__ import annotations

import base64
import json
import re
import shutil
import signal
import socket
import subprocess
import sys
from pathlib import Path

import httpx
import pytest
from typer.testing import CliRunner

from reconcile.cli import app
from reconcile.providers.mailjet.emulator.app import create_mailjet_emulator
from tests.support import served, write_manifest

QUICKSTART = Path(__file__).parent.parent / "examples" / "quickstart"
runner = CliRunner()


@pytest.fixture
def workdir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("RECONCILE_RETRY_WAIT", "0.01")
    shutil.copytree(QUICKSTART, tmp_path / "quickstart")
    return tmp_path


def reconcile(*args: str) -> tuple[int, str]:
    result = runner.invoke(app, list(args))
    return result.exit_code, result.output


def test_quickstart_plans_applies_and_converges(workdir: Path) -> None:
    code, output = reconcile("plan", "--sandbox", "quickstart", "--detailed-exitcode")
    assert code == 2
    assert "+ property:department" in output
    assert "Plan: 28 to create, 0 to update, 0 to delete." in output

    code, output = reconcile("apply", "--sandbox", "quickstart", "--auto-approve")
    assert code == 0, output
    assert "Apply complete: 28 done, 0 failed, 0 skipped." in output

    code, output = reconcile("plan", "--sandbox", "quickstart", "--detailed-exitcode")
    assert code == 0
    assert "No changes." in output
    assert (workdir / ".reconcile" / "sandbox" / "mailjet.json").exists()


def test_json_plan_follows_the_contract(workdir: Path) -> None:
    result = runner.invoke(app, ["plan", "--sandbox", "quickstart", "--format", "json"])
    assert result.exit_code == 0
    plan = json.loads(result.stdout)  # progress goes to stderr
    assert plan["format_version"] == 1
    assert plan["provider"] == "mailjet"
    assert plan["summary"] == {"create": 28, "update": 0, "delete": 0}
    assert "personal data" in plan["notice"]
    sandbox_id = (workdir / ".reconcile" / "sandbox" / "mailjet.account").read_text().strip()
    assert plan["account"] == {"kind": "sandbox", "sandbox_id": sandbox_id}
    assert "sandbox-key" not in result.stdout  # the key itself is never printed
    first = plan["changes"][0]
    assert first == {
        "address": "property:department",
        "key": ["department"],
        "type": "property",
        "action": "create",
        "before": None,
        "after": {"type": "str", "namespace": "static"},
    }
    kinds = [change["type"] for change in plan["changes"]]
    assert kinds == sorted(kinds, key=["property", "list", "contact", "membership"].index)


def test_saved_plan_applies_once_then_is_stale(workdir: Path) -> None:
    code, _ = reconcile("plan", "--sandbox", "quickstart", "--out", "plan.json")
    assert code == 0

    code, output = reconcile("apply", "--sandbox", "--plan", "plan.json")
    assert code == 0, output
    assert "28 done" in output

    code, output = reconcile("apply", "--sandbox", "--plan", "plan.json")
    assert code == 1
    assert "live state moved since this plan was made; nothing was applied" in output
    assert "property:department was created by someone else since planning" in output


def test_saved_plan_is_refused_when_a_touched_contact_moved(workdir: Path) -> None:
    assert reconcile("apply", "--sandbox", "quickstart", "--auto-approve")[0] == 0
    manifest = workdir / "quickstart" / "audience.yaml"
    manifest.write_text(manifest.read_text().replace("Bob Okafor", "Robert Okafor"))
    assert reconcile("plan", "--sandbox", "quickstart", "--out", "plan.json")[0] == 0
    state_path = workdir / ".reconcile" / "sandbox" / "mailjet.json"
    state = state_path.read_text()
    state_path.write_text(state.replace('"Bob Okafor"', '"Bobby"'))  # someone edits in the UI

    code, output = reconcile("apply", "--sandbox", "--plan", "plan.json")

    assert code == 1
    assert "contact:bob@example.com was changed since planning" in output
    assert '"Bobby"' in state_path.read_text()  # nothing was written


def test_apply_without_terminal_or_auto_approve_refuses(workdir: Path) -> None:
    code, output = reconcile("apply", "--sandbox", "quickstart")
    assert code == 1
    assert "no terminal to confirm on" in output
    code, output = reconcile("plan", "--sandbox", "quickstart", "--detailed-exitcode")
    assert code == 2  # nothing was applied


def test_bad_manifest_exits_1_without_traceback(workdir: Path) -> None:
    write_manifest(workdir, "provider: mailjet\ncontacts:\n  - email: nope\n", "bad.yaml")
    code, output = reconcile("plan", "--sandbox", "bad.yaml")
    assert code == 1
    assert "bad.yaml:3: contacts[0].email: 'nope' is not a valid email address" in output
    assert "Traceback" not in output
    assert not (workdir / ".reconcile").exists()  # no provider was even opened


def test_validate_needs_no_credentials_or_network(
    workdir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("MAILJET_API_KEY", raising=False)
    monkeypatch.setenv("MAILJET_API_URL", "http://127.0.0.1:9")  # nothing listens there
    code, output = reconcile("validate", "quickstart")
    assert code == 0
    assert "10 contacts" in output


def test_missing_credentials_are_explained(workdir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("MAILJET_API_KEY", raising=False)
    monkeypatch.delenv("MAILJET_SECRET_KEY", raising=False)
    code, output = reconcile("plan", "quickstart")
    assert code == 1
    assert "set MAILJET_API_KEY and MAILJET_SECRET_KEY" in output


def test_real_http_with_env_credentials_never_shows_them(
    workdir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    emulator = create_mailjet_emulator()
    with served(emulator.app) as url:
        monkeypatch.setenv("MAILJET_API_URL", url)
        monkeypatch.setenv("MAILJET_API_KEY", emulator.settings.api_key)
        monkeypatch.setenv("MAILJET_SECRET_KEY", emulator.settings.secret_key)
        code, output = reconcile("apply", "quickstart", "--auto-approve")
        assert code == 0, output
        code, plan_output = reconcile("plan", "quickstart", "--out", "plan.json")
        assert code == 0
        monkeypatch.setenv("MAILJET_SECRET_KEY", "wrong-secret-value")
        code, failure = reconcile("plan", "quickstart")
    assert code == 1
    assert "answered 401" in failure
    assert "MAILJET_API_KEY" in failure
    everything = output + plan_output + failure + (workdir / "plan.json").read_text()
    for secret in (emulator.settings.secret_key, "wrong-secret-value"):
        assert secret not in everything


def test_unreachable_host_is_one_clear_line(workdir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MAILJET_API_URL", "http://127.0.0.1:9")
    monkeypatch.setenv("MAILJET_API_KEY", "k")
    monkeypatch.setenv("MAILJET_SECRET_KEY", "s")
    code, output = reconcile("plan", "quickstart")
    assert code == 1
    assert "could not reach Mailjet" in output
    assert "Traceback" not in output


def test_sandbox_command_serves_the_emulator_and_keeps_state(workdir: Path) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    state = workdir / "state.json"
    command = [sys.executable, "-m", "reconcile", "sandbox", "--port", str(port)]
    server = subprocess.Popen([*command, "--state", str(state)], stderr=subprocess.PIPE, text=True)
    try:
        assert server.stderr is not None
        banner = server.stderr.readline()
        assert f"mailjet sandbox on http://127.0.0.1:{port}" in banner
        answer = httpx.post(
            f"http://127.0.0.1:{port}/v3/REST/contactslist",
            json={"Name": "from-test"},
            auth=("sandbox-key", "sandbox-secret"),
        )
        assert answer.status_code == 201
    finally:
        server.send_signal(signal.SIGINT)
        server.wait(timeout=10)
        if server.stderr is not None:
            server.stderr.close()
    assert "from-test" in state.read_text()


def test_unsafe_plan_exits_1_after_showing_it_and_force_allows_it(workdir: Path) -> None:
    assert reconcile("apply", "--sandbox", "--auto-approve", "quickstart")[0] == 0
    manifest = workdir / "quickstart" / "audience.yaml"
    text = manifest.read_text(encoding="utf-8").replace("seats: 12", "seats: 13")
    text = text.replace("seats: 3}", "seats: 4}")
    manifest.write_text(text + "safety: {min_records: 1, max_update_share: 0.1}\n", "utf-8")
    code, output = reconcile("plan", "--sandbox", "quickstart", "--out", "plan.json")
    assert code == 1
    assert "contact:alice@example.com" in output  # shown for review first
    assert "2 updates of 10 live contact records" in output
    assert "--force" in output
    assert not (workdir / "plan.json").exists()
    assert reconcile("apply", "--sandbox", "--auto-approve", "quickstart")[0] == 1
    code, _ = reconcile("plan", "--sandbox", "quickstart", "--out", "plan.json", "--force")
    assert code == 0
    code, output = reconcile("apply", "--sandbox", "--plan", "plan.json")
    assert code == 1
    assert "safety thresholds" in output
    code, output = reconcile("apply", "--sandbox", "--plan", "plan.json", "--force")
    assert code == 0, output
    assert "2 done" in output


def test_redact_masks_printed_plans_but_not_the_saved_one(workdir: Path) -> None:
    for output_format in ("text", "markdown", "json"):
        code, output = reconcile(
            "plan", "--sandbox", "quickstart", "--redact", "--format", output_format
        )
        assert code == 0
        assert "alice@example.com" not in output, output_format
        assert "Alice Martin" not in output, output_format
        assert "Engineering" not in output, output_format
        assert "a***@example.com" in output, output_format
    reconcile("plan", "--sandbox", "quickstart", "--redact", "--out", "plan.json")
    assert "alice@example.com" in (workdir / "plan.json").read_text(encoding="utf-8")


def test_progress_is_a_log_line_without_terminal_and_quiet_silences_it(workdir: Path) -> None:
    code, output = reconcile("plan", "--sandbox", "quickstart")
    assert code == 0
    assert re.search(r"Reading the account: done, \d+ requests, 0 s waiting", output)
    code, output = reconcile("plan", "--sandbox", "quickstart", "--quiet")
    assert code == 0
    assert "Reading the account" not in output


def test_debug_trace_logs_requests_with_credentials_redacted(
    workdir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    emulator = create_mailjet_emulator()
    key, secret = emulator.settings.api_key, emulator.settings.secret_key
    with served(emulator.app) as url:
        monkeypatch.setenv("MAILJET_API_URL", url)
        monkeypatch.setenv("MAILJET_API_KEY", key)
        monkeypatch.setenv("MAILJET_SECRET_KEY", secret)
        code, output = reconcile("--debug", "plan", "quickstart", "--quiet")
    assert code == 0, output
    assert "-> GET" in output
    assert "<- 200 GET" in output
    assert "[redacted]" in output
    basic = base64.b64encode(f"{key}:{secret}".encode()).decode()
    for leaked in (secret, basic):
        assert leaked not in output
