"""Settings read from environment variables, the base of every provider's settings.

A bad value is one line naming the variable, what is wrong and what to do; a value
is never repeated (it may be a secret)."""

from __future__ import annotations

from typing import Annotated, Any
from urllib.parse import urlsplit

from pydantic import AfterValidator, ValidationError
from pydantic_settings import BaseSettings

from reconcile.errors import ConfigError


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
    if value != value.strip():
        raise ValueError("must not start or end with spaces")
    parsed = urlsplit(value)
    if parsed.scheme not in ("http", "https") or not parsed.netloc:
        raise ValueError("must be an http:// or https:// URL with a host")
    if "@" in parsed.netloc:  # it would be shown in plans, errors and --debug lines
        raise ValueError("must not carry credentials (user:password@); use the key variables")
    return value


ApiUrl = Annotated[str, AfterValidator(http_url)]
