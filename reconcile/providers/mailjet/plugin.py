"""Mailjet REST v3 as a reconcile provider: its options, settings, and how to open it."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, SecretStr
from pydantic_settings import SettingsConfigDict

from reconcile.errors import ConfigError
from reconcile.providers.environment import ApiUrl, EnvSettings
from reconcile.providers.mailjet.bulk import JobPolling
from reconcile.providers.mailjet.client import MailjetClient
from reconcile.providers.mailjet.provider import MailjetProvider
from reconcile.providers.registry import Connection, ProviderOptions, ProviderPlugin
from reconcile.sandbox.common import Emulator, EmulatorFactory

# The sandbox's jobs end on the third poll (as the estimate expects): poll them quickly.
SANDBOX_POLLING = JobPolling(first_wait=0.02, max_wait=0.2)


class MailjetOptions(ProviderOptions):
    type: Literal["mailjet"]
    requests_per_minute: int = Field(200, ge=1, le=100_000, description="client-side pacing")
    bulk_chunk_size: int = Field(
        1000, ge=1, le=10_000, description="contacts per managemanycontacts job"
    )


class MailjetSettings(EnvSettings):
    model_config = SettingsConfigDict(env_prefix="MAILJET_", extra="ignore")

    api_key: SecretStr | None = None
    secret_key: SecretStr | None = None
    api_url: ApiUrl = "https://api.mailjet.com"

    def credentials(self) -> tuple[str, str]:
        if not self.api_key or not self.secret_key:
            raise ConfigError(
                "Mailjet credentials missing: set MAILJET_API_KEY and MAILJET_SECRET_KEY "
                "(or try it with --sandbox)"
            )
        return self.api_key.get_secret_value(), self.secret_key.get_secret_value()


class MailjetPlugin(ProviderPlugin[MailjetOptions]):
    name = "mailjet"
    options_model = MailjetOptions
    settings_model = MailjetSettings
    provider_class = MailjetProvider
    default = True

    def open(self, options: MailjetOptions, connection: Connection) -> MailjetProvider:
        endpoint = connection.endpoint
        per_minute: float = options.requests_per_minute
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
            timeout=connection.timeout,
            retry=connection.retry,
            cancel=connection.cancel,
        )
        polling = SANDBOX_POLLING if endpoint is not None else JobPolling()
        return MailjetProvider(
            client,
            bulk_chunk_size=options.bulk_chunk_size,
            polling=polling,
            cancel=connection.cancel,
        )

    def write_pace(self, options: MailjetOptions) -> float:
        return options.requests_per_minute

    def emulator_factory(self) -> EmulatorFactory:
        return _sandbox_emulator


def _sandbox_emulator(state: dict[str, Any] | None) -> tuple[Emulator, dict[str, str]]:
    from reconcile.providers.mailjet.emulator.app import (  # noqa: PLC0415 (only the sandbox needs it)
        MailjetEmulatorSettings,
        create_mailjet_emulator,
    )

    # Jobs end on the third poll, as the plan's estimate expects and the benchmark serves
    # them, so the sandbox makes exactly the calls its plans announce.
    emulator = create_mailjet_emulator(MailjetEmulatorSettings(job_polls_to_complete=2), state)
    settings = emulator.settings
    return emulator, {"api_key": settings.api_key, "secret_key": settings.secret_key}


PLUGIN = MailjetPlugin()
