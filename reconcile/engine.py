"""load -> read -> diff -> plan -> check -> apply. The CLI calls these; nothing here prints."""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, get_args

from pydantic import TypeAdapter, ValidationError

from reconcile.capabilities import raise_if_unsupported
from reconcile.diff import diff_states, protection_conflicts
from reconcile.errors import ConfigError, ManifestError, PlanError
from reconcile.manifest.loader import Manifest, ProviderConfig, load_manifest
from reconcile.manifest.schema import MailJawnOptions, MailjetOptions, ProviderName, ProviderOptions
from reconcile.model import ReadScope, State
from reconcile.plan import Estimate, Plan, raise_if_stale
from reconcile.providers.base import ApplyReport, Cancellation, Capability, Provider
from reconcile.providers.mailjawn.client import MailJawnClient
from reconcile.providers.mailjawn.provider import MailJawnProvider
from reconcile.providers.mailjet.bulk import JobPolling
from reconcile.providers.mailjet.client import MailjetClient
from reconcile.providers.mailjet.provider import MailjetProvider
from reconcile.sandbox.runtime import SANDBOX_DIR, SandboxEndpoint, in_process_sandbox
from reconcile.settings import MailJawnSettings, MailjetSettings, NetworkSettings

_PROVIDER_OPTIONS: TypeAdapter[ProviderConfig] = TypeAdapter(ProviderOptions)
PROVIDER_NAMES: tuple[str, ...] = get_args(ProviderName)
SANDBOX_POLLING = JobPolling(first_wait=0.02, max_wait=0.2)


@dataclass(frozen=True)
class Target:
    """Where to connect: the real service (credentials from the environment) or the sandbox."""

    sandbox: bool = False
    sandbox_dir: Path = SANDBOX_DIR


def validate(paths: Sequence[Path]) -> Manifest:
    """Load and check a manifest offline, including what its provider can do."""
    manifest = load_manifest(paths)
    raise_if_unsupported(manifest, provider_class(manifest.provider))
    # Only a note: a protected contact who excluded themselves is declared so by an export,
    # which asks for no change; plan refuses the ones that would change something.
    for found in protection_conflicts(manifest.desired, manifest.policy):
        manifest.notes.append(str(manifest.issue(found.ref, found.message)))
    return manifest


def provider_class(config: ProviderConfig) -> type[Provider]:
    return MailjetProvider if isinstance(config, MailjetOptions) else MailJawnProvider


def provider_config(name: str, options: Mapping[str, Any]) -> ProviderConfig:
    """The provider settings a saved plan was made with, or a bare provider name's defaults."""
    if name not in PROVIDER_NAMES:
        known = " or ".join(PROVIDER_NAMES)
        raise PlanError(f"unknown provider {name!r}: choose {known}")
    try:
        return _PROVIDER_OPTIONS.validate_python({"type": name, **options})
    except ValidationError as error:
        first = error.errors(include_url=False)[0]
        where = ".".join(str(part) for part in first["loc"])
        raise PlanError(f"bad {name} provider options ({where}: {first['msg']})") from None


@asynccontextmanager
async def open_provider(
    config: ProviderConfig, target: Target, cancel: Cancellation
) -> AsyncIterator[Provider]:
    """The provider `config` names, connected to `target`, stopping at `cancel`."""
    if target.sandbox:
        with in_process_sandbox(config.type, target.sandbox_dir) as endpoint:
            provider = _build(config, endpoint, cancel)
            provider.sandbox_id = endpoint.account_id
            try:
                yield provider
            finally:
                await provider.aclose()
        return
    provider = _build(config, None, cancel)
    try:
        yield provider
    finally:
        await provider.aclose()


def _build(
    config: ProviderConfig, endpoint: SandboxEndpoint | None, cancel: Cancellation
) -> Provider:
    network = NetworkSettings()
    if isinstance(config, MailJawnOptions):
        return _build_mailjawn(config, endpoint, network, cancel)
    return _build_mailjet(config, endpoint, network, cancel)


