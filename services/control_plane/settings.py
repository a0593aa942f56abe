"""Settings of the control plane: one object, environment variables prefixed ``PA_`` (and ``.env``)."""
from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

REPO_ROOT = Path(__file__).resolve().parents[2]


class ControlPlaneSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="PA_", env_file=".env", extra="ignore")

    env: str = Field("dev", description="dev | prod")
    data_dir: Path = REPO_ROOT / ".data"
    warehouse_dir: Path | None = Field(None, description="Local lakehouse folder (default: <data_dir>/warehouse)")
    control_plane_database_url: str = Field(
        "", description="SQLAlchemy URL; empty = embedded SQLite in the data dir (PostgreSQL when set)")
    kafka_bootstrap: str = "127.0.0.1:9092"
    topic_prefix: str = ""
    scoring_api_url: str = "http://127.0.0.1:8000"
    scoring_api_key: str = Field("", description="API key the control plane presents to the scoring API")
    mlflow_tracking_uri: str | None = Field(None, description="Model registry (default: sqlite in the data dir)")
    catalog: str = Field("main", description="Catalog (Unity Catalog on Databricks)")
    schema_name: str = Field("payment_analysis", validation_alias="PA_SCHEMA", description="Schema of the lakehouse tables")

    # sign-in
    auth_mode: Literal["local", "databricks"] = Field(
        "local", description="local: users with passwords in the app database; databricks: the identity a "
        "Databricks App forwards in X-Forwarded-Email / X-Forwarded-Preferred-Username")
    admin_password: str = Field("", description="Password of the first admin (random and printed once when empty)")
    control_plane_token: str = Field("", description="Bearer token acting as an admin for scripts (no CSRF)")
    admin_users: str = Field("", description="databricks mode: comma-separated e-mails that get the admin role")
    session_secret: str = Field("", description="Signs session cookies (default: a random secret kept in the data dir)")
    session_max_age_s: int = Field(12 * 3600, ge=60)
    secure_cookies: bool = Field(False, description="Set the Secure flag on cookies (behind HTTPS)")

    # long-running services and the first run
    supervisor_url: str = Field("", description="unix:///path/supervisor.sock of `make up` (empty: not managed)")
    first_run: bool = Field(True, description="On a fresh data folder run backfill, ETL, gold views, bootstrap, "
                            "training in the background")
    first_run_backfill_days: float = 7.0
    first_run_events_per_day: int = 30_000
    decision_buffer: int = Field(2000, ge=10, description="Recent decisions kept in memory for /decisions")
    decision_feed: bool = Field(True, description="Consume payments.decisions for the live page")

    @property
    def database_url(self) -> str:
        return self.control_plane_database_url or f"sqlite:///{self.data_dir / 'control_plane.db'}"

    @property
    def job_log_dir(self) -> Path:
        return self.data_dir / "logs" / "jobs"

    @property
    def lakehouse_dir(self) -> Path:
        return self.warehouse_dir or self.data_dir / "warehouse"

    @property
    def tracking_uri(self) -> str:
        return self.mlflow_tracking_uri or f"sqlite:///{self.data_dir / 'mlflow.db'}"

    @property
    def admin_emails(self) -> frozenset[str]:
        return frozenset(e.strip().lower() for e in self.admin_users.split(",") if e.strip())


@lru_cache
def get_settings() -> ControlPlaneSettings:
    return ControlPlaneSettings()
