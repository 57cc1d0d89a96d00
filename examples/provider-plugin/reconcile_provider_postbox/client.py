"""A small client of the Postbox REST v1 API (see emulator.py for the API itself), on
httpx alone: authentication, paging, pacing, retries, and every failure as one line
naming the request and what to do.

Retries: a 429 is always retried (the API did nothing), waiting its Retry-After; a 5xx
or a lost connection only for GET, PATCH and DELETE, which may be sent twice; a POST
only when it never left (the connection could not be made), since a repeated creation
could land twice.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from dataclasses import dataclass
from typing import Any

import httpx

from reconcile.errors import ApiError
from reconcile.providers.base import Cancellation

API = "/v1"  # every path below is under it
LOGGER = logging.getLogger("reconcile.http")  # `reconcile --debug` shows this logger
REPEATABLE = frozenset({"GET", "PATCH", "DELETE"})
TIMEOUT_SETTING = {
    httpx.ConnectTimeout: "RECONCILE_CONNECT_TIMEOUT",
    httpx.ReadTimeout: "RECONCILE_READ_TIMEOUT",
    httpx.WriteTimeout: "RECONCILE_READ_TIMEOUT",
    httpx.PoolTimeout: "RECONCILE_CONNECT_TIMEOUT",
}
MAY_HAVE_LANDED = "it may have been carried out all the same; run plan to see"
HINTS = {
    401: "check POSTBOX_API_KEY",
    403: "check that POSTBOX_API_KEY may write to this account",
}


class NotFound(ApiError):
    """404: the record is gone."""


class Conflict(ApiError):
    """409: the name or email is taken, or the contact is on the list already."""

    def __init__(self, message: str, *, existing_id: str | None, **where: Any) -> None:
        super().__init__(message, **where)
        self.existing_id = existing_id


class Moved(ApiError):
    """412: the record changed since the version the write was conditioned on."""


@dataclass(frozen=True)
class Retrying:
    attempts: int = 6  # tries in all, the first included
    first_wait: float = 1.0  # seconds, doubled each time, with jitter
    max_wait: float = 60.0


@dataclass
class RequestStats:
    requests: int = 0
    retries: int = 0
    rate_limited: int = 0
    waited_seconds: float = 0.0  # held back by the pace or a Retry-After


class PostboxClient:
    def __init__(
        self,
        *,
        api_key: str,
        base_url: str,
        transport: httpx.AsyncBaseTransport | None = None,
        timeout: httpx.Timeout | None = None,
        requests_per_minute: float = 120.0,
        page_size: int = 100,
        retrying: Retrying | None = None,
        cancel: Cancellation | None = None,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.cancel = cancel or Cancellation()
        self.page_size = page_size
        self.retrying = retrying or Retrying()
        self.stats = RequestStats()
        self._interval = 60.0 / requests_per_minute
        self._next_start = 0.0
        self._pace = asyncio.Lock()
        self._http = httpx.AsyncClient(
            base_url=f"{self.base_url}{API}/",
            headers={"Authorization": f"Bearer {api_key}", "Accept": "application/json"},
            transport=transport,
            timeout=timeout or httpx.Timeout(30.0, connect=10.0),
        )

    async def aclose(self) -> None:
        await self._http.aclose()

    # ---- the API's verbs -----------------------------------------------------------

    async def get_all(self, path: str) -> list[Any]:
        """Every record of a listing, page after page."""
        found: list[Any] = []
        token: str | None = None
        while True:
            params = {"limit": str(self.page_size)}
            if token is not None:
                params["page_token"] = token
            page = await self.send("GET", path, params=params)
            if not isinstance(page, dict) or not isinstance(page.get("data"), list):
                raise _misread("GET", API + path, "expected {data: [...], next_page_token}")
            found.extend(page["data"])
            token = page.get("next_page_token")
            if token is None:
                return found
            if not isinstance(token, str):
                raise _misread("GET", API + path, f"next_page_token {token!r} is not a string")

    async def send(
        self,
        method: str,
        path: str,
        body: dict[str, Any] | None = None,
        *,
        params: dict[str, str] | None = None,
        if_match: int | None = None,
    ) -> Any:
        """The answer's JSON (None for 204), or an ApiError naming `method path`."""
        headers = {"If-Match": f'"{if_match}"'} if if_match is not None else {}
        for attempt in range(1, self.retrying.attempts + 1):
            await self._wait_turn()
            if method != "GET":
                self.cancel.wrote = True  # from here on, Ctrl-C can't say "nothing changed"
            self.stats.requests += 1
            request = self._http.build_request(
                method, path, json=body, params=params, headers=headers
            )
            LOGGER.debug("-> %s %s", method, request.url)  # never the headers: the key
            try:
                response = await self._http.send(request)
            except httpx.TransportError as error:
                never_sent = isinstance(error, httpx.ConnectError | httpx.ConnectTimeout)
                if attempt < self.retrying.attempts and (never_sent or method in REPEATABLE):
                    await self._back_off(attempt, None)
                    continue
                maybe_landed = not never_sent and method not in REPEATABLE
                raise _unreachable(error, method, API + path, maybe_landed) from None
            LOGGER.debug("<- %s %s %s", response.status_code, method, request.url)
            status = response.status_code
            retry = status == 429 or (status >= 500 and method in REPEATABLE)
            if retry and attempt < self.retrying.attempts:
                self.stats.rate_limited += status == 429
                await self._back_off(attempt, response.headers.get("retry-after"))
                continue
            return _answer(response, method, API + path)
        raise AssertionError("unreachable: the last attempt returns or raises")

    # ---- pacing and waiting --------------------------------------------------------

    async def _wait_turn(self) -> None:
        """Request starts at most `requests_per_minute` a minute, evenly spaced."""
        async with self._pace:
            now = time.monotonic()
            delay = self._next_start - now
            self._next_start = max(now, self._next_start) + self._interval
        if delay > 0:
            self.stats.waited_seconds += delay
            await asyncio.sleep(delay)

    async def _back_off(self, attempt: int, retry_after: str | None) -> None:
        self.stats.retries += 1
        wait = min(self.retrying.max_wait, self.retrying.first_wait * 2 ** (attempt - 1))
        wait *= 0.5 + random.random() / 2
        if retry_after is not None and retry_after.strip().isdigit():
            wait = min(float(retry_after), self.retrying.max_wait)
        self.stats.waited_seconds += wait
        await asyncio.sleep(wait)


