"""One HTTP client core: auth, paging, pacing lanes, retries, error mapping, cancellation.

A provider's client subclasses ApiClient and keeps only its API's specifics: where the
API lives and how it authenticates (constructor arguments), how a collection is paged
(a Paging), which lanes pace reads and writes, where an error answer keeps its message
and what to tell the user per status (class attributes, `hint`, `redact`), and what to
learn from every answer (`answered`, e.g. rate-limit headers).
"""

from __future__ import annotations

import asyncio
import email.utils
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any, ClassVar, Protocol, TypedDict

import httpx
from typing_extensions import TypeVar

from reconcile.errors import ApiError
from reconcile.providers.answers import NO_BODY, json_body, of_request
from reconcile.providers.base import Cancellation, ProviderStats
from reconcile.providers.pacing import (
    Pacer,
    RequestStats,
    RetryableStatus,
    RetryPolicy,
    send_with_retries,
)
from reconcile.providers.runner import all_or_none
from reconcile.providers.trace import trace_hooks

Kept = TypeVar("Kept", default=Any)  # what `keep` makes of each item; raw JSON without it
READ_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
IDEMPOTENT_METHODS = READ_METHODS | {"PUT", "PATCH", "DELETE"}
DEFAULT_TIMEOUT = httpx.Timeout(30.0, connect=10.0)
RETRY_AFTER_MAX = 600.0  # a longer Retry-After ends the run instead of waiting


def as_is(item: Any) -> Any:
    return item


def is_read(method: str) -> bool:
    return method.upper() in READ_METHODS


class BearerAuth(httpx.Auth):
    """`Authorization: Bearer <token>`, sent only where the client's credentials go."""

    def __init__(self, token: str) -> None:
        self._header = f"Bearer {token}"

    def auth_flow(self, request: httpx.Request) -> Any:
        request.headers["Authorization"] = self._header
        yield request


@dataclass(frozen=True)
class Page:
    items: list[Any]
    total: int | None = None  # how many the whole collection holds, when the answer says


@dataclass(frozen=True)
class Paging:
    """A collection read by limit and offset; `read` turns an answer into a Page and
    raises ApiError (naming GET and the URL it is given) for one it can't read."""

    size: int
    limit_param: str
    offset_param: str
    read: Callable[[Any, str], Page]

    def query(self, offset: int) -> dict[str, int]:
        return {self.limit_param: self.size, self.offset_param: offset}


def counted_pages(key: str, total: str, size: int, limit_param: str, offset_param: str) -> Paging:
    """A collection whose answers hold the items under `key` and their number under
    `total` (an integer), paged by `limit_param` and `offset_param`."""

    def read(answer: Any, url: str) -> Page:
        items = answer.get(key) if isinstance(answer, dict) else None
        count = answer.get(total) if isinstance(answer, dict) else None
        if not isinstance(items, list) or not isinstance(count, int) or isinstance(count, bool):
            raise ApiError(
                f"answer has no {key!r} list and integer {total!r}; nothing was changed "
                "based on it",
                method="GET",
                path=url,
            )
        return Page(items, count)

    return Paging(size, limit_param, offset_param, read)


class Connection(TypedDict, total=False):
    """How any client connects and gives up, as its constructor takes it."""

    transport: httpx.AsyncBaseTransport | None
    timeout: httpx.Timeout | None
    retry: RetryPolicy | None
    cancel: Cancellation | None


class InFlight(Protocol):
    """Caps how many requests of a lane are in flight (an asyncio.Semaphore, or one that
    adapts to what the server says)."""

    async def __aenter__(self) -> Any: ...

    async def __aexit__(self, kind: Any, error: Any, trace: Any) -> Any: ...


class Lane:
    """Requests paced together: one budget, and a cap on how many are in flight."""

    def __init__(self, pacer: Pacer, max_in_flight: int, in_flight: InFlight | None = None) -> None:
        self.pacer = pacer
        self.in_flight: InFlight = in_flight or asyncio.Semaphore(max_in_flight)


