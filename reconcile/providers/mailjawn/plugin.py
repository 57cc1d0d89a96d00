"""MailJawn REST v1 as a reconcile provider: its options, settings, and how to open it."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, SecretStr, StrictStr
from pydantic_settings import SettingsConfigDict

from reconcile.errors import ConfigError
from reconcile.providers.environment import ApiUrl, EnvSettings
from reconcile.providers.mailjawn.client import MailJawnClient
from reconcile.providers.mailjawn.provider import MailJawnProvider
from reconcile.providers.registry import Connection, ProviderOptions, ProviderPlugin
from reconcile.sandbox.common import Emulator, EmulatorFactory


class MailJawnOptions(ProviderOptions):
    type: Literal["mailjawn"]
    project_id: StrictStr | None = Field(None, description="else MAILJAWN_PROJECT_ID")
    reads_per_minute: int = Field(100, ge=1, le=100_000)
    writes_per_minute: int = Field(30, ge=1, le=100_000)
    import_chunk_size: int = Field(1000, ge=1, le=1000, description="subscribers per bulk import")


class MailJawnSettings(EnvSettings):
    model_config = SettingsConfigDict(env_prefix="MAILJAWN_", extra="ignore")

    api_key: SecretStr | None = None
    project_id: str | None = None
    api_url: ApiUrl = "https://api.mailjawn.com"

    def key(self) -> str:
        if not self.api_key:
            raise ConfigError(
                "MailJawn credentials missing: set MAILJAWN_API_KEY (or try it with --sandbox)"
            )
        return self.api_key.get_secret_value()


class MailJawnPlugin(ProviderPlugin[MailJawnOptions]):
    name = "mailjawn"
    options_model = MailJawnOptions
    settings_model = MailJawnSettings
    provider_class = MailJawnProvider

    def open(self, options: MailJawnOptions, connection: Connection) -> MailJawnProvider:
        endpoint = connection.endpoint
        if endpoint is not None:
            api_key, project_id = (
                endpoint.credentials["api_key"],
                endpoint.credentials["project_id"],
            )
            base_url, transport = endpoint.base_url, endpoint.transport
        else:
            settings = MailJawnSettings()
            api_key, base_url, transport = settings.key(), settings.api_url, None
            project_id = options.project_id or settings.project_id or ""
            if not project_id:
                raise ConfigError(
                    "MailJawn project missing: set MAILJAWN_PROJECT_ID or the manifest's "
                    "provider option project_id"
                )
        client = MailJawnClient(
            api_key=api_key,
            project_id=project_id,
            base_url=base_url,
            reads_per_minute=options.reads_per_minute,
            writes_per_minute=options.writes_per_minute,
            transport=transport,
            timeout=connection.timeout,
            retry=connection.retry,
            cancel=connection.cancel,
        )
        return MailJawnProvider(
            client, import_chunk_size=options.import_chunk_size, cancel=connection.cancel
        )

    def write_pace(self, options: MailJawnOptions) -> float:
        return options.writes_per_minute

    def emulator_factory(self) -> EmulatorFactory:
        return _sandbox_emulator


def _sandbox_emulator(state: dict[str, Any] | None) -> tuple[Emulator, dict[str, str]]:
    from reconcile.providers.mailjawn.emulator.app import (  # noqa: PLC0415 (only the sandbox needs it)
        MailJawnEmulatorSettings,
        create_mailjawn_emulator,
    )

    emulator = create_mailjawn_emulator(MailJawnEmulatorSettings(), state)
    key = next(iter(emulator.settings.api_keys))
    return emulator, {"api_key": key, "project_id": emulator.settings.project_id}


PLUGIN = MailJawnPlugin()
