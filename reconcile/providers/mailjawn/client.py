"""Thin async MailJawn REST v1 client: auth, paging, errors, retries, pacing. No mapping.

Two budgets, as the API counts them per key: reads (GET, HEAD, OPTIONS) and writes
(POST, PATCH, DELETE). Each has its own Pacer, tightened by the RateLimit-* headers of
every answer; a 429 waits exactly its Retry-After before the same request goes again.
"""

from __future__ import annotations

import asyncio
import email.utils
import re
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, TypeVar, overload
from urllib.parse import quote

import httpx

from reconcile.errors import ApiError
from reconcile.providers.answers import NO_BODY, json_body, of_request
from reconcile.providers.base import refuse_write_when_stopping, unless_stopped
from reconcile.providers.pacing import (
    Pacer,
    RequestStats,
    RetryableStatus,
    RetryPolicy,
    send_with_retries,
)
from reconcile.providers.trace import trace_hooks

DEFAULT_URL = "https://api.mailjawn.com"
PAGE_SIZE = 100
WINDOW_SECONDS = 60.0  # the window the document gives for every budget
READ_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
IDEMPOTENT_METHODS = READ_METHODS | {"PATCH", "DELETE"}

_SCOPE = re.compile(r"\b[a-z]+:[a-z]+\b")
_SUBSCRIBER_PATH = re.compile(r"/subscribers/[^/]+/$")
# A RateLimit-Reset below this is a number of seconds (the IETF draft's form), not a timestamp.
_EPOCH_FLOOR = 1e9
RETRY_AFTER_MAX = 600.0  # a longer Retry-After ends the run instead of waiting
T = TypeVar("T")


def _as_is(item: Any) -> Any:
    return item


@dataclass
class HoldingPacer(Pacer):
    """A Pacer whose holds also stop requests that were already given their turn.

    Pacer.hold_until only affects turns taken after it; a request already asleep
    until an earlier turn would still go out inside the hold. Here such a request
    waits the hold out and takes its turn again, so requests stay paced after it.
    """

    _held_until: float = field(default=0.0, repr=False)

    async def wait_turn(self) -> None:
        while True:
            delay = self._held_until - self.clock()
            if delay > 0:
                self.waited_seconds += delay
                await self.sleep(delay)
            await super().wait_turn()
            if self.clock() >= self._held_until:
                return

    def hold_until(self, moment: float) -> None:
        super().hold_until(moment)
        self._held_until = max(self._held_until, moment)


@dataclass
class _Lane:
    pacer: HoldingPacer
    in_flight: asyncio.Semaphore


