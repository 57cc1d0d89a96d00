"""Benchmark plan and apply on Mailchimp at 1k/10k/100k contacts, against the minimum and
the naive way.

    python -m bench.run_mailchimp --sizes 1000 10000 100000 [--latency-ms 300]
        [--time-scale 1] [--contacts-in csv|yaml]

The audience is bench.synthetic's in Mailchimp's shape (bench.serve_mailchimp: 80% of
the contacts live, a quarter of those differing in one merge field, every contact on
2 tags; merge fields DEPARTMENT, SEATS, SCORE, VIP, RENEWAL; addresses at a real-looking
domain). Each size runs in its own process (so peak memory is that size's) against a
seeded emulator served by another process over real HTTP, allowing 10 simultaneous
connections and waiting --latency-ms / --time-scale per request. There is no
per-minute quota, so --time-scale (default 1) only shrinks the latency; every time
reported is as measured, at the latency served (never scaled back).

Reported per size:
- plan: requests (against the minimum: the audience, merge fields, tags, one page of
  1,000 per 1,000 members, the archived members) and wall time.
- apply: requests, against the plan's estimate (they should be equal), the minimum
  (one batch subscribe per 500 new members; 2 freshness reads, one page each; one
  batch subscribe per 500 changed members; one static-segment batch per 500 adds per
  tag; the merge fields to create, none here) and the naive per-member way (counted:
  a PUT per member created or updated, and a POST .../tags per tag each new member
  must get; the live members already carry theirs).
- wall time against the concurrency bound: per phase that runs in parallel,
  ceil(requests / 9 in flight) rounds of one latency each. The phases of a plan: the
  audience; the first page of each of the 4 listings; the remaining member pages. Of
  an apply (from the emulator's log of the requests it served, in order): merge-field
  creates; batch subscribes of new members; the first page of each freshness read;
  their further pages; batch subscribes of changed members; tag batches.
- local CPU of the benchmark process (the product), peak RSS, and whether a second
  plan after the apply is empty.

The emulator's own time is kept out of the product's figures in two ways: the served
emulator caches its member listing between writes (bench.serve_mailchimp: otherwise it
builds every member's view for each page it serves, which no real service does), and
the emulator process's CPU seconds are read (GET /_bench/cpu, outside the emulator)
before and after each phase: they are reported as "emulator CPU", and "net" wall time
is the measured wall time less them. The emulator serves one request at a time, so
while it computes the product can only wait; the subtraction is exact when the product
does nothing meanwhile and takes off too much when it overlaps its own work with the
emulator's (so "net" errs fast, never slow, by at most the product's CPU in the phase).
"""

from __future__ import annotations

import asyncio
import json
import math
import re
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx

from bench.run import each_size, load_timed, peak_mb, served, size_arguments
from bench.serve_mailchimp import (
    AUDIENCE_ID,
    CPU_PATH,
    SPREAD,
    mailchimp_email,
    manifest_values,
    property_types,
)
from bench.synthetic import LISTS, desired_values, email, lists_of, live_contacts
from reconcile import engine
from reconcile.manifest.loader import Manifest
from reconcile.providers.base import OutcomeStatus
from reconcile.providers.mailchimp.client import MAX_IN_FLIGHT, PAGE_SIZE, MailchimpClient
from reconcile.providers.mailchimp.emulator.settings import SANDBOX_API_KEY
from reconcile.providers.mailchimp.plugin import MailchimpOptions, provider_with
from reconcile.providers.mailchimp.provider import BATCH

DONE = OutcomeStatus.DONE
RESULTS = Path(__file__).parent / "results" / "last-mailchimp.json"  # bench.readme's: mailchimp
PLAN_LISTINGS = 4  # merge fields, tags, members, archived members: read at once
FRESHNESS_READS = 2  # before batched updates: members changed since the read, and archived
PLAN_PHASES = ("audience", "first pages", "more member pages")
APPLY_PHASES = (
    "merge fields",
    "freshness first pages",
    "freshness more pages",
    "changed members",
    "new members",
    "tags",
    "other",
)


# ---- the manifest --------------------------------------------------------------------


def provider_line() -> str:
    return f"provider: {{type: mailchimp, audience: {AUDIENCE_ID}}}"


def head_yaml() -> list[str]:
    lines = [provider_line(), "properties:"]
    lines += [f"  {tag}: {{type: {kind}}}" for tag, kind in property_types().items()]
    return lines + ["lists:"] + [f"  {name}: {{}}" for name in LISTS]


