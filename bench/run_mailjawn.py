"""Benchmark plan and apply on MailJawn at 1k/10k/100k contacts, against the naive way.

    python -m bench.run_mailjawn --sizes 1000 10000 [--time-scale 20] [--contacts-in csv|yaml]
        [--imports update|skip]

The same audience as bench.run (bench.synthetic: 80% of the contacts live, a quarter
of those differing in one property, every contact on 2 lists) with a MailJawn
provider. Each size runs in its own process (so peak memory is that size's) against
a seeded emulator served by another process (bench.serve_mailjawn) over real HTTP,
with the document's limits (100 reads and 30 writes per key per minute) and 300 ms
per request. `--time-scale` shrinks the rate window and the latency by the same
factor so that the thousands of single writes finish; reported times are scaled back
to real-service time (local CPU is not: it is what this machine spent). "Held by
rate limits" is the wall time during which at least one request sleeps in the
client's pacer. The naive way (a request per contact, per property write and per
tag) is counted by formula. `--imports` is how the emulator's bulk import treats an
existing subscriber (update, the default, or skip): the provider finds out at apply.

    python -m bench.run_mailjawn --paced-renames

measures instead 40 subscriber renames (40 single PATCH writes through the client)
against a server that allows 10 writes per 6-second window and says so in its
RateLimit-* headers, in real time, against the 18 s its windows need; the result goes
to bench/results/last-mailjawn_paced.json (bench.readme: mailjawn_paced.json).
"""

from __future__ import annotations

import asyncio
import json
import math
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

from bench.bounds import Bound, Budget, collection_chain
from bench.run import (
    LATENCY,
    bound_line,
    each_size,
    emulator_timing,
    load_timed,
    markdown_tables,
    peak_mb,
    save_results,
    served,
    size_arguments,
)
from bench.serve_mailjawn import MAX_IMPORT, READ_LIMIT, WRITE_LIMIT
from bench.synthetic import (
    PROPERTIES,
    live_contacts,
    manifest_yaml,
    write_csv_manifest,
    write_yaml_manifest,
)
from reconcile import engine
from reconcile.manifest.loader import Manifest
from reconcile.providers.mailjawn.client import PAGE_SIZE, MailJawnClient
from reconcile.providers.mailjawn.emulator.app import MailJawnEmulatorSettings
from reconcile.providers.mailjawn.plugin import MailJawnOptions
from reconcile.providers.mailjawn.provider import MailJawnProvider

SANDBOX = MailJawnEmulatorSettings()
API_KEY = next(iter(SANDBOX.api_keys))
WRITES = ("POST", "PATCH", "DELETE")


def provider_line() -> str:
    return (
        f"provider: {{type: mailjawn, project_id: '{SANDBOX.project_id}', "
        f"reads_per_minute: {READ_LIMIT}, writes_per_minute: {WRITE_LIMIT}, "
        f"import_chunk_size: {MAX_IMPORT}}}"
    )


def write_manifest(directory: Path, size: int, contacts_in: str) -> Path:
    """bench.synthetic's manifest (YAML or CSV contacts) with its provider line swapped."""
    mailjet_line = manifest_yaml(0).splitlines()[0]
    assert mailjet_line.startswith("provider:"), mailjet_line
    write = write_yaml_manifest if contacts_in == "yaml" else write_csv_manifest
    path = write(directory, size)
    text = path.read_text("utf-8")
    path.write_text(text.replace(mailjet_line, provider_line(), 1), "utf-8")
    return path


def counts(size: int) -> tuple[int, int, int]:
    """(live, new, changed) subscribers of bench.synthetic's account for `size` contacts."""
    live = len(live_contacts(size))
    changed = sum(1 for n in range(size) if n % 5 != 4 and n % 4 == 0)
    return live, size - live, changed


