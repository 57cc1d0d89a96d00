"""The provider registry: every provider, built in or installed, is a plug-in.

A provider package declares one `ProviderPlugin` and registers it under the entry-point
group `reconcile.providers` (in its `pyproject.toml`); the core learns every name, option,
setting and capability through it, and knows no provider by name. Built-in providers
register the same way, so `pip install reconcile-provider-x` adds `provider: x`.
"""

from __future__ import annotations

import functools
from abc import ABC, abstractmethod
from collections.abc import Mapping
from dataclasses import dataclass
from importlib.metadata import EntryPoint, entry_points
from typing import Any, ClassVar, Generic, TypeVar

import httpx
from pydantic import BaseModel, ConfigDict, ValidationError

from reconcile.errors import ConfigError
from reconcile.providers.base import Cancellation, Capability, Provider
from reconcile.providers.environment import EnvSettings
from reconcile.providers.pacing import RetryPolicy
from reconcile.sandbox.common import EmulatorFactory
from reconcile.sandbox.runtime import SandboxEndpoint

ENTRY_POINT_GROUP = "reconcile.providers"


class ProviderOptions(BaseModel):
    """The `provider:` mapping of a manifest. A provider's own model adds its options and
    narrows `type` to `Literal["<its name>"]`; unknown keys are refused."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    type: str


OptionsT = TypeVar("OptionsT", bound=ProviderOptions)


@dataclass(frozen=True)
class Connection:
    """What the engine hands a provider to open: where (None: the real service, found
    through the provider's settings), how patiently, and when to stop."""

    endpoint: SandboxEndpoint | None
    timeout: httpx.Timeout
    retry: RetryPolicy
    cancel: Cancellation  # Ctrl-C: the client and provider stop starting writes


class ProviderPlugin(ABC, Generic[OptionsT]):
    """Everything the core needs from one provider, declared in one place."""

    name: ClassVar[str]  # as written in a manifest's `provider:`
    options_model: ClassVar[type[ProviderOptions]]
    settings_model: ClassVar[type[EnvSettings]]  # its environment variables
    provider_class: ClassVar[type[Provider]]  # declares the capabilities
    default: ClassVar[bool] = False  # what `export`/`sandbox` use without --provider

    @property
    def capabilities(self) -> frozenset[Capability]:
        return self.provider_class.capabilities

    @abstractmethod
    def open(self, options: OptionsT, connection: Connection) -> Provider:
        """A provider with its client, against the real service or `connection.endpoint`."""

    @abstractmethod
    def write_pace(self, options: OptionsT) -> float:
        """Calls per minute apply's writes may use, as configured: the estimate's rate."""

    @abstractmethod
    def emulator_factory(self) -> EmulatorFactory:
        """Makes the provider's API emulator (for `--sandbox` and `reconcile sandbox`)."""

    def options(self, values: Mapping[str, Any]) -> ProviderOptions:
        """This provider's options from plain values (a saved plan's), or a ConfigError."""
        try:
            return self.options_model.model_validate({**values, "type": self.name})
        except ValidationError as error:
            first = error.errors(include_url=False)[0]
            where = ".".join(str(part) for part in first["loc"])
            problem = f"{where}: {first['msg']}"
        raise ConfigError(f"bad {self.name} provider options ({problem})")

    def variables(self) -> list[str]:
        """The environment variables it reads, for help texts."""
        prefix = str(self.settings_model.model_config.get("env_prefix", ""))
        return [f"{prefix}{name}".upper() for name in self.settings_model.model_fields]


AnyPlugin = ProviderPlugin[Any]


@dataclass(frozen=True)
class _Scan:
    plugins: Mapping[str, AnyPlugin]
    broken: Mapping[str, str]  # name -> why it could not be loaded


@functools.cache
def _scan() -> _Scan:
    """Every registered provider, loaded. One that fails to load is set aside with the
    reason, so a broken third-party package breaks only its own `provider:`."""
    found: dict[str, AnyPlugin] = {}
    broken: dict[str, str] = {}
    for entry in entry_points(group=ENTRY_POINT_GROUP):
        try:
            found[entry.name] = _load(entry)
        except ConfigError as error:
            broken[entry.name] = str(error)
    return _Scan(dict(sorted(found.items())), broken)


def installed() -> Mapping[str, AnyPlugin]:
    """Every provider that loaded, by name, in name order."""
    return _scan().plugins


def rescan() -> None:
    """Forget the providers found, so the next lookup scans the entry points again."""
    _scan.cache_clear()


def _load(entry: EntryPoint) -> AnyPlugin:
    try:
        loaded = entry.load()
        plugin = loaded() if isinstance(loaded, type) else loaded
    except Exception as error:  # a broken third-party package must not crash the CLI
        raise ConfigError(
            f"provider plug-in {entry.name!r} ({entry.value}) failed to load "
            f"({type(error).__name__}: {error}); reinstall or uninstall it"
        ) from None
    if not isinstance(plugin, ProviderPlugin):
        raise ConfigError(
            f"provider plug-in {entry.name!r} ({entry.value}) is not a ProviderPlugin"
        )
    named = {plugin.name, plugin.provider_class.name}
    if named != {entry.name}:
        raise ConfigError(
            f"provider plug-in {entry.value} is registered as {entry.name!r} but calls "
            f"itself {' and '.join(sorted(named))}; its entry point, plug-in and provider "
            "must use one name"
        )
    return plugin


def names() -> list[str]:
    return list(installed())


def plugin(name: str) -> AnyPlugin:
    """The provider called `name`; unknown names are an error listing the installed ones."""
    scan = _scan()
    if name in scan.broken:
        raise ConfigError(scan.broken[name])
    found = scan.plugins.get(name)
    if found is None:
        raise ConfigError(f"unknown provider {name!r}; {_choices()}")
    return found


def _choices() -> str:
    known = names()
    if not known:
        return (
            "no provider is installed (the package's entry points are missing: "
            "reinstall reconcile, e.g. pip install -e .)"
        )
    return "installed providers: " + ", ".join(known)


def default_name() -> str:
    """The provider `export` and `sandbox` use without --provider."""
    plugins = installed()
    if len(plugins) == 1:
        return next(iter(plugins))
    chosen = [name for name, found in plugins.items() if found.default]
    if len(chosen) != 1:
        raise ConfigError(f"choose a provider with --provider; {_choices()}")
    return chosen[0]


def option_models() -> list[type[ProviderOptions]]:
    if not installed():
        raise ConfigError(f"cannot read a manifest: {_choices()}")
    return [found.options_model for found in installed().values()]


def builtin_option_models() -> list[type[ProviderOptions]]:
    """Those of the providers shipped in this package: the committed schema documents them."""
    return [
        found.options_model
        for found in installed().values()
        if type(found).__module__.startswith(__name__.rpartition(".")[0] + ".")
    ]
