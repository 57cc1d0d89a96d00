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
from typing import Any, ClassVar, Generic, TypeVar, get_args

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
    read_timeout_given: bool = False  # set by the user: a provider keeps it, else may raise it


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
    reason, so a broken third-party package breaks only its own `provider:`; two
    packages claiming one name break that name (neither may take the other's place)."""
    found: dict[str, AnyPlugin] = {}
    broken: dict[str, str] = {}
    claims: dict[str, list[str]] = {}
    for entry in entry_points(group=ENTRY_POINT_GROUP):
        claims.setdefault(entry.name, []).append(entry.value)
        try:
            found[entry.name] = _load(entry)
        except ConfigError as error:
            broken[entry.name] = str(error)
    for name, values in claims.items():
        if len(set(values)) > 1:
            found.pop(name, None)
            broken[name] = (
                f"provider {name!r} is registered by more than one package ({', '.join(values)}); "
                "uninstall all but one"
            )
    return _Scan(dict(sorted(found.items())), dict(sorted(broken.items())))


def broken() -> Mapping[str, str]:
    """Registered providers that could not be loaded, with the reason."""
    return _scan().broken


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
    except (Exception, SystemExit) as error:  # a broken package must not end the CLI
        raise ConfigError(
            f"provider plug-in {entry.name!r} ({entry.value}) failed to load "
            f"({type(error).__name__}: {error}); reinstall or uninstall it"
        ) from None
    problem = _declaration_problem(plugin)
    if problem or not isinstance(plugin, ProviderPlugin):
        raise ConfigError(f"provider plug-in {entry.name!r} ({entry.value}) {problem}")
    named = {plugin.name, plugin.provider_class.name}
    if named != {entry.name}:
        raise ConfigError(
            f"provider plug-in {entry.value} is registered as {entry.name!r} but calls "
            f"itself {' and '.join(sorted(named))}; its entry point, plug-in and provider "
            "must use one name"
        )
    return plugin


def _declaration_problem(plugin: object) -> str | None:
    """What a plug-in fails to declare as the core needs it, or None."""
    if not isinstance(plugin, ProviderPlugin):
        return "is not a ProviderPlugin"
    for attribute, kind in (
        ("name", str),
        ("options_model", type),
        ("settings_model", type),
        ("provider_class", type),
    ):
        if not isinstance(getattr(plugin, attribute, None), kind):
            return f"does not declare {attribute}"
    if not issubclass(plugin.options_model, ProviderOptions):
        return "options_model is not a ProviderOptions"
    if get_args(plugin.options_model.model_fields["type"].annotation) != (plugin.name,):
        return f'options_model must declare type: Literal["{plugin.name}"]'
    if not issubclass(plugin.provider_class, Provider) or not isinstance(
        getattr(plugin.provider_class, "name", None), str
    ):
        return "provider_class is not a Provider with a name"
    return None


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
    if len(chosen) > 1:  # a plug-in may not take the built-in default's place
        chosen = [name for name in chosen if _built_in(plugins[name])] or chosen
    if len(chosen) != 1:
        raise ConfigError(f"choose a provider with --provider; {_choices()}")
    return chosen[0]


def _built_in(found: AnyPlugin) -> bool:
    return type(found).__module__.startswith(__name__.rpartition(".")[0] + ".")


def option_models() -> list[type[ProviderOptions]]:
    if not installed():
        raise ConfigError(f"cannot read a manifest: {_choices()}")
    return [found.options_model for found in installed().values()]


def builtin_option_models() -> list[type[ProviderOptions]]:
    """Those of the providers shipped in this package: the committed schema documents them."""
    return [found.options_model for found in installed().values() if _built_in(found)]
