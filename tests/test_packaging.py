"""The published package: the sdist and the wheel `python -m build` makes from this tree.

Built offline (no build isolation: the build tools come from the test extras) from a copy
of the tree, so that setuptools' .egg-info never lands in the checkout. `.ci/wheel-smoke`
goes further in CI: it installs the wheel alone in a fresh virtual environment and runs
the quickstart with it.
"""

from __future__ import annotations

import configparser
import email.parser
import importlib.util
import os
import shutil
import subprocess
import sys
import tarfile
import tomllib
import zipfile
from dataclasses import dataclass
from importlib.metadata import version
from pathlib import Path

import pytest

ROOT = Path(__file__).parents[1]
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
NAME = PYPROJECT["project"]["name"]
PROVIDERS = {
    "mailjet": "reconcile.providers.mailjet.plugin:PLUGIN",
    "mailjawn": "reconcile.providers.mailjawn.plugin:PLUGIN",
    "mailchimp": "reconcile.providers.mailchimp.plugin:PLUGIN",
}
NOT_COPIED = shutil.ignore_patterns(
    ".git",
    ".venv",
    "*.egg-info",
    "build",
    "dist",
    ".reconcile",
    "__pycache__",
    ".mypy_cache",
    ".ruff_cache",
    ".pytest_cache",
    ".hypothesis",
)


@dataclass(frozen=True)
class Built:
    wheel: Path
    sdist: Path


def _build_tools_missing() -> str | None:
    if importlib.util.find_spec("build") is None:
        return "the `build` package is not installed"
    major = int(version("setuptools").split(".")[0])
    if major < 77:
        return f"setuptools {version('setuptools')} is older than the 77 pyproject.toml needs"
    return None


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Built:
    missing = _build_tools_missing()
    if missing is not None:  # never skipped: a test that can't run fails, saying why
        pytest.fail(f"{missing}: pip install -e '.[test]' brings the build tools")
    work = tmp_path_factory.mktemp("packaging")
    source = work / "src"
    shutil.copytree(ROOT, source, ignore=NOT_COPIED)
    out = work / "dist"
    env = {key: value for key, value in os.environ.items() if key != "PYTHONPATH"}
    # No --sdist/--wheel: build makes the sdist, then the wheel from the sdist, so the
    # wheel also proves the sdist holds everything the build needs.
    result = subprocess.run(
        [sys.executable, "-m", "build", "--no-isolation", "--outdir", str(out), str(source)],
        cwd=work,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-4000:]
    wheels = list(out.glob("*.whl"))
    sdists = list(out.glob("*.tar.gz"))
    assert len(wheels) == 1, wheels
    assert len(sdists) == 1, sdists
    return Built(wheels[0], sdists[0])


def _package_files() -> set[str]:
    """Every file of the import package in the tree (as git tracks it, when it can)."""
    listed = subprocess.run(
        ["git", "ls-files", "--", "reconcile"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
    )
    if listed.returncode == 0 and listed.stdout.strip():
        return {line for line in listed.stdout.splitlines() if line}
    return {
        path.relative_to(ROOT).as_posix()
        for path in (ROOT / "reconcile").rglob("*")
        if path.is_file() and "__pycache__" not in path.parts
    }


def _wheel_text(wheel: zipfile.ZipFile, suffix: str) -> str:
    [name] = [name for name in wheel.namelist() if name.endswith(".dist-info/" + suffix)]
    return wheel.read(name).decode("utf-8")


def test_the_distribution_is_not_the_package_index_reconcile() -> None:
    # `reconcile` on the package index is an unrelated project (0.0.5, 2021).
    assert NAME == "reconcile-audience"
    assert PYPROJECT["project"]["scripts"] == {"reconcile": "reconcile.cli:app"}
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    assert f"pipx install {NAME}" in readme
    assert f"pip install {NAME}" in readme
    plugin = tomllib.loads(
        (ROOT / "examples" / "provider-plugin" / "pyproject.toml").read_text(encoding="utf-8")
    )
    assert f"{NAME}>=0.1" in plugin["project"]["dependencies"]


def test_the_wheel_holds_the_package_its_command_and_providers(built: Built) -> None:
    with zipfile.ZipFile(built.wheel) as wheel:
        names = set(wheel.namelist())
        entry_points = configparser.ConfigParser(delimiters=("=",))
        entry_points.optionxform = str  # type: ignore[assignment,method-assign]
        entry_points.read_string(_wheel_text(wheel, "entry_points.txt"))
        metadata = email.parser.Parser().parsestr(_wheel_text(wheel, "METADATA"))
    assert built.wheel.name.startswith("reconcile_audience-")
    assert metadata["Name"] == NAME
    assert metadata["Version"] == PYPROJECT["project"]["version"]
    assert metadata["Requires-Python"] == ">=3.11"
    assert dict(entry_points["console_scripts"]) == {"reconcile": "reconcile.cli:app"}
    assert dict(entry_points["reconcile.providers"]) == PROVIDERS

    assert "reconcile/py.typed" in names
    tops = {name.split("/")[0] for name in names}
    assert tops == {"reconcile", f"reconcile_audience-{metadata['Version']}.dist-info"}
    assert not {name for name in names if "__pycache__" in name or name.endswith(".pyc")}
    # Every file of the package (modules, py.typed, any data the code reads) is in it.
    missing = _package_files() - names
    assert not missing, f"not in the wheel: {sorted(missing)}"


def test_the_sdist_builds_the_wheel_and_holds_no_tests(built: Built) -> None:
    with tarfile.open(built.sdist) as sdist:
        top = built.sdist.name.removesuffix(".tar.gz")
        names = {
            member.name.removeprefix(top + "/") for member in sdist.getmembers() if member.isfile()
        }
    assert {"pyproject.toml", "README.md", "PKG-INFO", "reconcile/py.typed"} <= names
    missing = _package_files() - names
    assert not missing, f"not in the sdist: {sorted(missing)}"
    assert not {name for name in names if name.startswith(("tests/", "bench/", "examples/"))}
