"""Settings every provider shares (RECONCILE_* variables); each provider declares its own
credentials and endpoints in its package. Never from manifests, never printed."""

from __future__ import annotations

import httpx
from pydantic import Field
from pydantic_settings import SettingsConfigDict

from reconcile.providers.environment import EnvSettings
from reconcile.providers.pacing import RetryPolicy


class NetworkSettings(EnvSettings):
    """Timeouts and retries, shared by every provider (RECONCILE_* variables)."""

    model_config = SettingsConfigDict(env_prefix="RECONCILE_", extra="ignore")

    connect_timeout: float = Field(10.0, gt=0, allow_inf_nan=False)
    read_timeout: float = Field(30.0, gt=0, allow_inf_nan=False)
    retry_attempts: int = Field(6, ge=1, le=20)
    retry_wait: float = Field(
        1.0, ge=0, allow_inf_nan=False, description="first backoff, doubled each retry"
    )
    retry_wait_max: float = Field(60.0, ge=0, allow_inf_nan=False)

    def timeout(self) -> httpx.Timeout:
        return httpx.Timeout(self.read_timeout, connect=self.connect_timeout)

    def retry(self) -> RetryPolicy:
        jitter = min(1.0, self.retry_wait)
        return RetryPolicy(self.retry_attempts, self.retry_wait, self.retry_wait_max, jitter)
