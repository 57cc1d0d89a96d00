"""Serve a seeded Mailjet emulator for the benchmark (a separate process, real HTTP)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import uvicorn

from reconcile.sandbox.mailjet import MailjetEmulatorSettings, create_mailjet_emulator


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--state", type=Path, required=True)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--rpm", type=int, default=200)
    parser.add_argument("--time-scale", type=float, default=1.0)
    parser.add_argument("--latency", type=float, default=0.3)
    args = parser.parse_args()
    settings = MailjetEmulatorSettings(
        requests_per_minute=args.rpm, time_scale=args.time_scale, job_polls_to_complete=2
    )
    emulator = create_mailjet_emulator(settings, json.loads(args.state.read_text()))
    emulator.control.latency_seconds = args.latency / args.time_scale
    uvicorn.run(emulator.app, host="127.0.0.1", port=args.port, log_level="warning")


if __name__ == "__main__":
    main()
