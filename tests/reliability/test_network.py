"""Timeouts and network errors through the command line: RECONCILE_CONNECT_TIMEOUT and
RECONCILE_READ_TIMEOUT are honoured, and an unreachable host, a TLS failure or a timeout
ends the command with exit 1 and one line naming the request, what failed and what to
check, never a traceback, and nothing written."""

from __future__ import annotations

import gc
import socket
import time
import warnings
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path

import pytest

from tests.reliability.accounts import ACCOUNTS, Account, cli
from tests.support import served

NAMES = {"mailjet": "Mailjet", "mailjawn": "MailJawn", "mailchimp": "Mailchimp"}


def closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@contextmanager
def unanswered_port() -> Iterator[int]:
    """A port that accepts no connection: its listen backlog is full, so SYNs are dropped
    and a connect waits until its timeout."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(0)
    port = int(listener.getsockname()[1])
    fillers = []
    for _ in range(3):
        filler = socket.socket()
        filler.setblocking(False)
        with suppress(BlockingIOError):
            filler.connect(("127.0.0.1", port))
        fillers.append(filler)
    try:
        yield port
    finally:
        for filler in fillers:
            filler.close()
        listener.close()


def collect_sockets_left_by_cancelled_handshakes() -> None:
    """When one request's handshake fails, its siblings are cancelled; httpcore does not
    close a socket whose TLS handshake is cancelled (its start_tls cleans up on Exception,
    not on CancelledError). The process exits right after, but in a test run the socket
    is found by some later garbage collection: collect it here, its warning ignored."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ResourceWarning)
        gc.collect()


def one_error_line(account: Account, output: str, says: str) -> str:
    """The whole output (--quiet) is one line: the request, the cause, what to check."""
    lines = output.strip().splitlines()
    assert len(lines) == 1, output
    line = lines[0]
    assert line.startswith("Error: GET /"), line
    assert f"could not reach {NAMES[account.provider_name]} ({says}" in line, line
    assert f"check {account.provider_name.upper()}_API_URL and the network" in line, line
    return line


@pytest.mark.parametrize("command", ["plan", "apply"])
@pytest.mark.parametrize("provider_name", ACCOUNTS)
def test_unreachable_host_is_one_clear_line(
    tmp_path: Path, provider_name: str, command: str
) -> None:
    account = ACCOUNTS[provider_name]()
    args = [command, str(account.write_manifest(tmp_path))]
    if command == "apply":
        args.append("--auto-approve")
    env = account.env(f"http://127.0.0.1:{closed_port()}")

    code, output = cli(*args, "--quiet", env=env)

    assert code == 1, output
    one_error_line(account, output, "ConnectError: All connection attempts failed")

    code, output = cli(*args, env=env)  # with progress lines: still one error, no traceback
    assert code == 1, output
    assert len([line for line in output.splitlines() if line.startswith("Error:")]) == 1
    assert "Traceback" not in output


@pytest.mark.parametrize("provider_name", ACCOUNTS)
def test_tls_failure_is_one_clear_line_without_retries(tmp_path: Path, provider_name: str) -> None:
    account = ACCOUNTS[provider_name]()
    manifest = str(account.write_manifest(tmp_path))
    with served(account.app) as url:
        # A retry would wait at least 5 s: the elapsed time shows whether one happened.
        env = {
            **account.env(url.replace("http://", "https://")),
            "RECONCILE_RETRY_WAIT": "5",
            "RECONCILE_RETRY_WAIT_MAX": "10",
        }
        started = time.monotonic()
        code, output = cli("apply", manifest, "--auto-approve", "--quiet", env=env)
        elapsed = time.monotonic() - started
    collect_sockets_left_by_cancelled_handshakes()

    assert code == 1, output
    line = one_error_line(account, output, "ConnectError: TLS handshake failed:")
    assert "scheme (https or http)" in line
    assert elapsed < 3.0, "a TLS failure is not worth retrying"
    assert account.control.calls() == []


@pytest.mark.parametrize("provider_name", ACCOUNTS)
def test_read_timeout_is_configurable(tmp_path: Path, provider_name: str) -> None:
    account = ACCOUNTS[provider_name]()
    manifest = str(account.write_manifest(tmp_path))
    account.control.latency_seconds = 0.3
    with served(account.app) as url:
        short = {**account.env(url), "RECONCILE_READ_TIMEOUT": "0.1"}
        code, output = cli(
            "apply",
            manifest,
            "--auto-approve",
            "--quiet",
            env={**short, "RECONCILE_RETRY_ATTEMPTS": "2"},
        )
        assert code == 1, output
        one_error_line(
            account, output, "ReadTimeout: no answer within 0.1 s; RECONCILE_READ_TIMEOUT sets"
        )
        assert account.writes() == []

        long = {**account.env(url), "RECONCILE_READ_TIMEOUT": "5"}
        code, output = cli("plan", manifest, "--quiet", env=long)
        assert code == 0, output


@pytest.mark.parametrize("provider_name", ACCOUNTS)
def test_connect_timeout_is_configurable(tmp_path: Path, provider_name: str) -> None:
    account = ACCOUNTS[provider_name]()
    manifest = str(account.write_manifest(tmp_path))
    with unanswered_port() as port:
        env = {
            **account.env(f"http://127.0.0.1:{port}"),
            "RECONCILE_CONNECT_TIMEOUT": "0.2",
            "RECONCILE_RETRY_ATTEMPTS": "2",
        }
        started = time.monotonic()
        code, output = cli("plan", manifest, "--quiet", env=env)
        elapsed = time.monotonic() - started

    assert code == 1, output
    one_error_line(
        account,
        output,
        "ConnectTimeout: could not connect within 0.2 s; RECONCILE_CONNECT_TIMEOUT sets",
    )
    assert elapsed < 3.0  # two attempts of 0.2 s, not the 10 s default
