"""Shared test helpers: emulator-backed providers, manifests in temp dirs, a runner."""

from __future__ import annotations

import asyncio
import textwrap
import threading
import time
from collections.abc import Coroutine, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

import uvicorn

from reconcile import engine
from reconcile.manifest.loader import Manifest, load_manifest
from reconcile.plan import Plan
from reconcile.providers import registry
from reconcile.providers.base import ApplyReport
from reconcile.providers.mailjet.client import MailjetClient
from reconcile.providers.mailjet.emulator.app import MailjetEmulator
from reconcile.providers.mailjet.provider import MailjetProvider
from reconcile.providers.pacing import RetryPolicy
from reconcile.sandbox.common import Emulator, EmulatorTransport

T = TypeVar("T")
FAST_RETRY = RetryPolicy(attempts=6, wait_initial=0.001, wait_max=0.005, wait_jitter=0.0)
MAILJET_URL = "http://mailjet.test"


def run(coroutine: Coroutine[Any, Any, T]) -> T:
    return asyncio.run(coroutine)


def mailjet_provider(emulator: MailjetEmulator, **options: Any) -> MailjetProvider:
    client = MailjetClient(
        api_key=emulator.settings.api_key,
        secret_key=emulator.settings.secret_key,
        base_url=MAILJET_URL,
        transport=EmulatorTransport(app=emulator.app),
        requests_per_minute=options.pop("requests_per_minute", 1_000_000),
        retry=options.pop("retry", FAST_RETRY),
        **options,
    )
    return MailjetProvider(client)


def write_manifest(directory: Path, text: str, name: str = "audience.yaml") -> Path:
    path = directory / name
    path.write_text(textwrap.dedent(text).lstrip(), encoding="utf-8")
    return path


def load(directory: Path, text: str) -> Manifest:
    return load_manifest([write_manifest(directory, text)])


async def plan_with(emulator: MailjetEmulator, manifest: Manifest) -> Plan:
    provider = mailjet_provider(emulator)
    try:
        made, _ = await engine.make_plan(manifest, provider)
        return made
    finally:
        await provider.aclose()


async def plan_and_apply(emulator: MailjetEmulator, manifest: Manifest) -> tuple[Plan, ApplyReport]:
    provider = mailjet_provider(emulator)
    try:
        made, live = await engine.make_plan(manifest, provider)
        report = await engine.apply_plan(made, provider, live, force=True)
        return made, report
    finally:
        await provider.aclose()


@contextmanager
def served(app: Any) -> Iterator[str]:
    """Serve an ASGI app over real HTTP on 127.0.0.1 (a free port) in a thread."""
    config = uvicorn.Config(app, host="127.0.0.1", port=0, log_level="error", lifespan="off")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        if time.monotonic() > deadline:
            raise RuntimeError("test server did not start")
        time.sleep(0.01)
    port = server.servers[0].sockets[0].getsockname()[1]
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)


def consent_now() -> str:
    """An opt-in given now, strictly after anything an emulator stamped before the call
    (times compare to the second)."""
    time.sleep(1.05)
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def opted_back_in_to(tmp_path: Path, list_name: str, email: str, consent: str) -> Manifest:
    """A Mailjet manifest that re-subscribes `email` to `list_name`, consent given at `consent`."""
    return load(
        tmp_path,
        f"""
        provider: mailjet
        lists: {{{list_name}: {{}}}}
        contacts:
          - email: {email}
            lists: {{{list_name}: {{status: subscribed, opted_in_at: "{consent}"}}}}
        """,
    )


def create_emulator(
    provider: str, state: dict[str, Any] | None = None
) -> tuple[Any, dict[str, str]]:
    """The sandbox emulator the registered `provider` serves (typed Any: tests use each
    emulator's own controls), and the credentials it accepts."""
    emulator, credentials = registry.plugin(provider).emulator_factory()(state)
    made: Emulator = emulator
    return made, credentials