class MailJawnClient:
    def __init__(
        self,
        *,
        api_key: str,
        project_id: str,
        base_url: str = DEFAULT_URL,
        reads_per_minute: float = 100,
        writes_per_minute: float = 30,
        transport: httpx.AsyncBaseTransport | None = None,
        timeout: httpx.Timeout | None = None,
        retry: RetryPolicy | None = None,
        max_in_flight: int = 4,
        window_seconds: float = WINDOW_SECONDS,
    ) -> None:
        """`window_seconds` is the server's window, used to read RateLimit-Limit."""
        self._secret = api_key
        self.project_id = project_id
        self.base_url = base_url.rstrip("/")
        self._http = httpx.AsyncClient(
            base_url=base_url.rstrip("/"),
            transport=transport,
            timeout=timeout or httpx.Timeout(30.0, connect=10.0),
            event_hooks=dict(trace_hooks()),
            headers={"Authorization": f"Bearer {api_key}", "Accept": "application/json"},
        )
        self.prefix = f"/api/v1/projects/{quote(project_id, safe='')}"
        self.retry = retry or RetryPolicy()
        self.stats = RequestStats()
        self.wall_clock: Callable[[], float] = time.time
        minutes_per_window = window_seconds / 60.0
        self.reads = HoldingPacer(reads_per_minute * minutes_per_window, window_seconds)
        self.writes = HoldingPacer(writes_per_minute * minutes_per_window, window_seconds)
        self._reading = _Lane(self.reads, asyncio.Semaphore(max_in_flight))
        self._writing = _Lane(self.writes, asyncio.Semaphore(max_in_flight))

    async def aclose(self) -> None:
        await self._http.aclose()

    @property
    def waited_seconds(self) -> float:
        return self.reads.waited_seconds + self.writes.waited_seconds

    def _lane(self, method: str) -> _Lane:
        return self._reading if method.upper() in READ_METHODS else self._writing

    # ---- calls ------------------------------------------------------------------------

    @overload
    async def list_all(
        self, path: str, key: str, params: Mapping[str, Any] | None = None
    ) -> list[Any]: ...

    @overload
    async def list_all(
        self,
        path: str,
        key: str,
        params: Mapping[str, Any] | None = None,
        *,
        keep: Callable[[Any], T],
    ) -> list[T]: ...

    async def list_all(
        self,
        path: str,
        key: str,
        params: Mapping[str, Any] | None = None,
        *,
        keep: Callable[[Any], Any] = _as_is,
    ) -> list[Any]:
        """Every item of a collection: limit=100 and offset, until `total` is reached.

        Stops too on a short page, and never goes past the smallest total seen, so a
        total that keeps growing (records added during the read) can't loop forever.
        `keep` turns each item into what the caller needs; an item it can't read is an
        error of this request.
        """
        items: list[Any] = []
        offset = 0
        bound: int | None = None
        while True:
            answer = await self.get(path, {**(params or {}), "limit": PAGE_SIZE, "offset": offset})
            page, total = self._page(answer, path, key)
            try:
                items.extend(keep(item) for item in page)
            except ApiError as error:
                raise of_request(error, "GET", self.prefix + path) from None
            offset += len(page)
            bound = total if bound is None else min(bound, total)
            if len(page) < PAGE_SIZE or offset >= bound:
                return items

    async def get(self, path: str, params: Mapping[str, Any] | None = None) -> Any:
        return await self.request("GET", path, params=params)

    async def post(self, path: str, body: Any, *, idempotent: bool) -> Any:
        return await self.request("POST", path, body=body, idempotent=idempotent)

    async def patch(self, path: str, body: Any) -> Any:
        return await self.request("PATCH", path, body=body)

    async def delete(self, path: str) -> None:
        await self.request("DELETE", path)

    async def request(
        self,
        method: str,
        path: str,
        *,
        params: Mapping[str, Any] | None = None,
        body: Any = None,
        idempotent: bool | None = None,
    ) -> Any:
        """Send with pacing and retries; returns the decoded JSON body (None when empty).

        429 is always retried (nothing was done). 5xx and lost connections are
        retried only for idempotent requests: a bulk import that may have landed is
        left to the caller, which looks the emails up instead.
        """
        url = self.prefix + path
        may_repeat = method in IDEMPOTENT_METHODS if idempotent is None else idempotent

        try:
            response = await send_with_retries(
                self.retry,
                self.stats,
                may_repeat,
                lambda: self._send_honouring_retry_after(method, url, params, body),
                _worth_retrying,
            )
        except RetryableStatus as error:
            response = error.response
        except httpx.TransportError as error:
            raise ApiError(
                self._redact(f"could not reach MailJawn ({type(error).__name__}: {error})"),
                method=method,
                path=url,
                hint="check MAILJAWN_API_URL and the network; re-run to continue",
            ) from None
        return self._decode(response, method, url)

    # ---- sending ----------------------------------------------------------------------

    async def _send_honouring_retry_after(
        self, method: str, url: str, params: Mapping[str, Any] | None, body: Any
    ) -> httpx.Response:
        """Repeat a 429 after exactly its Retry-After (no backoff on top), a few times."""
        pacer = self._lane(method).pacer
        retries_left = self.retry.attempts - 1
        while True:
            response = await self._send_once(method, url, params, body)
            if response.status_code != 429:
                return response
            self.stats.rate_limited += 1
            delay = retry_after(response)
            if delay is None or delay > RETRY_AFTER_MAX or retries_left <= 0:
                return response
            retries_left -= 1
            self.stats.retries += 1
            pacer.hold_until(pacer.clock() + delay)

    async def _send_once(
        self, method: str, url: str, params: Mapping[str, Any] | None, body: Any
    ) -> httpx.Response:
        lane = self._lane(method)
        async with lane.in_flight:
            if method == "GET":
                await lane.pacer.wait_turn()
            else:
                await unless_stopped(lane.pacer.wait_turn(), method, url)
            refuse_write_when_stopping(method, url)
            self.stats.count(method)
            response = await self._http.request(method, url, params=params, json=body)
        self._follow_rate_headers(lane.pacer, response)
        return response

    def _follow_rate_headers(self, pacer: HoldingPacer, response: httpx.Response) -> None:
        """Adopt a lower RateLimit-Limit; when Remaining is 0, hold the lane until Reset.

        A 429 carrying Retry-After is left to that header alone (waited exactly).
        """
        if response.status_code == 429 and retry_after(response) is not None:
            return
        headers = response.headers
        limit = _number(headers.get("RateLimit-Limit"))
        if limit is not None and 0 < limit < pacer.per_window:
            pacer.per_window = limit
        remaining = _number(headers.get("RateLimit-Remaining"))
        reset = _number(headers.get("RateLimit-Reset"))
        if remaining is not None and remaining <= 0 and reset is not None:
            delay = reset if reset < _EPOCH_FLOOR else reset - self.wall_clock()
            if delay > 0:
                pacer.hold_until(pacer.clock() + delay)

    # ---- answers ----------------------------------------------------------------------

    def _decode(self, response: httpx.Response, method: str, url: str) -> Any:
        status = response.status_code
        payload: Any = json_body(response, method, url)
        if payload is NO_BODY:
            return None
        if status < 300:
            return payload
        message = self._redact(error_message(payload, response))
        raise ApiError(
            message,
            method=method,
            path=url,
            status=status,
            hint=_hint(status, method, url, message),
        )

    def _page(self, answer: Any, path: str, key: str) -> tuple[list[Any], int]:
        items = answer.get(key) if isinstance(answer, dict) else None
        total = answer.get("total") if isinstance(answer, dict) else None
        if not isinstance(items, list) or not isinstance(total, int) or isinstance(total, bool):
            raise ApiError(
                f"answer has no {key!r} list and integer 'total'; nothing was changed based on it",
                method="GET",
                path=self.prefix + path,
            )
        return items, total

    def _redact(self, text: str) -> str:
        return text.replace(self._secret, "mj_***") if self._secret else text


