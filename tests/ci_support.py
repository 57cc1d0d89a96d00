"""Real plan files for the CI examples' tests: made by `reconcile plan --sandbox` on the
quickstart (all creates), then, once it is applied, by prune policies that erase or
unsubscribe the contacts the manifest no longer declares."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).parent.parent
QUICKSTART = ROOT / "examples" / "quickstart"
RECONCILE = Path(sys.executable).parent / "reconcile"
DROPPED = (  # two newsletter subscribers the pruning manifests no longer declare
    "  - email: bob@example.com\n"
    "    name: Bob Okafor\n"
    "    properties: {department: Sales, seats: 3}\n"
    "    lists: [newsletter]\n",
    "  - email: farid@example.com\n"
    "    name: Farid Haddad\n"
    "    properties: {department: Marketing, seats: 5}\n"
    "    lists: [newsletter]\n",
)


def reconcile(cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(RECONCILE), *args],
        cwd=cwd,
        env={**os.environ, "NO_COLOR": "1"},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def pruning_manifest(action: str) -> str:
    text = (QUICKSTART / "audience.yaml").read_text("utf-8")
    for block in DROPPED:
        assert block in text
        text = text.replace(block, "")
    return text + f"\nprune:\n  contacts: {{action: {action}}}\n"


def sandbox_plans(root: Path) -> dict[str, Path]:
    """`create`: the quickstart on an empty account; `erase` and `unsubscribe`: prunes of the
    two dropped contacts once the quickstart is applied."""
    work = root / "plans"
    shutil.copytree(QUICKSTART, work / "audience")
    plans = {name: root / f"{name}.json" for name in ("create", "erase", "unsubscribe")}
    made = reconcile(work, "plan", "--sandbox", "audience", "--out", str(plans["create"]))
    assert made.returncode == 0, made.stderr
    applied = reconcile(work, "apply", "--sandbox", "--auto-approve", "audience")
    assert applied.returncode == 0, applied.stderr
    for name, action in (("erase", "delete"), ("unsubscribe", "unsubscribe")):
        (work / "audience" / "audience.yaml").write_text(pruning_manifest(action), "utf-8")
        made = reconcile(
            work, "plan", "--sandbox", "audience", "--force", "--out", str(plans[name])
        )
        assert made.returncode == 0, made.stderr
    return plans