def _build_mailjet(
    config: MailjetOptions,
    endpoint: SandboxEndpoint | None,
    network: NetworkSettings,
    cancel: Cancellation,
) -> Provider:
    per_minute: float = config.requests_per_minute
    if endpoint is not None:
        api_key, secret = endpoint.credentials["api_key"], endpoint.credentials["secret_key"]
        base_url, transport = endpoint.base_url, endpoint.transport
        per_minute = endpoint.requests_per_minute
    else:
        settings = MailjetSettings()
        api_key, secret = settings.credentials()
        base_url, transport = settings.api_url, None
    client = MailjetClient(
        api_key=api_key,
        secret_key=secret,
        base_url=base_url,
        requests_per_minute=per_minute,
        transport=transport,
        timeout=network.timeout(),
        retry=network.retry(),
        cancel=cancel,
    )
    polling = SANDBOX_POLLING if endpoint is not None else JobPolling()
    return MailjetProvider(
        client, bulk_chunk_size=config.bulk_chunk_size, polling=polling, cancel=cancel
    )


def _build_mailjawn(
    config: MailJawnOptions,
    endpoint: SandboxEndpoint | None,
    network: NetworkSettings,
    cancel: Cancellation,
) -> Provider:
    if endpoint is not None:
        api_key, project_id = endpoint.credentials["api_key"], endpoint.credentials["project_id"]
        base_url, transport = endpoint.base_url, endpoint.transport
    else:
        settings = MailJawnSettings()
        api_key, base_url, transport = settings.key(), settings.api_url, None
        project_id = config.project_id or settings.project_id or ""
        if not project_id:
            raise ConfigError(
                "MailJawn project missing: set MAILJAWN_PROJECT_ID or the manifest's "
                "provider option project_id"
            )
    client = MailJawnClient(
        api_key=api_key,
        project_id=project_id,
        base_url=base_url,
        reads_per_minute=config.reads_per_minute,
        writes_per_minute=config.writes_per_minute,
        transport=transport,
        timeout=network.timeout(),
        retry=network.retry(),
        cancel=cancel,
    )
    return MailJawnProvider(client, import_chunk_size=config.import_chunk_size, cancel=cancel)


async def make_plan(manifest: Manifest, provider: Provider) -> tuple[Plan, State]:
    scope = manifest.read_scope()
    live = await provider.read(scope)
    if Capability.PROPERTY_DEFINITIONS not in provider.capabilities:
        live.properties = dict(manifest.desired.properties)  # definitions exist locally only
    result = diff_states(manifest.desired, live, manifest.policy)
    if result.errors:
        raise ManifestError(
            [manifest.issue(finding.ref, finding.message) for finding in result.errors]
        )
    changes, vetoed = provider.review(result.changes, live)
    options = manifest.provider.model_dump(exclude={"type"})
    warnings = [str(w) for w in (*result.warnings, *vetoed)]
    estimate = Estimate(provider.estimate_calls(changes, live), _write_pace(manifest.provider))
    made = Plan.build(
        provider.name,
        changes,
        scope,
        warnings,
        provider_options=options,
        estimate=estimate,
        thresholds=manifest.policy.thresholds,
        live=live,
        account=provider.account(),
    )
    return made, live


def _write_pace(config: ProviderConfig) -> float:
    """Calls per minute apply's writes may use, as configured (the limit of the real service)."""
    if isinstance(config, MailjetOptions):
        return config.requests_per_minute
    return config.writes_per_minute


async def apply_plan(
    plan: Plan, provider: Provider, live: State | None = None, *, force: bool = False
) -> ApplyReport:
    """Apply exactly `plan`. Without `live` (a saved plan), re-read and refuse if it moved.
    A plan over its safety thresholds is refused unless `force`."""
    plan.raise_if_unsafe(force)
    if plan.provider != provider.name:
        raise PlanError(
            f"the plan is for {plan.provider}, the manifest's provider is {provider.name}"
        )
    if live is None:
        plan.raise_if_other_account(provider.account())
        live = await provider.read(plan.scope)
        raise_if_stale(plan, live)
    return await provider.apply(plan.changes, live)


async def read_everything(provider: Provider) -> State:
    return await provider.read(ReadScope(contact_data=True, every_list=True))
