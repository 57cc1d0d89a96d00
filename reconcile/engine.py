"""load -> read -> diff -> plan -> check -> apply. The CLI calls these; nothing here prints."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Mapping, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from reconcile import collector
from reconcile.capabilities import raise_if_unsupported
from reconcile.diff import diff_states
from reconcile.errors import ManifestError, PlanError
from reconcile.manifest.loader import Manifest, load_manifest
from reconcile.model import ReadScope, State
from reconcile.plan import Estimate, Plan, raise_if_stale
from reconcile.providers import registry
from reconcile.providers.base import ApplyReport, Cancellation, Provider
from reconcile.providers.registry import Connection, ProviderOptions
from reconcile.prune import apply_policy, protection_conflicts
from reconcile.sandbox.runtime import SANDBOX_DIR, in_process_sandbox
from reconcile.settings import NetworkSettings
from reconcile.targeting import Targeting, targeted, unmatched


@dataclass(frozen=True)
class ConnectTo:
    """The real service (credentials from the environment) or the built-in sandbox."""

    sandbox: bool = False
    sandbox_dir: Path = SANDBOX_DIR


def validate(paths: Sequence[Path]) -> Manifest:
    """Load and check a manifest offline, including what its provider can do."""
    manifest = load_manifest(paths)
    raise_if_unsupported(manifest, registry.plugin(manifest.provider.type).provider_class)
    # Only a note: a protected contact who excluded themselves is declared so by an export,
    # which asks for no change; plan refuses the ones that would change something.
    for found in protection_conflicts(manifest.desired, manifest.policy):
        manifest.notes.append(str(manifest.issue(found.ref, found.message)))
    return manifest


def provider_config(name: str, options: Mapping[str, Any]) -> ProviderOptions:
    """The provider options a saved plan was made with, or a bare provider name's defaults."""
    return registry.plugin(name).options(options)


@asynccontextmanager
async def open_provider(
    config: ProviderOptions, where: ConnectTo, cancel: Cancellation
) -> AsyncIterator[Provider]:
    """The provider `config` names, connected `where`, stopping at `cancel`."""
    plugin = registry.plugin(config.type)
    network = NetworkSettings()
    with contextlib.ExitStack() as stack:
        endpoint = None
        if where.sandbox:
            factory = plugin.emulator_factory()
            endpoint = stack.enter_context(
                in_process_sandbox(config.type, factory, where.sandbox_dir)
            )
        given = "read_timeout" in network.model_fields_set
        connection = Connection(endpoint, network.timeout(), network.retry(), cancel, given)
        provider = plugin.open(config, connection)
        if endpoint is not None:
            provider.sandbox_id = endpoint.account_id
        try:
            yield provider
        finally:
            await provider.aclose()


async def make_plan(
    manifest: Manifest, provider: Provider, targeting: Targeting | None = None
) -> tuple[Plan, State]:
    """The plan for `manifest` against what `provider` reads; with `targeting`, only the
    changes it picks and what they need (a partial plan, which says so)."""
    targeting = targeting or Targeting()
    scope = manifest.read_scope()
    with collector.young_only():
        live = await provider.read_against(manifest.desired, scope)
    collector.settled(len(live.contacts) + len(live.memberships))
    try:
        with collector.paused():  # pure from here on: no cycle is made
            return _plan_of(manifest, provider, targeting, scope, live)
    finally:
        collector.released()


def _plan_of(
    manifest: Manifest, provider: Provider, targeting: Targeting, scope: ReadScope, live: State
) -> tuple[Plan, State]:
    compared = diff_states(manifest.desired, live)
    result = apply_policy(manifest.desired, live, manifest.policy, compared)
    result.errors.extend(provider.check_against(manifest.desired, live))
    if result.errors:
        raise ManifestError(
            [manifest.issue(finding.ref, finding.message) for finding in result.errors]
        )
    reviewed, vetoed = provider.review(result.changes, live)
    changes, left_out = targeted(reviewed, targeting)
    options = manifest.provider.model_dump(exclude={"type"})
    warnings = [str(w) for w in (*result.warnings, *vetoed, *left_out)]
    warnings += [
        f"{pattern}: matches no change of this plan (a typo targets nothing)"
        for pattern in unmatched(reviewed, targeting)
    ]
    pace = registry.plugin(manifest.provider.type).write_pace(manifest.provider)
    made = Plan.build(
        provider.name,
        changes,
        scope,
        warnings,
        provider_options=options,
        thresholds=manifest.policy.thresholds,
        live=live,
        account=provider.account(live),
        target=provider.target(live),
        partial=targeting.to_json() if targeting.partial else {},
    )
    # On the plan's changes, in apply's order: a provider's routing may follow the order.
    calls, assumes = provider.estimate(made.changes, live)
    made = replace(made, estimate=Estimate(calls, pace, assumes))
    return made, live


async def apply_plan(
    plan: Plan, provider: Provider, live: State | None = None, *, force: bool = False
) -> ApplyReport:
    """Apply exactly `plan`. Without `live` (a saved plan), re-read and refuse if it moved.
    A plan over its safety thresholds is refused unless `force`."""
    refuse_unfit(plan, provider, force=force)
    if live is None:
        live = await checked_live(plan, provider, force=force)
    report = await provider.apply(plan.changes, live)
    if len(plan.changes) >= collector.BIG:
        collector.give_back()  # what apply built to send is freed: the next phase starts low
    return report


def refuse_unfit(plan: Plan, provider: Provider, *, force: bool) -> None:
    plan.raise_if_unsafe(force)
    if plan.provider != provider.name:
        raise PlanError(
            f"the plan is for {plan.provider}, the manifest's provider is {provider.name}"
        )


async def checked_live(plan: Plan, provider: Provider, *, force: bool) -> State:
    """The account a saved plan is for, read again; refused if it is another account or
    moved since planning. What names the account is checked before reading it; what only
    a read finds (the id of an audience the manifest names by name), once read."""
    refuse_unfit(plan, provider, force=force)
    plan.raise_if_other_account(provider.account(None), partial=True)
    live = await provider.read(plan.scope)
    plan.raise_if_other_account(provider.account(live))
    raise_if_stale(plan, live)
    return live


async def read_everything(provider: Provider, lists: frozenset[str] = frozenset()) -> State:
    """The whole account; `lists`: names a manifest already spells (see ReadScope)."""
    return await provider.read(ReadScope(lists, contact_data=True, every_list=True))
