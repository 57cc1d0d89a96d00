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
        if self.command[0] == "bench.run_mailchimp":
            return [*self.command, "--output", str(RESULTS / f"{self.save}.json")]
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
    Run("mailjawn", "mailjawn", ("bench.run_mailjawn", "--sizes", "1000", "10000")),
    Run(
        "mailjawn",
        "mailjawn-100k",
        ("bench.run_mailjawn", "--sizes", "100000", "--time-scale", "10"),
    ),
    Run("mailchimp", "mailchimp", ("bench.run_mailchimp", "--sizes", "1000", "10000", "100000")),
)


def run(one: Run) -> None:
    command = [sys.executable, "-m", *one.argv]
    print(f"\n$ python -m {' '.join(one.argv)}", flush=True)
    subprocess.run(command, check=True)


def section_text(section: str, runs: list[Run], commit: str) -> str:
    results: list[dict[str, Any]] = []
    for one in runs:
        path = RESULTS / f"{one.save}.json"
        if not path.exists():
            print(f"no results for `python -m {' '.join(one.command)}` ({path}): left out")
            continue
        results += json.loads(path.read_text("utf-8"))["results"]
    tables = (
        "\n".join(mailchimp_table(results)) if section == "mailchimp" else markdown_tables(results)
    )
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--only", nargs="+", metavar="SECTION", help="mailjet, mailjawn, mailchimp")
    parser.add_argument("--tables-only", action="store_true", help="rewrite from saved results")
    args = parser.parse_args()
    runs = [one for one in RUNS if not args.only or one.section in args.only]
    if not args.tables_only:
        for one in runs:
            run(one)
    commit = (
        subprocess.run(
            ["git", "describe", "--always", "--dirty"], capture_output=True, text=True, check=False
        ).stdout.strip()
        or "unknown"
    )
    text = README.read_text("utf-8")
    for section in dict.fromkeys(one.section for one in runs):
        text = replace_section(
            text, section, section_text(section, [o for o in runs if o.section == section], commit)
        )
    README.write_text(text, "utf-8")
    print(f"\nREADME.md tables rewritten ({', '.join(dict.fromkeys(o.section for o in runs))})")


if __name__ == "__main__":
    main()
