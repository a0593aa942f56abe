"""Typed settings of the local platform, from environment variables (prefix ``PA_``) or ``.env``.

The shared variables (data folder, Kafka, Redis, topic prefix...) come from
``payments_core.settings.CommonSettings``; the launcher adds its servers' ports. Unless
``PA_KAFKA_BOOTSTRAP`` / ``PA_REDIS_URL`` point elsewhere, they follow the local servers' host and
ports, and `make up` hands them to every service.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

from pydantic import Field, model_validator

from payments_core.settings import REPO_ROOT, CommonSettings

__all__ = ["REPO_ROOT", "PlatformSettings", "get_settings"]


class PlatformSettings(CommonSettings):
    host: str = Field("127.0.0.1", description="Loopback address every server binds to")
    kafka_port: int = Field(9092, description="Kafka broker (PLAINTEXT) port")
    kafka_controller_port: int = Field(9093, description="Kafka KRaft controller port")
    kafka_heap: str = Field("768m", description="Kafka JVM heap (-Xmx)")
    redis_port: int = Field(6390, description="Redis port")
    postgres_port: int = Field(5440, description="PostgreSQL port")
    with_postgres: bool = Field(False, description="Start PostgreSQL under `make up`")
    scoring_api_port: int = Field(8000, description="Scoring API port")
    control_plane_port: int = Field(8080, description="Control plane web app port")

    @model_validator(mode="after")
    def _local_servers(self) -> PlatformSettings:
        # an explicit PA_KAFKA_BOOTSTRAP / PA_REDIS_URL (an external broker, compose) wins
        if "kafka_bootstrap" not in self.model_fields_set:
            self.kafka_bootstrap = f"{self.host}:{self.kafka_port}"
        if "redis_url" not in self.model_fields_set:
            self.redis_url = f"redis://{self.host}:{self.redis_port}/0"
        return self

    @property
    def postgres_url(self) -> str:
        return f"postgresql+psycopg://postgres@{self.host}:{self.postgres_port}/payment_analysis"

    @property
    def log_dir(self) -> Path:
        return self.data_dir / "logs"


@lru_cache
def get_settings() -> PlatformSettings:
    return PlatformSettings()
