"""Exit codes mean one thing and no error prints a traceback: usage errors, files the tool
can't read or write, bad settings, a corrupt sandbox state, and bugs each give one line
naming the file or variable, exit 1, and write nothing."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from importlib.metadata import entry_points
from pathlib import Path

import pytest
from typer.testing import CliRunner, Result

from reconcile import engine
from reconcile.cli import app
from reconcile.providers import registry

QUICKSTART = Path(__file__).parent.parent / "examples" / "quickstart"
STATE = Path(".reconcile") / "sandbox" / "mailjet.json"
runner = CliRunner()


@pytest.fixture
def workdir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.chdir(tmp_path)
    shutil.copytree(QUICKSTART, tmp_path / "quickstart")
    return tmp_path


def reconcile(*args: str) -> Result:
    return runner.invoke(app, list(args))


def assert_one_error_line(result: Result, *expected: str) -> str:
    """Exit 1, nothing on stdout, one `Error:` line on stderr holding each expected text."""
    assert result.exit_code == 1, result.output
    assert result.stdout == ""
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("Error: ")
    for text in expected:
        assert text in lines[0]
    return lines[0]


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["plan", "--bogus", "quickstart"], "No such option: --bogus"),
        (["plan", "--format", "xml", "quickstart"], "'xml' is not one of"),
        (["plan"], "Missing argument"),
        (["apply", "--plan"], "'--plan' requires an argument"),
        (["frobnicate"], "No such command"),
        (["export", "--contacts-per-file", "0", "-o", "out"], "--contacts-per-file"),
    ],
)
def test_usage_errors_exit_1_in_one_line(workdir: Path, args: list[str], expected: str) -> None:
    line = assert_one_error_line(reconcile(*args), expected)
    assert "Value error" not in line
    assert not (workdir / ".reconcile").exists()


def test_the_installed_command_and_python_m_exit_1_on_usage_errors(workdir: Path) -> None:
    script = Path(sys.executable).parent / "reconcile"
    commands = [[sys.executable, "-m", "reconcile"]]
    if script.exists():
        commands.append([str(script)])
    for command in commands:
        done = subprocess.run(
            [*command, "plan", "--format", "xml", "quickstart"],
            capture_output=True,
            text=True,
            check=False,
        )
        assert done.returncode == 1, done.stderr
        assert done.stderr.count("\n") == 1
        assert "Traceback" not in done.stderr


def test_help_is_success_and_no_command_is_an_error(workdir: Path) -> None:
    assert reconcile("plan", "--help").exit_code == 0
    bare = reconcile()
    assert bare.exit_code == 1
    assert "Commands" in bare.output


def test_plan_out_into_a_missing_directory_fails_before_reading(workdir: Path) -> None:
    result = reconcile("plan", "--sandbox", "quickstart", "--out", "missing/plan.json")
    assert_one_error_line(result, "missing/plan.json", "create it first")
    assert not (workdir / ".reconcile").exists()  # the account was not even opened


def test_plan_out_on_a_directory_names_it(workdir: Path) -> None:
    (workdir / "plans").mkdir()
    result = reconcile("plan", "--sandbox", "quickstart", "--out", "plans")
    assert_one_error_line(result, "plans is a directory", "give a file name")


@pytest.mark.skipif(not Path("/dev/full").exists(), reason="needs /dev/full")
def test_plan_out_write_failure_is_one_line_after_the_plan(workdir: Path) -> None:
    result = reconcile("plan", "--sandbox", "--quiet", "quickstart", "--out", "/dev/full")
    assert result.exit_code == 1
    assert "Plan: 28 to create" in result.stdout  # shown for review before saving
    assert result.stderr.splitlines() == [
        "Error: /dev/full: cannot write (No space left on device)"
    ]


def test_export_to_a_directory_without_contacts_per_file_is_one_line(workdir: Path) -> None:
    (workdir / "out").mkdir()
    result = reconcile("export", "--sandbox", "-o", "out/")
    line = assert_one_error_line(result, "out")
    assert "names a directory" in line.lower()
    assert list((workdir / "out").iterdir()) == []


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("RECONCILE_RETRY_ATTEMPTS", "abc"),
        ("RECONCILE_RETRY_ATTEMPTS", "0"),
        ("RECONCILE_READ_TIMEOUT", "-1"),
        ("RECONCILE_CONNECT_TIMEOUT", "soon"),
        ("RECONCILE_RETRY_WAIT_MAX", "-5"),
        ("RECONCILE_READ_TIMEOUT", "inf"),
        ("RECONCILE_RETRY_WAIT", "nan"),
    ],
)
def test_bad_setting_names_the_variable(
    workdir: Path, monkeypatch: pytest.MonkeyPatch, variable: str, value: str
) -> None:
    monkeypatch.setenv(variable, value)
    result = reconcile("plan", "--sandbox", "--quiet", "quickstart")
    line = assert_one_error_line(result, f"{variable}: ", "unset it for the default")
    assert value not in line.removeprefix(f"Error: {variable}")  # values may be secrets


@pytest.mark.parametrize(
    ("content", "problem"),
    [
        ("{bad", "is not valid JSON"),
        ("[1, 2]", "does not hold a JSON object"),
        ('{"contacts": [{"id": 1}]}', "is not a mailjet sandbox account"),
        ("\udcff", "is not valid JSON"),
    ],
)
def test_corrupt_sandbox_state_names_the_file_and_is_left_alone(
    workdir: Path, content: str, problem: str
) -> None:
    state = workdir / STATE
    state.parent.mkdir(parents=True)
    state.write_bytes(content.encode("utf-8", "surrogateescape"))
    before = state.read_bytes()
    for args in (["plan", "--sandbox", "quickstart"], ["export", "--sandbox"]):
        line = assert_one_error_line(reconcile(*args), str(STATE), problem)
        assert "delete it" in line
        assert state.read_bytes() == before


def test_sandbox_server_with_a_corrupt_state_file(workdir: Path) -> None:
    (workdir / "bad.json").write_text("{", encoding="utf-8")
    result = reconcile("sandbox", "--state", "bad.json", "--port", "1")
    assert_one_error_line(result, "bad.json: sandbox state is not valid JSON", "delete it")


def test_saved_plan_that_cannot_be_read(workdir: Path) -> None:
    (workdir / "plans").mkdir()
    cases = {
        "missing.json": "missing.json: cannot read the plan",
        "plans": "plans: cannot read the plan",
        "quickstart/audience.yaml": "not a reconcile plan file",
    }
    for plan_file, expected in cases.items():
        assert_one_error_line(reconcile("apply", "--sandbox", "--plan", plan_file), expected)
    assert not (workdir / ".reconcile").exists()


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="needs fifos")
def test_pipes_and_devices_are_refused_not_read(workdir: Path) -> None:
    os.mkfifo(workdir / "pipe.yaml")
    for args in (
        ["validate", "pipe.yaml"],
        ["plan", "--sandbox", "pipe.yaml"],
        ["apply", "--sandbox", "pipe.yaml"],
        ["apply", "--sandbox", "--plan", "pipe.yaml"],
        ["validate", os.devnull],
    ):
        assert_one_error_line(reconcile(*args), "is not a regular file or a directory")


def test_unreadable_manifest_in_a_directory_is_one_line(
    workdir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    secret = workdir / "quickstart" / "more.yaml"
    secret.write_text("lists: {}\n", encoding="utf-8")
    read_bytes = Path.read_bytes

    def refuse(path: Path) -> bytes:  # the system's refusal, faked: CI runs as root
        if path.name == "more.yaml":
            raise PermissionError(13, "Permission denied", str(path))
        return read_bytes(path)

    monkeypatch.setattr(Path, "read_bytes", refuse)
    result = reconcile("validate", "quickstart")
    assert_one_error_line(result, "more.yaml", "cannot read")


def test_an_unexpected_error_is_one_line_and_debug_shows_the_traceback(
    workdir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(paths: object) -> None:  # stands in for a bug: nothing real raises this
        raise RuntimeError("something impossible")

    monkeypatch.setattr(engine, "validate", broken)
    result = reconcile("validate", "quickstart")
    assert_one_error_line(
        result,
        "internal error (RuntimeError: something impossible)",
        "run with --debug for the traceback",
    )
    debug = reconcile("--debug", "validate", "quickstart")
    assert debug.exit_code == 1
    assert "Traceback (most recent call last)" in debug.stderr
    assert debug.stderr.splitlines()[-1].startswith("Error: internal error (RuntimeError")


def test_detailed_exitcode_2_still_means_changes(workdir: Path) -> None:
    assert reconcile("plan", "--sandbox", "--detailed-exitcode", "quickstart").exit_code == 2


def test_export_to_a_device_is_one_line(workdir: Path) -> None:
    result = reconcile("export", "--sandbox", "-o", os.devnull)
    assert_one_error_line(result, os.devnull, "is not a regular file")


def test_an_unknown_export_provider_is_one_line(workdir: Path) -> None:
    assert_one_error_line(
        reconcile("export", "--sandbox", "--provider", "foo"),
        "unknown provider 'foo'; installed providers: " + ", ".join(registry.names()),
    )


@pytest.mark.parametrize(
    ("variable", "value"),
    [("MAILJET_API_URL", "notaurl"), ("MAILJET_API_URL", "ftp://x"), ("MAILJAWN_API_URL", "")],
)
def test_an_api_url_that_can_never_work_is_refused_before_any_request(
    workdir: Path, monkeypatch: pytest.MonkeyPatch, variable: str, value: str
) -> None:
    monkeypatch.setenv(variable, value)
    for name in ("MAILJET_API_KEY", "MAILJET_SECRET_KEY", "MAILJAWN_API_KEY"):
        monkeypatch.setenv(name, "x")
    monkeypatch.setenv("MAILJAWN_PROJECT_ID", "p")
    provider = "mailjet" if variable.startswith("MAILJET") else "mailjawn"
    assert_one_error_line(
        reconcile("export", "--provider", provider),
        f"{variable}: must be an http:// or https:// URL with a host",
    )


def test_an_api_url_carrying_credentials_is_refused(
    workdir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MAILJET_API_URL", "http://key:secret-word@127.0.0.1:9")
    monkeypatch.setenv("MAILJET_API_KEY", "x")
    monkeypatch.setenv("MAILJET_SECRET_KEY", "y")
    line = assert_one_error_line(
        reconcile("export", "--provider", "mailjet"), "MAILJET_API_URL: must not carry credentials"
    )
    assert "secret-word" not in line


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (("export", "--sandbox", "--provider", ""), "unknown provider ''"),
        (("sandbox", "--provider", ""), "unknown provider ''"),
        (("sandbox", "--port", "99999"), "--port"),
    ],
)
def test_empty_provider_names_and_impossible_ports_are_refused(
    workdir: Path, args: tuple[str, ...], expected: str
) -> None:
    assert_one_error_line(reconcile(*args), expected)


def test_a_saved_plan_for_a_provider_no_longer_installed_names_the_plan_file(
    workdir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert reconcile("plan", "--sandbox", "--quiet", "--out", "p.json", "quickstart").exit_code == 0
    registered = entry_points(group=registry.ENTRY_POINT_GROUP)
    others = [entry for entry in registered if entry.name != "mailjet"]
    monkeypatch.setattr(registry, "entry_points", lambda group: others)
    registry.rescan()
    try:
        assert_one_error_line(
            reconcile("apply", "--sandbox", "--plan", "p.json"),
            "p.json: unknown provider 'mailjet'; installed providers: ",
        )
    finally:
        registry.rescan()


@pytest.mark.parametrize(
    ("variables", "expected"),
    [
        (
            {"MAILCHIMP_API_URL": "notaurl", "MAILCHIMP_API_KEY": "x-us1"},
            "MAILCHIMP_API_URL: must be an http:// or https:// URL with a host",
        ),
        ({"MAILCHIMP_API_KEY": "nodatacentre"}, "MAILCHIMP_API_KEY has no data-centre suffix"),
        (
            {"MAILCHIMP_API_URL": "http://127.0.0.1:9/3.0", "MAILCHIMP_API_KEY": "x-us1"},
            "MAILCHIMP_API_URL: give the base URL without /3.0",
        ),
        (
            {"MAILCHIMP_API_URL": " http://127.0.0.1:9", "MAILCHIMP_API_KEY": "x-us1"},
            "MAILCHIMP_API_URL: must not start or end with spaces",
        ),
        ({"MAILCHIMP_API_KEY": " \n"}, "Mailchimp credentials missing: set MAILCHIMP_API_KEY"),
        ({}, "Mailchimp credentials missing: set MAILCHIMP_API_KEY"),
    ],
)
def test_mailchimp_settings_that_can_never_work_are_one_line_before_any_request(
    workdir: Path, monkeypatch: pytest.MonkeyPatch, variables: dict[str, str], expected: str
) -> None:
    for name in ("MAILCHIMP_API_URL", "MAILCHIMP_API_KEY"):
        monkeypatch.delenv(name, raising=False)
    for name, value in variables.items():
        monkeypatch.setenv(name, value)
    line = assert_one_error_line(
        reconcile("export", "--provider", "mailchimp", "--option", "audience=a1b2c3d4e5"),
        expected,
    )
    assert "nodatacentre" not in line  # a key is a secret, even a broken one
