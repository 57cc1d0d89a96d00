"""`--debug`: one log line per HTTP request and answer on the `reconcile.http` logger.

Credentials never appear: Authorization (and any cookie or key header) is replaced by
`[redacted]`. Bodies are not logged: they hold people's addresses.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Mapping

import httpx

LOGGER = logging.getLogger("reconcile.http")
SECRET_HEADERS = frozenset({"authorization", "cookie", "set-cookie", "x-api-key"})
Hook = Callable[[httpx.Request], Awaitable[None]] | Callable[[httpx.Response], Awaitable[None]]


def redacted(headers: httpx.Headers) -> dict[str, str]:
    return {
        name: "[redacted]" if name.lower() in SECRET_HEADERS else value
        for name, value in headers.items()
    }


async def _log_request(request: httpx.Request) -> None:
    if LOGGER.isEnabledFor(logging.DEBUG):
        LOGGER.debug("-> %s %s %s", request.method, request.url, redacted(request.headers))


async def _log_response(response: httpx.Response) -> None:
    if LOGGER.isEnabledFor(logging.DEBUG):
        request = response.request
        LOGGER.debug(
            "<- %s %s %s %s",
            response.status_code,
            request.method,
            request.url,
            redacted(response.headers),
        )


def trace_hooks() -> Mapping[str, list[Hook]]:
    """httpx event hooks that log every request and answer at DEBUG level."""
    return {"request": [_log_request], "response": [_log_response]}
