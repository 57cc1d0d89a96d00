"""Provider capabilities refused offline; export then plan shows no changes."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from typer.testing import CliRunner

from reconcile.cli import app
from tests.support import write_manifest

EXAMPLES = Path(__file__).parent.parent / "examples"
runner = CliRunner()


def reconcile(*args: str) -> tuple[int, str]:
    result = runner.invoke(app, list(args))
    return result.exit_code, result.output


MAILJAWN_ASKING_TOO_MUCH = """\
provider: mailjawn
lists:
  news: {members: exact}
  Big News: {}
contacts:
  - email: a@example.com
    lists: {news: unsubscribed}
"""


@pytest.mark.parametrize("command", ["validate", "plan"])
def test_mailjawn_limitations_are_refused_before_any_request(workdir: Path, command: str) -> None:
    write_manifest(workdir, MAILJAWN_ASKING_TOO_MUCH, "jawn.yaml")
    args = [command, "jawn.yaml"] + (["--sandbox"] if command == "plan" else [])

    code, output = reconcile(*args)

    assert code == 1
    assert "jawn.yaml:3: lists.news.members: members: exact needs removing list members" in output
    assert "jawn.yaml:7: contacts[0].lists.news: an unsubscribed membership needs" in output
    assert "jawn.yaml:4: lists.Big News:" in output
    assert not (workdir / ".reconcile").exists()  # no provider was opened


def test_the_same_manifest_is_fine_for_mailjet(workdir: Path) -> None:
    text = MAILJAWN_ASKING_TOO_MUCH.replace("mailjawn", "mailjet")
    write_manifest(workdir, text, "jet.yaml")
    code, output = reconcile("validate", "jet.yaml")
    assert code == 0, output


EXPORT_OPTIONS = {"mailchimp": ["--option", "audience=Acme Newsletter"]}


@pytest.mark.parametrize("example", ["quickstart", "mailjawn", "mailchimp"])
def test_export_then_plan_shows_no_changes(workdir: Path, example: str) -> None:
    shutil.copytree(EXAMPLES / example, workdir / example)
    provider = "mailjet" if example == "quickstart" else example
    assert reconcile("apply", "--sandbox", "--auto-approve", example)[0] == 0

    code, output = reconcile(
        "export",
        "--provider",
        provider,
        *EXPORT_OPTIONS.get(provider, []),
        "--sandbox",
        "-o",
        "live.yaml",
    )
    assert code == 0, output
    exported = (workdir / "live.yaml").read_text()
    assert exported.startswith("# yaml-language-server: $schema=")

    code, output = reconcile("plan", "--sandbox", "--detailed-exitcode", "live.yaml")
    assert code == 0, output
    assert "No changes." in output


def test_mailjawn_example_converges(workdir: Path) -> None:
    shutil.copytree(EXAMPLES / "mailjawn", workdir / "mailjawn")
    code, output = reconcile("apply", "--sandbox", "--auto-approve", "mailjawn")
    assert code == 0, output
    assert "Apply complete: 10 done, 0 failed, 0 skipped." in output
    code, output = reconcile("plan", "--sandbox", "--detailed-exitcode", "mailjawn")
    assert code == 0, output


def test_export_splits_contacts_into_files_that_plan_to_no_changes(workdir: Path) -> None:
    shutil.copytree(EXAMPLES / "quickstart", workdir / "quickstart")
    assert reconcile("apply", "--sandbox", "--auto-approve", "quickstart")[0] == 0
    code, output = reconcile("export", "--sandbox", "-o", "split", "--contacts-per-file", "4")
    assert code == 0, output
    names = sorted(p.name for p in (workdir / "split").iterdir())
    assert names == [
        "audience.yaml",
        "contacts-0001.yaml",
        "contacts-0002.yaml",
        "contacts-0003.yaml",
    ]
    assert all(
        (workdir / "split" / n).read_text().startswith("# yaml-language-server") for n in names
    )
    code, output = reconcile("plan", "--sandbox", "--detailed-exitcode", "split")
    assert code == 0, output


def test_re_export_updates_a_manifest_in_place_keeping_comments_and_order(
    workdir: Path,
) -> None:
    shutil.copytree(EXAMPLES / "quickstart", workdir / "quickstart")
    assert reconcile("apply", "--sandbox", "--auto-approve", "quickstart")[0] == 0
    original = (workdir / "quickstart" / "audience.yaml").read_text(encoding="utf-8")
    shutil.copy(workdir / "quickstart" / "audience.yaml", workdir / "mine.yaml")

    assert reconcile("export", "--sandbox", "-o", "mine.yaml")[0] == 0
    assert (workdir / "mine.yaml").read_text(encoding="utf-8") == original  # nothing moved

    drift = original.replace("name: Alice Martin", "name: Alice Martin-Diaz")
    drift += "  - email: zed@example.com\n    name: Zed\n    lists: [newsletter]\n"
    (workdir / "quickstart" / "audience.yaml").write_text(drift, encoding="utf-8")
    assert reconcile("apply", "--sandbox", "--auto-approve", "quickstart")[0] == 0

    assert reconcile("export", "--sandbox", "-o", "mine.yaml")[0] == 0
    updated = (workdir / "mine.yaml").read_text(encoding="utf-8")
    assert "beta-testers: {members: exact}  # exact: members not declared here" in updated
    assert "name: Alice Martin-Diaz" in updated
    assert updated.index("jonas@example.com") < updated.index("zed@example.com")
    assert updated.count("yaml-language-server") == 1
    code, output = reconcile("plan", "--sandbox", "--detailed-exitcode", "mine.yaml")
    assert code == 0, output


MAILCHIMP_ASKING_TOO_MUCH = """\
provider: {type: mailchimp, audience: Acme Newsletter}
properties:
  vip: {type: bool}
  LONG_TAG_NAME: {type: str}
