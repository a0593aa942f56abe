"""The simulator's control topic (``payments.simulator.control``): the scenario switch record.

Defined in the contract because two services meet on it: the simulator follows it, the control
plane (and ``python -m services.simulator scenario``) publish it. Compaction keeps the latest
switch under the key ``CONTROL_KEY``.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

ScenarioName = Literal["normal", "issuer_outage", "fraud_ring", "bin_attack", "latency_spike"]
SCENARIOS: tuple[str, ...] = ("normal", "issuer_outage", "fraud_ring", "bin_attack", "latency_spike")
CONTROL_KEY = b"simulator"

DESCRIPTIONS: dict[str, str] = {
    "normal": "Baseline e-commerce traffic (approval ~88-90%, fraud ~0.3%, p99 latency ~1 s).",
    "issuer_outage": "One issuer (default: the largest Brazilian issuer) times out most authorisations "
    "(ISSUER_UNAVAILABLE, ~10 s latency); its approvals collapse, retries pile up.",
    "fraud_ring": "Organised fraud rings step up: few devices and IPs reused across many compromised "
    "cards at a handful of Digital/Gaming/Retail merchants, mid-to-high amounts.",
    "bin_attack": "Card testing: many small-amount attempts on one BIN from a few accounts and "
    "devices; mostly CVV/expired/do-not-honor declines.",
    "latency_spike": "Processing latency multiplies (optionally for one issuer) with a heavy tail and some timeouts.",
}


class ScenarioSwitch(BaseModel):
    """The value on ``payments.simulator.control`` (latest wins; key ``simulator``)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    scenario: ScenarioName
    issuer: str | None = Field(None, description="Issuer id (e.g. iss_br_02) or a BIN of it")
    at: datetime = Field(default_factory=lambda: datetime.now(UTC))
