"""Soak tests (`@pytest.mark.soak`: many crash seeds, many fault rounds) are deselected
unless asked for: `pytest --soak` runs them with everything else, `pytest -m soak` runs
only them (e.g. `pytest -n 2 -m soak tests/reliability`)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--soak", action="store_true", default=False, help="also run the long soak tests"
    )


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if config.getoption("--soak") or "soak" in (config.getoption("markexpr") or ""):
        return
    soak = [item for item in items if item.get_closest_marker("soak") is not None]
    if soak:
        config.hook.pytest_deselected(items=soak)
        items[:] = [item for item in items if item.get_closest_marker("soak") is None]


QUICKSTART = Path(__file__).parent.parent / "examples" / "quickstart"


@pytest.fixture
def workdir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A fresh current directory (the sandbox keeps its state under it), fast retries."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("RECONCILE_RETRY_WAIT", "0.01")
    return tmp_path


@pytest.fixture
def quickstart(workdir: Path) -> Path:
    """`workdir` holding a copy of examples/quickstart as ./quickstart."""
    shutil.copytree(QUICKSTART, workdir / "quickstart")
    return workdir
