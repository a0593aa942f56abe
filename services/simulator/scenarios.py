"""Scenarios: what the simulated world is going through right now.

A scenario is a named set of knobs applied to the outcome and fraud models; it changes causes, not
outputs (an issuer outage makes that issuer's authorisations time out, and the approval rate falls
because of it). Switch at run time with ``python -m services.simulator scenario <name>``, which
publishes a :class:`ScenarioSwitch` to the compacted ``payments.simulator.control`` topic.
"""

from __future__ import annotations

from dataclasses import dataclass

# The switch record and the scenario names are part of the contract (the control plane publishes them).
from payments_core.contract.control import DESCRIPTIONS, SCENARIOS, ScenarioName, ScenarioSwitch

__all__ = ["DESCRIPTIONS", "SCENARIOS", "Effects", "ScenarioName", "ScenarioSwitch", "effects_for"]


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
    return Effects(
        name=name,
        latency_issuer=-1 if issuer_index is None else issuer_index,
        latency_multiplier=4.0,
        latency_tail_p=0.15,
        latency_timeout_p=0.01,
    )
