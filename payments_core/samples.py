"""Valid sample transactions for tests, benchmarks, examples and synthetic training data.

Not the simulator (services/simulator owns realistic traffic): just varied, contract-valid requests
from a seeded ``random.Random`` plus a synthetic labelling function for tiny test models.
"""

from __future__ import annotations

import math
import random
from datetime import UTC, datetime, timedelta
from typing import Any

from payments_core.contract.events import (
    AntifraudResult,
    CardNetwork,
    Currency,
    DeclineReason,
    DeviceType,
    EntryMode,
    EntrySystem,
    FlowType,
    MerchantSegment,
    PaymentMethodType,
    PaymentSolution,
    enum_values,
)

EXAMPLE_REQUEST: dict[str, Any] = {
    "transaction_id": "txn_00c0ffee00c0ffee",
    "event_timestamp": "2026-03-14T15:09:26Z",
    "merchant_id": "m_000123",
    "merchant_segment": "Retail",
    "cardholder_id": "ch_0004567",
    "card_token_id": "tok_0009876",
    "card_bin": "411111",
    "card_network": "visa",
    "payment_method_type": "credit",
    "issuer_country": "BR",
    "geo_country": "BR",
    "amount_minor": 5400,
    "currency": "BRL",
    "entry_system": "CHECKOUT",
    "flow_type": "standard_ecom",
    "entry_mode": "ecommerce",
    "payment_solution": "standard",
    "device_type": "mobile_app",
    "device_fingerprint": "dev_5f2a9c",
    "ip_address": "200.160.2.3",
    "uses_3ds": False,
    "is_network_token": True,
    "fraud_score": 0.12,
    "aml_risk_score": 0.05,
    "device_trust_score": 0.9,
}


def _pick(rng: random.Random, literal: Any) -> str:
    return rng.choice(enum_values(literal))


def sample_request(rng: random.Random, base_time: datetime | None = None, **overrides: Any) -> dict[str, Any]:
    """One random, contract-valid ``TransactionRequest`` dict (Python types)."""
    base_time = base_time or datetime(2026, 3, 1, tzinfo=UTC)
    ts = base_time + timedelta(seconds=rng.randrange(0, 7 * 86400), milliseconds=rng.randrange(1000))
    retry_count = rng.choice([0, 0, 0, 0, 1, 2, 3])
    fraud = round(min(1.0, rng.betavariate(1.2, 6.0)), 4)
    antifraud_used = rng.random() < 0.5
    tx = {
        "transaction_id": f"txn_{rng.getrandbits(64):016x}",
        "event_timestamp": ts,
        "merchant_id": f"m_{rng.randrange(200):06d}",
        "merchant_segment": _pick(rng, MerchantSegment),
        "cardholder_id": f"ch_{rng.randrange(5000):07d}",
        "card_token_id": f"tok_{rng.randrange(5000):07d}",
        "card_bin": rng.choice(["411111", "550000", "378282", "601100", "516292"]),
        "card_network": _pick(rng, CardNetwork),
        "payment_method_type": _pick(rng, PaymentMethodType),
        "issuer_country": rng.choice(["BR", "BR", "BR", "US", "MX", "AR", "CL", "DE"]),
        "geo_country": rng.choice(["BR", "BR", "BR", "US", "MX", "AR", "CL", "PT"]),
        "amount_minor": max(1, int(math.exp(rng.gauss(math.log(5400), 1.1)))),
        "currency": _pick(rng, Currency),
        "entry_system": _pick(rng, EntrySystem),
        "flow_type": _pick(rng, FlowType),
        "entry_mode": _pick(rng, EntryMode),
        "payment_solution": _pick(rng, PaymentSolution),
        "device_type": _pick(rng, DeviceType),
        "device_fingerprint": f"dev_{rng.randrange(3000):06x}",
        "ip_address": f"10.{rng.randrange(256)}.{rng.randrange(256)}.{rng.randrange(256)}",
        "uses_3ds": rng.random() < 0.3,
        "three_ds_routed": rng.random() < 0.2,
        "three_ds_friction": rng.random() < 0.1,
        "three_ds_authenticated": rng.random() < 0.15,
        "antifraud_used": antifraud_used,
        "antifraud_result": rng.choice([*enum_values(AntifraudResult), "pass", "pass"]) if antifraud_used else None,
        "is_network_token": rng.random() < 0.4,
        "has_passkey": rng.random() < 0.15,
        "is_recurring": rng.random() < 0.1,
        "is_retry": retry_count > 0,
        "retry_count": retry_count,
        "attempt_number": retry_count + 1,
        "previous_decline_code": _pick(rng, DeclineReason) if retry_count else None,
        "fraud_score": fraud,
        "aml_risk_score": round(rng.random() * 0.6, 4),
        "device_trust_score": round(rng.random(), 4),
    }
    tx.update(overrides)
    return tx


def synthetic_labels(tx: dict[str, Any], rng: random.Random) -> dict[str, bool]:
    """Plausible labels for training tiny test models: is_approved and is_fraud."""
    risk = 0.5 * tx["fraud_score"] + 0.2 * tx["aml_risk_score"] + 0.3 * (1 - tx["device_trust_score"])
    p_fraud = 1 / (1 + math.exp(-(-4.0 + 7.0 * risk)))
    is_fraud = rng.random() < p_fraud
    bonus = {"network_token": 0.5, "passkey": 0.4, "apple_pay": 0.3, "google_pay": 0.3, "3ds": 0.2}.get(
        tx["payment_solution"], 0.0
    )
    p_appr = 1 / (1 + math.exp(-(2.0 - 4.0 * risk + bonus - 0.6 * tx["retry_count"])))
    return {"is_approved": (rng.random() < p_appr) and not is_fraud, "is_fraud": is_fraud}
