"""Settings of the scoring API: one class, environment variables prefixed ``PA_``."""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr

from payments_core.settings import CommonSettings
from services.scoring_api.keyfile import ensure_local_key, read_local_key


class Settings(CommonSettings):
    """The shared PA_ variables (env, Redis, Kafka, data folder with the published rules at
    <data_dir>/rules/ruleset.json, the model registry) come from CommonSettings."""

    auth: Literal["auto", "on", "off"] = Field(
        "auto", description="auto/on: API keys required in every PA_ENV; off: only for PA_ENV=dev/test"
    )
    api_keys: SecretStr = Field(
        SecretStr(""),
        description="Comma-separated API keys / bearer tokens, accepted besides the local key file "
        "(<data_dir>/scoring_api.key, created once when no key is configured)",
    )
    rate_limit: str = Field(
        "1000/second",
        description="Requests per API key: '<n>/second|minute|hour' (bursts up to n), or 'off'; "
        "429 with Retry-After above it. Per worker process",
    )
    private_docs: bool = Field(False, description="/docs, /redoc and /openapi.json require an API key")
    private_metrics: bool = Field(False, description="/metrics requires an API key")
    redis_timeout_ms: int = Field(
        250, ge=10, le=30_000, description="Budget for the Redis commands of one request: 503 after it"
    )
    decisions_outbox_max: int = Field(
        100_000,
        ge=100,
        description="Decisions answered but not yet acknowledged by Kafka that one API process keeps "
        "in Redis (its outbox); /score answers 503 above it",
    )
    decisions_consumer: bool = Field(
        False,
        description="A decisions consumer runs beside this API (`serve` sets it): /ready then requires "
        "its status (running, lag, last error)",
    )

    decision_ttl_seconds: int = Field(3600, ge=1, description="How long decisions stay in Redis (idempotency)")
    refresh_seconds: float = Field(15.0, gt=0, description="How often rules and model aliases are checked")
    max_body_bytes: int = Field(1_048_576, ge=1024)
    max_batch: int = Field(500, ge=1, le=10_000)
    consumer_group: str = "pa-scoring-api-decisions"
    similar_index_path: Path | None = Field(
        None, description="Similar-transaction index to serve (default <data_dir>/similar/index.usearch)"
    )
    similar_enrich: bool = Field(False, description="Add the mix of the nearest past transactions to /score decisions")

    @property
    def configured_keys(self) -> frozenset[str]:
        """The keys of PA_API_KEYS."""
        return frozenset(k.strip() for k in self.api_keys.get_secret_value().split(",") if k.strip())

    @property
    def keys(self) -> frozenset[str]:
        """Every accepted key: PA_API_KEYS and the local key file (``keyfile``) when it exists."""
        local = read_local_key(self.data_dir)
        return self.configured_keys | ({local} if local else set())

    @property
    def auth_enabled(self) -> bool:
        return self.auth != "off"

    def check(self) -> None:
        """Refuse PA_AUTH=off outside dev/test; with auth on and no key configured, create the local
        key file (printed once, like the control plane's first admin password)."""
        if self.auth == "off":
            if self.env == "prod":
                raise SystemExit(
                    "scoring_api: PA_AUTH=off is refused with PA_ENV=prod: every request must carry an API key. "
                    "Set PA_API_KEYS (or use the local key file) instead."
                )
            return
        if not self.keys:
            ensure_local_key(self.data_dir, announce=True)


@functools.cache
def get_settings() -> Settings:
    return Settings()
