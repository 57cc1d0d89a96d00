"""`reconcile show`, what apply says it did (text and JSON), and the command line's basics
(--version, completion, --debug anywhere, flags without types, a closed pipe), run as a
user runs them."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from reconcile.cli import app, version
from reconcile.model import ReadScope
from reconcile.plan import Plan
from reconcile.render.report import Applied, Outcome, text_lines
from tests.support import write_manifest

RECONCILE = Path(sys.executable).parent / "reconcile"
runner = CliRunner()


@pytest.fixture
def workdir(quickstart: Path) -> Path:
    return quickstart


def reconcile(*args: str) -> tuple[int, str, str]:
    result = runner.invoke(app, list(args))
    return result.exit_code, result.stdout, result.stderr


# ---- show ------------------------------------------------------------------------------


@pytest.mark.parametrize("output_format", ["text", "json", "markdown"])
def test_show_prints_a_saved_plan_exactly_as_plan_did(workdir: Path, output_format: str) -> None:
    code, planned, _ = reconcile(
        "plan", "--sandbox", "quickstart", "--out", "p.json", "--format", output_format
    )
    assert code == 0
    code, shown, _ = reconcile("show", "p.json", "--format", output_format)
    assert code == 0
    assert shown == planned


def test_show_redacts_and_reads_nothing_from_the_account(workdir: Path) -> None:
    reconcile("plan", "--sandbox", "quickstart", "--out", "p.json")
    shutil.rmtree(workdir / ".reconcile")  # no account at all: show is offline
    code, shown, _ = reconcile("show", "p.json", "--redact")
    assert code == 0
    assert "alice@example.com" not in shown
    assert "a***@example.com" in shown
    assert not (workdir / ".reconcile").exists()


def test_show_names_a_file_it_cannot_use(workdir: Path) -> None:
    code, _, err = reconcile("show", "missing.json")
    assert code == 1
    assert "missing.json: cannot read the plan" in err
    (workdir / "edited.json").write_text("{}", encoding="utf-8")
    code, _, err = reconcile("show", "edited.json")
    assert code == 1
    assert "edited.json: not a reconcile plan file" in err


# ---- what apply says -----------------------------------------------------------------------


def test_apply_lists_each_outcome_with_its_consent_effect(workdir: Path) -> None:
    reconcile("apply", "--sandbox", "quickstart", "--auto-approve")
    manifest = (workdir / "quickstart" / "audience.yaml").read_text(encoding="utf-8")
    edited = manifest.replace(
        "  - email: bob@example.com\n",
        "  - email: bob@example.com\n    excluded_from_campaigns: true\n",
    )
    (workdir / "quickstart" / "audience.yaml").write_text(edited, encoding="utf-8")
    code, out, _ = reconcile("apply", "--sandbox", "quickstart", "--auto-approve")
    assert code == 0, out
    assert "  done: contact:bob@example.com (exclude from campaigns)" in out
    assert "Apply complete: 1 done, 0 failed, 0 skipped." in out
    assert "Consent: 1 exclude from campaigns." in out
    assert " API calls in " in out


def test_apply_json_is_a_machine_readable_report(workdir: Path) -> None:
    code, out, err = reconcile(
        "apply", "--sandbox", "quickstart", "--auto-approve", "--format", "json", "--redact"
    )
    assert code == 0, err
    report = json.loads(out)  # stdout holds the report alone; the plan went to stderr
    assert "reconcile will make these changes" in err
    assert report["format_version"] == 1
    assert report["totals"] == {"done": 28, "failed": 0, "skipped": 0}
    assert report["api_calls"] > 0
    assert report["seconds"] >= 0
    first = report["outcomes"][0]
    assert set(first) == {"address", "action", "effect", "outcome", "message"}
    addresses = [o["address"] for o in report["outcomes"]]
    assert all("alice@" not in a for a in addresses)  # --redact covers the report
    assert any(a.startswith("contact:a***@") for a in addresses)


def test_apply_of_a_saved_plan_reports_too(workdir: Path) -> None:
    reconcile("plan", "--sandbox", "quickstart", "--out", "p.json")
    code, out, _ = reconcile("apply", "--sandbox", "--plan", "p.json", "--format", "json")
    assert code == 0
    assert json.loads(out)["totals"]["done"] == 28


def test_a_long_apply_report_shows_problems_first_and_says_how_many_it_shows() -> None:
    plan = Plan.build("mailjet", [], ReadScope())
    outcomes = [Outcome(f"contact:c{n}@example.com", "done", "") for n in range(300)]
    outcomes.append(Outcome("contact:bad@example.com", "failed", "POST /x answered 400: no"))
    lines = list(text_lines(Applied(plan, outcomes, False, 3, 1.0), lambda text: text))
    assert lines[0] == (True, "  failed: contact:bad@example.com: POST /x answered 400: no")
    assert lines[-1] == (False, "  ... and 101 more outcomes (all of them: apply --format json)")
    assert len(lines) == 201


# ---- basics ----------------------------------------------------------------------------


def test_version() -> None:
    code, out, _ = reconcile("--version")
    assert code == 0
    assert out == f"reconcile {version()}\n"
    assert version()[0].isdigit()


@pytest.mark.parametrize(
    ("shell", "marker"),
    [("bash", "complete -o"), ("zsh", "#compdef reconcile"), ("fish", "complete --command")],
)
def test_shell_completion_is_shown_for_the_shell_asked(shell: str, marker: str) -> None:
    code, out, _ = reconcile("completion", shell)
    assert code == 0
    assert marker in out


def test_shell_completion_installs_for_the_user(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HOME", str(tmp_path))
    code, _, err = reconcile("completion", "zsh", "--install")
    assert code == 0, err
    assert (tmp_path / ".zfunc" / "_reconcile").is_file()
    assert "fpath+=" in (tmp_path / ".zshrc").read_text()


def test_completion_completes_commands() -> None:
    done = subprocess.run(
        [str(RECONCILE)],
        env={
            **os.environ,
            "_RECONCILE_COMPLETE": "complete_bash",
            "COMP_WORDS": "reconcile pl",
            "COMP_CWORD": "1",
        },
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.stdout.split() == ["plan"]


def test_help_shows_no_type_after_a_flag() -> None:
    for command in ("plan", "apply", "export"):
        code, out, _ = reconcile(command, "--help")
        assert code == 0
        assert "<bool>" not in out
        assert "--sandbox" in out


def test_debug_is_accepted_after_the_command_and_never_wrapped(
    workdir: Path,
) -> None:
    done = subprocess.run(
        [str(RECONCILE), "plan", "--sandbox", "quickstart", "--debug", "-q"],
        capture_output=True,
        text=True,
        check=False,
        cwd=workdir,
    )
    assert done.returncode == 0, done.stderr
    requests = [line for line in done.stderr.splitlines() if " DEBUG -> GET " in line]
    assert requests, done.stderr
    assert all("authorization" in line for line in requests)  # one whole line each
    assert all(len(line) > 120 for line in requests)  # longer than any terminal: not wrapped


def test_a_closed_pipe_ends_quietly(workdir: Path) -> None:
    done = subprocess.run(
        f"'{RECONCILE}' plan --help | head -1",
        shell=True,
        capture_output=True,
        text=True,
        check=False,
        cwd=workdir,
    )
    assert "Error" not in done.stderr
    assert "Traceback" not in done.stderr


def test_a_manifest_that_names_a_missing_file_is_not_a_debug_flag(workdir: Path) -> None:
    write_manifest(workdir, "provider: mailjet\ncontacts: []\n", "--debug.yaml")
    code, out, _ = reconcile("validate", "--", "--debug.yaml")
    assert code == 0, out


def test_a_saved_plans_check_reads_are_counted_apart_from_the_estimate(workdir: Path) -> None:
    """The estimate is for the apply; re-reading the account a saved plan is for comes on
    top, and the report says so instead of seeming to miss the estimate."""
    code, out, _ = reconcile("plan", "--sandbox", "quickstart", "--out", "plan.json")
    assert code == 0, out
    estimate = json.loads((workdir / "plan.json").read_text("utf-8"))["estimate"]["api_calls"]
    code, out, err = reconcile("apply", "--sandbox", "--plan", "plan.json", "--format", "json")
    assert code == 0, err
    report = json.loads(out)
    assert report["api_calls"] == estimate
    assert report["check_calls"] > 0
    code, out, _ = reconcile("apply", "--sandbox", "quickstart", "--auto-approve")
    assert code == 0, out
    assert "checking the account" not in out  # planned and applied at once: none
