"""`reconcile sandbox` as a process: it listens before it says so, saves its state when
stopped by SIGTERM (as by a service manager or `kill`) as well as by Ctrl-C, and refuses a
port in use in one line."""

from __future__ import annotations

import json
import re
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest

AUTH = ("sandbox-key", "sandbox-secret")


@contextmanager
def sandbox_process(state: Path) -> Iterator[tuple[subprocess.Popen[str], str]]:
    """`reconcile sandbox` on a free port; yields the process and its base URL."""
    command = [sys.executable, "-m", "reconcile", "sandbox", "--port", "0", "--state", str(state)]
    server = subprocess.Popen(command, stderr=subprocess.PIPE, text=True)
    try:
        assert server.stderr is not None
        banner = server.stderr.readline()
        found = re.search(r"sandbox on (http://127\.0\.0\.1:\d+) ", banner)
        assert found, banner
        yield server, found.group(1)
    finally:
        if server.poll() is None:
            server.kill()
        server.wait(timeout=10)
        if server.stderr is not None:
            server.stderr.close()


def create_contact(url: str, email: str) -> None:
    answer = httpx.post(f"{url}/v3/REST/contact", json={"Email": email}, auth=AUTH)
    assert answer.status_code == 201, answer.text


@pytest.mark.parametrize("stop", [signal.SIGTERM, signal.SIGINT])
def test_stopping_the_server_saves_its_state(tmp_path: Path, stop: signal.Signals) -> None:
    state = tmp_path / "f.json"
    with sandbox_process(state) as (server, url):
        create_contact(url, "kept@example.com")
        server.send_signal(stop)
        assert server.wait(timeout=10) == 0
        assert server.stderr is not None
        assert f"state saved to {state}" in server.stderr.read()
    saved = json.loads(state.read_text(encoding="utf-8"))
    assert [c["email"] for c in saved["contacts"]] == ["kept@example.com"]


def test_a_restarted_server_serves_the_saved_state(tmp_path: Path) -> None:
    state = tmp_path / "f.json"
    with sandbox_process(state) as (server, url):
        create_contact(url, "first@example.com")
        server.send_signal(signal.SIGTERM)
        server.wait(timeout=10)
    with sandbox_process(state) as (server, url):
        listed = httpx.get(f"{url}/v3/REST/contact", auth=AUTH).json()
        assert [c["Email"] for c in listed["Data"]] == ["first@example.com"]
        server.send_signal(signal.SIGTERM)
        assert server.wait(timeout=10) == 0


def test_a_port_in_use_is_one_line(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        command = [sys.executable, "-m", "reconcile", "sandbox", "--port", str(port)]
        done = subprocess.run(
            [*command, "--state", str(tmp_path / "f.json")],
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )
    assert done.returncode == 1
    assert done.stderr.splitlines() == [
        f"Error: cannot listen on 127.0.0.1:{port} (Address already in use); choose another --port"
    ]
    assert not (tmp_path / "f.json").exists()
