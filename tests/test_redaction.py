"""--redact covers everything printed: plans in every format, errors (manifest, usage,
internal), warnings and apply reports, on stdout and stderr. Nothing email-like survives
unmasked, and the names and values people's records hold are not shown."""

from __future__ import annotations

import json
import re
import shutil
import textwrap
from pathlib import Path

import pytest
from typer.testing import CliRunner, Result

from reconcile import engine
from reconcile.cli import app
from reconcile.providers.mailjet.emulator.app import create_mailjet_emulator
from reconcile.render.redact import redact_message, redact_text
from reconcile.sandbox.common import Fault
from tests.support import served

QUICKSTART = Path(__file__).parent.parent / "examples" / "quickstart"
runner = CliRunner()

UNUSUAL = [
    "john.o'brien+news@example.com",
    "ñandú@dominio.es",
    "user@bücher.de",
    "用户@例子.广告",
    "xy@xn--bcher-kva.de",
    '"john..doe"@example.com',
    '"john doe"@example.com',
    "a/b=c@example.com",
    "user@[192.0.2.1]",
]
GOOD = """\
    provider: mailjet
    properties:
      department: {type: str}
    lists:
      newsletter: {}
    contacts:
      - email: "john.o'brien+news@example.com"
        name: Alice Smith
        properties: {department: Secret Team}
        lists: [newsletter]
      - email: "ñandú@dominio.es"
        name: Ñandú Pérez
        lists: [newsletter]
      - email: "user@bücher.de"
"""
BAD = """\
    provider: mailjet
    properties:
      born: {type: datetime}
    contacts:
      - email: "bad email@example.com"
      - email: Alice Smith
      - email: '"john..doe"@example.com'
      - email: ok@example.com
        properties: {born: "1990-13-01"}
"""
PERSONAL = ["Alice Smith", "Secret Team", "Ñandú Pérez", "bad email", "john", "1990-13-01"]


def leaks(text: str) -> list[str]:
    """Every `...@` whose local part is not masked, and any personal value shown."""
    unmasked = [m.group() for m in re.finditer(r"\S*@\S*", text) if "***@" not in m.group()]
    return unmasked + [value for value in PERSONAL if value in text]


def reconcile(*args: str) -> Result:
    return runner.invoke(app, list(args))


def assert_clean(result: Result) -> None:
    for stream in (result.stdout, result.stderr):
        assert leaks(stream) == [], stream
    assert "Traceback" not in result.output


@pytest.fixture
def workdir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("RECONCILE_RETRY_WAIT", "0.01")
    shutil.copytree(QUICKSTART, tmp_path / "quickstart")
    for name, text in (("good", GOOD), ("bad", BAD)):
        (tmp_path / name).mkdir()
        (tmp_path / name / "audience.yaml").write_text(textwrap.dedent(text), encoding="utf-8")
    return tmp_path


@pytest.mark.parametrize("email", UNUSUAL)
def test_every_email_shape_is_masked_keeping_the_domain(email: str) -> None:
    local, _, domain = email.rpartition("@")
    for text in (email, f"contact:{email}", f"got '{email}'", f"<{email}>,"):
        masked = redact_text(text)
        assert "***@" + domain in masked
        assert local not in masked
        assert local.strip('"')[1:] not in masked


@pytest.mark.parametrize("email", UNUSUAL)
@pytest.mark.parametrize("ascii_only", [True, False])
def test_masked_json_stays_json(email: str, ascii_only: bool) -> None:
    document = json.dumps({"address": f"contact:{email}", "n": [email]}, ensure_ascii=ascii_only)
    masked = json.loads(redact_text(document))
    local, _, domain = email.rpartition("@")
    assert masked["address"].startswith("contact:")
    assert masked["n"][0].endswith(f"***@{domain}")
    assert local.strip('"')[1:] not in json.dumps(masked, ensure_ascii=False)


def test_messages_lose_values_but_keep_the_names_of_things() -> None:
    message = (
        "audience.yaml:3: contacts[0].name: got 'Alice Smith', Name='Bob'; "
        "list 'newsletter' and property 'seats' expected 'subscribed', got 12.5"
    )
    assert redact_message(message) == (
        "audience.yaml:3: contacts[0].name: got '***', Name='***'; "
        "list 'newsletter' and property 'seats' expected 'subscribed', got ***"
    )


