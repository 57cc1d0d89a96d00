"""How much of the rate limit apply uses when a plan needs many single calls.

    python -m bench.saturation --contacts 300 --rpm 300

Renames every contact of a seeded Mailjet emulator (served by another process, 300 ms
per request, the limit enforced by the emulator): a rename of an existing contact is a
PUT per contact (bulk jobs can't carry Name), so apply is bound by the limit alone.
Prints calls made, wall time, the share of the limit used over the run
(calls / (limit x minutes)) and the 429s received (any means the limit was exceeded).
No time-scaling: the seconds are real.
"""

from __future__ import annotations

import argparse
import asyncio
import time
from pathlib import Path
from tempfile import mkdtemp

from bench.run import KEY, SECRET, served
from bench.synthetic import live_contacts
from reconcile import engine
from reconcile.manifest.loader import load_manifest
from reconcile.providers.mailjet.client import MailjetClient
from reconcile.providers.mailjet.provider import MailjetProvider


def write_manifest(directory: Path, size: int, rpm: int) -> Path:
    lines = [f"provider: {{type: mailjet, requests_per_minute: {rpm}}}", "contacts:"]
    for address, name, _values, _lists in live_contacts(size):
        lines.append(f"  - {{email: {address}, name: Renamed {name}}}")
    path = directory / "rename.yaml"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


async def apply(url: str, manifest_path: Path, rpm: int) -> dict[str, float]:
    manifest = load_manifest([manifest_path])
    client = MailjetClient(
        api_key=KEY, secret_key=SECRET, base_url=url, requests_per_minute=rpm, max_in_flight=16
    )
    provider = MailjetProvider(client)
    try:
        plan, live = await engine.make_plan(manifest, provider)
        before, started = client.stats.requests, time.monotonic()
        report = await engine.apply_plan(plan, provider, live, force=True)
        wall = time.monotonic() - started
        calls = client.stats.requests - before
        return {
            "changes": len(plan.changes),
            "calls": calls,
            "wall": wall,
            "used": calls / (rpm / 60 * wall),
            "rate_limited": client.stats.rate_limited,
            "ok": report.ok,
        }
    finally:
        await provider.aclose()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--contacts", type=int, default=300)
    parser.add_argument("--rpm", type=int, default=300)
    args = parser.parse_args()
    size = args.contacts * 5 // 4  # the seeded account holds 80% of `size`
    with served("bench.serve", size, 1.0, "--rpm", str(args.rpm)) as url:  # 300 ms, real time
        result = asyncio.run(apply(url, write_manifest(Path(mkdtemp()), size, args.rpm), args.rpm))
    print(
        f"{result['changes']:.0f} renames at {args.rpm}/min, 300 ms per request: "
        f"{result['calls']:.0f} calls in {result['wall']:.0f} s, "
        f"{result['used']:.0%} of the limit used, {result['rate_limited']:.0f} x 429, "
        f"ok={result['ok']}"
    )


if __name__ == "__main__":
    main()
