"""MailJawn REST v1 on the shared client core: Bearer key, project prefix, pages bounded
by `total`, key redaction in messages, and two rate budgets. No mapping.

The API counts reads (GET, HEAD, OPTIONS) and writes (POST, PATCH, DELETE) per key, so
each has its own lane, paced by the RateLimit-* headers of the answers counted in it
(the configured budgets are only a first guess; see ServerPacer); a 429 waits exactly
its Retry-After before the same request goes again.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Mapping
from math import isfinite
from typing import Any, ClassVar, Unpack
from urllib.parse import quote

import httpx

from reconcile.providers.http import (
    RETRY_AFTER_MAX,
    BearerAuth,
    Connection,
    KeyedClient,
    Lane,
    Paging,
    counted_pages,
    header_number,
    is_read,
    mask,
    retry_after,
)
from reconcile.providers.pacing import SAME_WINDOW, Quota, ServerPacer

DEFAULT_URL = "https://api.mailjawn.com"
PAGE_SIZE = 100
WINDOW_SECONDS = 60.0  # the window the document gives for every budget

_SCOPE = re.compile(r"\b[a-z]+:[a-z]+\b")
_SUBSCRIBER_PATH = re.compile(r"/subscribers/[^/]+/$")
# A RateLimit-Reset below this is a number of seconds (the IETF draft's form), not a timestamp.
_EPOCH_FLOOR = 1e9


def _pages_of(key: str) -> Paging:
    """A collection whose answers hold the items under `key`, with an integer `total`."""
    return counted_pages(key, "total", PAGE_SIZE, "limit", "offset")


class MailJawnClient(KeyedClient):
    service = "MailJawn"
    url_setting = "MAILJAWN_API_URL"
    message_fields = ("error", "detail")  # the throttle says "detail"
    hints: ClassVar[Mapping[int, str]] = {
        401: "check MAILJAWN_API_KEY: the key is missing, mistyped or revoked",
        429: "rate limit: the server refused for now (retried as long as it allowed, or it "
        "asked for a wait too long to hold; is another client using this key?); re-run later "
        "to continue",
    }
    exact_retry_after = True

    def __init__(
        self,
        *,
        api_key: str,
        project_id: str,
        base_url: str = DEFAULT_URL,
        reads_per_minute: float = 100,
        writes_per_minute: float = 30,
        max_in_flight: int = 4,
        window_seconds: float = WINDOW_SECONDS,
        **connection: Unpack[Connection],
    ) -> None:
        """The budgets (per `window_seconds`) pace until the server's headers say more."""
        minutes_per_window = window_seconds / 60.0
        self.reads = ServerPacer(reads_per_minute * minutes_per_window, window_seconds)
        self.writes = ServerPacer(writes_per_minute * minutes_per_window, window_seconds)
        super().__init__(
            base_url=base_url,
            prefix=f"/api/v1/projects/{quote(project_id, safe='')}",
            auth=BearerAuth(api_key),
            reading=Lane(self.reads, max_in_flight),
            writing=Lane(self.writes, max_in_flight),
            **connection,
        )
        self._secret = api_key
        self.project_id = project_id
        self.wall_clock: Callable[[], float] = time.time

    def pages_of(self, key: str) -> Paging:
        return _pages_of(key)

    async def get(self, path: str, params: Mapping[str, Any] | None = None) -> Any:
        return await self.request("GET", path, params=params)

    async def post(self, path: str, body: Any, *, idempotent: bool) -> Any:
        return await self.request("POST", path, body=body, idempotent=idempotent)

    async def patch(self, path: str, body: Any) -> Any:
        return await self.request("PATCH", path, body=body)

    async def delete(self, path: str) -> None:
        await self.request("DELETE", path)

    async def send_once(
        self,
        method: str,
        url: str,
        params: Mapping[str, Any] | None = None,
        body: Any = None,
        *,
        credentials: bool = True,
    ) -> httpx.Response:
        with self._pacer(method).sending():
            return await super().send_once(method, url, params, body, credentials=credentials)

    def answered(self, lane: Lane, response: httpx.Response) -> None:
        """Tell the lane's pacer what the RateLimit-* headers say; a 429's Retry-After
        alone says when to send again (waited exactly)."""
        pacer = self._pacer(response.request.method)
        headers = response.headers
        limit = header_number(headers.get("RateLimit-Limit"))
        wait = retry_after(response) if response.status_code == 429 else None
        if wait is not None and wait <= RETRY_AFTER_MAX:  # a longer one ends the run instead
            pacer.refused(pacer.clock() + wait, limit)
            return
        remaining = header_number(headers.get("RateLimit-Remaining"))
        reset = header_number(headers.get("RateLimit-Reset"))
        pacer.observe(self._quota(pacer, limit, remaining, reset))

    def _quota(
        self, pacer: ServerPacer, limit: float | None, remaining: float | None, reset: float | None
    ) -> Quota:
        """The figures with Reset as a pacer clock() moment."""
        if reset is None or not isfinite(reset):
            return Quota(limit, remaining, None)
        if reset >= _EPOCH_FLOOR:
            return Quota(limit, remaining, pacer.clock() + reset - self.wall_clock())
        # Whole seconds to go are rounded by up to a second: answers that far apart share it.
        precision = 1.0 if reset.is_integer() else SAME_WINDOW
        return Quota(limit, remaining, pacer.clock() + reset, precision)

    def _pacer(self, method: str) -> ServerPacer:
        return self.reads if is_read(method) else self.writes

    def hint(self, status: int, method: str, url: str, message: str) -> str:
        if status == 403:
            return f"the key lacks {_missing_scope(method, message)}; create a key with that scope"
        if status == 404:
            if "project" not in message.lower() and _SUBSCRIBER_PATH.search(url):
                return "the subscriber no longer exists (deleted meanwhile?); run plan again"
            return "check MAILJAWN_PROJECT_ID (or the manifest's provider option project_id)"
        return super().hint(status, method, url, message)

    def redact(self, text: str) -> str:
        return mask(text, self._secret, "mj_***")


def _missing_scope(method: str, message: str) -> str:
    named = _SCOPE.search(message)
    if named:
        return named.group(0)
    return "subscribers:read" if is_read(method) else "subscribers:write"
