"""Helpers for the client tests: run a call on a client and close it, fake pacer time."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import pytest

from reconcile.errors import ApiError
from reconcile.providers.http import ApiClient

T = TypeVar("T")
Client = TypeVar("Client", bound=ApiClient)


def run(client: Client, call: Callable[[Client], Awaitable[T]]) -> T:
    async def main() -> T:
        try:
            return await call(client)
        finally:
            await client.aclose()

    return asyncio.run(main())


def error_of(client: Client, call: Callable[[Client], Awaitable[Any]]) -> ApiError:
    with pytest.raises(ApiError) as caught:
        run(client, call)
    return caught.value


class FakeTime:
    """A pacer clock that moves only when the pacer sleeps; records every sleep."""

    def __init__(self) -> None:
        self.now = 100.0
        self.sleeps: list[float] = []

    def clock(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(round(seconds, 6))
        self.now += seconds
