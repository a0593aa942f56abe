"""Settings of the control plane: one object, environment variables prefixed ``PA_`` (and ``.env``)."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr

from payments_core.settings import CommonSettings


class ControlPlaneSettings(CommonSettings):
    """The shared PA_ variables (data folder, lakehouse, Kafka, registry) come from CommonSettings."""

    control_plane_database_url: str = Field(
        "", description="SQLAlchemy URL; empty = embedded SQLite in the data dir (PostgreSQL when set)"
    )
    scoring_api_url: str = "http://127.0.0.1:8000"
    scoring_api_key: SecretStr = Field(SecretStr(""), description="API key the control plane presents to /score")

    # sign-in
    auth_mode: Literal["local", "databricks"] = Field(
        "local",
        description="local: users with passwords in the app database; databricks: the identity a "
        "Databricks App forwards in X-Forwarded-Email / X-Forwarded-Preferred-Username",
    )
    admin_password: SecretStr = Field(
        SecretStr(""), description="Password of the first admin (random and printed once when empty)"
    )
    control_plane_token: SecretStr = Field(
        SecretStr(""), description="Bearer token acting as an admin for scripts (no CSRF)"
    )
    admin_users: str = Field("", description="databricks mode: comma-separated e-mails that get the admin role")
    session_secret: SecretStr = Field(
        SecretStr(""), description="Signs session cookies (default: a random secret kept in the data dir)"
    )
    session_max_age_s: int = Field(12 * 3600, ge=60)
    secure_cookies: bool = Field(False, description="Set the Secure flag on cookies (behind HTTPS)")

    # long-running services and the first run
    supervisor_url: str = Field("", description="unix:///path/supervisor.sock of `make up` (empty: not managed)")
    first_run: bool = Field(
        True, description="On a fresh data folder run backfill, ETL, gold views, bootstrap, training in the background"
    )
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
        return self.warehouse

    @property
    def admin_emails(self) -> frozenset[str]:
        return frozenset(e.strip().lower() for e in self.admin_users.split(",") if e.strip())


@lru_cache
def get_settings() -> ControlPlaneSettings:
    return ControlPlaneSettings()
