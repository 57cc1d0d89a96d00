"""Serve a seeded MailJawn emulator for the benchmark (a separate process, real HTTP).

    python -m bench.serve_mailjawn --size 10000 --port 8321 --time-scale 20

The account is bench.serve's, in MailJawn's shape: each live contact of
bench.synthetic.live_contacts is a subscriber with its name, its properties as
custom_fields (in the canonical form the provider writes and compares: datetimes as
2027-01-01T00:00:00Z) and its lists as tags. Rate limits are the document's (100 reads,
30 writes per key per 60 s window, imports of up to 1,000), the window shrunk by
--time-scale; every request also waits the latency (300 ms) divided by --time-scale.
--imports says whether a bulk import updates existing subscribers (default) or skips them.
"""

from __future__ import annotations

import argparse
from typing import Any

import uvicorn

from bench.synthetic import PROPERTIES, live_contacts
from reconcile.model import PropertyType, strict_value
from reconcile.providers.mailjawn.emulator.app import (
    MailJawnEmulatorSettings,
    create_mailjawn_emulator,
)
from reconcile.providers.mailjawn.emulator.store import UpsertBehaviour

READ_LIMIT, WRITE_LIMIT, MAX_IMPORT = 100, 30, 1000


def settings(time_scale: float, imports: str = "update") -> MailJawnEmulatorSettings:
    return MailJawnEmulatorSettings(
        read_limit=READ_LIMIT,
        write_limit=WRITE_LIMIT,
        window_seconds=60.0,
        time_scale=time_scale,
        max_import=MAX_IMPORT,
        upsert=upsert_behaviour(imports),
    )


def upsert_behaviour(imports: str) -> UpsertBehaviour:
    """--imports update: a bulk import updates existing subscribers; skip: it skips them
    (the document says neither; the provider finds out at apply)."""
    return UpsertBehaviour(import_updates_existing=imports == "update")


def custom_fields(values: dict[str, Any]) -> dict[str, Any]:
    """Values as the provider stores them (bench.synthetic writes datetimes with a space)."""
    return {name: strict_value(PropertyType(PROPERTIES[name]), v) for name, v in values.items()}


def seeded_state(size: int) -> dict[str, Any]:
    emulator = create_mailjawn_emulator()
    for address, name, values, lists in live_contacts(size):
        emulator.seed_subscriber(address, name, custom_fields=custom_fields(values), tags=lists)
    return emulator.dump_state()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--size", type=int, required=True)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--time-scale", type=float, default=1.0)
    parser.add_argument("--latency", type=float, default=0.3)
    parser.add_argument("--imports", choices=["update", "skip"], default="update")
    args = parser.parse_args()
    emulator = create_mailjawn_emulator(
        settings(args.time_scale, args.imports), seeded_state(args.size)
    )
    emulator.control.latency_seconds = args.latency / args.time_scale
    uvicorn.run(emulator.app, host="127.0.0.1", port=args.port, log_level="warning")


if __name__ == "__main__":
    main()
