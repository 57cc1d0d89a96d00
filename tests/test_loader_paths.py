"""Which files PATHs name (issue #11 item 12): each file once however it is named, hidden
files and editor leftovers skipped in a directory, a note for subdirectories left unread."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from reconcile.cli import app
from reconcile.errors import ManifestError
from reconcile.manifest.loader import load_manifest, manifest_files

runner = CliRunner()
AUDIENCE = """provider: mailjet
properties:
  seats: {type: int}
lists:
  news: {}
contacts:
  - email: a@example.com
    lists: [news]
"""
# What an editor or a checkout leaves next to a manifest; each would be a duplicate
# definition (or not YAML at all) if it were read.
LEFTOVERS = (".hidden.yaml", ".#audience.yaml", "audience.yaml~", "#audience.yaml#")
LEFTOVER_DIRS = (".audience.yaml.swp", ".git")


@pytest.fixture
def directory(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.chdir(tmp_path)
    folder = tmp_path / "audience"
    folder.mkdir()
    (folder / "audience.yaml").write_text(AUDIENCE, encoding="utf-8")
    return folder


@pytest.mark.parametrize(
    "paths",
    [
        ["audience/audience.yaml", "audience/audience.yaml"],
        ["./audience/audience.yaml", "audience/audience.yaml"],
        ["audience", "audience/audience.yaml"],
        ["audience/audience.yaml", "audience"],
        ["audience", "audience/"],
        ["audience", "audience/../audience/audience.yaml"],
    ],
)
def test_the_same_file_named_twice_is_read_once(directory: Path, paths: list[str]) -> None:
    manifest = load_manifest([Path(path) for path in paths])
    assert len(manifest.files) == 1
    assert manifest.files[0].name == "audience.yaml"
    result = runner.invoke(app, ["validate", *paths])
    assert result.exit_code == 0, result.output
    assert "already defined" not in result.output
    assert "Valid: 1 file(s)" in result.stdout


def test_a_symlink_to_a_file_already_named_is_read_once(directory: Path) -> None:
    (directory.parent / "link.yaml").symlink_to(directory / "audience.yaml")
    manifest = load_manifest([directory, directory.parent / "link.yaml"])
    assert [path.name for path in manifest.files] == ["audience.yaml"]


def test_two_different_files_are_both_read(directory: Path) -> None:
    (directory / "more.yaml").write_text("lists:\n  news: {}\n", encoding="utf-8")
    with pytest.raises(ManifestError, match=r"already defined"):
        load_manifest([directory])


def test_a_directory_skips_hidden_files_and_editor_leftovers(directory: Path) -> None:
    for name in LEFTOVERS:
        (directory / name).write_text(AUDIENCE + "  - {unterminated\n", encoding="utf-8")
    (directory / ".audience.yaml.swp").write_bytes(b"\x00vim swap\x00")
    found = manifest_files([directory])
    assert found.files == [directory / "audience.yaml"]
    assert found.notes == []
    result = runner.invoke(app, ["validate", "audience"])
    assert result.exit_code == 0, result.output
    assert result.stderr == ""


def test_a_file_named_explicitly_is_read_whatever_its_name(directory: Path) -> None:
    hidden = directory / ".hidden.yaml"
    hidden.write_text(AUDIENCE, encoding="utf-8")
    assert manifest_files([hidden]).files == [hidden]


def test_unread_subdirectories_are_named_on_stderr(directory: Path) -> None:
    for name in ("people", "more"):
        (directory / name).mkdir()
        (directory / name / "x.yaml").write_text("lists:\n  other: {}\n", encoding="utf-8")
    (directory / "docs").mkdir()  # holds no manifest: nothing to say about it
    (directory / "docs" / "README.md").write_text("notes\n", encoding="utf-8")
    for name in LEFTOVER_DIRS:  # hidden directories are never mentioned
        (directory / name).mkdir()
        (directory / name / "x.yaml").write_text("lists: {}\n", encoding="utf-8")
    expected = "ignored subdirectories more/, people/ (only files directly in audience/ are read)"
    assert manifest_files([Path("audience")]).notes == [expected]
    result = runner.invoke(app, ["validate", "audience"])
    assert result.exit_code == 0, result.output
    assert result.stderr == f"note: {expected}\n"
    assert result.stdout.startswith("Valid: 1 file(s)")


def test_one_subdirectory_is_named_in_the_singular(directory: Path) -> None:
    (directory / "people").mkdir()
    (directory / "people" / "a.yml").write_text("lists: {}\n", encoding="utf-8")
    notes = load_manifest([directory]).notes
    assert notes == [f"ignored subdirectory people/ (only files directly in {directory}/ are read)"]


def test_plan_and_apply_print_the_note_too(directory: Path) -> None:
    (directory / "people").mkdir()
    (directory / "people" / "a.yaml").write_text("lists: {}\n", encoding="utf-8")
    note = "note: ignored subdirectory people/ (only files directly in audience/ are read)\n"
    for command in ("plan", "apply --auto-approve"):
        result = runner.invoke(app, [*command.split(), "--sandbox", "--quiet", "audience"])
        assert result.exit_code == 0, result.output
        assert result.stderr.startswith(note), result.stderr


def test_a_directory_of_subdirectories_says_they_are_not_read(directory: Path) -> None:
    top = directory.parent / "examples"
    (top / "quickstart").mkdir(parents=True)
    (top / "quickstart" / "audience.yaml").write_text(AUDIENCE, encoding="utf-8")
    with pytest.raises(ManifestError) as raised:
        load_manifest([top])
    assert str(raised.value).endswith(
        "directory holds no *.yaml or *.yml file (subdirectories are not read: quickstart/)"
    )


def test_an_unreadable_directory_is_one_clear_error(
    directory: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The system's refusal is faked: CI runs as root, which reads any directory.
    def refuse(self: Path) -> None:
        raise PermissionError(13, "Permission denied", str(self))

    monkeypatch.setattr(Path, "iterdir", refuse)
    with pytest.raises(ManifestError, match=r"cannot read directory: Permission denied"):
        load_manifest([directory])


def test_a_prune_policy_is_located_in_the_file_that_declares_it(directory: Path) -> None:
    (directory / "audience.yaml").write_text(
        AUDIENCE.replace("mailjet", "mailjawn"), encoding="utf-8"
    )
    policy = "# policies\nprune:\n  contacts: {action: ignore}\n  lists: delete\n"
    (directory / "policy.yaml").write_text(policy, encoding="utf-8")
    result = runner.invoke(app, ["validate", "audience"])
    assert result.exit_code == 1
    assert result.output.startswith(
        "Error: audience/policy.yaml:4: prune.lists: this policy needs 'delete a list'"
    ), result.output


@pytest.mark.parametrize(
    ("named", "problem"),
    [
        ("audience/missing.yaml", "no such file or directory"),
        ("empty", "directory holds no *.yaml or *.yml file"),
    ],
)
def test_a_path_that_holds_nothing_is_named_without_a_line(
    directory: Path, named: str, problem: str
) -> None:
    """A line number would send the reader into a file that is missing or a directory."""
    (directory.parent / "empty").mkdir()
    result = runner.invoke(app, ["validate", named])
    assert result.exit_code == 1
    assert result.stderr.strip() == f"Error: {named}: {problem}", result.stderr
