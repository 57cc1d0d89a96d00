"""Serve a seeded Mailjet emulator for the benchmark (a separate process, real HTTP)."""

from __future__ import annotations

import argparse
from typing import Any

import uvicorn

from bench.synthetic import LISTS, PROPERTIES, live_contacts, renames_case
from reconcile.providers.mailjet.emulator.app import (
    MailjetEmulatorSettings,
    create_mailjet_emulator,
)


def seeded_state(size: int) -> dict[str, Any]:
    emulator = create_mailjet_emulator()
    for name, kind in PROPERTIES.items():
        emulator.seed_property(name, kind)
    for name in LISTS:
        emulator.seed_list(name)
    for address, name, values, lists in live_contacts(size):
        emulator.seed_contact(address, name, False, values, dict.fromkeys(lists, False))
    return emulator.dump_state()


def renames_state(size: int, renames: int) -> dict[str, Any]:
    """`size` contacts, the first `renames` under another name than the manifest's."""
    emulator = create_mailjet_emulator()
    for address, name in renames_case(size, renames)[1]:
        emulator.seed_contact(address, name)
    return emulator.dump_state()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--size", type=int, required=True)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--rpm", type=int, default=200)
    parser.add_argument("--time-scale", type=float, default=1.0)
    parser.add_argument("--latency", type=float, default=0.3)
    parser.add_argument("--renames", type=int, help="seed bench.run_renames' case instead")
    parser.add_argument("--jobs-ignore-fields", action="store_true")
    args = parser.parse_args()
    settings = MailjetEmulatorSettings(
        requests_per_minute=args.rpm,
        time_scale=args.time_scale,
        job_polls_to_complete=2,
        bulk_updates_name_and_exclusion=not args.jobs_ignore_fields,
    )
    state = (
        seeded_state(args.size) if args.renames is None else renames_state(args.size, args.renames)
    )
    emulator = create_mailjet_emulator(settings, state)
    emulator.control.latency_seconds = args.latency / args.time_scale
    emulator.cache_listings()  # later pages from the first page's scan, until a write
    uvicorn.run(emulator.app, host="127.0.0.1", port=args.port, log_level="warning")


if __name__ == "__main__":
    main()
