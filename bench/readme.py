"""Regenerate the README's benchmark tables from one run of every benchmark.

    python -m bench.readme [--only NAME ...]

Each benchmark runs as its own command (printed, with its output); their JSON results
land in bench/results/, and the tables between `<!-- bench:NAME -->` and
`<!-- /bench:NAME -->` in README.md are replaced, stamped with the date, the commit
and the commands. Real time wherever the size allows; the few runs that need a time
scale say so in their rows (their ratios are then upper bounds: this machine's own CPU
counts that many times over).
"""

from __future__ import annotations

import argparse
import datetime
import json
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.run import RESULTS, markdown_tables
from bench.run_mailchimp import table as mailchimp_table

README = Path(__file__).parent.parent / "README.md"


@dataclass(frozen=True)
class Run:
    section: str
    save: str
    command: tuple[str, ...]

    @property
    def argv(self) -> list[str]:
        return [*self.command, "--save", self.save]


RUNS = (
    Run("mailjet", "mailjet", ("bench.run", "--sizes", "1000", "10000", "100000")),
    Run(
        "mailjet",
        "mailjet-1m-csv",
        ("bench.run", "--sizes", "1000000", "--time-scale", "20", "--rates", "200"),
    ),
    Run(
        "mailjet",
        "mailjet-1m-yaml",
        (
            "bench.run",
            "--sizes",
            "1000000",
            "--time-scale",
            "20",
            "--rates",
            "200",
            "--contacts-in",
            "yaml",
        ),
    ),
    Run("mailjawn", "mailjawn", ("bench.run_mailjawn", "--sizes", "1000", "10000", "100000")),
    Run("mailchimp", "mailchimp", ("bench.run_mailchimp", "--sizes", "1000", "10000", "100000")),
    Run("targets", "mailjet-renames", ("bench.run_renames", "--jobs-ignore-fields", "no")),
    Run("targets", "mailjawn_paced", ("bench.run_mailjawn", "--paced-renames")),
)


def run(one: Run) -> None:
    command = [sys.executable, "-m", *one.argv]
    print(f"\n$ python -m {' '.join(one.argv)}", flush=True)
    subprocess.run(command, check=True)


def saved(name: str) -> Any:
    path = RESULTS / f"{name}.json"
    return json.loads(path.read_text("utf-8")) if path.exists() else None


def target_rows() -> list[tuple[str, str, str]]:
    """(target, measured, met) for each of issue #15's targets, from the saved results."""
    rows: list[tuple[str, str, str]] = []
    runs = {name: saved(name) for name in ("mailjet", "mailjawn")}
    for name, limit in (("mailjet", "200, 300 and 1,200"), ("mailjawn", "100")):
        plans = [
            (r["size"], plan)
            for r in (runs[name] or {}).get("results", [])
            if r["scale"] == 1  # a scaled run's ratio is only an upper bound
            for plan in r["plans"]
        ]
        if plans:
            size, worst = max(plans, key=lambda item: item[1]["ratio"])
            hits = sum(plan["rate_limited"] for _, plan in plans)
            shown = {"mailjet": "Mailjet", "mailjawn": "MailJawn"}[name]
            target = f"{shown} plan wall <= 1.2x its bound at {limit} reads/min"
            where = f"{size:,} contacts, {worst['per_minute']:,}/min"
            measured = f"worst x{worst['ratio']:.2f} ({where}); {hits} 429s"
            rows.append((target, measured, _met(worst["ratio"] <= 1.2 and hits == 0)))
    paced = saved("mailjawn_paced")
    if paced:
        rows.append(
            (
                "MailJawn 40 renames at 10 writes / 6 s within 1.5x of 18 s, no 429",
                f"{paced['wall']:.1f} s (x{paced['ratio']:.2f}); {paced['server_429s']} 429s",
                _met(paced["ratio"] <= 1.5 and paced["server_429s"] == 0),
            )
        )
    for r in (runs["mailjawn"] or {}).get("results", []):
        if r["size"] != 100_000:
            continue
        rows.append(
            (
                f"MailJawn apply at {r['size']:,} contacts (updating imports) <= 100 calls",
                f"{r['apply_calls']:,} calls (estimate {r['estimate']:,})",
                _met(r["apply_calls"] <= 100),
            )
        )
    renames = saved("mailjet-renames")
    for r in (renames or {}).get("results", []):
        rows.append(
            (
                f"Mailjet {r['size']:,} contacts, {r['renames']:,} renamed ({r['case']}) "
                "<= 400 requests"
                if r["case"] == "jobs apply Name"
                else f"(the same, {r['case']}: falls back to a read and a PUT each)",
                f"{r['apply_calls']:,} requests (estimate {r['estimate']:,})",
                _met(r["apply_calls"] <= 400) if r["case"] == "jobs apply Name" else "-",
            )
        )
    for name in ("mailjet", "mailjet-1m-csv", "mailjet-1m-yaml"):
        for r in (saved(name) or {}).get("results", []):
            if r["size"] not in (100_000, 1_000_000):
                continue
            cpu, peak = (5, 300) if r["size"] == 100_000 else (60, 2048)
            used = r["load_cpu"] + r["plan_cpu"]
            rows.append(
                (
                    f"Mailjet {r['size']:,} contacts ({r['contacts_in'].upper()}): load + plan CPU "
                    f"<= {cpu} s, peak RSS <= {peak:,} MB",
                    f"{used:.1f} s; {r['plan_peak_mb']:,.0f} MB after plan, "
                    f"{r['apply_peak_mb']:,.0f} MB plan + apply, {r['drift_peak_mb']:,.0f} MB "
                    "drift check",
                    _met(used <= cpu and r["peak_mb"] <= peak),
                )
            )
    return rows


