"""Benchmark plan and apply on Mailjet at 1k/10k/100k contacts, against the naive way.

    python -m bench.run --sizes 1000 10000 100000

Each size runs in its own process (so peak memory is that size's), against a seeded
emulator served by another process over real HTTP, with the real service's latency
(300 ms) and rate limit (200 requests/minute). `--time-scale` shrinks the rate window,
latency and job polling by the same factor so big sizes finish; reported times are
scaled back to real-service time. The naive way (one request per contact, per
property write and per membership) is run for real up to --naive-up-to contacts and
counted by formula above that. "Paced waits" add up the sleeps of concurrent requests,
so they can exceed the wall time.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import httpx

from bench.bounds import Bound, Budget, collection_chain
from bench.synthetic import (
    LISTS,
    PROPERTIES,
    live_contacts,
    renamed,
    write_csv_manifest,
    write_yaml_manifest,
)
from reconcile import engine
from reconcile.manifest.loader import Manifest, load_manifest
from reconcile.providers.mailjet.bulk import JobPolling
from reconcile.providers.mailjet.client import MailjetClient
from reconcile.providers.mailjet.plugin import MailjetOptions
from reconcile.providers.mailjet.provider import MailjetProvider
from reconcile.providers.mailjet.routing import READ_BACK, listing_calls
from reconcile.providers.pacing import Pacer

KEY, SECRET = "sandbox-key", "sandbox-secret"
PAGE = 1000
POLLS = 3  # bench.serve: a job reports running twice, then Completed
LATENCY = 0.3  # seconds per request, as the real service (bench.serve's default)
NAIVE_SCALE = 100.0
RESULTS = (
    Path(__file__).parent / "results"
)  # the naive way is paced to the limit alone: its time is counted


@dataclass(frozen=True)
class Timed:
    """A plan run: its reads, its wall time (real-service seconds), what went wrong."""

    calls: int
    wall: float
    rate_limited: int
    emulator_overruns: float


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def pages(count: int) -> int:
    return count // PAGE + 1  # until a short page


def minimum_reads(size: int) -> int:
    live = len(live_contacts(size))
    members = 2 * live // len(LISTS)
    return 2 + pages(live) * 2 + len(LISTS) * pages(members)


def minimum_apply(size: int) -> int:
    """Per job one POST and the polls the emulator takes to finish it (POLLS): new
    contacts grouped by their pair of lists, changed contacts in a group of their own."""
    groups: dict[str, int] = {}
    for n in range(size):
        if n % 5 == 4:
            key = str(n % 3)
        elif n % 4 == 0 or renamed(n):
            key = "changed"
        else:
            continue
        groups[key] = groups.get(key, 0) + 1
    return sum((1 + POLLS) * -(-count // PAGE) for count in groups.values()) + rename_checks(size)


def live_renames(size: int) -> int:
    return sum(1 for n in range(size) if n % 5 != 4 and renamed(n))


def rename_checks(size: int) -> int:
    """Renames ride in the jobs: the contacts are read again just before (the field the
    manifest leaves alone is sent as it is then), and a few read back after the first."""
    renames = live_renames(size)
    return listing_calls(len(live_contacts(size))) + min(READ_BACK, renames) if renames else 0


def plan_bound(size: int, per_minute: float, latency: float, reads: int) -> Bound:
    """Definitions and lists first, then contacts, their data and each list's members
    at once (MailjetProvider.read); Mailjet pages carry no total, so a count is asked."""
    live = len(live_contacts(size))
    members = 2 * live // len(LISTS)
    second = max(collection_chain(n, PAGE, total_in_page=False) for n in (live, members))
    return Bound((Budget(reads, per_minute),), 1 + second, latency)


def rss_mb() -> float:
    """Resident memory now (MB), from /proc/self/statm (Linux)."""
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def peak_mb() -> float:
    """This process's peak resident memory (MB): VmHWM, which starts again at exec. Not
    ru_maxrss, which a process started by another carries over from its parent (a drift
    check spawned after an apply of a million contacts would report the apply's peak)."""
    with open("/proc/self/status", encoding="ascii") as status:
        for line in status:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def trace(phase: str) -> None:
    """With BENCH_TRACE_MEMORY=1: resident memory now and peak so far, on stderr."""
    if os.environ.get("BENCH_TRACE_MEMORY"):
        peak = peak_mb()
        print(f"[memory] {phase:<28} rss {rss_mb():7.0f} MB  peak {peak:7.0f} MB", file=sys.stderr)


def client_for(url: str, per_minute: float, scale: float) -> MailjetClient:
    client = MailjetClient(api_key=KEY, secret_key=SECRET, base_url=url, max_in_flight=8)
    client.pacer = Pacer(per_minute, 60.0 / scale)
    return client


async def run_reconcile(url: str, manifest: Manifest, scale: float) -> dict[str, Any]:
    """Plan and apply in one process, as `reconcile apply` does."""
    options = manifest.provider
    assert isinstance(options, MailjetOptions)
    client = client_for(url, options.requests_per_minute, scale)
    polling = JobPolling(first_wait=1.0 / scale, max_wait=15.0 / scale)
    provider = MailjetProvider(client, polling=polling)
    try:
        started, cpu = time.monotonic(), time.process_time()
        trace("before plan")
        plan, live = await engine.make_plan(manifest, provider)
        trace("after plan")
        plan_stats = (client.stats.requests, time.monotonic() - started, time.process_time() - cpu)
        plan_peak = peak_mb()
        plan_overruns = emulator_timing(url)["overruns"]
        waited = client.pacer.waited_seconds
        started, cpu, before = time.monotonic(), time.process_time(), client.stats.requests
        report = await engine.apply_plan(plan, provider, live, force=True)
        trace("after apply")
        apply_stats = (client.stats.requests - before, time.monotonic() - started)
        return {
            "changes": len(plan.changes),
            "estimate": plan.estimate.api_calls if plan.estimate else None,
            "plan_calls": plan_stats[0],
            "plan_wall": plan_stats[1] * scale,
            "plan_cpu": plan_stats[2],
            "plan_wait": waited * scale,
            "plan_peak_mb": plan_peak,
            "plan_429s": client.stats.rate_limited,
            "plan_emulator_overruns": plan_overruns,
            "apply_calls": apply_stats[0],
            "apply_wall": apply_stats[1] * scale,
            "apply_wait": (client.pacer.waited_seconds - waited) * scale,
            "apply_ok": report.ok,
            "apply_peak_mb": peak_mb(),
            "rate_limited": client.stats.rate_limited,
        }
    finally:
        await provider.aclose()


def drift_check(url: str, path: Path, scale: float) -> dict[str, Any]:
    """The plan after an apply, in a new process as CI's scheduled drift check runs it:
    whether it is empty, and that process's peak memory and 429s."""
    command = [sys.executable, "-m", "bench.run", "--drift-check", str(path), "--url", url]
    output = subprocess.run(
        [*command, "--time-scale", str(scale)],
        check=True,
        stdout=subprocess.PIPE,
        text=True,
    ).stdout
    answer: dict[str, Any] = json.loads(output.strip().splitlines()[-1])
    return answer


def apply_then_drift(url: str, manifest: Manifest, path: Path, scale: float) -> dict[str, Any]:
    """Plan and apply in this process, then the drift check in its own."""
    result = asyncio.run(run_reconcile(url, manifest, scale))
    drift = drift_check(url, path, scale)
    return result | {
        "second_plan_empty": drift["empty"],
        "drift_peak_mb": drift["peak_mb"],
        "rate_limited": result["rate_limited"] + drift["rate_limited"],
        # the biggest process of the run: plan + apply, or the drift check after it
        "peak_mb": max(result["apply_peak_mb"], drift["peak_mb"]),
    }


async def plan_again(url: str, path: Path, scale: float) -> dict[str, Any]:
    manifest = load_manifest([path])
    options = manifest.provider
    assert isinstance(options, MailjetOptions)
    provider = MailjetProvider(client_for(url, options.requests_per_minute, scale))
    try:
        plan, _ = await engine.make_plan(manifest, provider)
        trace("after the drift check's plan")
        stats = provider.client.stats
        return {"empty": plan.is_empty, "peak_mb": peak_mb(), "rate_limited": stats.rate_limited}
    finally:
        await provider.aclose()


async def plan_only(url: str, manifest: Manifest, per_minute: float, scale: float) -> Timed:
    """A plan paced to `per_minute`, against an emulator that allows as much."""
    provider = MailjetProvider(client_for(url, per_minute, scale))
    try:
        started = time.monotonic()
        await engine.make_plan(manifest, provider)
        wall = (time.monotonic() - started) * scale
        stats = provider.client.stats
        return Timed(stats.requests, wall, stats.rate_limited, emulator_timing(url)["overruns"])
    finally:
        await provider.aclose()


def emulator_timing(url: str) -> dict[str, float]:
    """The emulator's own processing so far (bench emulators hide it inside the latency)."""
    answer: dict[str, float] = httpx.get(f"{url}/_emulator/timing", timeout=30).json()
    return answer


async def run_naive(url: str, manifest: Manifest, scale: float) -> int:
    """What a script on a per-resource client does: a request per contact, value, membership,
    each after the previous one, paced to the same limit."""
    calls = 0
    pacer = Pacer(200, 60.0 / scale)
    paced = httpx.AsyncClient(
        base_url=f"{url}/v3/REST",
        auth=(KEY, SECRET),
        event_hooks={"request": [lambda _request: pacer.wait_turn()]},
    )
    async with paced as http:
        lists = {
            r["Name"]: r["ID"] for r in (await http.get("/contactslist?Limit=1000")).json()["Data"]
        }
        calls += 1
        for contact in manifest.desired.contacts.values():
            found = await http.get(f"/contact/{contact.email}")
            calls += 1
            if found.status_code == 404:
                created = await http.post(
                    "/contact",
                    json={"Email": contact.email, "Name": contact.fields.get("name", "")},
                )
                contact_id = created.json()["Data"][0]["ID"]
                calls += 1
            else:
                record = found.json()["Data"][0]
                contact_id = record["ID"]
                if record["Name"] != contact.fields.get("name", record["Name"]):
                    await http.put(f"/contact/{contact_id}", json={"Name": contact.fields["name"]})
                    calls += 1
            for name, value in contact.properties.items():
                await http.put(
                    f"/contactdata/{contact_id}", json={"Data": [{"Name": name, "Value": value}]}
                )
                calls += 1
        for (list_name, email), _membership in manifest.desired.memberships.items():
            await http.post(
                f"/contact/{email}/managecontactslists",
                json={"ContactsLists": [{"ListID": lists[list_name], "Action": "addnoforce"}]},
            )
            calls += 1
    return calls


def naive_calls(size: int) -> int:
    """lookup + create-if-missing (or rename) per contact, a write per property, a call per
    membership."""
    new = size - len(live_contacts(size))
    return 1 + size + new + live_renames(size) + size * len(PROPERTIES) + size * 2


@contextmanager
def served(module: str, size: int, scale: float, *options: str) -> Iterator[str]:
    """A seeded emulator (`python -m module`, another process) on a free port, up and
    answering: its URL. Stopped on leaving."""
    port = free_port()
    command = ["-m", module, "--size", str(size), "--port", str(port), "--time-scale", str(scale)]
    server = subprocess.Popen([sys.executable, *command, *options])
    url = f"http://127.0.0.1:{port}"
    try:
        wait_until_up(url)
        httpx.post(f"{url}/_emulator/settings", json={"latency_includes_processing": True})
        yield url
    finally:
        server.terminate()
        server.wait(timeout=30)


def load_timed(path: Path) -> tuple[Manifest, float]:
    """The manifest and the CPU seconds loading and validating it took."""
    cpu = time.process_time()
    manifest = load_manifest([path])
    return manifest, time.process_time() - cpu


def wait_until_up(url: str) -> None:
    for _ in range(3000):
        try:
            httpx.get(f"{url}/_emulator/calls", timeout=1)
            return
        except httpx.TransportError:
            time.sleep(0.1)
    raise RuntimeError("benchmark emulator did not start")


def one_size(args: argparse.Namespace, size: int) -> dict[str, Any]:
    scale = args.time_scale
    work = Path(tempfile.mkdtemp(prefix=f"bench-{size}-"))
    write = write_yaml_manifest if args.contacts_in == "yaml" else write_csv_manifest
    path = write(work, size)
    manifest, load_cpu = load_timed(path)
    trace("after load")
    with served("bench.serve", size, scale) as url:
        result = apply_then_drift(url, manifest, path, scale)
    options = manifest.provider
    assert isinstance(options, MailjetOptions)
    rates = {
        options.requests_per_minute: Timed(
            result["plan_calls"],
            result["plan_wall"],
            result["plan_429s"],
            result["plan_emulator_overruns"],
        )
    }
    for rate in args.rates:
        if rate not in rates:
            with served("bench.serve", size, scale, "--rpm", str(rate)) as url:
                rates[rate] = asyncio.run(plan_only(url, manifest, rate, scale))
    result["plans"] = [
        {
            "per_minute": rate,
            **asdict(timed),
            **plan_bound(size, rate, LATENCY, timed.calls).as_json(timed.wall),
        }
        for rate, timed in sorted(rates.items())
    ]
    apply_bound = Bound((Budget(result["apply_calls"], options.requests_per_minute),), 0, LATENCY)
    result["apply_rate_bound"] = apply_bound.rate_seconds
    if size <= args.naive_up_to:
        with served("bench.serve", size, NAIVE_SCALE) as url:
            httpx.post(f"{url}/_emulator/settings", json={"latency_seconds": 0}, timeout=5)
            started = time.monotonic()
            result["naive_calls"] = asyncio.run(run_naive(url, manifest, NAIVE_SCALE))
            result["naive_wall"] = (time.monotonic() - started) * NAIVE_SCALE
    else:
        result["naive_calls"] = naive_calls(size)
    result.update(
        size=size,
        scale=scale,
        contacts_in=args.contacts_in,
        load_cpu=load_cpu,
        min_reads=minimum_reads(size),
        min_apply=minimum_apply(size),
    )
    return result


def size_arguments(description: str) -> argparse.ArgumentParser:
    """The options every benchmark runner takes (sizes, time scale, where contacts live)."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--sizes", type=int, nargs="+", default=[1000, 10000])
    parser.add_argument(
        "--time-scale",
        type=float,
        default=1.0,
        help="shrink windows and latency by this factor (1: real time). Above 1, this "
        "machine's own CPU counts that many times over, so ratios are upper bounds",
    )
    parser.add_argument(
        "--contacts-in",
        choices=["csv", "yaml"],
        default="csv",
        help="where the manifest lists its contacts: a contacts_from CSV file or the YAML",
    )
    parser.add_argument(
        "--save",
        metavar="NAME",
        help="results file bench/results/NAME.json (default last-PROVIDER, not kept in git: "
        "the committed results are python -m bench.readme's)",
    )
    parser.add_argument("--one", type=int, help=argparse.SUPPRESS)
    return parser


def each_size(module: str, args: argparse.Namespace, *extra: str) -> Iterator[dict[str, Any]]:
    """Run `module --one SIZE` per size in a fresh process (so peak memory is that
    size's) and yield the JSON result it prints last."""
    for size in args.sizes:
        options = ["--time-scale", str(args.time_scale), "--contacts-in", args.contacts_in]
        output = subprocess.run(
            [sys.executable, "-m", module, "--one", str(size), *options, *extra],
            check=True,
            stdout=subprocess.PIPE,
            text=True,
        ).stdout
        yield json.loads(output.strip().splitlines()[-1])


def main() -> None:
    parser = size_arguments(__doc__.split("\n\n")[0])
    parser.add_argument("--naive-up-to", type=int, default=1000)
    parser.add_argument(
        "--rates",
        type=int,
        nargs="+",
        default=[200, 300, 1200],
        help="requests per minute to plan at (the account's plan); apply runs at the first",
    )
    parser.add_argument("--drift-check", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--url", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        print(json.dumps(one_size(args, args.one)))
        return
    if args.drift_check:
        print(json.dumps(asyncio.run(plan_again(args.url, args.drift_check, args.time_scale))))
        return
    extra = ["--naive-up-to", str(args.naive_up_to), "--rates", *map(str, args.rates)]
    results = []
    for result in each_size("bench.run", args, *extra):
        report(result)
        results.append(result)
    save_results("mailjet", "bench.run", args, results, markdown_tables(results))


def report(r: dict[str, Any]) -> None:
    print(f"\n== {r['size']:,} contacts ({r['changes']:,} changes; time scale {r['scale']:g}) ==")
    print(
        f"load+validate CPU   {r['load_cpu']:.1f} s ({r['contacts_in']})  peak memory: "
        f"{r['plan_peak_mb']:.0f} MB after load and plan, {r['apply_peak_mb']:.0f} MB after "
        f"apply (one process, as reconcile apply), {r['drift_peak_mb']:.0f} MB for the drift "
        "check after it (its own process, as in CI)"
    )
    print(
        f"plan   calls {r['plan_calls']:>7,} (minimum {r['min_reads']:,}, "
        f"x{r['plan_calls'] / r['min_reads']:.2f})  local CPU {r['plan_cpu']:.1f} s"
    )
    for plan in r["plans"]:
        print(f"       {bound_line(plan)}")
    print(
        f"apply  calls {r['apply_calls']:>7,} (minimum {r['min_apply']:,}, "
        f"x{r['apply_calls'] / max(r['min_apply'], 1):.2f}; estimate {r['estimate']:,})  "
        f"wall {r['apply_wall']:.0f} s (rate bound {r['apply_rate_bound']:.0f} s; paced waits "
        f"{r['apply_wait']:.0f} s)  ok={r['apply_ok']} second plan empty="
        f"{r['second_plan_empty']} 429s={r['rate_limited']}"
    )
    ratio = r["naive_calls"] / max(r["apply_calls"], 1)
    measured = f"measured {r['naive_wall'] / 3600:.1f} h" if "naive_wall" in r else "counted"
    print(
        f"naive  calls {r['naive_calls']:>7,} ({measured}; {r['naive_calls'] / 200 / 60:.1f} h "
        f"at 200/min) -> {ratio:,.0f}x the calls of reconcile's apply"
    )


def bound_line(plan: dict[str, Any]) -> str:
    """One plan against its bounds: `wall / max(rate bound, latency bound)`."""
    return (
        f"at {plan['per_minute']:,}/min: wall {plan['wall']:.1f} s, rate bound "
        f"{plan['rate_bound']:.1f} s, latency bound {plan['latency_bound']:.1f} s "
        f"({plan['chain']} round trips) -> x{plan['ratio']:.2f}; 429s {plan['rate_limited']}, "
        f"emulator over its latency {plan['emulator_overruns']:.0f}"
    )


def markdown_tables(results: list[dict[str, Any]]) -> str:
    """The README's tables: plans against the limit, then calls, CPU and memory."""
    lines = [
        "| contacts | limit | time scale | plan reads | wall | rate bound | latency bound "
        "| ratio | 429s | emulator late |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in results:
        for plan in r["plans"]:
            lines.append(
                f"| {r['size']:,} | {plan['per_minute']:,}/min | {r['scale']:g} | "
                f"{plan['calls']:,} | "
                f"{plan['wall']:.1f} s | {plan['rate_bound']:.1f} s | "
                f"{plan['latency_bound']:.1f} s | **x{plan['ratio']:.2f}** | "
                f"{plan['rate_limited']} | {plan['emulator_overruns']:.0f} |"
            )
    lines += [
        "",
        "| contacts | plan reads (minimum) | apply calls (estimate, minimum) | apply wall "
        "(rate bound) | naive calls | load + plan CPU | peak RSS: plan / + apply / drift check |",
        "|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in results:
        lines.append(
            f"| {r['size']:,} {r['contacts_in'].upper()} | {r['plan_calls']:,} "
            f"({r['min_reads']:,}) | "
            f"{r['apply_calls']:,} ({r['estimate']:,}, {r['min_apply']:,}) | "
            f"{r['apply_wall']:.0f} s ({r['apply_rate_bound']:.0f} s) | "
            f"{r['naive_calls']:,} | {r['load_cpu'] + r['plan_cpu']:.1f} s | "
            f"{peaks(r)} |"
        )
    return "\n".join(lines)


def peaks(r: dict[str, Any]) -> str:
    """Peak RSS after plan, plan + apply and the drift check (Mailjet); after plan and the
    whole run in one process (the other runners)."""
    if "drift_peak_mb" in r:
        return (
            f"{r['plan_peak_mb']:,.0f} / {r['apply_peak_mb']:,.0f} / {r['drift_peak_mb']:,.0f} MB"
        )
    return f"{r['plan_peak_mb']:,.0f} MB after plan, {r['peak_mb']:,.0f} MB whole run"


def save_results(
    name: str, module: str, args: argparse.Namespace, results: list[dict[str, Any]], tables: str
) -> None:
    """The results as JSON in bench/results/NAME.json, and the tables on stdout, with the
    command that made them."""
    made_by = " ".join(["python -m", module, *sys.argv[1:]])
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / f"{args.save or 'last-' + name}.json"
    payload = {"command": made_by, "time_scale": args.time_scale, "results": results}
    path.write_text(json.dumps(payload, indent=1) + "\n", "utf-8")
    print(f"\n{tables}\n\n(made by `{made_by}`; results in {path})")


if __name__ == "__main__":
    main()
