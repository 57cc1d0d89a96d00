#!/usr/bin/env python3
"""An example policy for pull-request plans: fail a plan that erases anyone, or that takes
more than N people out of mailings (unsubscribe, remove from list, exclude from campaigns,
archive).

It reads only the saved plan JSON (`reconcile plan --out plan.json`; the format is
schemas/plan.schema.json), needs nothing but Python 3.9+, and imports nothing from
reconcile, so it runs wherever the plan file is. Copy it, then edit the rules below.

    python3 policy_check.py plan.json [--max-opt-outs 50] [--allow-erase]

Exit 0: the plan passes. 1: it breaks a rule (each one is printed). 2: the file is not a
plan this script understands (a format_version other than 1 included).
Addresses are printed masked (a***@example.com): CI logs are often public.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections import Counter
from typing import Any

FORMAT_VERSION = 1  # the plan format these rules were written for
ERASE = "erase (irreversible)"
OPT_OUTS = ("unsubscribe", "remove from list", "exclude from campaigns", "archive")
# Deleting a list erases its members' history (unsubscribes included); deleting a property
# erases every value of it: as final as an erasure, so allowed only with --allow-erase.
DELETIONS = ("delete list", "delete property (every value of it is lost)")
SHOWN = 10


def shown(change: dict[str, Any]) -> str:
    """`membership:news/a***@example.com`: the change's key, its email masked."""
    key = [str(part) for part in change.get("key", [])]
    if key and change.get("type") in ("contact", "membership"):
        local, _, domain = key[-1].rpartition("@")
        key[-1] = f"{local[:1]}***@{domain}"
    return f"{change.get('type')}:{'/'.join(key)}"


def load(path: str) -> dict[str, Any]:
    try:
        with open(path, encoding="utf-8") as handle:
            data = json.load(handle)
    except (OSError, ValueError) as error:
        raise SystemExit(f"policy check: cannot read {path}: {error}") from None
    if not isinstance(data, dict) or not isinstance(data.get("changes"), list):
        raise SystemExit(f"policy check: {path} is not a reconcile plan file")
    if data.get("format_version") != FORMAT_VERSION:
        raise SystemExit(
            f"policy check: {path} has format_version {data.get('format_version')!r}; "
            f"these rules read format {FORMAT_VERSION}. Review them against the new format."
        )
    return data


def violations(plan: dict[str, Any], max_opt_outs: int, allow_erase: bool) -> list[str]:
    changes = plan["changes"]
    found: list[str] = []
    erased = [c for c in changes if c.get("irreversible") or c.get("effect") == ERASE]
    if erased and not allow_erase:
        names = ", ".join(shown(c) for c in erased[:SHOWN])
        more = f" and {len(erased) - SHOWN} more" if len(erased) > SHOWN else ""
        found.append(f"the plan erases {len(erased)} contact(s): {names}{more}")
    deleted = [c for c in changes if c.get("effect") in DELETIONS]
    if deleted and not allow_erase:
        names = ", ".join(shown(c) for c in deleted[:SHOWN])
        found.append(f"the plan deletes {len(deleted)} list(s) or property(ies): {names}")
    opted_out = [c for c in changes if c.get("effect") in OPT_OUTS]
    if len(opted_out) > max_opt_outs:
        counts = Counter(c["effect"] for c in opted_out)
        what = ", ".join(f"{n} {effect}" for effect, n in sorted(counts.items()))
        found.append(
            f"the plan takes {len(opted_out)} people out of mailings ({what}), "
            f"more than the {max_opt_outs} allowed"
        )
    return found


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("plan", help="the plan file (reconcile plan --out)")
    parser.add_argument(
        "--max-opt-outs",
        type=int,
        default=50,
        help="most unsubscribes + removals + exclusions + archivings allowed (default 50)",
    )
    parser.add_argument(
        "--allow-erase",
        action="store_true",
        help="allow erasures and deletions of lists and properties",
    )
    args = parser.parse_args(argv)
    try:
        plan = load(args.plan)
    except SystemExit as error:
        print(error, file=sys.stderr)
        return 2
    found = violations(plan, args.max_opt_outs, args.allow_erase)
    annotate = os.environ.get("GITHUB_ACTIONS") == "true"
    for reason in found:
        print(f"::error title=Plan policy::{reason}" if annotate else f"policy: {reason}")
    if found:
        print(
            f"policy check failed: {len(found)} rule(s) broken. Change the manifests, or "
            "have the rule changed, then push again.",
            file=sys.stderr,
        )
        return 1
    summary = plan.get("summary", {})
    print(f"policy check passed ({sum(summary.values())} change(s)).")
    return 0


if __name__ == "__main__":
    sys.exit(main())
