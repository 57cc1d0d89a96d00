"""Mailchimp Marketing v3 as a reconcile provider: its options, settings, and how to open it."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, SecretStr, StrictStr, field_validator
from pydantic_settings import SettingsConfigDict

from reconcile.errors import ConfigError
from reconcile.providers.base import Cancellation
from reconcile.providers.environment import ApiUrl, EnvSettings
from reconcile.providers.mailchimp.client import (
    MAX_IN_FLIGHT,
    MailchimpClient,
    default_timeout,
    default_url,
)
from reconcile.providers.mailchimp.provider import BATCH, MailchimpProvider
from reconcile.providers.mailchimp.records import tag_problem
from reconcile.providers.registry import Connection, ProviderOptions, ProviderPlugin
from reconcile.sandbox.common import Emulator, EmulatorFactory

CALLS_PER_CONNECTION = 30  # a minute: a batch of 500 members takes Mailchimp about 2 s
SANDBOX_AUDIENCE = ("Acme Newsletter", "a1b2c3d4e5")


class MailchimpOptions(ProviderOptions):
    type: Literal["mailchimp"]
    audience: StrictStr = Field(
        min_length=1, description="the audience (list) id, or a name unique in the account"
    )
    status_if_new: Literal["subscribed", "pending", "transactional"] = Field(
        "subscribed",
        description="status of members reconcile adds: subscribed (you hold their consent), "
        "pending (Mailchimp mails them a confirmation: double opt-in), or transactional "
        "(no marketing email)",
    )
    opt_in_status: Literal["subscribed", "pending"] = Field(
        "subscribed",
        description="status a consented return (excluded_from_campaigns: false with "
        "opted_in_at) sets: subscribed, or pending to have Mailchimp confirm it by email",
    )
    skip_merge_validation: bool = Field(
        False, description="add members even when a required merge field has no value"
    )
    labels: dict[StrictStr, StrictStr] = Field(
        default_factory=dict, description="display name of each merge field reconcile creates"
    )
    max_connections: int = Field(
        MAX_IN_FLIGHT, ge=1, le=10, description="requests in flight (Mailchimp allows 10)"
    )
    batch_size: int = Field(BATCH, ge=1, le=BATCH, description="members per batch call")

    @field_validator("labels")
    @classmethod
    def _label_tags(cls, labels: dict[str, str]) -> dict[str, str]:
        for tag, label in labels.items():
            problem = tag_problem(tag)
            if problem:
                raise ValueError(f"{tag!r} {problem}")
            if not label.strip() or len(label) > 100:
                raise ValueError(f"the label of {tag} must be 1 to 100 characters")
        return labels


class MailchimpSettings(EnvSettings):
    model_config = SettingsConfigDict(env_prefix="MAILCHIMP_", extra="ignore")

    api_key: SecretStr | None = None
    api_url: ApiUrl | None = None

    @field_validator("api_key", mode="before")
    @classmethod
    def _trimmed(cls, value: object) -> object:
        """A pasted key often brings a newline or spaces along."""
        return value.strip() or None if isinstance(value, str) else value

    @field_validator("api_url")
    @classmethod
    def _base_only(cls, value: str | None) -> str | None:
        if value is not None and value.rstrip("/").endswith("/3.0"):
            raise ValueError("give the base URL without /3.0 (reconcile appends it)")
        return value

    def key(self) -> str:
        if not self.api_key:
            raise ConfigError(
                "Mailchimp credentials missing: set MAILCHIMP_API_KEY (or try it with --sandbox)"
            )
        return self.api_key.get_secret_value()

    def base_url(self, key: str) -> str:
        if self.api_url:
            return self.api_url
        found = default_url(key)
        if not found:
            raise ConfigError(
                "MAILCHIMP_API_KEY has no data-centre suffix (-usN, as in …-us6): copy the "
                "whole key, or set MAILCHIMP_API_URL"
            )
        return found


class MailchimpPlugin(ProviderPlugin[MailchimpOptions]):
    name = "mailchimp"
    options_model = MailchimpOptions
    settings_model = MailchimpSettings
    provider_class = MailchimpProvider

    def open(self, options: MailchimpOptions, connection: Connection) -> MailchimpProvider:
        endpoint = connection.endpoint
        if endpoint is not None:
            api_key, base_url, transport = (
                endpoint.credentials["api_key"],
                endpoint.base_url,
                endpoint.transport,
            )
        else:
            settings = MailchimpSettings()
            api_key = settings.key()
            base_url, transport = settings.base_url(api_key), None
        timeout = connection.timeout
        if not connection.read_timeout_given:
            timeout = default_timeout(connection.timeout.connect)
        client = MailchimpClient(
            api_key=api_key,
            base_url=base_url,
            max_in_flight=options.max_connections,
            transport=transport,
            timeout=timeout,
            retry=connection.retry,
            cancel=connection.cancel,
        )
        return provider_with(client, options, connection.cancel)

    def write_pace(self, options: MailchimpOptions) -> float:
        return options.max_connections * CALLS_PER_CONNECTION

    def emulator_factory(self) -> EmulatorFactory:
        return _sandbox_emulator


def _sandbox_emulator(state: dict[str, Any] | None) -> tuple[Emulator, dict[str, str]]:
    from reconcile.providers.mailchimp.emulator.app import (  # noqa: PLC0415 (only the sandbox needs it)
        create_mailchimp_emulator,
    )
    from reconcile.providers.mailchimp.emulator.settings import (  # noqa: PLC0415
        MailchimpEmulatorSettings,
    )

    emulator = create_mailchimp_emulator(MailchimpEmulatorSettings(), state)
    if state is None:  # a new sandbox: one audience, as a new Mailchimp account has
        name, list_id = SANDBOX_AUDIENCE
        emulator.seed_audience(name, list_id)
    return emulator, {"api_key": emulator.settings.api_keys[0]}


def provider_with(
    client: MailchimpClient, options: MailchimpOptions, cancel: Cancellation | None = None
) -> MailchimpProvider:
    """The provider the manifest's options describe, on `client`."""
    return MailchimpProvider(
        client,
        audience=options.audience,
        status_if_new=options.status_if_new,
        opt_in_status=options.opt_in_status,
        skip_merge_validation=options.skip_merge_validation,
        labels=options.labels,
        batch_size=options.batch_size,
        cancel=cancel,
    )


PLUGIN = MailchimpPlugin()