def write_manifest(directory: Path, size: int, contacts_in: str) -> Path:
    """bench.synthetic's manifest for Mailchimp: merge tags for property names, no name
    (Mailchimp has none), addresses at a real-looking domain; contacts in the YAML or in
    a CSV file (`contacts_from`)."""
    directory.mkdir(parents=True, exist_ok=True)
    lines = head_yaml()
    if contacts_in == "yaml":
        lines.append("contacts:")
        for n in range(size):
            values = json.dumps(manifest_values(desired_values(n)))
            lines += [
                f"  - email: {mailchimp_email(email(n))}",
                f"    properties: {values}",
                f"    lists: [{', '.join(lists_of(n))}]",
            ]
    else:
        rows = ["email,lists,properties"]
        for n in range(size):
            values = json.dumps(manifest_values(desired_values(n))).replace('"', '""')
            rows.append(f'{mailchimp_email(email(n))},{";".join(lists_of(n))},"{values}"')
        csv_path = directory / f"people-{size}.csv"
        csv_path.write_text("\n".join(rows) + "\n", encoding="utf-8")
        lines.append(f"contacts_from: {csv_path.name}")
    path = directory / f"audience-{size}-{contacts_in}.yaml"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


# ---- what it should take -----------------------------------------------------------------


def counts(size: int) -> tuple[int, int, int]:
    """(live, new, changed) members of the seeded audience for `size` contacts."""
    live = len(live_contacts(size))
    changed = sum(1 for n in range(size) if n % 5 != 4 and n % 4 == 0)
    return live, size - live, changed


def tag_adds(size: int) -> dict[str, int]:
    """Memberships to add per tag: the new members' (the live ones have theirs)."""
    adds = dict.fromkeys(LISTS, 0)
    for n in range(size):
        if n % 5 == 4:
            for name in lists_of(n):
                adds[name] += 1
    return adds


