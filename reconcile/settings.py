"""Credentials and endpoints from the environment (never from manifests, never printed)."""

from __future__ import annotations

from pydantic import SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

from reconcile.errors import ConfigError


class MailjetSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="MAILJET_", extra="ignore")

    api_key: SecretStr | None = None
    secret_key: SecretStr | None = None
    api_url: str = "https://api.mailjet.com"

    def credentials(self) -> tuple[str, str]:
        if not self.api_key or not self.secret_key:
            raise ConfigError(
                "Mailjet credentials missing: set MAILJET_API_KEY and MAILJET_SECRET_KEY "
                "(or try it with --sandbox)"
            )
        return self.api_key.get_secret_value(), self.secret_key.get_secret_value()


class MailJawnSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="MAILJAWN_", extra="ignore")

    api_key: SecretStr | None = None
    project_id: str | None = None
    api_url: str = "https://api.mailjawn.com"

    def key(self) -> str:
        if not self.api_key:
            raise ConfigError(
                "MailJawn credentials missing: set MAILJAWN_API_KEY (or try it with --sandbox)"
            )
        return self.api_key.get_secret_value()