def minimum_reads(size: int) -> int:
    """Pages of 100 subscribers to list them all: ceil(live / 100), at least one.

    That is all the provider must read: each subscriber in the listing carries its
    custom_fields and its tags, so no read per subscriber or per tag is needed; tags
    exist by name (no tag endpoint to list) and custom fields have no definitions
    (nothing to read for properties). The client stops at `total`, so a count that is
    a multiple of 100 needs no closing empty page; an empty account still takes one.
    """
    live, _, _ = counts(size)
    return max(1, -(-live // PAGE_SIZE))


def minimum_apply(size: int, imports: str = "update") -> int:
    """ceil(new / 1,000) bulk imports, plus the writes for changed existing subscribers.

    A bulk import (POST subscribers/, 1 to 1,000 items) carries each new subscriber's
    name, custom_fields and tags, so new contacts and their memberships cost one write
    per 1,000. When an import updates existing subscribers too (`imports` "update"),
    the changed ones cost one write per 1,000 as well (the provider adds a probe: see
    APPLY_TARGET); when it skips them, each changed subscriber is one write (PATCH, or
    identify/ with its new tags). This account has no tags to add to existing
    subscribers (every live contact already has its 2 tags). Lists and properties need
    no write at all: tags exist by name and custom fields have no definitions.
    """
    _, new, changed = counts(size)
    updates = -(-changed // MAX_IMPORT) if imports == "update" else changed
    return -(-new // MAX_IMPORT) + updates


# Issue #15 item 4: at 100k contacts with updating imports, apply in at most 100 calls.
APPLY_TARGET = {100_000: 100}


def apply_target(size: int, imports: str, apply_calls: int) -> dict[str, Any]:
    """The issue's target for this size and import behaviour, and whether it was met."""
    target = APPLY_TARGET.get(size) if imports == "update" else None
    return {
        "apply_target": target,
        "apply_target_met": None if target is None else apply_calls <= target,
    }


def plan_bound(size: int, reads: int) -> Bound:
    """One collection, subscribers, whose pages give the total."""
    live, _, _ = counts(size)
    chain = collection_chain(live, PAGE_SIZE, total_in_page=True)
    return Bound((Budget(reads, READ_LIMIT),), chain, LATENCY)


def naive_calls(size: int) -> tuple[int, int]:
    """(reads, writes): per contact a search by email and a create if missing, then a
    PATCH per property and an identify/ per tag."""
    _, new, _ = counts(size)
    return size, new + size * len(PROPERTIES) + size * 2


def client_for(url: str, options: MailJawnOptions, scale: float) -> MailJawnClient:
    """The manifest's budgets, per a window shrunk by `scale` (per_window stays 100 / 30)."""
    return MailJawnClient(
        api_key=API_KEY,
        project_id=options.project_id or SANDBOX.project_id,
        base_url=url,
        reads_per_minute=options.reads_per_minute * scale,
        writes_per_minute=options.writes_per_minute * scale,
        window_seconds=60.0 / scale,
    )


class HeldClock:
    """Wall time during which at least one request sleeps in a pacer (rate limit or
    Retry-After); the pacers' own waited_seconds add up concurrent sleeps instead."""

    def __init__(self) -> None:
        self.seconds = 0.0
        self._sleeping = 0
        self._since = 0.0

    def watch(self, client: MailJawnClient) -> None:
        client.reads.sleep = client.writes.sleep = self.sleep

    async def sleep(self, delay: float) -> None:
        if self._sleeping == 0:
            self._since = time.monotonic()
        self._sleeping += 1
        try:
            await asyncio.sleep(delay)
        finally:
            self._sleeping -= 1
            if self._sleeping == 0:
                self.seconds += time.monotonic() - self._since


def writes_made(client: MailJawnClient) -> int:
    return sum(client.stats.by_method.get(method, 0) for method in WRITES)


async def run_reconcile(url: str, manifest: Manifest, scale: float) -> dict[str, Any]:
    options = manifest.provider
    assert isinstance(options, MailJawnOptions)
    client = client_for(url, options, scale)
    provider = MailJawnProvider(client, import_chunk_size=options.import_chunk_size)
    held = HeldClock()
    held.watch(client)
    try:
        started, cpu = time.monotonic(), time.process_time()
        plan, live = await engine.make_plan(manifest, provider)
        plan_stats = (client.stats.requests, time.monotonic() - started, time.process_time() - cpu)
        plan_peak = peak_mb()
        waited, summed = held.seconds, client.waited_seconds
        started, cpu, before = time.monotonic(), time.process_time(), client.stats.requests
        report = await engine.apply_plan(plan, provider, live, force=True)
        apply_stats = (client.stats.requests - before, time.monotonic() - started)
        apply_cpu = time.process_time() - cpu
        apply_writes = writes_made(client)
        apply_wait = held.seconds - waited
        apply_summed = client.waited_seconds - summed
        result = {
            "changes": len(plan.changes),
            "estimate": plan.estimate.api_calls if plan.estimate else None,
            "plan_calls": plan_stats[0],
            "plan_wall": plan_stats[1] * scale,
            "plan_cpu": plan_stats[2],
            "plan_wait": waited * scale,
            "plan_wait_summed": summed * scale,
            "plan_peak_mb": plan_peak,
            "plan_429s": client.stats.rate_limited,
            "plan_emulator_overruns": emulator_timing(url)["overruns"],
            "apply_calls": apply_stats[0],
            "apply_writes": apply_writes,
            "apply_wall": apply_stats[1] * scale,
            "apply_cpu": apply_cpu,
            "apply_wait": apply_wait * scale,
            "apply_wait_summed": apply_summed * scale,
            "apply_ok": report.ok,
        }
        del plan, live, report  # the drift check after an apply is a new run, as in CI
        again, _ = await engine.make_plan(manifest, provider)
        return result | {
            "second_plan_empty": again.is_empty,
            "rate_limited": client.stats.rate_limited,
            "retries": client.stats.retries,
        }
    finally:
        await provider.aclose()


def one_size(size: int, scale: float, contacts_in: str, imports: str = "update") -> dict[str, Any]:
    work = Path(tempfile.mkdtemp(prefix=f"bench-mailjawn-{size}-"))
    manifest, load_cpu = load_timed(write_manifest(work, size, contacts_in))
    with served("bench.serve_mailjawn", size, scale, "--imports", imports) as url:
        result = asyncio.run(run_reconcile(url, manifest, scale))
    naive_reads, naive_writes = naive_calls(size)
    plan = plan_bound(size, result["plan_calls"])
    result["plans"] = [
        {
            "per_minute": READ_LIMIT,
            "calls": result["plan_calls"],
            "wall": result["plan_wall"],
            "rate_limited": result["plan_429s"],
            "emulator_overruns": result["plan_emulator_overruns"],
            **plan.as_json(result["plan_wall"]),
        }
    ]
    apply_reads = result["apply_calls"] - result["apply_writes"]
    budgets = (Budget(apply_reads, READ_LIMIT), Budget(result["apply_writes"], WRITE_LIMIT))
    result["apply_rate_bound"] = Bound(budgets, 0, LATENCY).rate_seconds
    result.update(
        size=size,
        scale=scale,
        contacts_in=contacts_in,
        load_cpu=load_cpu,
        min_reads=minimum_reads(size),
        min_apply=minimum_apply(size, imports),
        imports=imports,
        **apply_target(size, imports, result["apply_calls"]),
        naive_reads=naive_reads,
        naive_writes=naive_writes,
        naive_calls=naive_reads + naive_writes,
        peak_mb=peak_mb(),
    )
    return result


# ---- 40 renames paced by the server's headers (#15) -------------------------------------

PACED_RESULTS = Path(__file__).parent / "results"
RENAMES, PACED_WRITES, PACED_WINDOW = 40, 10, 6.0


def paced_bound(writes: int = RENAMES) -> float:
    """What the windows need: the last write can't start before the last window opens."""
    return (math.ceil(writes / PACED_WRITES) - 1) * PACED_WINDOW


async def rename_all(url: str) -> dict[str, Any]:
    """List the subscribers, then PATCH a new name onto RENAMES of them, one each, with the
    documented budgets (30 writes a minute) as the client's only configuration."""
    client = MailJawnClient(api_key=API_KEY, project_id=SANDBOX.project_id, base_url=url)
    try:
        subscribers = await client.list_all("/subscribers/", "subscribers")
        targets = [s["id"] for s in subscribers[:RENAMES]]
        assert len(targets) == RENAMES, len(targets)
        started = time.monotonic()
        await asyncio.gather(
            *(client.patch(f"/subscribers/{id_}/", {"name": f"Renamed {id_}"}) for id_ in targets)
        )
        wall = time.monotonic() - started
        return {
            "wall": wall,
            "client_429s": client.stats.rate_limited,
            "writes": writes_made(client),
        }
    finally:
        await client.aclose()


def paced_renames(latency: float = 0.3) -> dict[str, Any]:
    """One real-time run (bench.serve_mailjawn's account, its limits set to 10 writes per
    6 s through the emulator's settings endpoint, `latency` per request)."""
    size = math.ceil(RENAMES / 0.8)  # 80% of bench.synthetic's contacts are live
    with served("bench.serve_mailjawn", size, 1.0, "--latency", str(latency)) as url:
        limits = {"write_limit": PACED_WRITES, "window_seconds": PACED_WINDOW}
        httpx.post(f"{url}/_emulator/settings", json=limits, timeout=5).raise_for_status()
        result = asyncio.run(rename_all(url))
        calls = httpx.get(f"{url}/_emulator/calls", timeout=5).json()
    patches = [c for c in calls if c["method"] == "PATCH"]
    return result | {
        "renames": RENAMES,
        "write_limit": PACED_WRITES,
        "window_seconds": PACED_WINDOW,
        "latency": latency,
        "bound": paced_bound(),
        "ratio": result["wall"] / paced_bound(),
        "server_429s": sum(1 for c in patches if c["status"] == 429),
        "patches_served": sum(1 for c in patches if c["status"] == 200),
    }


def report_paced(r: dict[str, Any]) -> None:
    print(
        f"{r['renames']} renames (single PATCHes) at {r['write_limit']} writes / "
        f"{r['window_seconds']:g} s, {r['latency'] * 1000:g} ms per request: wall "
        f"{r['wall']:.1f} s vs the windows' {r['bound']:g} s (x{r['ratio']:.2f}); "
        f"429s {r['server_429s']}; {r['patches_served']} PATCHes served"
    )


def main_paced(save: str | None) -> None:
    result = paced_renames()
    report_paced(result)
    PACED_RESULTS.mkdir(parents=True, exist_ok=True)
    path = PACED_RESULTS / f"{save or 'last-mailjawn_paced'}.json"
    path.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")


def main() -> None:
    parser = size_arguments(__doc__.split("\n\n")[0])
    parser.add_argument("--imports", choices=["update", "skip"], default="update")
    parser.add_argument("--paced-renames", action="store_true", help="see the module's doc")
    args = parser.parse_args()
    if args.paced_renames:
        main_paced(args.save)
        return
    if args.one:
        print(json.dumps(one_size(args.one, args.time_scale, args.contacts_in, args.imports)))
        return
    results = []
    for result in each_size("bench.run_mailjawn", args, "--imports", args.imports):
        report(result)
        results.append(result)
    save_results("mailjawn", "bench.run_mailjawn", args, results, markdown_tables(results))


def hours(seconds: float) -> str:
    return f"{seconds / 3600:.1f} h" if seconds >= 3600 else f"{seconds / 60:.1f} min"


def report(r: dict[str, Any]) -> None:
    print(f"\n== {r['size']:,} contacts ({r['changes']:,} changes; time scale {r['scale']:g}) ==")
    print(
        f"load+validate CPU   {r['load_cpu']:.1f} s ({r['contacts_in']})  peak memory: "
        f"{r['plan_peak_mb']:.0f} MB after load and plan, {r['peak_mb']:.0f} MB for the "
        "whole run (then apply, and a second plan)"
    )
    print(
        f"plan   calls {r['plan_calls']:>7,} (minimum {r['min_reads']:,}, "
        f"x{r['plan_calls'] / r['min_reads']:.2f})  wall {hours(r['plan_wall'])} "
        f"(held by rate limits {hours(r['plan_wait'])})  local CPU {r['plan_cpu']:.1f} s"
    )
    print(f"       {bound_line(r['plans'][0])}")
    print(
        f"apply  calls {r['apply_calls']:>7,} ({r['apply_writes']:,} writes; minimum "
        f"{r['min_apply']:,}, x{r['apply_calls'] / max(r['min_apply'], 1):.2f}; estimate "
        f"{r['estimate']:,})  wall {hours(r['apply_wall'])} (rate bound "
        f"{hours(r['apply_rate_bound'])}; held by rate limits "
        f"{hours(r['apply_wait'])})  local CPU {r['apply_cpu']:.1f} s"
    )
    print(
        f"       ok={r['apply_ok']} second plan empty={r['second_plan_empty']} "
        f"429s={r['rate_limited']} retries={r['retries']}"
    )
    report_target(r)
    naive = r["naive_reads"] + r["naive_writes"]
    at_limit = max(r["naive_reads"] / READ_LIMIT, r["naive_writes"] / WRITE_LIMIT) * 60
    print(
        f"naive  calls {naive:>7,} (counted: {r['naive_reads']:,} reads, "
        f"{r['naive_writes']:,} writes; {hours(at_limit)} at {WRITE_LIMIT} writes/min) "
        f"-> {naive / max(r['apply_calls'], 1):,.0f}x the calls of reconcile's apply"
    )


def report_target(r: dict[str, Any]) -> None:
    imports = "update existing subscribers" if r["imports"] == "update" else "skip them"
    line = f"       bulk imports {imports}"
    if r.get("apply_target") is not None:
        met = "met" if r["apply_target_met"] else "NOT met"
        line += f"; target <= {r['apply_target']} apply calls: {r['apply_calls']:,}, {met}"
    print(line)


if __name__ == "__main__":
    main()
