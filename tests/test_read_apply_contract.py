"""apply(changes, live) needs nothing but its arguments: a provider keeps no state between
read and apply, so a saved plan's apply (a fresh provider, a fresh read) and an
in-process apply take one path."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
import pytest

from reconcile import engine
from reconcile.errors import ApiError
from reconcile.manifest.loader import Manifest
from reconcile.providers import registry
from reconcile.providers.base import Cancellation, Provider
from reconcile.providers.pacing import RetryPolicy
from reconcile.providers.registry import Connection
from reconcile.sandbox.common import EmulatorTransport
from reconcile.sandbox.runtime import SandboxEndpoint
from tests.support import load, run

BUILT_IN = ["mailjet", "mailjawn", "mailchimp"]
OPTIONS: dict[str, dict[str, str]] = {"mailchimp": {"audience": "Acme Newsletter"}}


def manifest_text(provider: str, name: str) -> str:
    if provider == "mailchimp":  # no name field (FNAME), merge tags, real-looking domains
        return f"""provider: {{type: mailchimp, audience: Acme Newsletter}}
properties:
  CITY: {{type: str}}
  FNAME: {{type: str}}
lists:
  news: {{}}
contacts:
  - email: a@acme-widgets.io
    properties: {{CITY: Paris, FNAME: {name}}}
    lists: [news]
  - email: b@acme-widgets.io
    lists: [news]
"""
    return f"""provider: {provider}
properties:
  city: {{type: str}}
lists:
  news: {{}}
contacts:
  - email: a@example.com
    name: {name}
    properties: {{city: Paris}}
    lists: [news]
  - email: b@example.com
    lists: [news]
"""


class Account:
    """One sandbox account of `provider`, opened as often as a test likes."""

    def __init__(self, provider: str) -> None:
        self.plugin = registry.plugin(provider)
        self.emulator, self.credentials = self.plugin.emulator_factory()(None)

    def open(self) -> Provider:
        endpoint = SandboxEndpoint(
            self.plugin.name,
            "http://sandbox.test",
            self.credentials,
            EmulatorTransport(app=self.emulator.app),
        )
        connection = Connection(
            endpoint, httpx.Timeout(5.0), RetryPolicy(2, 0.0, 0.0, 0.0), Cancellation()
        )
        return self.plugin.open(self.plugin.options(OPTIONS.get(self.plugin.name, {})), connection)


def attributes(provider: Provider) -> dict[str, Any]:
    """The provider's own attributes, by identity and (for containers) size."""
    return {
        name: (id(value), len(value) if isinstance(value, dict | list | set) else None)
        for name, value in vars(provider).items()
    }


async def plan_on_one_apply_on_another(account: Account, manifest: Manifest) -> None:
    planner, applier = account.open(), account.open()
    try:
        before = attributes(planner)
        made, live = await engine.make_plan(manifest, planner)
        assert attributes(planner) == before  # the read kept nothing on the provider
        assert made.changes
        report = await engine.apply_plan(made, applier, live)
        assert report.ok, report.outcomes
    finally:
        await planner.aclose()
        await applier.aclose()


async def changes_left(account: Account, manifest: Manifest) -> list[str]:
    provider = account.open()
    try:
        made, _ = await engine.make_plan(manifest, provider)
        return [change.address for change in made.changes]
    finally:
        await provider.aclose()


@pytest.mark.parametrize("provider", BUILT_IN)
def test_a_fresh_provider_applies_what_another_one_read(provider: str, tmp_path: Path) -> None:
    account = Account(provider)
    created = load(tmp_path, manifest_text(provider, "Ann"))
    run(plan_on_one_apply_on_another(account, created))
    assert run(changes_left(account, created)) == []
    renamed = load(tmp_path, manifest_text(provider, "Anna"))  # updates need record ids
    run(plan_on_one_apply_on_another(account, renamed))
    assert run(changes_left(account, renamed)) == []


@pytest.mark.parametrize("provider", BUILT_IN)
def test_a_live_state_read_by_another_provider_is_refused(provider: str, tmp_path: Path) -> None:
    other = BUILT_IN[(BUILT_IN.index(provider) + 1) % len(BUILT_IN)]
    foreign = Account(other)
    account = Account(provider)

    async def cross() -> None:
        reader, applier = foreign.open(), account.open()
        try:
            made, live = await engine.make_plan(load(tmp_path, manifest_text(other, "A")), reader)
            await applier.apply(made.changes, live)
        finally:
            await reader.aclose()
            await applier.aclose()

    with pytest.raises(ApiError, match="read by another provider"):
        run(cross())
