"""Settings of the scoring API: one class, environment variables prefixed ``PA_``."""

from __future__ import annotations

import functools
from typing import Literal

from pydantic import Field, SecretStr

from payments_core.settings import CommonSettings


class Settings(CommonSettings):
    """The shared PA_ variables (env, Redis, Kafka, data folder with the published rules at
    <data_dir>/rules/ruleset.json, the model registry) come from CommonSettings."""

    auth: Literal["auto", "on", "off"] = Field("auto", description="auto: on unless PA_ENV=dev")
    api_keys: SecretStr = Field(SecretStr(""), description="Comma-separated API keys / bearer tokens")

    decision_ttl_seconds: int = Field(3600, ge=1, description="How long decisions stay in Redis (idempotency)")
    refresh_seconds: float = Field(15.0, gt=0, description="How often rules and model aliases are checked")
    max_body_bytes: int = Field(1_048_576, ge=1024)
    max_batch: int = Field(500, ge=1, le=10_000)
    consumer_group: str = "pa-scoring-api-decisions"

    @property
    def keys(self) -> frozenset[str]:
        return frozenset(k.strip() for k in self.api_keys.get_secret_value().split(",") if k.strip())

    @property
    def auth_enabled(self) -> bool:
        if self.auth == "auto":
            return self.env != "dev"
        return self.auth == "on"

    def check(self) -> None:
        """Refuse to start with auth on and no keys (every request would be refused)."""
        if self.auth_enabled and not self.keys:
            raise SystemExit(
                f"scoring_api: API-key auth is on (PA_ENV={self.env}, PA_AUTH={self.auth}) but PA_API_KEYS is empty. "
                "Set PA_API_KEYS=key1,key2, or PA_ENV=dev for local development."
            )


@functools.cache
def get_settings() -> Settings:
    return Settings()