class AdaptiveLimit:
    """At most `limit` requests in flight: halved by each throttled answer (not below 1),
    grown back by one for every `limit` answers that were not (AIMD, as TCP does). Where
    a server limits connections, not a rate, someone else's requests share the limit: an
    apply running beside another one settles on what is left instead of failing."""

    def __init__(self, maximum: int) -> None:
        self.maximum = maximum
        self.limit = float(maximum)
        self.in_use = 0
        self._conditions: dict[asyncio.AbstractEventLoop, asyncio.Condition] = {}

    def _condition(self) -> asyncio.Condition:
        loop = asyncio.get_running_loop()
        if loop not in self._conditions:
            self._conditions = {loop: asyncio.Condition()}  # earlier loops are gone
        return self._conditions[loop]

    async def __aenter__(self) -> None:
        condition = self._condition()
        async with condition:
            await condition.wait_for(lambda: self.in_use < max(1, int(self.limit)))
            self.in_use += 1

    async def __aexit__(self, kind: Any, error: Any, trace: Any) -> None:
        condition = self._condition()
        async with condition:
            self.in_use -= 1
            condition.notify_all()

    def throttled(self) -> None:
        self.limit = max(1.0, self.limit / 2)

    def answered(self) -> None:
        self.limit = min(float(self.maximum), self.limit + 1 / self.limit)


