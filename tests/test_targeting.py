"""`--target` / `--exclude` on plan and apply, through the command line against the sandbox:
what is picked, what comes along, what a saved partial plan records."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from reconcile.cli import app

runner = CliRunner()


@pytest.fixture
def workdir(quickstart: Path) -> Path:
    return quickstart


def planned(*args: str) -> dict[str, object]:
    result = runner.invoke(app, ["plan", "--sandbox", "quickstart", "--format", "json", *args])
    assert result.exit_code == 0, result.output
    loaded: dict[str, object] = json.loads(result.stdout)
    return loaded


def addresses(plan: dict[str, object]) -> list[str]:
    changes = plan["changes"]
    assert isinstance(changes, list)
    return [change["address"] for change in changes]


def test_a_targeted_membership_brings_its_list_and_contact(workdir: Path) -> None:
    plan = planned("--target", "membership:beta-testers/alice@*")
    assert sorted(addresses(plan)) == [
        "contact:alice@example.com",
        "list:beta-testers",
        "membership:beta-testers/alice@example.com",
        "property:department",  # alice's creation writes these
        "property:seats",
    ]
    assert plan["partial"] == {"target": ["membership:beta-testers/alice@*"], "exclude": []}


def test_exclude_leaves_out_and_says_what_could_not_come(workdir: Path) -> None:
    plan = planned("--target", "membership:*", "--exclude", "list:beta-testers")
    assert not any(a.startswith("membership:beta-testers/") for a in addresses(plan))
    assert any(a.startswith("membership:newsletter/") for a in addresses(plan))
    warnings = plan["warnings"]
    assert isinstance(warnings, list)
    assert any("needs list:beta-testers, which --exclude leaves out" in w for w in warnings)


def test_a_pattern_that_matches_nothing_is_warned_about(workdir: Path) -> None:
    plan = planned("--target", "lsit:news")
    assert addresses(plan) == []
    assert plan["warnings"] == [
        "lsit:news: matches no change of this plan (a typo targets nothing)"
    ]


def test_patterns_match_without_case_and_the_text_plan_says_it_is_partial(
    workdir: Path,
) -> None:
    result = runner.invoke(
        app, ["plan", "--sandbox", "quickstart", "--target", "CONTACT:DAN@*", "--detailed-exitcode"]
    )
    assert result.exit_code == 2
    assert "Partial plan (--target CONTACT:DAN@*)" in result.output
    assert "+ contact:dan@example.com" in result.output
    assert "+ contact:alice@example.com" not in result.output


def test_a_saved_partial_plan_applies_only_its_part_and_a_whole_plan_finishes(
    workdir: Path,
) -> None:
    saved = runner.invoke(
        app, ["plan", "--sandbox", "quickstart", "--target", "list:*", "--out", "p.json"]
    )
    assert saved.exit_code == 0, saved.output
    assert json.loads((workdir / "p.json").read_text())["partial"]["target"] == ["list:*"]
    applied = runner.invoke(app, ["apply", "--sandbox", "--plan", "p.json"])
    assert applied.exit_code == 0, applied.output
    assert "Apply complete: 2 done" in applied.output
    refused = runner.invoke(app, ["apply", "--sandbox", "--plan", "p.json", "--target", "x"])
    assert refused.exit_code == 1
    assert "give them to plan" in refused.output
    rest = runner.invoke(app, ["apply", "--sandbox", "quickstart", "--auto-approve"])
    assert rest.exit_code == 0, rest.output
    assert "Apply complete: 26 done" in rest.output
    again = runner.invoke(app, ["plan", "--sandbox", "quickstart", "--detailed-exitcode"])
    assert again.exit_code == 0


def test_brackets_in_a_pattern_are_the_list_name_not_a_character_class(workdir: Path) -> None:
    text = (workdir / "quickstart" / "audience.yaml").read_text(encoding="utf-8")
    (workdir / "quickstart" / "audience.yaml").write_text(
        text.replace("lists:\n", 'lists:\n  "Sales [EU]": {}\n  "Sales E": {}\n', 1),
        encoding="utf-8",
    )
    plan = planned("--target", "list:Sales [EU]")
    assert addresses(plan) == ["list:Sales [EU]"]


def test_a_partial_plan_with_nothing_to_do_never_says_the_account_matches(
    workdir: Path,
) -> None:
    result = runner.invoke(app, ["plan", "--sandbox", "quickstart", "--target", "lsit:news*"])
    assert result.exit_code == 0
    assert "No changes match the targets" in result.output
    assert "matches the manifest" not in result.output