def _met(ok: bool) -> str:
    return "yes" if ok else "**no**"


def targets_text() -> str:
    lines = ["| target (issue #15) | measured | met |", "|---|---|---|"]
    lines += [f"| {target} | {measured} | {met} |" for target, measured, met in target_rows()]
    return "\n".join(lines)


def section_text(section: str, runs: list[Run], commit: str) -> str:
    results: list[dict[str, Any]] = []
    for one in runs:
        path = RESULTS / f"{one.save}.json"
        if not path.exists():
            print(f"no results for `python -m {' '.join(one.command)}` ({path}): left out")
        elif section != "targets":
            results += json.loads(path.read_text("utf-8"))["results"]
    if section == "targets":
        tables = targets_text()
    elif section == "mailchimp":
        tables = "\n".join(mailchimp_table(results))
    else:
        tables = markdown_tables(results)
    commands = "; ".join(f"`python -m {' '.join(one.command)}`" for one in runs)
    today = datetime.datetime.now(datetime.UTC).date().isoformat()
    made = f"Measured {today} at commit {commit} by `python -m bench.readme`"
    return f"{made} ({commands}):\n\n{tables}\n"


def replace_section(text: str, section: str, body: str) -> str:
    pattern = re.compile(
        rf"(<!-- bench:{re.escape(section)} -->\n).*?(<!-- /bench:{re.escape(section)} -->)",
        re.DOTALL,
    )
    if not pattern.search(text):
        raise SystemExit(f"README.md has no <!-- bench:{section} --> markers")
    return pattern.sub(lambda match: match.group(1) + body + match.group(2), text)


def measured_commit(run_now: bool) -> str:
    """The commit the benchmarks run on, taken before they write their results (which
    would make the tree dirty); kept beside them for --tables-only."""
    stamp = RESULTS / "commit.txt"
    if not run_now and stamp.exists():
        return stamp.read_text("utf-8").strip()
    described = subprocess.run(
        ["git", "describe", "--always", "--dirty"], capture_output=True, text=True, check=False
    )
    commit = described.stdout.strip() or "unknown"
    if run_now:
        RESULTS.mkdir(parents=True, exist_ok=True)
        stamp.write_text(commit + "\n", "utf-8")
    return commit


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--only", nargs="+", metavar="SECTION", help="mailjet, mailjawn, mailchimp")
    parser.add_argument("--tables-only", action="store_true", help="rewrite from saved results")
    args = parser.parse_args()
    runs = [one for one in RUNS if not args.only or one.section in args.only]
    commit = measured_commit(run_now=not args.tables_only)
    if not args.tables_only:
        for one in runs:
            run(one)
    text = README.read_text("utf-8")
    for section in dict.fromkeys(one.section for one in runs):
        chosen = [o for o in runs if o.section == section]
        text = replace_section(text, section, section_text(section, chosen, commit))
    README.write_text(text, "utf-8")
    print(f"\nREADME.md tables rewritten ({', '.join(dict.fromkeys(o.section for o in runs))})")


if __name__ == "__main__":
    main()
