"""Settings of the control plane: one object, environment variables prefixed ``PA_`` (and ``.env``)."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr, field_validator

from payments_core.settings import CommonSettings

# Steps and services that are Databricks jobs (the etl step is the pipeline: PA_DATABRICKS_PIPELINE_ID).
DATABRICKS_JOB_STEPS = (
    "backfill",
    "gold_views",
    "bootstrap",
    "train",
    "backtest",
    "similar_index",
    "simulator",
    "stream_processor",
)


def parse_job_ids(text: str) -> dict[str, int]:
    """``backfill=123,train=456`` -> {"backfill": 123, "train": 456}; ValueError naming a bad entry."""
    out: dict[str, int] = {}
    for entry in (e.strip() for e in text.split(",")):
        if not entry:
            continue
        step, sep, job = (part.strip() for part in entry.partition("="))
        if not sep or not step or not job:
            raise ValueError(f"PA_DATABRICKS_JOB_IDS: {entry!r} is not step=job_id")
        if step == "etl":
            raise ValueError("PA_DATABRICKS_JOB_IDS: etl is the Lakeflow pipeline; set PA_DATABRICKS_PIPELINE_ID")
        if step not in DATABRICKS_JOB_STEPS:
            raise ValueError(
                f"PA_DATABRICKS_JOB_IDS: unknown step {step!r}; expected one of {', '.join(DATABRICKS_JOB_STEPS)}"
            )
        if not job.isdigit():
            raise ValueError(f"PA_DATABRICKS_JOB_IDS: the job id of {step} must be a number, not {job!r}")
        if step in out:
            raise ValueError(f"PA_DATABRICKS_JOB_IDS: {step} is given twice")
        out[step] = int(job)
    return out


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

    # where Setup & Run, the services, models, decisions and rules live: this machine or a workspace
    backend: Literal["local", "databricks"] = Field(
        "local",
        description="local: steps as child processes, supervisord, the MLflow registry, Kafka, a rules file; "
        "databricks: the Jobs and Pipelines APIs, Unity Catalog models, the SQL warehouse, a volume "
        "(workspace auth from databricks-sdk's default chain: DATABRICKS_HOST and DATABRICKS_TOKEN, or an "
        "App's DATABRICKS_CLIENT_ID / DATABRICKS_CLIENT_SECRET)",
    )
    databricks_pipeline_id: str = Field("", description="databricks: the Lakeflow ETL pipeline the etl step updates")
    databricks_job_ids: str = Field(
        "",
        description="databricks: comma-separated step=job id pairs for "
        + ", ".join(DATABRICKS_JOB_STEPS)
        + " (the bundle sets them from ${resources.jobs.<key>.id})",
    )
    databricks_warehouse_id: str = Field(
        "", description="databricks: SQL warehouse the decisions view reads the decision log through"
    )
    databricks_poll_seconds: float = Field(
        5.0, gt=0, description="databricks: how often runs, pipeline updates and new decisions are polled"
    )

    # analyst agents (/agents): without an endpoint they answer deterministically, with templated text
    llm_endpoint: str = Field(
        "",
        description="LLM for the agents: an OpenAI-compatible base URL (POST <url>/chat/completions), a full "
        ".../chat/completions URL, or a Databricks serving endpoint's .../serving-endpoints/<name>/invocations; "
        "empty: no LLM",
    )
    llm_model: str = Field("", description="Model name sent with each request (empty: none, e.g. a serving endpoint)")
    llm_api_key: SecretStr = Field(SecretStr(""), description="Bearer token of the LLM endpoint")
    llm_timeout_s: float = Field(30.0, gt=0, le=600, description="Timeout of one LLM request")
    llm_max_rounds: int = Field(6, ge=1, le=50, description="LLM requests in one agent run")
    llm_max_tool_calls: int = Field(12, ge=1, le=200, description="Tool calls executed for the LLM in one run")
    agents_max_backtests: int = Field(3, ge=0, le=20, description="Backtests (Spark jobs) one agent run may start")
    agents_backtest_timeout_s: float = Field(1800.0, gt=0, description="How long an agent waits for one backtest")
    agents_schedule_minutes: float = Field(
        0.0, ge=0, description="Run every specialist this often, as the scheduler (0: never)"
    )

    @field_validator("databricks_job_ids")
    @classmethod
    def _check_job_ids(cls, value: str) -> str:
        parse_job_ids(value)  # refuses a malformed list at start, naming the entry
        return value

    @property
    def job_ids(self) -> dict[str, int]:
        """``PA_DATABRICKS_JOB_IDS`` as step id -> job id."""
        return parse_job_ids(self.databricks_job_ids)

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
