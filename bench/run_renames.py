"""Mailjet apply when existing contacts are renamed (#15 item 5): 22,000 contacts, 2,000
of them under another name in the account than in the manifest.

    python -m bench.run_renames [--size 22000] [--renames 2000] [--jobs-ignore-fields]

Against a seeded emulator in another process over real HTTP, with the real service's
latency and rate limit (`--time-scale` shrinks both; times are scaled back). Prints the
requests apply made against its estimate. `--jobs-ignore-fields`: the emulator's jobs
leave an existing contact's Name alone, so apply reads the first job back and falls back
to a read and a PUT per renamed contact.
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
from pathlib import Path

from bench.run import run_reconcile, served
from bench.synthetic import renames_case
from reconcile.manifest.loader import load_manifest


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size", type=int, default=22000)
    parser.add_argument("--renames", type=int, default=2000)
    parser.add_argument("--time-scale", type=float, default=20.0)
    parser.add_argument("--jobs-ignore-fields", action="store_true")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="bench-renames-"))
    path = work / "audience.yaml"
    path.write_text(renames_case(args.size, args.renames)[0], encoding="utf-8")
    manifest = load_manifest([path])
    options = ["--renames", str(args.renames)]
    if args.jobs_ignore_fields:
        options.append("--jobs-ignore-fields")
    with served("bench.serve", args.size, args.time_scale, *options) as url:
        result = asyncio.run(run_reconcile(url, manifest, args.time_scale))
    case = "jobs ignore Name" if args.jobs_ignore_fields else "jobs apply Name"
    print(f"== {args.size:,} contacts, {args.renames:,} renamed ({case}) ==")
    print(
        f"apply  calls {result['apply_calls']:,} (estimate {result['estimate']:,})  "
        f"wall {result['apply_wall']:.0f} s  ok={result['apply_ok']}  "
        f"second plan empty={result['second_plan_empty']}  429s={result['rate_limited']}"
    )


if __name__ == "__main__":
    main()
