"""The built-in sandbox: an emulator run in-process (or served on a port), its state
persisted in a JSON file so that runs build on each other like a real account."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import uvicorn

from reconcile.sandbox.common import EmulatorTransport, load_json_state, save_json_state
from reconcile.sandbox.mailjawn import MailJawnEmulatorSettings, create_mailjawn_emulator
from reconcile.sandbox.mailjet import MailjetEmulatorSettings, create_mailjet_emulator

SANDBOX_DIR = Path(".reconcile/sandbox")
PROVIDERS = ("mailjet", "mailjawn")
UNLIMITED = 1e9  # the in-process sandbox enforces no rate limit, so clients need not pace


@dataclass(frozen=True)
class SandboxEndpoint:
    """What a client needs to talk to the sandbox: no real credentials anywhere."""

    provider: str
    base_url: str
    credentials: dict[str, str]
    transport: httpx.AsyncBaseTransport | None
    requests_per_minute: float = UNLIMITED


def create_emulator(provider: str, state: dict[str, Any] | None) -> tuple[Any, dict[str, str]]:
    """The emulator for `provider` and the sandbox credentials it accepts."""
    if provider == "mailjet":
        # Jobs end on the third poll, as the plan's estimate expects and the benchmark
        # serves them, so the sandbox makes exactly the calls its plans announce.
        jet = create_mailjet_emulator(MailjetEmulatorSettings(job_polls_to_complete=2), state)
        return jet, {"api_key": jet.settings.api_key, "secret_key": jet.settings.secret_key}
    if provider == "mailjawn":
        jawn = create_mailjawn_emulator(MailJawnEmulatorSettings(), state)
        key = next(iter(jawn.settings.api_keys))
        return jawn, {"api_key": key, "project_id": jawn.settings.project_id}
    raise ValueError(f"no sandbox for provider {provider!r}; choose one of {PROVIDERS}")


def state_file(provider: str, directory: Path = SANDBOX_DIR) -> Path:
    return directory / f"{provider}.json"


@contextmanager
def in_process_sandbox(provider: str, directory: Path = SANDBOX_DIR) -> Iterator[SandboxEndpoint]:
    """An emulator reached through httpx's ASGI transport; its state is saved on exit."""
    path = state_file(provider, directory)
    emulator, credentials = create_emulator(provider, load_json_state(path))
    transport = EmulatorTransport(app=emulator.app)
    try:
        yield SandboxEndpoint(provider, f"http://{provider}.sandbox", credentials, transport)
    finally:
        save_json_state(path, emulator.dump_state())


def serve(
    provider: str,
    port: int,
    path: Path,
    announce: Callable[[str], None] = print,
) -> None:
    """Serve an emulator on 127.0.0.1:port until interrupted, then save its state."""
    emulator, credentials = create_emulator(provider, load_json_state(path))
    config = uvicorn.Config(emulator.app, host="127.0.0.1", port=port, log_level="warning")
    server = uvicorn.Server(config)
    shown = ", ".join(f"{key}={value}" for key, value in credentials.items())
    announce(f"{provider} sandbox on http://127.0.0.1:{port} (sandbox credentials: {shown})")
    announce(f"state: {path} (saved on exit)")
    try:
        server.run()
    finally:
        save_json_state(path, emulator.dump_state())
