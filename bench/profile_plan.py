"""Where a big plan's local CPU and memory go: load the synthetic manifest, plan it against
the seeded emulator (another process, latency and pacing scaled away), and print load CPU,
plan CPU and peak RSS.

    python -m bench.profile_plan --size 100000 --contacts-in csv
    python -m bench.profile_plan --size 100000 --profile load   # cProfile top functions
    python -m bench.profile_plan --size 100000 --memory         # tracemalloc top lines

Peak RSS is this process's (the emulator runs in its own). With --profile or --memory the
times include the profiler's overhead: run without them for the figures.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import gc
import pstats
import resource
import tempfile
import time
import tracemalloc
from pathlib import Path
from typing import Any

from bench.run import KEY, SECRET, peak_mb, served
from bench.synthetic import write_csv_manifest, write_yaml_manifest
from reconcile import engine
from reconcile.manifest.loader import Manifest, load_manifest
from reconcile.model import State
from reconcile.plan import Plan
from reconcile.providers.mailjet.bulk import JobPolling
from reconcile.providers.mailjet.client import MailjetClient
from reconcile.providers.mailjet.provider import MailjetProvider
from reconcile.providers.pacing import Pacer


def current_mb() -> float:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * resource.getpagesize() / 2**20


async def plan_against(url: str, manifest: Manifest, scale: float) -> tuple[Plan, State]:
    client = MailjetClient(api_key=KEY, secret_key=SECRET, base_url=url, max_in_flight=8)
    client.pacer = Pacer(1_000_000, 60.0 / scale)
    provider = MailjetProvider(client, polling=JobPolling(1.0 / scale, 15.0 / scale))
    try:
        return await engine.make_plan(manifest, provider)
    finally:
        await provider.aclose()


def profiled(what: str, wanted: str | None, call: Any) -> Any:
    if wanted != what:
        return call()
    profile = cProfile.Profile()
    result = profile.runcall(call)
    stats = pstats.Stats(profile)
    stats.sort_stats("tottime").print_stats(25)
    stats.sort_stats("cumulative").print_stats(30)
    return result


def top_memory(label: str, limit: int = 20) -> None:
    snapshot = tracemalloc.take_snapshot()
    stats = snapshot.statistics("lineno")
    total = sum(s.size for s in stats)
    print(f"-- tracemalloc after {label}: {total / 2**20:.0f} MB held")
    for stat in stats[:limit]:
        print(f"   {stat.size / 2**20:8.1f} MB {stat.count:>9,}  {stat.traceback}")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--size", type=int, default=100_000)
    parser.add_argument("--contacts-in", choices=["csv", "yaml"], default="csv")
    parser.add_argument("--time-scale", type=float, default=1000.0)
    parser.add_argument("--profile", choices=["load", "plan"])
    parser.add_argument("--memory", action="store_true", help="tracemalloc top lines")
    parser.add_argument("--no-plan", action="store_true", help="load only")
    parser.add_argument("--no-gc", action="store_true", help="without the cyclic collector")
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix=f"profile-{args.size}-"))
    write = write_yaml_manifest if args.contacts_in == "yaml" else write_csv_manifest
    path = write(work, args.size)
    gc.collect()
    if args.no_gc:
        gc.disable()
    base = current_mb()
    if args.memory:
        tracemalloc.start()

    cpu = time.process_time()
    manifest = profiled("load", args.profile, lambda: load_manifest([path]))
    load_cpu = time.process_time() - cpu
    load_peak = peak_mb()
    gc.collect()
    after_load = current_mb()
    print(
        f"load: {load_cpu:.2f} s CPU, peak {load_peak:.0f} MB, held {after_load - base:.0f} MB "
        f"({(after_load - base) * 2**20 / args.size:.0f} bytes/contact)"
    )
    if args.memory:
        top_memory("load")
    if args.no_plan:
        return

    with served("bench.serve", args.size, args.time_scale) as url:
        cpu, wall = time.process_time(), time.monotonic()
        plan, live = profiled(
            "plan", args.profile, lambda: asyncio.run(plan_against(url, manifest, args.time_scale))
        )
        plan_cpu, plan_wall = time.process_time() - cpu, time.monotonic() - wall
    gc.collect()
    after_plan = current_mb()
    print(
        f"plan: {plan_cpu:.2f} s CPU ({plan_wall:.1f} s wall), {len(plan.changes):,} changes, "
        f"live {len(live.contacts):,} contacts; held {after_plan - after_load:.0f} MB more "
        f"({(after_plan - after_load) * 2**20 / max(len(live.contacts), 1):.0f} bytes/live contact)"
    )
    if args.memory:
        top_memory("plan")
    print(
        f"RESULT size={args.size} in={args.contacts_in} load_cpu={load_cpu:.2f} "
        f"plan_cpu={plan_cpu:.2f} total_cpu={load_cpu + plan_cpu:.2f} peak_mb={peak_mb():.0f}"
    )


if __name__ == "__main__":
    main()
