"""Mailchimp Marketing v3 on the shared client core: Basic auth with the key, count=1000
and offset pages bounded by total_items (fetched concurrently once the first page gave
the total), problem+json errors, and the 10-simultaneous-connections limit as a cap on
requests in flight. There is no per-minute quota, so nothing is paced by rate. No mapping.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar, Unpack

import httpx

from reconcile.providers.http import (
    AdaptiveLimit,
    Connection,
    KeyedClient,
    Lane,
    Paging,
    counted_pages,
    mask,
)
from reconcile.providers.pacing import Pacer

API_PREFIX = "/3.0"
PAGE_SIZE = 1000  # the most a collection gives at once (default 10: always ask)
MAX_IN_FLIGHT = 9  # one less than the 10 simultaneous connections Mailchimp allows
UNPACED = 1e9  # requests per minute: Mailchimp limits connections, not a rate
MIN_READ_TIMEOUT = 120.0  # Mailchimp lets a call run this long before it gives up


def default_timeout(connect: float | None = 10.0) -> httpx.Timeout:
    """Waits as long as Mailchimp lets a call run (a batch of 500 may take a while)."""
    return httpx.Timeout(MIN_READ_TIMEOUT, connect=connect, pool=None)


def default_url(api_key: str) -> str:
    """https://usN.api.mailchimp.com for a key ending in -usN."""
    _, dash, data_centre = api_key.rpartition("-")
    if not dash or not data_centre.isalnum():
        return ""
    return f"https://{data_centre}.api.mailchimp.com"


def pages_of(key: str) -> Paging:
    """A collection whose answers hold the items under `key`, with `total_items`."""
    return counted_pages(key, "total_items", PAGE_SIZE, "count", "offset")


class MailchimpClient(KeyedClient):
    service = "Mailchimp"
    url_setting = "MAILCHIMP_API_URL"
    message_fields = ("detail", "title")
    hints: ClassVar[Mapping[int, str]] = {
        401: "check MAILCHIMP_API_KEY: the key is missing, mistyped or revoked, or its -usN "
        "suffix names another data centre",
        403: "the key may not do that, or Mailchimp is refusing load; re-run later to continue",
        405: "Mailchimp does not allow this on the member in its current state",
        429: "more than 10 simultaneous connections: lower max_connections in the provider "
        "options (and run one apply per account at a time)",
    }

    def __init__(
        self,
        *,
        api_key: str,
        base_url: str,
        max_in_flight: int = MAX_IN_FLIGHT,
        **connection: Unpack[Connection],
    ) -> None:
        self.connections = AdaptiveLimit(max_in_flight)
        # One budget of connections for every request, shared with whoever else uses the
        # key: it shrinks on 429 (or the bare 403) and grows back.
        lane = Lane(Pacer(UNPACED), max_in_flight, self.connections)
        connection.setdefault("timeout", default_timeout())
        super().__init__(
            base_url=base_url,
            prefix=API_PREFIX,
            auth=httpx.BasicAuth("reconcile", api_key),
            reading=lane,
            writing=lane,
            **connection,
        )
        self.api_key = api_key  # for the account's identity (a digest); never shown

    def pages_of(self, key: str) -> Paging:
        return pages_of(key)

    async def get(self, path: str, params: Mapping[str, Any] | None = None) -> Any:
        return await self.request("GET", path, params=params)

    async def post(
        self,
        path: str,
        body: Any,
        *,
        idempotent: bool,
        params: Mapping[str, Any] | None = None,
    ) -> Any:
        return await self.request("POST", path, body=body, params=params, idempotent=idempotent)

    async def patch(self, path: str, body: Any, params: Mapping[str, Any] | None = None) -> Any:
        return await self.request("PATCH", path, body=body, params=params)

    async def put(self, path: str, body: Any, params: Mapping[str, Any] | None = None) -> Any:
        return await self.request("PUT", path, body=body, params=params)

    async def delete(self, path: str) -> None:
        await self.request("DELETE", path)

    def answered(self, lane: Lane, response: httpx.Response) -> None:
        if self.throttled(response):
            self.connections.throttled()
        else:
            self.connections.answered()

    def throttled(self, response: httpx.Response) -> bool:
        """A 429, or the bare 403 (no JSON body) Mailchimp answers at very high volume."""
        if response.status_code == 429:
            return True
        return response.status_code == 403 and not response.content.strip()

    def error_message(self, payload: Any, response: httpx.Response) -> str:
        """problem+json: its title, detail and every per-field error."""
        if not isinstance(payload, dict):
            return super().error_message(payload, response)
        parts = [str(payload[name]) for name in ("title", "detail") if payload.get(name)]
        errors = payload.get("errors")
        if isinstance(errors, list):
            fields = [
                f"{item.get('field') or '?'}: {item.get('message')}"
                for item in errors
                if isinstance(item, dict)
            ]
            if fields:
                parts.append("(" + "; ".join(fields) + ")")
        return " ".join(parts) if parts else super().error_message(payload, response)

    def redact(self, text: str) -> str:
        return mask(text, self.api_key, "***")