class ApiClient:
    """Sends requests paced per lane, retried per policy, refused after a stop, counted;
    decodes answers and turns errors into one ApiError naming the request."""

    service: ClassVar[str]  # as the user knows it: "could not reach <service>"
    url_setting: ClassVar[str]  # the setting that points at the API, named in hints
    message_fields: ClassVar[tuple[str, ...]]  # where an error answer keeps its message
    hints: ClassVar[Mapping[int, str]] = {}  # what to do, per error status
    exact_retry_after: ClassVar[bool] = False  # a 429 is sent again after its Retry-After

    def __init__(
        self,
        *,
        base_url: str,
        prefix: str,
        auth: httpx.Auth,
        reading: Lane,
        writing: Lane,
        transport: httpx.AsyncBaseTransport | None = None,
        timeout: httpx.Timeout | None = None,
        retry: RetryPolicy | None = None,
        cancel: Cancellation | None = None,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.prefix = prefix
        self._http = httpx.AsyncClient(
            base_url=self.base_url,
            auth=auth,
            transport=transport,
            timeout=timeout or DEFAULT_TIMEOUT,
            event_hooks=dict(trace_hooks()),
            headers={"Accept": "application/json"},
        )
        self.reading = reading
        self.writing = writing
        self.retry = retry or RetryPolicy()
        self.stats = RequestStats()
        self.cancel = cancel or Cancellation()

    async def aclose(self) -> None:
        await self._http.aclose()

    def lane(self, method: str) -> Lane:
        return self.reading if is_read(method) else self.writing

    @property
    def waited_seconds(self) -> float:
        lanes = {id(lane): lane for lane in (self.reading, self.writing)}.values()
        return sum(lane.pacer.waited_seconds for lane in lanes)

    def snapshot(self, *, jobs_pending: int = 0) -> ProviderStats:
        return ProviderStats(
            requests=self.stats.requests,
            retries=self.stats.retries,
            rate_limited=self.stats.rate_limited,
            waited_seconds=round(self.waited_seconds, 3),
            jobs_pending=jobs_pending,
        )

    # ---- hooks: what an API may say differently ------------------------------------------

    def answered(self, lane: Lane, response: httpx.Response) -> None:
        """Called with every answer (rate-limit headers may tighten `lane`)."""

    def hint(self, status: int, method: str, url: str, message: str) -> str:
        """What the user can do about an error answer."""
        if status in self.hints:
            return self.hints[status]
        return (
            f"{self.service} had a server error; re-run later to continue" if status >= 500 else ""
        )

    def redact(self, text: str) -> str:
        """`text` as it may be shown (a secret an answer echoes, masked)."""
        return text

    def throttled(self, response: httpx.Response) -> bool:
        """The server refused this request for load: nothing was done, send it again later."""
        return response.status_code == 429

    # ---- calls ----------------------------------------------------------------------------

    async def read_all(
        self,
        path: str,
        paging: Paging,
        params: Mapping[str, Any] | None = None,
        *,
        keep: Callable[[Any], Kept] = as_is,
        count: Callable[[], Awaitable[int]] | None = None,
    ) -> list[Kept]:
        """Every item of a collection. The first page; when it is full, how many there are
        (the total its answer gives, else `count()`), and every other page that implies,
        fetched at once (as many in flight as the lane allows: latency is no longer the
        bound, the rate limit is); then, should the last page be full because items were
        added meanwhile, page after page until a short one. Never past the smallest total
        an answer gave (records added during the read can't make it loop forever). `keep`
        turns each item into what the caller needs as its page arrives, so a large
        account is never held as raw JSON; an item it can't read is an error of this
        request."""
        url = self.prefix + path
        base = dict(params or {})

        async def page_at(offset: int) -> Page:
            answer = await self.request("GET", path, params={**base, **paging.query(offset)})
            page = paging.read(answer, url)
            try:
                return Page([keep(item) for item in page.items], page.total)
            except ApiError as error:
                raise of_request(error, "GET", url) from None

        pages = [await page_at(0)]
        bound = pages[0].total
        if len(pages[0].items) >= paging.size:
            known = bound if bound is not None else (await count() if count else None)
            if known is not None:
                async with all_or_none() as group:  # one failing stops the others
                    rest = [
                        group.create_task(page_at(offset))
                        for offset in range(paging.size, known, paging.size)
                    ]
                pages += [task.result() for task in rest]
        for page in pages[1:]:
            if page.total is not None:
                bound = page.total if bound is None else min(bound, page.total)
        offset = paging.size * len(pages)
        while len(pages[-1].items) >= paging.size and (bound is None or offset < bound):
            pages.append(await page_at(offset))
            offset += paging.size
            if pages[-1].total is not None:
                bound = pages[-1].total if bound is None else min(bound, pages[-1].total)
        return [item for page in pages for item in page.items]

    async def request(
        self,
        method: str,
        path: str,
        *,
        params: Mapping[str, Any] | None = None,
        body: Any = None,
        idempotent: bool | None = None,
        prefix: str | None = None,
    ) -> Any:
        """Send with pacing and retries; returns the decoded JSON body (None when empty).

        429 is always retried (nothing was done). 5xx and lost connections are retried
        only for idempotent requests (by default, every method but POST): a POST that
        may have landed is left to the caller, which looks up what it made instead.
        """
        url = (self.prefix if prefix is None else prefix) + path
        may_repeat = method in IDEMPOTENT_METHODS if idempotent is None else idempotent
        try:
            response = await send_with_retries(
                self.retry,
                self.stats,
                may_repeat,
                lambda: self._send(method, url, params, body),
                self._worth_retrying,
                self.throttled,
            )
        except RetryableStatus as error:
            response = error.response
        except httpx.TransportError as error:
            raise ApiError(
                self.redact(f"could not reach {self.service} ({type(error).__name__}: {error})"),
                method=method,
                path=url,
                hint=f"check {self.url_setting} and the network; re-run to continue",
            ) from None
        return self._decode(response, method, url)

    async def send_once(
        self,
        method: str,
        url: str,
        params: Mapping[str, Any] | None = None,
        body: Any = None,
        *,
        credentials: bool = True,
    ) -> httpx.Response:
        """One request in its lane: paced, capped in flight, counted. After a stop no
        write starts, and one queued for its turn ends at once."""
        lane = self.lane(method)
        async with lane.in_flight:
            if is_read(method):
                await lane.pacer.wait_turn()
            else:
                await self.cancel.unless_requested(lane.pacer.wait_turn(), method, url)
                self.cancel.refuse_when_requested(method, url)
                self.cancel.wrote = True
            self.stats.count(method)
            response = await self._http.request(
                method,
                url,
                params=params,
                json=body,
                auth=httpx.USE_CLIENT_DEFAULT if credentials else None,
            )
        if self.throttled(response):
            self.stats.rate_limited += 1
        self.answered(lane, response)
        return response

    # ---- retries and answers --------------------------------------------------------------

    async def _send(
        self, method: str, url: str, params: Mapping[str, Any] | None, body: Any
    ) -> httpx.Response:
        """`send_once`; with exact_retry_after, a 429 is sent again after exactly its
        Retry-After (no backoff on top), a few times."""
        retries_left = self.retry.attempts - 1
        while True:
            response = await self.send_once(method, url, params, body)
            delay = self._exact_wait(response)
            if delay is None or delay > RETRY_AFTER_MAX or retries_left <= 0:
                return response
            retries_left -= 1
            self.stats.retries += 1
            pacer = self.lane(method).pacer
            pacer.hold_until(pacer.clock() + delay)

    def _exact_wait(self, response: httpx.Response) -> float | None:
        """A 429's Retry-After when this API's is waited exactly, else None."""
        if self.exact_retry_after and response.status_code == 429:
            return retry_after(response)
        return None

    def _worth_retrying(self, response: httpx.Response) -> bool:
        """5xx, and a throttled answer unless its Retry-After was waited already."""
        if response.status_code >= 500:
            return True
        return self.throttled(response) and self._exact_wait(response) is None

    def _decode(self, response: httpx.Response, method: str, url: str) -> Any:
        status = response.status_code
        payload: Any = json_body(response, method, url)
        if payload is NO_BODY:
            return None
        if status < 300:
            return payload
        message = self.redact(self.error_message(payload, response))
        raise ApiError(
            message,
            method=method,
            path=url,
            status=status,
            hint=self.hint(status, method, url, message),
        )

    def error_message(self, payload: Any, response: httpx.Response) -> str:
        """The first of message_fields the answer has (an object of them as "key: value;
        ..."), else whatever the body says."""
        if isinstance(payload, dict):
            message = next(
                (payload[name] for name in self.message_fields if payload.get(name)), None
            )
            if isinstance(message, dict):
                return "; ".join(f"{key}: {value}" for key, value in message.items())
            return str(message) if message else str(payload)[:300]
        if payload is not None:
            return str(payload)[:300]
        kind = response.headers.get("content-type", "unknown type")
        return f"non-JSON error body ({kind}): {response.text[:200]!r}"


MIN_MASKED_SECRET = 16  # characters; see mask()


def mask(text: str, secret: str, placeholder: str) -> str:
    """`text` with `secret` replaced. A "secret" short enough to be a common word is not a
    real key: masking it would garble the message and show where the word stands."""
    if len(secret) < MIN_MASKED_SECRET:
        return text
    return text.replace(secret, placeholder)


class KeyedClient(ApiClient):
    """A client whose collections hold their items under a key of each answer, with a
    total: `pages_of(key)` says how they are paged."""

    def pages_of(self, key: str) -> Paging:
        raise NotImplementedError

    async def list_all(
        self,
        path: str,
        key: str,
        params: Mapping[str, Any] | None = None,
        *,
        keep: Callable[[Any], Kept] = as_is,
    ) -> list[Kept]:
        """Every item of a collection (under `key` in each answer); see read_all."""
        return await self.read_all(path, self.pages_of(key), params, keep=keep)


def retry_after(response: httpx.Response) -> float | None:
    """Retry-After in seconds (decimals allowed), or from an HTTP date; None if absent."""
    value = response.headers.get("Retry-After")
    if value is None:
        return None
    seconds = header_number(value)
    if seconds is not None:
        return max(seconds, 0.0)
    try:
        moment = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(moment.timestamp() - time.time(), 0.0)


def header_number(value: str | None) -> float | None:
    if value is None:
        return None
    try:
        return float(value.strip())
    except ValueError:
        return None
