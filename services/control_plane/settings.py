from __future__ import annotations

from functools import lru_cache
from pathlib import Path

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

REPO_ROOT = Path(__file__).resolve().parents[2]


class ControlPlaneSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="PA_", env_file=".env", extra="ignore")

    env: str = Field("dev", description="dev | prod")
    data_dir: Path = REPO_ROOT / ".data"
    control_plane_database_url: str = Field(
        "", description="SQLAlchemy URL; empty = embedded SQLite in the data dir (PostgreSQL when set)")
    kafka_bootstrap: str = "127.0.0.1:9092"
    topic_prefix: str = ""
    scoring_api_url: str = "http://127.0.0.1:8000"
    catalog: str = Field("payment_analysis", description="Catalog (Unity Catalog on Databricks)")
    schema_name: str = Field("payments", validation_alias="PA_SCHEMA", description="Schema of the lakehouse tables")

    @property
    def database_url(self) -> str:
        return self.control_plane_database_url or f"sqlite:///{self.data_dir / 'control_plane.db'}"

    @property
    def job_log_dir(self) -> Path:
        return self.data_dir / "logs" / "jobs"


@lru_cache
def get_settings() -> ControlPlaneSettings:
    return ControlPlaneSettings()
