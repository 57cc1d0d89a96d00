"""Credentials and endpoints from the environment (never from manifests, never printed)."""

from __future__ import annotations

from typing import Annotated, Any
from urllib.parse import urlsplit

import httpx
from pydantic import AfterValidator, Field, SecretStr, ValidationError
from pydantic_settings import BaseSettings, SettingsConfigDict

from reconcile.errors import ConfigError
from reconcile.providers.pacing import RetryPolicy


class EnvSettings(BaseSettings):
    """Settings read from environment variables; a bad value is a ConfigError naming the
    variable, what is wrong and what to do, never a pydantic traceback."""

    def __init__(self, **values: Any) -> None:
        try:
            super().__init__(**values)
        except ValidationError as error:
            raise ConfigError(self._problems(error)) from None

    @classmethod
    def _problems(cls, error: ValidationError) -> str:
        """`RECONCILE_READ_TIMEOUT: should be greater than 0; set ...`, one per variable.
        The value itself is not repeated: it may be a secret."""
        prefix = str(cls.model_config.get("env_prefix", ""))
        problems = []
        for item in error.errors(include_url=False):
            name = str(item["loc"][0]) if item["loc"] else ""
            variable = f"{prefix}{name}".upper()
            message = str(item["msg"]).removeprefix("Input ").removeprefix("Value error, ")
            problems.append(f"{variable}: {message}; {cls._remedy(name)}")
        return "; ".join(problems)

    @classmethod
    def _remedy(cls, name: str) -> str:
        field = cls.model_fields.get(name)
        if field is None or field.default is None:
            return "set a valid value or unset it"
        return f"set a valid value or unset it for the default ({field.default})"


def http_url(value: str) -> str:
    """An API base URL: http(s) with a host, or a ValueError saying what it must be."""
    parsed = urlsplit(value)
    if parsed.scheme not in ("http", "https") or not parsed.netloc:
        raise ValueError("must be an http:// or https:// URL with a host")
    return value


ApiUrl = Annotated[str, AfterValidator(http_url)]


class NetworkSettings(EnvSettings):
    """Timeouts and retries, shared by both providers (RECONCILE_* variables)."""

    model_config = SettingsConfigDict(env_prefix="RECONCILE_", extra="ignore")

    connect_timeout: float = Field(10.0, gt=0)
    read_timeout: float = Field(30.0, gt=0)
    retry_attempts: int = Field(6, ge=1, le=20)
    retry_wait: float = Field(1.0, ge=0, description="first backoff, doubled each retry")
    retry_wait_max: float = Field(60.0, ge=0)

    def timeout(self) -> httpx.Timeout:
        return httpx.Timeout(self.read_timeout, connect=self.connect_timeout)

    def retry(self) -> RetryPolicy:
        jitter = min(1.0, self.retry_wait)
        return RetryPolicy(self.retry_attempts, self.retry_wait, self.retry_wait_max, jitter)


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