lists:
  news: {members: exact}
  News: {}
contacts:
  - email: a@example.com
    name: Ann
    lists: {news: unsubscribed}
  - email: b@acme-widgets.io
    properties: {LONG_TAG_NAME: ""}
prune:
  members: unsubscribe
  contacts: {action: unsubscribe}
"""


@pytest.mark.parametrize("command", ["validate", "plan"])
def test_mailchimp_limitations_are_refused_before_any_request(workdir: Path, command: str) -> None:
    """No name field, no bool, merge tags of A-Z0-9_ up to 10 characters, tags without
    case, no list-level unsubscribe (no unsubscribed membership, no unsubscribe prunes),
    no reserved domains, no empty text."""
    write_manifest(workdir, MAILCHIMP_ASKING_TOO_MUCH, "chimp.yaml")
    args = [command, "chimp.yaml"] + (["--sandbox"] if command == "plan" else [])

    code, output = reconcile(*args)

    assert code == 1
    for line, problem in [
        (3, "properties.vip: is not a Mailchimp merge tag"),
        (3, "properties.vip: is bool"),
        (4, "properties.LONG_TAG_NAME: is longer than 10 characters"),
        (7, "lists.News: differs from list 'news' only in case"),
        (10, "contacts[0].name: Mailchimp has no name field"),
        (9, "contacts[0].email: 'a@example.com': Mailchimp refuses addresses"),
        (11, "contacts[0].lists.news: an unsubscribed membership needs a list-level"),
        (13, "contacts[1].properties.LONG_TAG_NAME: Mailchimp keeps an empty value"),
    ]:
        assert f"chimp.yaml:{line}: {problem}" in output, output
    assert not (workdir / ".reconcile").exists()  # no provider was opened


def test_mailchimp_unsubscribe_prunes_are_refused(workdir: Path) -> None:
    text = MAILCHIMP_ASKING_TOO_MUCH.split("properties:", maxsplit=1)[0] + (
        "lists:\n  news: {members: exact}\n"
        "contacts:\n  - {email: b@acme-widgets.io, lists: [news]}\n"
        "prune:\n  members: unsubscribe\n  contacts: {action: unsubscribe}\n"
    )
    write_manifest(workdir, text, "chimp.yaml")
    code, output = reconcile("validate", "chimp.yaml")
    assert code == 1
    assert "chimp.yaml:7: prune.members: this policy needs 'unsubscribe from one list'" in output
    assert "chimp.yaml:8: prune.contacts.action: this policy needs 'unsubscribe" in output


def test_mailchimp_example_converges(
    workdir: Path,
) -> None:
    shutil.copytree(EXAMPLES / "mailchimp", workdir / "mailchimp")
    code, output = reconcile("apply", "--sandbox", "--auto-approve", "mailchimp")
    assert code == 0, output
    assert "0 failed, 0 skipped." in output
    code, output = reconcile("plan", "--sandbox", "--detailed-exitcode", "mailchimp")
    assert code == 0, output


@pytest.mark.parametrize("address", ["a@127.0.0.1", "a@host.123"])
def test_mailchimp_refuses_an_address_at_an_ip_before_any_request(
    workdir: Path, address: str
) -> None:
    write_manifest(
        workdir,
        f'provider: {{type: mailchimp, audience: x}}\ncontacts:\n  - email: "{address}"\n',
        "chimp.yaml",
    )
    code, output = reconcile("validate", "chimp.yaml")
    assert code == 1
    assert f"chimp.yaml:3: contacts[0].email: '{address}': Mailchimp takes addresses at a " in (
        output
    )


@pytest.mark.parametrize(
    ("address", "advice"),
    [
        ("zoë@example.com", "the part before the @ has no ASCII form"),
        ("a@bücher.example", "xn-- (punycode) form (xn--bcher-kva.example)"),
    ],
)
def test_mailjawn_says_which_part_of_a_non_ascii_address_is_the_problem(
    workdir: Path, address: str, advice: str
) -> None:
    write_manifest(workdir, f'provider: mailjawn\ncontacts:\n  - email: "{address}"\n', "jawn.yaml")
    code, output = reconcile("validate", "jawn.yaml")
    assert code == 1
    assert f"jawn.yaml:3: contacts[0].email: '{address}': MailJawn's API document" in output
    assert advice in output
