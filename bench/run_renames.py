"""Mailjet apply when existing contacts are renamed (#15 item 5): 22,000 contacts, 2,000
of them under another name in the account than in the manifest.

    python -m bench.run_renames [--size 22000] [--renames 2000] [--jobs-ignore-fields both]

Against a seeded emulator in another process over real HTTP, with the real service's
latency and rate limit (`--time-scale` shrinks both; times are scaled back). Prints the
requests apply made against its estimate, for both behaviours of the emulator's jobs
(`--jobs-ignore-fields yes`: they leave an existing contact's Name alone, so apply reads
the first job back and falls back to a read and a PUT per renamed contact). Results:
bench/results/last-mailjet-renames.json (bench.readme: mailjet-renames.json).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path
from typing import Any

from bench.run import RESULTS, apply_then_drift, served
from bench.synthetic import renames_case
from reconcile.manifest.loader import load_manifest

TARGET = 400  # issue #15: the 22,000 / 2,000 case in at most 400 requests


def one_case(size: int, renames: int, scale: float, *, jobs_ignore_fields: bool) -> dict[str, Any]:
    work = Path(tempfile.mkdtemp(prefix="bench-renames-"))
    path = work / "audience.yaml"
    path.write_text(renames_case(size, renames)[0], encoding="utf-8")
    manifest = load_manifest([path])
    options = ["--renames", str(renames)]
    if jobs_ignore_fields:
        options.append("--jobs-ignore-fields")
    with served("bench.serve", size, scale, *options) as url:
        result = apply_then_drift(url, manifest, path, scale)
    case = "jobs ignore Name" if jobs_ignore_fields else "jobs apply Name"
    print(f"== {size:,} contacts, {renames:,} renamed ({case}; time scale {scale:g}) ==")
    print(
        f"apply  calls {result['apply_calls']:,} (estimate {result['estimate']:,}; target "
        f"<= {TARGET})  wall {result['apply_wall']:.0f} s  ok={result['apply_ok']}  "
        f"second plan empty={result['second_plan_empty']}  429s={result['rate_limited']}",
        flush=True,
    )
    return result | {"size": size, "renames": renames, "case": case, "scale": scale}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size", type=int, default=22000)
    parser.add_argument("--renames", type=int, default=2000)
    parser.add_argument("--time-scale", type=float, default=1.0)
    parser.add_argument(
        "--jobs-ignore-fields",
        choices=["no", "yes", "both"],
        default="both",
        help="whether the emulator's jobs leave existing contacts' Name alone",
    )
    parser.add_argument("--save", default="last-mailjet-renames", metavar="NAME")
    args = parser.parse_args()
    ignore = {"no": [False], "yes": [True], "both": [False, True]}[args.jobs_ignore_fields]
    results = [
        one_case(args.size, args.renames, args.time_scale, jobs_ignore_fields=case)
        for case in ignore
    ]
    RESULTS.mkdir(parents=True, exist_ok=True)
    made_by = " ".join(["python -m bench.run_renames", *sys.argv[1:]])
    document = {"command": made_by, "target": TARGET, "results": results}
    (RESULTS / f"{args.save}.json").write_text(json.dumps(document, indent=1) + "\n", "utf-8")


if __name__ == "__main__":
    main()
