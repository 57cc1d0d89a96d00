"""Thin async Mailjet REST v3 client: auth, paging, errors, retries, pacing. No mapping."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping
from typing import Any, TypeVar, overload

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

PAGE_SIZE = 1000
API_PREFIX = "/v3/REST"
DEFAULT_URL = "https://api.mailjet.com"

_HINTS = {
    401: "check MAILJET_API_KEY and MAILJET_SECRET_KEY",
    403: "this API key may not do that; writes need a Full Access key",
    404: "it no longer exists (removed meanwhile?); run plan again",
    429: "rate limit: lower requests_per_minute in the manifest's provider options",
}


T = TypeVar("T")


def _as_is(record: Any) -> Any:
    return record


class MailjetClient:
    def __init__(
        self,
        *,
        api_key: str,
        secret_key: str,
        base_url: str = DEFAULT_URL,
        requests_per_minute: float = 200,
        transport: httpx.AsyncBaseTransport | None = None,
        timeout: httpx.Timeout | None = None,
        retry: RetryPolicy | None = None,
        max_in_flight: int = 4,
    ) -> None:
        self.public_key = api_key  # Mailjet's public half of the credentials: the account's id
        self.base_url = base_url.rstrip("/")
        self._http = httpx.AsyncClient(
            base_url=base_url.rstrip("/"),
            auth=httpx.BasicAuth(api_key, secret_key),
            transport=transport,
            timeout=timeout or httpx.Timeout(30.0, connect=10.0),
            event_hooks=dict(trace_hooks()),
            headers={"Accept": "application/json"},
        )
        self.pacer = Pacer(requests_per_minute)
        self.retry = retry or RetryPolicy()
        self.stats = RequestStats()
        self._in_flight = asyncio.Semaphore(max_in_flight)

    async def aclose(self) -> None:
        await self._http.aclose()

    @overload
    async def list_all(
        self, resource: str, params: Mapping[str, Any] | None = None
    ) -> list[Any]: ...

    @overload
    async def list_all(
        self, resource: str, params: Mapping[str, Any] | None = None, *, keep: Callable[[Any], T]
    ) -> list[T]: ...

    async def list_all(
        self,
        resource: str,
        params: Mapping[str, Any] | None = None,
        *,
        keep: Callable[[Any], Any] = _as_is,
    ) -> list[Any]:
        """Every record of a collection: Limit=1000 and Offset until a short page.

        Total is not trusted: the real API gives the page size there unless countOnly=1.
        `keep` turns each record into what the caller needs as its page arrives, so a
        large account is never held as raw JSON.
        """
        records: list[Any] = []
        offset = 0
        while True:
            page = await self.get(
                resource, {**(params or {}), "Limit": PAGE_SIZE, "Offset": offset}
            )
            try:
                records.extend(keep(record) for record in page)
            except ApiError as error:
                raise of_request(error, "GET", API_PREFIX + resource) from None
            if len(page) < PAGE_SIZE:
                return records
            offset += PAGE_SIZE

    async def get(self, path: str, params: Mapping[str, Any] | None = None) -> list[Any]:
        return _data(await self.request("GET", path, params=params), "GET", API_PREFIX + path)

    async def post(self, path: str, body: Any, *, idempotent: bool) -> list[Any]:
        payload = await self.request("POST", path, body=body, idempotent=idempotent)
        return _data(payload, "POST", API_PREFIX + path)

    async def put(self, path: str, body: Any) -> list[Any]:
        """PUT; a 304 Not Modified (nothing changed) is success with no records."""
        payload = await self.request("PUT", path, body=body)
        return [] if payload is None else _data(payload, "PUT", API_PREFIX + path)

    async def delete(self, path: str, *, prefix: str = API_PREFIX) -> None:
        await self.request("DELETE", path, prefix=prefix)

    async def download(self, url: str) -> str:
        """A file the API points at (a job's ErrorFile). Credentials go only to the API host."""
        same_host = httpx.URL(url).host == self._http.base_url.host
        auth: Any = httpx.USE_CLIENT_DEFAULT if same_host else None
        async with self._in_flight:
            await self.pacer.wait_turn()
            self.stats.count("GET")
            try:
                response = await self._http.get(url, auth=auth)
            except httpx.TransportError as error:
                raise ApiError(f"could not download {url} ({type(error).__name__})") from None
        if response.status_code >= 400:
            raise ApiError(f"could not download {url}", method="GET", status=response.status_code)
        return response.text

    async def request(
        self,
        method: str,
        path: str,
        *,
        params: Mapping[str, Any] | None = None,
        body: Any = None,
        idempotent: bool = True,
        prefix: str = API_PREFIX,
    ) -> Any:
        """Send with pacing and retries; returns the decoded JSON body (None when empty).

        429 is always retried (nothing was done). 5xx and lost connections are
        retried only for idempotent requests: a non-idempotent POST that may have
        landed is left to the caller, which looks the record up instead.
        """

        path = prefix + path

        try:
            response = await send_with_retries(
                self.retry,
                self.stats,
                idempotent,
                lambda: self._send_once(method, path, params, body),
                lambda answer: answer.status_code == 429 or answer.status_code >= 500,
            )
        except RetryableStatus as error:
            response = error.response
        except httpx.TransportError as error:
            raise ApiError(
                f"could not reach Mailjet ({type(error).__name__}: {error})",
                method=method,
                path=path,
                hint="check MAILJET_API_URL and the network; re-run to continue",
            ) from None
        return _decode(response, method, path)

    async def _send_once(
        self, method: str, path: str, params: Mapping[str, Any] | None, body: Any
    ) -> httpx.Response:
        async with self._in_flight:
            if method == "GET":
                await self.pacer.wait_turn()
            else:
                await unless_stopped(self.pacer.wait_turn(), method, path)
            refuse_write_when_stopping(method, path)
            self.stats.count(method)
            response = await self._http.request(method, path, params=params, json=body)
        if response.status_code == 429:
            self.stats.rate_limited += 1
        return response


def _decode(response: httpx.Response, method: str, path: str) -> Any:
    status = response.status_code
    payload: Any = json_body(response, method, path)
    if payload is NO_BODY:
        return None
    if status < 300:
        return payload
    raise ApiError(
        error_message(payload, response),
        method=method,
        path=path,
        status=status,
        hint=_hint(status),
    )


def _hint(status: int) -> str:
    if status in _HINTS:
        return _HINTS[status]
    return "Mailjet had a server error; re-run later to continue" if status >= 500 else ""


def error_message(payload: Any, response: httpx.Response) -> str:
    """Mailjet's ErrorMessage (a string or an object), else whatever the body says."""
    if isinstance(payload, dict):
        message = payload.get("ErrorMessage") or payload.get("ErrorInfo")
        if isinstance(message, dict):
            return "; ".join(f"{key}: {value}" for key, value in message.items())
        if message:
            return str(message)
        return str(payload)[:300]
    kind = response.headers.get("content-type", "unknown type")
    return f"non-JSON error body ({kind}): {response.text[:200]!r}"


def _data(payload: Any, method: str, path: str) -> list[Any]:
    if payload is None:
        return []
    data = payload.get("Data") if isinstance(payload, dict) else None
    if not isinstance(data, list):
        raise ApiError(
            "answer has no Data list; nothing was changed based on it",
            method=method,
            path=path,
        )
    return data