def _answer(response: httpx.Response, method: str, path: str) -> Any:
    status = response.status_code
    if status == 204:
        return None
    try:
        data = response.json()
    except ValueError:
        data = None
        if status < 300 and method == "GET":
            raise _misread(method, path, "the answer is not JSON") from None
        if status < 300:
            raise ApiError(
                "the answer is not JSON", method=method, path=path, hint=MAY_HAVE_LANDED
            ) from None
    if status < 300:
        return data
    error = data.get("error") if isinstance(data, dict) else None
    error = error if isinstance(error, dict) else {}
    message = str(error.get("message") or response.reason_phrase or "failed")
    where: dict[str, Any] = {"method": method, "path": path, "status": status}
    if status == 404:
        raise NotFound(message, **where)
    if status == 409:
        existing = error.get("existing_id")
        raise Conflict(
            message, existing_id=existing if isinstance(existing, str) else None, **where
        )
    if status == 412:
        raise Moved(message, **where)
    hint = HINTS.get(status, "")
    if status >= 500 and method not in REPEATABLE:
        hint = MAY_HAVE_LANDED
    raise ApiError(message, hint=hint, **where)


def _misread(method: str, path: str, problem: str) -> ApiError:
    return ApiError(f"{problem}; nothing was changed based on it", method=method, path=path)


def _unreachable(
    error: httpx.TransportError, method: str, path: str, maybe_landed: bool
) -> ApiError:
    landed = f"; {MAY_HAVE_LANDED}" if maybe_landed else ""
    setting = next((s for kind, s in TIMEOUT_SETTING.items() if isinstance(error, kind)), None)
    if setting is not None:
        problem = f"no answer in time ({type(error).__name__}); {setting} sets the limit"
        return ApiError(problem + landed, method=method, path=path)
    problem = str(error) or type(error).__name__
    return ApiError(
        f"could not reach Postbox ({problem}){landed}",
        method=method,
        path=path,
        hint="check POSTBOX_API_URL and the network",
    )
