"""Simulator settings from the environment (prefix ``PA_``; the launcher and compose set them) or
``.env``; CLI options override them."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import Field, field_validator

from payments_core.contract.control import ScenarioName
from payments_core.settings import CommonSettings


class SimulatorSettings(CommonSettings):
    """The shared PA_ variables (Kafka, topic prefix, data folder) come from CommonSettings."""

    simulator_rate: float = Field(200.0, ge=0, description="Events per second for `run`; 0 = as fast as possible")
    simulator_scenario: ScenarioName = Field("normal", description="Scenario at start")
    simulator_issuer: str | None = Field(None, description="Scenario target issuer (id or BIN)")
    simulator_seed: int = Field(42, ge=0, description="Seed of the population and the event stream")
    simulator_start: datetime | None = Field(
        None, description="Simulated clock start (reproducible timestamps); unset = real time"
    )
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
