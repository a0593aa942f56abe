"""The settings every component shares: one base class, one default per ``PA_`` variable.

Each service's settings class derives from ``CommonSettings`` and adds its own knobs; the launcher
(`make up`) and docker compose set these variables for every process, so a value set once reaches all
of them. Secrets are ``SecretStr`` (never printed in reprs or logs).
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from payments_core.contract.clock import DEFAULT_MAX_EVENT_SKEW_SECONDS

REPO_ROOT = Path(__file__).resolve().parents[1]


class EventTimeSettings(BaseSettings):
    """The one setting the event contract itself reads (``payments_core.contract.clock``), on its own so
    the contract loads only it; every service has it through ``CommonSettings``."""

    model_config = SettingsConfigDict(env_prefix="PA_", env_file=".env", extra="ignore", populate_by_name=True)

    max_event_skew_seconds: int = Field(
        DEFAULT_MAX_EVENT_SKEW_SECONDS,
        ge=0,
        le=7 * 86_400,
        description="How far an event_timestamp may be ahead of the server clock: later ones are refused "
        "(422 from POST /score, the DLQ in the stream), so a wrong client clock cannot wipe velocity history",
    )


class CommonSettings(EventTimeSettings):
    model_config = SettingsConfigDict(env_prefix="PA_", env_file=".env", extra="ignore", populate_by_name=True)

    env: Literal["dev", "test", "prod"] = Field(
        "prod", description="dev (what `make up` sets) relaxes what only local development may relax"
    )
    data_dir: Path = Field(REPO_ROOT / ".data", description="Local data: servers' data, Delta warehouse, logs")
    cache_dir: Path = Field(REPO_ROOT / ".cache", description="Maven repository and resolved jars")
    warehouse_dir: Path | None = Field(None, description="Local Delta warehouse (default <data_dir>/warehouse)")
    kafka_bootstrap: str = Field("127.0.0.1:9092", description="Kafka bootstrap servers")
    topic_prefix: str = Field("", description="Prefix of every topic name (isolation)")
    redis_url: str = Field("redis://127.0.0.1:6390/0", description="Redis: velocity store and decisions")
    redis_prefix: str = Field("pa", description="Prefix of every Redis key (velocity under <prefix>:vel)")
    mlflow_tracking_uri: str | None = Field(None, description="MLflow tracking and model registry")
    uc_catalog: str | None = Field(None, description="Unity Catalog of the registered models (Databricks)")
    uc_schema: str | None = Field(None, description="Unity Catalog schema of the registered models")
    catalog: str = Field("main", description="Lakehouse catalog (Unity Catalog on Databricks)")
    lakehouse_schema: str = Field("payment_analysis", validation_alias="PA_SCHEMA", description="Lakehouse schema")
    rules_volume_path: str | None = Field(
        None,
        description="Directory of the published rule set when it is not <data_dir>/rules: on Databricks a "
        "Unity Catalog volume folder, /Volumes/<catalog>/<schema>/<volume>/rules (ruleset.json inside)",
    )

    @property
    def warehouse(self) -> Path:
        return (self.warehouse_dir or self.data_dir / "warehouse").resolve()

    @property
    def tracking_uri(self) -> str:
        """The registry: ``PA_MLFLOW_TRACKING_URI``, else the local sqlite one in the data folder."""
        return self.mlflow_tracking_uri or f"sqlite:///{self.data_dir / 'mlflow.db'}"
