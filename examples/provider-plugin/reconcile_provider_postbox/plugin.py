"""Postbox as a reconcile plug-in: everything reconcile needs from it, in one place.

Registered in this package's pyproject.toml:

    [project.entry-points."reconcile.providers"]
    postbox = "reconcile_provider_postbox.plugin:PLUGIN"
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, SecretStr
from pydantic_settings import SettingsConfigDict

from reconcile.errors import ConfigError
from reconcile.providers.environment import ApiUrl, EnvSettings
from reconcile.providers.registry import Connection, ProviderOptions, ProviderPlugin
from reconcile.sandbox.common import Emulator, EmulatorFactory
from reconcile_provider_postbox.client import PostboxClient, Retrying
from reconcile_provider_postbox.provider import PostboxProvider


class PostboxOptions(ProviderOptions):
    """`provider: {type: postbox, ...}` in a manifest (a bare `provider: postbox` takes
    the defaults). Saved in plans; never a secret."""

    type: Literal["postbox"]
    requests_per_minute: int = Field(120, ge=1, le=100_000, description="client-side pacing")
    page_size: int = Field(100, ge=1, le=100, description="records per listing page")


class PostboxSettings(EnvSettings):
    """POSTBOX_API_KEY and POSTBOX_API_URL; a bad value is one line naming the variable."""

    model_config = SettingsConfigDict(env_prefix="POSTBOX_", extra="ignore")

    api_key: SecretStr | None = None
    api_url: ApiUrl = "https://api.postbox.example"

    def key(self) -> str:
        if not self.api_key:
            raise ConfigError(
                "Postbox credentials missing: set POSTBOX_API_KEY (or try it with --sandbox)"
            )
        return self.api_key.get_secret_value()


class PostboxPlugin(ProviderPlugin[PostboxOptions]):
    name = "postbox"
    options_model = PostboxOptions
    settings_model = PostboxSettings
    provider_class = PostboxProvider  # its `capabilities` are the plug-in's

    def open(self, options: PostboxOptions, connection: Connection) -> PostboxProvider:
        endpoint = connection.endpoint
        per_minute: float = options.requests_per_minute
        if endpoint is not None:  # the sandbox, or a test's emulator
            api_key, base_url = endpoint.credentials["api_key"], endpoint.base_url
            transport, per_minute = endpoint.transport, endpoint.requests_per_minute
        else:
            settings = PostboxSettings()
            api_key, base_url, transport = settings.key(), settings.api_url, None
        retry = connection.retry
        client = PostboxClient(
            api_key=api_key,
            base_url=base_url,
            transport=transport,
            timeout=connection.timeout,
            requests_per_minute=per_minute,
            page_size=options.page_size,
            retrying=Retrying(retry.attempts, retry.wait_initial, retry.wait_max),
            cancel=connection.cancel,
        )
        return PostboxProvider(client, api_key=api_key, cancel=connection.cancel)

    def write_pace(self, options: PostboxOptions) -> float:
        return options.requests_per_minute

    def emulator_factory(self) -> EmulatorFactory:
        return _sandbox_emulator


def _sandbox_emulator(state: dict[str, Any] | None) -> tuple[Emulator, dict[str, str]]:
    """The emulator with the sandbox's saved account, and the key it accepts."""
    from reconcile_provider_postbox.emulator import (  # noqa: PLC0415 (only the sandbox needs it)
        SANDBOX_KEY,
        PostboxEmulator,
    )

    return PostboxEmulator(state), {"api_key": SANDBOX_KEY}


PLUGIN = PostboxPlugin()
