"""Plumbing shared by the emulators: injected faults, request log, control routes.

Nothing here knows either provider's API; each emulator builds its own routes and
calls `EmulatorControl.before_request()` first thing in every handler (through the
middleware below), so faults, latency and counting behave the same for both.
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import httpx
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from reconcile.errors import ConfigError

CONTROL_PREFIX = "/_emulator"


class Emulator(Protocol):
    """An API emulator the sandbox can serve: an ASGI app and its state as JSON."""

    app: ASGIApp

    def dump_state(self) -> dict[str, Any]: ...


# The emulator with the state saved before (None: an empty account), and the sandbox
# credentials it accepts (keys named as the provider's client expects them).
EmulatorFactory = Callable[[dict[str, Any] | None], tuple[Emulator, dict[str, str]]]


@dataclass
class Fault:
    """One injected fault, consumed by the next matching request.

    kind: "status" answers `status` with `body` (and `headers`);
          "reset" drops the connection without an answer (the ASGI app raises);
          "reset_after" serves the request, then drops the connection before the
          answer (a write lands; the client can't know);
          "garble" serves the request, then answers `status` with `body` instead
          (a write lands; its answer is not what the document promises);
          "latency" sleeps `seconds` then serves normally.
    method/path_contains/path narrow which requests it matches ("" matches all;
    `path` must equal the request path).
    """

    kind: str = "status"
    status: int = 500
    body: Any = None
    headers: dict[str, str] = field(default_factory=dict)
    seconds: float = 0.0
    method: str = ""
    path_contains: str = ""
    path: str = ""
    count: int = 1

    def matches(self, method: str, path: str) -> bool:
        return (
            (not self.method or self.method.upper() == method)
            and self.path_contains in path
            and (not self.path or self.path == path)
        )


class ConnectionDropped(Exception):
    """Raised inside the app to make the server close the connection unanswered."""


class EmulatorTransport(httpx.ASGITransport):
    """In-process transport to an emulator; an injected reset arrives as a network error."""

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        try:
            return await super().handle_async_request(request)
        except ConnectionDropped as error:
            raise httpx.RemoteProtocolError(str(error), request=request) from None


@dataclass
class RequestRecord:
    method: str
    path: str
    status: int


@dataclass
class ProcessingTime:
    """How long the emulator itself took to answer (latency apart), and how often that
    alone exceeded the latency it was meant to fit in."""

    answers: int = 0
    seconds: float = 0.0
    longest: float = 0.0
    overruns: int = 0

    def add(self, seconds: float, latency: float) -> None:
        self.answers += 1
        self.seconds += seconds
        self.longest = max(self.longest, seconds)
        self.overruns += seconds > latency

    def as_json(self) -> dict[str, float]:
        return {
            "answers": self.answers,
            "seconds": self.seconds,
            "longest": self.longest,
            "overruns": self.overruns,
        }


@dataclass
class EmulatorControl:
    """Runtime knobs of an emulator, settable from tests or over HTTP."""

    latency_seconds: float = 0.0
    # When set, an answer takes latency_seconds in all, its own processing included
    # (benchmarks: the emulator's CPU then stays out of the client's wall time).
    latency_includes_processing: bool = False
    timing: ProcessingTime = field(default_factory=ProcessingTime)
    faults: list[Fault] = field(default_factory=list)
    log: list[RequestRecord] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def inject(self, fault: Fault) -> None:
        with self.lock:
            self.faults.append(fault)

    def take_fault(self, method: str, path: str) -> Fault | None:
        with self.lock:
            for fault in self.faults:
                if fault.matches(method, path):
                    fault.count -= 1
                    if fault.count <= 0:
                        self.faults.remove(fault)
                    return fault
        return None

    def record(self, method: str, path: str, status: int) -> None:
        with self.lock:
            self.log.append(RequestRecord(method, path, status))

    def calls(self, method: str | None = None) -> list[RequestRecord]:
        with self.lock:
            return [r for r in self.log if method is None or r.method == method]


class ControlMiddleware:
    """Applies latency and faults before the emulator sees a request; logs every answer."""

    def __init__(self, app: ASGIApp, control: EmulatorControl) -> None:
        self.app = app
        self.control = control

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"].startswith(CONTROL_PREFIX):
            await self.app(scope, receive, send)
            return
        method, path = scope["method"], scope["path"]
        fault = self.control.take_fault(method, path)
        delay = self.control.latency_seconds
        if fault is not None and fault.kind == "latency":
            delay += fault.seconds
            fault = None
        if delay and fault is None and self.control.latency_includes_processing:
            await self._answer_within(delay, scope, receive, send)
            return
        if delay:
            # The request has arrived whole; the server is slow to act on it. A client
            # that gives up meanwhile does not stop it (a write still lands).
            receive = await _arrived_whole(receive)
            await asyncio.sleep(delay)
        if fault is not None and fault.kind in ("reset_after", "garble"):

            async def discard(message: Any) -> None:
                return None

            await self.app(scope, receive, discard)
        if fault is not None and fault.kind in ("reset", "reset_after"):
            self.control.record(method, path, 0)
            # Starting the answer and then failing makes a real server drop the connection.
            await send({"type": "http.response.start", "status": 200, "headers": []})
            raise ConnectionDropped(f"injected connection reset on {method} {path}")
        if fault is not None:
            body = fault.body if fault.body is not None else {"error": "injected fault"}
            raw = body.encode() if isinstance(body, str) else json.dumps(body).encode()
            media = "text/html" if isinstance(body, str) else "application/json"
            response = Response(raw, fault.status, fault.headers, media_type=media)
            self.control.record(method, path, fault.status)
            await response(scope, receive, send)
            return
        status_seen = 0

        async def logging_send(message: Any) -> None:
            nonlocal status_seen
            if message["type"] == "http.response.start":
                status_seen = message["status"]
            await send(message)

        await self.app(scope, receive, logging_send)
        self.control.record(method, path, status_seen)

    async def _answer_within(
        self, delay: float, scope: Scope, receive: Receive, send: Send
    ) -> None:
        """Serve at once, then hold the answer back for what is left of `delay`."""
        held: list[Message] = []

        async def hold(message: Message) -> None:
            held.append(message)

        started = time.perf_counter()
        await self.app(scope, receive, hold)
        took = time.perf_counter() - started
        self.control.timing.add(took, delay)
        await asyncio.sleep(max(0.0, delay - took))
        status = 0
        for message in held:
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)
        self.control.record(scope["method"], scope["path"], status)


async def _arrived_whole(receive: Receive) -> Receive:
    """Read the request body now; the app gets it later even if the client has gone."""
    arrived: list[Message] = []
    while True:
        message = await receive()
        arrived.append(message)
        if message["type"] != "http.request" or not message.get("more_body", False):
            break

    async def replay() -> Message:
        return arrived.pop(0) if arrived else await receive()

    return replay


def control_routes(
    control: EmulatorControl,
    dump_state: Callable[[], dict[str, Any]],
    load_state: Callable[[dict[str, Any]], None],
    own_settings: Callable[[dict[str, Any]], dict[str, Any]] | None = None,
) -> list[Route]:
    """HTTP routes under /_emulator for tests that run the emulator in another process;
    `own_settings` takes the settings payload too, for an emulator's own switches, and
    answers their values."""

    async def faults(request: Request) -> Response:
        payload = await request.json()
        items = payload if isinstance(payload, list) else [payload]
        for item in items:
            control.inject(Fault(**item))
        return JSONResponse({"queued": len(control.faults)})

    async def settings(request: Request) -> Response:
        payload = await request.json()
        control.latency_seconds = float(payload.get("latency_seconds", control.latency_seconds))
        control.latency_includes_processing = bool(
            payload.get("latency_includes_processing", control.latency_includes_processing)
        )
        try:
            own = own_settings(payload) if own_settings is not None else {}
        except ValueError as problem:
            return JSONResponse({"error": f"settings: {problem}"}, status_code=400)
        return JSONResponse(
            {
                "latency_seconds": control.latency_seconds,
                "latency_includes_processing": control.latency_includes_processing,
                **own,
            }
        )

    async def timing(_: Request) -> Response:
        return JSONResponse(control.timing.as_json())

    async def state(request: Request) -> Response:
        if request.method == "PUT":
            load_state(await request.json())
        return JSONResponse(dump_state())

    async def calls(_: Request) -> Response:
        return JSONResponse(
            [{"method": r.method, "path": r.path, "status": r.status} for r in control.calls()]
        )

    return [
        Route(f"{CONTROL_PREFIX}/faults", faults, methods=["POST"]),
        Route(f"{CONTROL_PREFIX}/settings", settings, methods=["POST"]),
        Route(f"{CONTROL_PREFIX}/state", state, methods=["GET", "PUT"]),
        Route(f"{CONTROL_PREFIX}/calls", calls, methods=["GET"]),
        Route(f"{CONTROL_PREFIX}/timing", timing, methods=["GET"]),
    ]


class FixedWindowLimiter:
    """Counts requests per key in fixed windows of `window_seconds` (time_scale shrinks it)."""

    def __init__(
        self,
        limit: int,
        window_seconds: float = 60.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.limit = limit
        self.window_seconds = window_seconds
        self.clock = clock
        self._windows: dict[str, tuple[float, int]] = {}
        self._lock = threading.Lock()

    def hit(self, key: str) -> tuple[bool, int, float]:
        """Count one request. Returns (allowed, remaining, window_reset_epoch)."""
        now = self.clock()
        with self._lock:
            start, used = self._windows.get(key, (now, 0))
            if now - start >= self.window_seconds:
                start, used = now, 0
            allowed = self.limit <= 0 or used < self.limit
            if allowed:
                used += 1
            self._windows[key] = (start, used)
        remaining = max(self.limit - used, 0)
        return allowed, remaining, start + self.window_seconds


def load_json_state(path: Path | None) -> dict[str, Any] | None:
    """The saved emulator state, None when there is none yet. A file that can't be read or
    is not a JSON object is a ConfigError naming it and saying what to do."""
    if path is None or not path.exists():
        return None
    try:
        loaded = json.loads(path.read_text(encoding="utf-8"))
    except OSError as error:
        raise bad_state(path, f"cannot be read ({error.strerror})") from None
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise bad_state(path, f"is not valid JSON ({error})") from None
    if not isinstance(loaded, dict):
        raise bad_state(path, "does not hold a JSON object")
    return loaded


def save_json_state(path: Path, state: dict[str, Any]) -> None:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(path.suffix + ".tmp")
        tmp.write_text(json.dumps(state, indent=1, sort_keys=True), encoding="utf-8")
        tmp.replace(path)
    except OSError as error:
        raise ConfigError(
            f"{path}: cannot save the sandbox state ({error.strerror}); "
            "make its directory writable or choose another file"
        ) from None


def bad_state(path: Path, problem: str) -> ConfigError:
    return ConfigError(
        f"{path}: sandbox state {problem}; delete it to start from an empty account, or fix it"
    )


class ApiApp:
    """Sends /_emulator/* to the control routes and everything else to the API."""

    def __init__(self, serve: Callable[[Request], Awaitable[Response]], control: ASGIApp) -> None:
        self._serve = serve
        self._control = control

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and not scope["path"].startswith(CONTROL_PREFIX):
            response = await self._serve(Request(scope, receive))
            await response(scope, receive, send)
        else:
            await self._control(scope, receive, send)
