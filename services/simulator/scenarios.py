"""Scenarios: what the simulated world is going through right now.

A scenario is a named set of knobs applied to the outcome and fraud models; it changes causes, not
outputs (an issuer outage makes that issuer's authorisations time out, and the approval rate falls
because of it). Switch at run time with ``python -m services.simulator scenario <name>``, which
publishes a :class:`ScenarioSwitch` to the compacted ``payments.simulator.control`` topic.
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

ScenarioName = Literal["normal", "issuer_outage", "fraud_ring", "bin_attack", "latency_spike"]
SCENARIOS: tuple[str, ...] = ("normal", "issuer_outage", "fraud_ring", "bin_attack", "latency_spike")

DESCRIPTIONS: dict[str, str] = {
    "normal": "Baseline e-commerce traffic (approval ~88-90%, fraud ~0.3%, p99 latency ~1 s).",
    "issuer_outage": "One issuer (default: the largest Brazilian issuer) times out most authorisations "
                     "(ISSUER_UNAVAILABLE, ~10 s latency); its approvals collapse, retries pile up.",
    "fraud_ring": "Organised fraud rings step up: few devices and IPs reused across many compromised "
                  "cards at a handful of Digital/Gaming/Retail merchants, mid-to-high amounts.",
    "bin_attack": "Card testing: many small-amount attempts on one BIN from a few accounts and "
                  "devices; mostly CVV/expired/do-not-honor declines.",
    "latency_spike": "Processing latency multiplies (optionally for one issuer) with a heavy tail and "
                     "some timeouts.",
}


class ScenarioSwitch(BaseModel):
    """The value on ``payments.simulator.control`` (latest wins; key ``simulator``)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    scenario: ScenarioName
    issuer: str | None = Field(None, description="Issuer id (e.g. iss_br_02) or a BIN of it")
    at: datetime = Field(default_factory=lambda: datetime.now(UTC))


@dataclass(frozen=True)
class Effects:
    """The model knobs a scenario sets (the generator reads these per batch)."""

    name: str = "normal"
    outage_issuer: int = -1  # issuer index, -1 = none
    outage_unavailable_p: float = 0.0
    ring_share: float = 0.0006  # share of traffic from fraud rings
    attack_share: float = 0.0002  # share of traffic that is card testing
    attack_issuer: int = -1  # issuer whose BIN is tested; -1 = the default attack BIN
    latency_issuer: int = -1  # -1 = every issuer when latency_multiplier != 1
    latency_multiplier: float = 1.0
    latency_tail_p: float = 0.012
    latency_timeout_p: float = 0.0


def effects_for(name: str, issuer_index: int | None, default_outage_issuer: int) -> Effects:
    """Effects of a scenario. ``issuer_index`` targets one issuer where that makes sense."""
    if name not in SCENARIOS:
        raise ValueError(f"unknown scenario {name!r}; choose one of: {', '.join(SCENARIOS)}")
    if name == "normal":
        return Effects()
    if name == "issuer_outage":
        target = default_outage_issuer if issuer_index is None else issuer_index
        return Effects(name=name, outage_issuer=target, outage_unavailable_p=0.8)
    if name == "fraud_ring":
        return Effects(name=name, ring_share=0.04)
    if name == "bin_attack":
        return Effects(name=name, attack_share=0.15, attack_issuer=-1 if issuer_index is None else issuer_index)
    # latency_spike
    return Effects(name=name, latency_issuer=-1 if issuer_index is None else issuer_index,
                   latency_multiplier=4.0, latency_tail_p=0.15, latency_timeout_p=0.01)
