"""Mailjet REST v3 on the shared client core: Basic auth, the Data envelope, Limit/Offset
pages read until a short one, 304 on PUT, and job error files. No mapping."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Mapping
from typing import Any, ClassVar, Unpack

import httpx

from reconcile.errors import ApiError
from reconcile.providers.base import Cancellation
from reconcile.providers.http import ApiClient, Connection, Kept, Lane, Page, Paging, as_is
from reconcile.providers.pacing import Pacer

PAGE_SIZE = 1000
API_PREFIX = "/v3/REST"
DEFAULT_URL = "https://api.mailjet.com"


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


# Total is not trusted: the real API gives the page size there unless countOnly=1.
PAGES = Paging(PAGE_SIZE, "Limit", "Offset", lambda answer, url: Page(_data(answer, "GET", url)))


class MailjetClient(ApiClient):
    service = "Mailjet"
    url_setting = "MAILJET_API_URL"
    message_fields = ("ErrorMessage", "ErrorInfo")
    hints: ClassVar[Mapping[int, str]] = {
        401: "check MAILJET_API_KEY and MAILJET_SECRET_KEY",
        403: "this API key may not do that; writes need a Full Access key",
        404: "it no longer exists (removed meanwhile?); run plan again",
        429: "rate limit: lower requests_per_minute in the manifest's provider options",
    }

    def __init__(
        self,
        *,
        api_key: str,
        secret_key: str,
        base_url: str = DEFAULT_URL,
        requests_per_minute: float = 200,
        max_in_flight: int = 8,
        **connection: Unpack[Connection],
    ) -> None:
        lane = Lane(Pacer(requests_per_minute), max_in_flight)  # one budget for all requests
        super().__init__(
            base_url=base_url,
            prefix=API_PREFIX,
            auth=httpx.BasicAuth(api_key, secret_key),
            reading=lane,
            writing=lane,
            **connection,
        )
        self.public_key = api_key  # Mailjet's public half of the credentials: the account's id

    @property
    def pacer(self) -> Pacer:
        return self.reading.pacer

    @pacer.setter
    def pacer(self, pacer: Pacer) -> None:
        self.reading.pacer = pacer  # the lane writes share

    async def list_all(
        self,
        resource: str,
        params: Mapping[str, Any] | None = None,
        *,
        keep: Callable[[Any], Kept] = as_is,
    ) -> list[Kept]:
        """Every record of a collection: Limit=1000 and Offset; past a full first page,
        the count (`countOnly=1`: Total is not trusted otherwise) and the other pages at
        once, then page after page until a short one."""

        async def count() -> int:
            answer = await self.request("GET", resource, params={**(params or {}), "countOnly": 1})
            found = answer.get("Count") if isinstance(answer, dict) else None
            if not isinstance(found, int) or isinstance(found, bool) or found < 0:
                raise ApiError(
                    f"countOnly answered {str(answer)[:200]}; nothing was changed based on it",
                    method="GET",
                    path=API_PREFIX + resource,
                )
            return found

        return await self.read_all(resource, PAGES, params, keep=keep, count=count)

    async def get(self, path: str, params: Mapping[str, Any] | None = None) -> list[Any]:
        return _data(await self.request("GET", path, params=params), "GET", API_PREFIX + path)

    async def post(self, path: str, body: Any, *, idempotent: bool) -> list[Any]:
        payload = await self.request("POST", path, body=body, idempotent=idempotent)
        return _data(payload, "POST", API_PREFIX + path)

    async def put(self, path: str, body: Any) -> list[Any]:
        """PUT; a 304 Not Modified (nothing changed) is success with no records."""
        payload = await self.request("PUT", path, body=body)
        return [] if payload is None else _data(payload, "PUT", API_PREFIX + path)

    @contextlib.contextmanager
    def despite_stop(self) -> Iterator[None]:
        """Writes that repair one already landed (re-excluding someone a bulk job brought
        back) go out even after Ctrl-C, which otherwise starts no new write. Only around
        requests nothing else is sending alongside: every request of this client sees it."""
        real = self.cancel
        stand_in = Cancellation()
        stand_in.applying = real.applying
        self.cancel = stand_in
        try:
            yield
        finally:
            self.cancel = real
            real.wrote = real.wrote or stand_in.wrote

    async def delete(self, path: str, *, prefix: str = API_PREFIX) -> None:
        await self.request("DELETE", path, prefix=prefix)

    async def download(self, url: str) -> str:
        """A file the API points at (a job's ErrorFile). Credentials go only to the API host."""
        same_host = httpx.URL(url).host == httpx.URL(self.base_url).host
        try:
            response = await self.send_once("GET", url, credentials=same_host)
        except httpx.TransportError as error:
            raise ApiError(f"could not download {url} ({type(error).__name__})") from None
        if response.status_code >= 400:
            raise ApiError(f"could not download {url}", method="GET", status=response.status_code)
        return response.text
