"""The built-in sandbox: an emulator run in-process (or served on a port), its state
persisted in a JSON file so that runs build on each other like a real account."""

from __future__ import annotations

import signal
import socket
import threading
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from types import FrameType

import httpx
import uvicorn

from reconcile.errors import ConfigError
from reconcile.sandbox.common import (
    Emulator,
    EmulatorFactory,
    EmulatorTransport,
    bad_state,
    load_json_state,
    save_json_state,
)

SANDBOX_DIR = Path(".reconcile/sandbox")
UNLIMITED = 1e9  # the in-process sandbox enforces no rate limit, so clients need not pace
_STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


@dataclass(frozen=True)
class SandboxEndpoint:
    """What a client needs to talk to the sandbox: no real credentials anywhere."""

    provider: str
    base_url: str
    credentials: dict[str, str]
    transport: httpx.AsyncBaseTransport | None
    requests_per_minute: float = UNLIMITED
    account_id: str = ""  # which sandbox account (state directory) this is


def state_file(provider: str, directory: Path = SANDBOX_DIR) -> Path:
    return directory / f"{provider}.json"


def emulator_from_file(
    provider: str, factory: EmulatorFactory, path: Path
) -> tuple[Emulator, dict[str, str]]:
    """The emulator `factory` makes with the state saved in `path`; a state it can't take
    is a ConfigError naming the file."""
    state = load_json_state(path)
    try:
        return factory(state)
    except (KeyError, TypeError, ValueError, AttributeError) as error:
        problem = f"is not a {provider} sandbox account ({type(error).__name__}: {error})"
        raise bad_state(path, problem) from None


def sandbox_account_id(provider: str, directory: Path) -> str:
    """A random id made the first time a sandbox directory is used: plans made against one
    sandbox account are refused by another, like real accounts."""
    path = directory / f"{provider}.account"
    try:
        known = path.read_text(encoding="utf-8").strip()
    except FileNotFoundError:
        known = ""
    except OSError as error:
        raise ConfigError(f"{path}: cannot read the sandbox account id ({error})") from None
    if known:
        return known
    made = uuid.uuid4().hex
    try:
        directory.mkdir(parents=True, exist_ok=True)
        path.write_text(made + "\n", encoding="utf-8")
    except OSError as error:
        raise ConfigError(f"{path}: cannot write the sandbox account id ({error})") from None
    return made


@contextmanager
def in_process_sandbox(
    provider: str, factory: EmulatorFactory, directory: Path = SANDBOX_DIR
) -> Iterator[SandboxEndpoint]:
    """An emulator reached through httpx's ASGI transport; its state is saved on exit."""
    path = state_file(provider, directory)
    emulator, credentials = emulator_from_file(provider, factory, path)
    transport = EmulatorTransport(app=emulator.app)
    account = sandbox_account_id(provider, directory)
    try:
        yield SandboxEndpoint(
            provider, f"http://{provider}.sandbox", credentials, transport, account_id=account
        )
    finally:
        save_json_state(path, emulator.dump_state())


def serve(
    provider: str,
    factory: EmulatorFactory,
    port: int,
    path: Path,
    announce: Callable[[str], None] = print,
) -> None:
    """Serve an emulator on 127.0.0.1:port (0: any free port) until SIGINT or SIGTERM, then
    save its state. The port is listening before the address is announced."""
    emulator, credentials = emulator_from_file(provider, factory, path)
    config = uvicorn.Config(emulator.app, log_level="warning")
    server = uvicorn.Server(config)
    with _listening(port) as listener:
        shown = ", ".join(f"{key}={value}" for key, value in credentials.items())
        url = f"http://127.0.0.1:{listener.getsockname()[1]}"
        announce(f"{provider} sandbox on {url} (sandbox credentials: {shown})")
        announce(f"state: {path} (saved on exit)")
        try:
            with _stop_on_signals():
                server.run(sockets=[listener])
        except _Stopped:
            pass
        finally:
            save_json_state(path, emulator.dump_state())
    announce(f"state saved to {path}")


def _listening(port: int) -> socket.socket:
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        listener.bind(("127.0.0.1", port))
        listener.listen(128)
    except OSError as error:
        listener.close()
        raise ConfigError(
            f"cannot listen on 127.0.0.1:{port} ({error.strerror}); choose another --port"
        ) from None
    return listener


class _Stopped(Exception):
    """SIGINT or SIGTERM arrived outside uvicorn's own handling of it."""


@contextmanager
def _stop_on_signals() -> Iterator[None]:
    """uvicorn shuts down gracefully on SIGINT/SIGTERM and then raises the signal again for
    the handler that was there before it; left at the default, SIGTERM would kill the
    process before the state is saved. This handler stops the server's caller instead."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def stop(signum: int, _frame: FrameType | None) -> None:
        raise _Stopped(signal.Signals(signum).name)

    previous = {number: signal.signal(number, stop) for number in _STOP_SIGNALS}
    try:
        yield
    finally:
        for number, handler in previous.items():
            signal.signal(number, handler)