def chunks(count: int, size: int) -> int:
    return -(-count // size)


def minimum_reads(size: int) -> int:
    """The audience, merge fields, tags, archived members (a page each) and the members
    in pages of 1,000 (at least one)."""
    live, _, _ = counts(size)
    return 1 + 3 + max(1, chunks(live, PAGE_SIZE))


def minimum_apply(size: int) -> dict[str, int]:
    _, new, changed = counts(size)
    return {
        "merge fields": 0,  # every property is a merge field already
        "new members": chunks(new, BATCH),
        "freshness reads": FRESHNESS_READS if changed else 0,
        "changed members": chunks(changed, BATCH),
        "tags": sum(chunks(adds, BATCH) for adds in tag_adds(size).values()),
    }


def naive_calls(size: int) -> int:
    _, new, changed = counts(size)
    return new + changed + sum(tag_adds(size).values())


def rounds(calls: int, in_flight: int = MAX_IN_FLIGHT) -> int:
    return math.ceil(calls / in_flight)


def plan_phases(calls: int) -> dict[str, int]:
    first = min(PLAN_LISTINGS, max(calls - 1, 0))
    return dict(zip(PLAN_PHASES, (min(calls, 1), first, max(calls - 1 - first, 0)), strict=True))


LIST_PATH = re.compile(r"/3\.0/lists/[^/]+/?")
MEMBERS_PATH = re.compile(r"/3\.0/lists/[^/]+/members/?")
FIELDS_PATH = re.compile(r"/3\.0/lists/[^/]+/merge-fields/?")
SEGMENT_PATH = re.compile(r"/3\.0/lists/[^/]+/segments(/[^/]+)?/?")


def apply_phases(log: list[dict[str, Any]], update_batches: int) -> dict[str, int]:
    """The apply's requests (as the emulator logged them, in order) by phase. Apply sends
    the freshness reads and the `update_batches` batches of changed members first, then
    the batches of new members."""
    phases = dict.fromkeys(APPLY_PHASES, 0)
    fresh_reads = 0
    batches = 0
    for call in log:
        method, path = call["method"], call["path"]
        if method == "POST" and FIELDS_PATH.fullmatch(path):
            phase = "merge fields"
        elif method == "POST" and LIST_PATH.fullmatch(path):
            batches += 1
            phase = (
                "changed members" if fresh_reads and batches <= update_batches else "new members"
            )
        elif method == "GET" and MEMBERS_PATH.fullmatch(path):
            fresh_reads += 1
            first = fresh_reads <= FRESHNESS_READS
            phase = "freshness first pages" if first else "freshness more pages"
        elif method == "POST" and SEGMENT_PATH.fullmatch(path):
            phase = "tags"
        else:
            phase = "other"
        phases[phase] += 1
    return phases


def bound_seconds(phases: dict[str, int], latency: float) -> float:
    return sum(rounds(calls) for calls in phases.values()) * latency


# ---- running it ----------------------------------------------------------------------------


class Probe:
    """The emulator process's CPU seconds and its log of requests served."""

    def __init__(self, url: str) -> None:
        self.http = httpx.AsyncClient(base_url=url, timeout=60)

    async def cpu(self) -> float:
        answer = await self.http.get(CPU_PATH)
        seconds: float = answer.json()["cpu"]
        return seconds

    async def log(self) -> list[dict[str, Any]]:
        answer = await self.http.get("/_emulator/calls")
        calls: list[dict[str, Any]] = answer.json()
        return calls

    async def aclose(self) -> None:
        await self.http.aclose()


class Phase:
    """Wall time, local CPU and emulator CPU of one phase."""

    def __init__(self, probe: Probe) -> None:
        self.probe = probe
        self.wall = self.cpu = self.emulator_cpu = 0.0

    async def __aenter__(self) -> Phase:
        self._emulator = await self.probe.cpu()
        self._wall, self._cpu = time.monotonic(), time.process_time()
        return self

    async def __aexit__(self, *_: object) -> None:
        self.wall = time.monotonic() - self._wall
        self.cpu = time.process_time() - self._cpu
        self.emulator_cpu = await self.probe.cpu() - self._emulator

    def figures(self, name: str) -> dict[str, float]:
        return {
            f"{name}_wall": self.wall,
            f"{name}_emulator_cpu": self.emulator_cpu,
            f"{name}_net_wall": max(self.wall - self.emulator_cpu, 0.0),
            f"{name}_cpu": self.cpu,
        }


async def run_reconcile(url: str, manifest: Manifest, latency: float) -> dict[str, Any]:
    options = manifest.provider
    assert isinstance(options, MailchimpOptions)
    client = MailchimpClient(
        api_key=SANDBOX_API_KEY, base_url=url, max_in_flight=options.max_connections
    )
    provider = provider_with(client, options)
    probe = Probe(url)
    try:
        async with Phase(probe) as planning:
            plan, live = await engine.make_plan(manifest, provider)
        plan_calls = client.stats.requests
        plan_peak = peak_mb()
        served_before = len(await probe.log())
        async with Phase(probe) as applying:
            report = await engine.apply_plan(plan, provider, live, force=True)
        apply_calls = client.stats.requests - plan_calls
        served = (await probe.log())[served_before:]
        updates = sum(1 for c in plan.changes if c.address.startswith("contact:") and c.before)
        phases = apply_phases(served, chunks(updates, BATCH))
        result = {
            "changes": len(plan.changes),
            "estimate": plan.estimate.api_calls if plan.estimate else None,
            "plan_calls": plan_calls,
            "plan_bound": bound_seconds(plan_phases(plan_calls), latency),
            **planning.figures("plan"),
            "plan_peak_mb": plan_peak,
            "apply_calls": apply_calls,
            "apply_served": len(served),
            "apply_phases": phases,
            "apply_bound": bound_seconds(phases, latency),
            **applying.figures("apply"),
            "apply_ok": report.ok,
            "apply_not_done": [
                f"{o.address}: {o.message}" for o in report.outcomes if o.status is not DONE
            ][:10],
        }
        del plan, live, report  # the drift check after an apply is a new run, as in CI
        before = client.stats.requests
        async with Phase(probe) as again_phase:
            again, _ = await engine.make_plan(manifest, provider)
        return result | {
            "second_plan_empty": again.is_empty,
            "second_plan_changes": len(again.changes),
            "second_plan_calls": client.stats.requests - before,
            **again_phase.figures("second_plan"),
            "rate_limited": client.stats.rate_limited,
            "retries": client.stats.retries,
        }
    finally:
        await probe.aclose()
        await provider.aclose()


def one_size(
    size: int, scale: float, latency_ms: float, contacts_in: str, spread: float
) -> dict[str, Any]:
    work = Path(tempfile.mkdtemp(prefix=f"bench-mailchimp-{size}-"))
    manifest, load_cpu = load_timed(write_manifest(work, size, contacts_in))
    latency = latency_ms / 1000 / scale
    options = ("--latency", str(latency_ms / 1000), "--spread", str(spread))
    with served("bench.serve_mailchimp", size, scale, *options) as url:
        result = asyncio.run(run_reconcile(url, manifest, latency))
    live, new, changed = counts(size)
    minimum = minimum_apply(size)
    naive = naive_calls(size)
    result.update(
        size=size,
        live=live,
        new=new,
        changed=changed,
        scale=scale,
        latency_ms=latency_ms,
        seed_spread=spread,
        served_latency=latency,
        contacts_in=contacts_in,
        load_cpu=load_cpu,
        min_reads=minimum_reads(size),
        min_apply=sum(minimum.values()),
        min_apply_parts=minimum,
        naive_calls=naive,
        naive_bound=rounds(naive) * latency,
        peak_mb=peak_mb(),
    )
    return result


# ---- reporting -------------------------------------------------------------------------------


def seconds(value: float) -> str:
    return f"{value / 60:.1f} min" if value >= 600 else f"{value:.1f} s"


def table(results: list[dict[str, Any]]) -> Iterator[str]:
    yield (
        "| contacts | changes | plan calls (min) | plan wall / net / bound | apply calls | "
        "estimate | minimum | naive | apply wall / net / bound | emulator CPU plan+apply | "
        "local CPU load+plan+apply | peak RSS | 2nd plan empty |"
    )
    yield "|" + "---|" * 13
    for r in results:
        yield (
            f"| {r['size']:,} | {r['changes']:,} | {r['plan_calls']:,} ({r['min_reads']:,}) | "
            f"{seconds(r['plan_wall'])} / {seconds(r['plan_net_wall'])} / "
            f"{seconds(r['plan_bound'])} | {r['apply_calls']:,} | {r['estimate']:,} | "
            f"{r['min_apply']:,} | {r['naive_calls']:,} | {seconds(r['apply_wall'])} / "
            f"{seconds(r['apply_net_wall'])} / {seconds(r['apply_bound'])} | "
            f"{r['plan_emulator_cpu']:.1f} + {r['apply_emulator_cpu']:.1f} s | "
            f"{r['load_cpu']:.1f} + {r['plan_cpu']:.1f} + {r['apply_cpu']:.1f} s | "
            f"{r['peak_mb']:.0f} MB | {'yes' if r['second_plan_empty'] else 'NO'} |"
        )


def notes(r: dict[str, Any]) -> Iterator[str]:
    phases = ", ".join(f"{name} {count}" for name, count in r["apply_phases"].items() if count)
    parts = ", ".join(f"{name} {count}" for name, count in r["min_apply_parts"].items() if count)
    yield (
        f"- {r['size']:,}: {r['live']:,} live, {r['new']:,} new, {r['changed']:,} changed; "
        f"apply requests by phase: {phases} (minimum: {parts}); naive bound "
        f"{seconds(r['naive_bound'])}; second plan {r['second_plan_calls']:,} calls, "
        f"{seconds(r['second_plan_wall'])} ({r['second_plan_emulator_cpu']:.1f} s emulator "
        f"CPU); apply ok={r['apply_ok']}, 429s={r['rate_limited']}, retries={r['retries']}"
    )
    if r["estimate"] != r["apply_calls"]:
        yield f"  - estimate {r['estimate']:,} != {r['apply_calls']:,} requests sent"
    if r["apply_served"] != r["apply_calls"]:
        yield f"  - the emulator served {r['apply_served']:,} apply requests"


def main() -> None:
    parser = size_arguments(__doc__.split("\n\n")[0])
    parser.set_defaults(time_scale=1.0)
    parser.add_argument("--latency-ms", type=float, default=300.0)
    parser.add_argument(
        "--seed-spread",
        type=float,
        default=SPREAD,
        help="seconds between the seeded members' last changes (0: all at one moment)",
    )
    parser.add_argument("--output", type=Path, default=RESULTS)
    args = parser.parse_args()
    if args.one:
        result = one_size(
            args.one, args.time_scale, args.latency_ms, args.contacts_in, args.seed_spread
        )
        print(json.dumps(result))
        return
    results = []
    extra = ("--latency-ms", str(args.latency_ms), "--seed-spread", str(args.seed_spread))
    for result in each_size("bench.run_mailchimp", args, *extra):
        results.append(result)
        print(next(notes(result)), flush=True)
    served_ms = args.latency_ms / args.time_scale
    lines = [
        f"Mailchimp, {args.latency_ms:g} ms per request / time scale {args.time_scale:g} "
        f"= {served_ms:g} ms served, 10 connections (9 in flight), contacts in "
        f"{args.contacts_in}; members seeded {args.seed_spread:g} s apart; times as "
        "measured; net = wall - emulator CPU; bound = ceil(calls / 9) x latency per phase",
        "",
        *table(results),
        "",
    ]
    for result in results:
        lines += list(notes(result))
    print("\n".join(lines))
    output = args.output.parent / f"{args.save}.json" if args.save else args.output
    output.parent.mkdir(parents=True, exist_ok=True)
    document = {
        "latency_ms": args.latency_ms,
        "time_scale": args.time_scale,
        "contacts_in": args.contacts_in,
        "seed_spread": args.seed_spread,
        "results": results,
    }
    output.write_text(json.dumps(document, indent=2) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