def retry_after(response: httpx.Response) -> float | None:
    """Retry-After in seconds (decimals allowed), or from an HTTP date; None if absent."""
    value = response.headers.get("Retry-After")
    if value is None:
        return None
    seconds = _number(value)
    if seconds is not None:
        return max(seconds, 0.0)
    try:
        moment = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(moment.timestamp() - time.time(), 0.0)


def _number(value: str | None) -> float | None:
    if value is None:
        return None
    try:
        return float(value.strip())
    except ValueError:
        return None


def error_message(payload: Any, response: httpx.Response) -> str:
    """MailJawn's {"error": ...} as it is (or the throttle's "detail"), else the body."""
    if isinstance(payload, dict):
        message = payload.get("error") or payload.get("detail")
        return str(message) if message else str(payload)[:300]
    if payload is not None:
        return str(payload)[:300]
    kind = response.headers.get("content-type", "unknown type")
    return f"non-JSON error body ({kind}): {response.text[:200]!r}"


def _hint(status: int, method: str, url: str, message: str) -> str:
    if status == 401:
        return "check MAILJAWN_API_KEY: the key is missing, mistyped or revoked"
    if status == 403:
        return f"the key lacks {_missing_scope(method, message)}; create a key with that scope"
    if status == 404:
        if "project" not in message.lower() and _SUBSCRIBER_PATH.search(url):
            return "the subscriber no longer exists (deleted meanwhile?); run plan again"
        return "check MAILJAWN_PROJECT_ID (or the manifest's provider option project_id)"
    if status == 429:
        return "rate limit: lower reads_per_minute/writes_per_minute in the provider options"
    if status >= 500:
        return "MailJawn had a server error; re-run later to continue"
    return ""


def _missing_scope(method: str, message: str) -> str:
    named = _SCOPE.search(message)
    if named:
        return named.group(0)
    return "subscribers:read" if method in READ_METHODS else "subscribers:write"


def _worth_retrying(response: httpx.Response) -> bool:
    """5xx, and 429 without Retry-After (with it, the wait already happened)."""
    status = response.status_code
    return status >= 500 or (status == 429 and retry_after(response) is None)
