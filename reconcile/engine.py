"""load -> read -> diff -> plan -> check -> apply. The CLI calls these; nothing here prints."""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import TypeAdapter, ValidationError

from reconcile.diff import diff_states
from reconcile.errors import ManifestError, ManifestIssue, PlanError
from reconcile.manifest.loader import Manifest, ProviderConfig, load_manifest
from reconcile.manifest.schema import MailjetOptions, ProviderOptions
from reconcile.model import ReadScope, State
from reconcile.plan import Plan, raise_if_stale
from reconcile.providers.base import ApplyReport, Provider
from reconcile.providers.mailjet.client import MailjetClient
from reconcile.providers.mailjet.provider import MailjetProvider
from reconcile.sandbox.runtime import SANDBOX_DIR, SandboxEndpoint, in_process_sandbox
from reconcile.settings import MailjetSettings, NetworkSettings

_PROVIDER_OPTIONS: TypeAdapter[ProviderConfig] = TypeAdapter(ProviderOptions)


@dataclass(frozen=True)
class Target:
    """Where to connect: the real service (credentials from the environment) or the sandbox."""

    sandbox: bool = False
    sandbox_dir: Path = SANDBOX_DIR


def validate(paths: Sequence[Path]) -> Manifest:
    return load_manifest(paths)


def provider_config(name: str, options: Mapping[str, Any]) -> ProviderConfig:
    """The provider settings a saved plan was made with, or a bare provider name's defaults."""
    try:
        return _PROVIDER_OPTIONS.validate_python({"type": name, **options})
    except ValidationError as error:
        raise PlanError(f"unknown provider {name!r} or bad provider options: {error}") from None


@asynccontextmanager
async def open_provider(config: ProviderConfig, target: Target) -> AsyncIterator[Provider]:
    if target.sandbox:
        with in_process_sandbox(config.type, target.sandbox_dir) as endpoint:
            provider = _build(config, endpoint)
            try:
                yield provider
            finally:
                await provider.aclose()
        return
    provider = _build(config, None)
    try:
        yield provider
    finally:
        await provider.aclose()


def _build(config: ProviderConfig, endpoint: SandboxEndpoint | None) -> Provider:
    if isinstance(config, MailjetOptions):
        per_minute: float = config.requests_per_minute
        if endpoint is not None:
            api_key, secret = endpoint.credentials["api_key"], endpoint.credentials["secret_key"]
            base_url, transport = endpoint.base_url, endpoint.transport
            per_minute = endpoint.requests_per_minute
        else:
            settings = MailjetSettings()
            api_key, secret = settings.credentials()
            base_url, transport = settings.api_url, None
        network = NetworkSettings()
        client = MailjetClient(
            api_key=api_key,
            secret_key=secret,
            base_url=base_url,
            requests_per_minute=per_minute,
            transport=transport,
            timeout=network.timeout(),
            retry=network.retry(),
        )
        return MailjetProvider(client)
    raise PlanError(f"provider {config.type!r} is not available yet")


async def make_plan(manifest: Manifest, provider: Provider) -> tuple[Plan, State]:
    scope = manifest.read_scope()
    live = await provider.read(scope)
    result = diff_states(manifest.desired, live)
    if result.errors:
        raise ManifestError(
            [
                ManifestIssue(manifest.source_of(finding.address), finding.address, finding.message)
                for finding in result.errors
            ]
        )
    options = manifest.provider.model_dump(exclude={"type"})
    warnings = (str(w) for w in result.warnings)
    return Plan.build(provider.name, result.changes, scope, warnings, options), live


async def apply_plan(plan: Plan, provider: Provider, live: State | None = None) -> ApplyReport:
    """Apply exactly `plan`. Without `live` (a saved plan), re-read and refuse if it moved."""
    if plan.provider != provider.name:
        raise PlanError(
            f"the plan is for {plan.provider}, the manifest's provider is {provider.name}"
        )
    if live is None:
        live = await provider.read(plan.scope)
        raise_if_stale(plan, live)
    return await provider.apply(plan.changes, live)


async def read_everything(provider: Provider) -> State:
    return await provider.read(ReadScope(contact_data=True, every_list=True))
