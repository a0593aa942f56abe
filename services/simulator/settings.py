"""Simulator settings from the environment (prefix ``PA_``; the launcher and compose set them) or
``.env``; CLI options override them."""
from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Literal

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from services.simulator.scenarios import ScenarioName

REPO_ROOT = Path(__file__).resolve().parents[2]


class SimulatorSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="PA_", env_file=".env", extra="ignore")

    kafka_bootstrap: str = Field("127.0.0.1:9092", description="Kafka bootstrap servers")
    topic_prefix: str = Field("", description="Prefix of every topic name")
    data_dir: Path = Field(REPO_ROOT / ".data", description="Local data folder (backfill default output)")
    simulator_rate: float = Field(200.0, ge=0, description="Events per second for `run`; 0 = as fast as possible")
    simulator_scenario: ScenarioName = Field("normal", description="Scenario at start")
    simulator_issuer: str | None = Field(None, description="Scenario target issuer (id or BIN)")
    simulator_seed: int = Field(42, ge=0, description="Seed of the population and the event stream")
    simulator_start: datetime | None = Field(
        None, description="Simulated clock start (reproducible timestamps); unset = real time")
    simulator_batch_size: int | None = Field(None, gt=0, description="Events per batch (default from rate)")
    simulator_progress_interval: float = Field(10.0, gt=0, description="Seconds between progress lines")
    simulator_compression: Literal["zstd", "lz4", "snappy", "gzip", "none"] = "lz4"
    simulator_linger_ms: int = Field(20, ge=0)
    simulator_merchants: int = Field(3_000, ge=50)
    simulator_cardholders: int = Field(200_000, ge=1_000)
    simulator_control: bool = Field(True, description="Follow scenario switches on the control topic")

    @field_validator("simulator_start")
    @classmethod
    def _aware(cls, value: datetime | None) -> datetime | None:
        if value is not None and value.tzinfo is None:
            raise ValueError("simulator_start must include a timezone, e.g. 2026-01-01T00:00:00Z")
        return value