def test_manifest_errors_are_redacted(workdir: Path) -> None:
    for args in (["validate", "bad"], ["plan", "--sandbox", "bad"], ["apply", "--sandbox", "bad"]):
        plain = reconcile(*args)
        assert plain.exit_code == 1
        assert "'bad email@example.com' is not a valid email address" in plain.stderr
        redacted = reconcile(*args, "--redact")
        assert redacted.exit_code == 1
        assert "bad/audience.yaml:5: contacts[0].email: '***' is not a valid" in redacted.stderr
        assert_clean(redacted)


def test_plans_and_apply_reports_are_redacted_in_every_form(workdir: Path) -> None:
    for output_format in ("text", "json", "markdown"):
        result = reconcile("plan", "--sandbox", "good", "--redact", "--format", output_format)
        assert result.exit_code == 0
        assert "***@bücher.de" in result.stdout
        assert_clean(result)
    result = reconcile("plan", "--sandbox", "good", "--redact", "--out", "plan.json")
    assert_clean(result)
    assert "Alice Smith" in (workdir / "plan.json").read_text(encoding="utf-8")  # kept whole
    applied = reconcile("apply", "--sandbox", "--plan", "plan.json", "--redact")
    assert applied.exit_code == 0, applied.output
    assert_clean(applied)
    (workdir / "good" / "audience.yaml").write_text(
        textwrap.dedent(GOOD).replace("Secret Team", "Secret Team 2"), encoding="utf-8"
    )
    assert reconcile("plan", "--sandbox", "good", "--out", "plan.json").exit_code == 0
    assert reconcile("apply", "--sandbox", "good", "--auto-approve", "--redact").exit_code == 0
    stale = reconcile("apply", "--sandbox", "--plan", "plan.json", "--redact")
    assert stale.exit_code == 1
    assert "contact:j***@example.com was changed" in stale.stderr  # which one, masked
    assert_clean(stale)


def test_failed_apply_outcomes_are_redacted(workdir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    emulator = create_mailjet_emulator()
    echo = {"ErrorMessage": "'Alice Smith' <john.o'brien+news@example.com> refused"}
    emulator.control.inject(
        Fault(status=400, method="POST", path="/v3/REST/contact", body=echo, count=100)
    )
    with served(emulator.app) as url:
        monkeypatch.setenv("MAILJET_API_URL", url)
        monkeypatch.setenv("MAILJET_API_KEY", emulator.settings.api_key)
        monkeypatch.setenv("MAILJET_SECRET_KEY", emulator.settings.secret_key)
        plain = reconcile("apply", "good", "--auto-approve")
        redacted = reconcile("apply", "good", "--auto-approve", "--redact")
    assert plain.exit_code == redacted.exit_code == 1
    assert "failed: contact:user@bücher.de: POST /v3/REST/contact answered 400" in plain.stderr
    assert "'Alice Smith' <john.o'brien+news@example.com> refused" in plain.stderr
    assert "failed: contact:u***@bücher.de: POST /v3/REST/contact answered 400" in redacted.stderr
    assert "'***' <j***@example.com> refused" in redacted.stderr
    assert_clean(redacted)


def test_usage_and_internal_errors_are_redacted(
    workdir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    usage = reconcile("plan", "good", "--redact", "--format", "alice@example.com")
    assert usage.exit_code == 1
    assert "a***@example.com" in usage.stderr
    assert_clean(usage)

    def broken(paths: object) -> None:  # stands in for a bug that echoes data
        raise RuntimeError("Alice Smith <alice@example.com>")

    monkeypatch.setattr(engine, "validate", broken)
    for debug in ([], ["--debug"]):
        result = reconcile(*debug, "validate", "good", "--redact")
        assert result.exit_code == 1
        assert "internal error (RuntimeError" in result.stderr
        assert "a***@example.com" in result.stderr
        assert "@example.com>" in result.stderr
        unmasked = [m for m in re.findall(r"\S*@\S*", result.output) if "***@" not in m]
        assert unmasked == []
