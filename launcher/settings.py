"""Typed settings of the local platform, from environment variables (prefix ``PA_``) or ``.env``."""
from __future__ import annotations

from functools import lru_cache
from pathlib import Path

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

REPO_ROOT = Path(__file__).resolve().parent.parent


class PlatformSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="PA_", env_file=".env", extra="ignore")

    data_dir: Path = Field(REPO_ROOT / ".data", description="Kafka/Redis/PostgreSQL data, logs")
    cache_dir: Path = Field(REPO_ROOT / ".cache", description="Maven repo and resolved jars")
    host: str = Field("127.0.0.1", description="Loopback address every server binds to")
    kafka_port: int = Field(9092, description="Kafka broker (PLAINTEXT) port")
    kafka_controller_port: int = Field(9093, description="Kafka KRaft controller port")
    kafka_heap: str = Field("768m", description="Kafka JVM heap (-Xmx)")
    redis_port: int = Field(6390, description="Redis port")
    postgres_port: int = Field(5440, description="PostgreSQL port")
    with_postgres: bool = Field(False, description="Start PostgreSQL under `make up`")
    scoring_api_port: int = Field(8000, description="Scoring API port")
    control_plane_port: int = Field(8080, description="Control plane web app port")
    topic_prefix: str = Field("", description="Prefix for every topic name (isolation)")
    kafka_bootstrap_override: str = Field(
        "", validation_alias="PA_KAFKA_BOOTSTRAP",
        description="Use an external broker instead of the local one (compose, Databricks)")

    @property
    def kafka_bootstrap(self) -> str:
        return self.kafka_bootstrap_override or f"{self.host}:{self.kafka_port}"

    @property
    def redis_url(self) -> str:
        return f"redis://{self.host}:{self.redis_port}/0"

    @property
    def postgres_url(self) -> str:
        return f"postgresql+psycopg://postgres@{self.host}:{self.postgres_port}/payment_analysis"

    @property
    def warehouse_dir(self) -> Path:
        return self.data_dir / "warehouse"

    @property
    def log_dir(self) -> Path:
        return self.data_dir / "logs"


@lru_cache
def get_settings() -> PlatformSettings:
    return PlatformSettings()
