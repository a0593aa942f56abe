"""Derived features: the same definitions for silver enrichment (Spark), the scoring API (one row)
and the stream processor (Arrow batches).

Definitions are data (thresholds, weights) plus two implementations over them that tests keep in
agreement: ``derive_one`` for a single request dict and ``derive_frame`` for a pandas DataFrame.
The Spark adapter (``spark.common.features``) builds Column expressions from the same constants.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

import numpy as np
import pandas as pd

from payments_core.contract.money import CURRENCY_EXPONENT

# Amount buckets in major units of the transaction currency: (upper bound exclusive, label).
AMOUNT_BUCKETS: tuple[tuple[float, str], ...] = (
    (10.0, "micro"),
    (50.0, "small"),
    (200.0, "medium"),
    (1000.0, "large"),
    (float("inf"), "very_large"),
)
# composite_risk_score = w_fraud*fraud + w_aml*aml + w_device*(1 - device_trust)
COMPOSITE_RISK_WEIGHTS = {"fraud_score": 0.5, "aml_risk_score": 0.2, "device_distrust": 0.3}
# risk tier from composite risk: (upper bound exclusive, tier)
RISK_TIERS: tuple[tuple[float, str], ...] = ((0.3, "low"), (0.6, "medium"), (float("inf"), "high"))
NIGHT_HOURS = range(6)

# Velocity windows kept online (Redis) and in the stream (Spark): entity -> windows in seconds.
VELOCITY_WINDOWS: dict[str, tuple[int, ...]] = {
    "card": (600, 3600, 86400),
    "device": (3600,),
    "merchant": (300,),
}


def velocity_feature_names() -> list[str]:
    names = []
    for entity, windows in VELOCITY_WINDOWS.items():
        for w in windows:
            names += [f"{entity}_txn_count_{w}s", f"{entity}_amount_minor_{w}s"]
    return names


VELOCITY_FEATURES: tuple[str, ...] = tuple(velocity_feature_names())

DERIVED_FEATURES: tuple[str, ...] = (
    "amount_major",
    "amount_bucket",
    "is_cross_border",
    "hour_of_day",
    "day_of_week",
    "is_weekend",
    "is_night",
    "composite_risk_score",
    "risk_tier",
    "service_path",
)


def amount_major(amount_minor: int, currency: str) -> float:
    # A feature, not money: float is fine here (the contract keeps integer minor units).
    return amount_minor / (10 ** CURRENCY_EXPONENT[currency])


def _bucket(value: float, table: tuple[tuple[float, str], ...]) -> str:
    for upper, label in table:
        if value < upper:
            return label
    return table[-1][1]


def composite_risk(fraud_score: float, aml_risk_score: float, device_trust_score: float) -> float:
    w = COMPOSITE_RISK_WEIGHTS
    raw = (
        w["fraud_score"] * fraud_score
        + w["aml_risk_score"] * aml_risk_score
        + w["device_distrust"] * (1.0 - device_trust_score)
    )
    # round half-even at 6 decimals exactly as numpy/pandas ``round(6)`` does (scale, rint,
    # unscale), so the scalar and vectorised paths give bit-identical numbers.
    return round(raw * 1e6) / 1e6


def service_path(entry_system: str, flow_type: str, payment_solution: str) -> str:
    return f"{entry_system}/{flow_type}/{payment_solution}"


def derive_one(tx: Mapping[str, Any]) -> dict[str, Any]:
    """Derived features of one transaction (a request/event dict; timestamps as datetime)."""
    ts: datetime = tx["event_timestamp"]
    if ts.tzinfo is not None:  # time fields are UTC, as in derive_frame (naive means UTC)
        ts = ts.astimezone(UTC)
    amt = amount_major(tx["amount_minor"], tx["currency"])
    risk = composite_risk(tx["fraud_score"], tx["aml_risk_score"], tx["device_trust_score"])
    dow = ts.weekday()
    return {
        "amount_major": amt,
        "amount_bucket": _bucket(amt, AMOUNT_BUCKETS),
        "is_cross_border": tx["issuer_country"] != tx["geo_country"],
        "hour_of_day": ts.hour,
        "day_of_week": dow,
        "is_weekend": dow >= 5,
        "is_night": ts.hour in NIGHT_HOURS,
        "composite_risk_score": risk,
        "risk_tier": _bucket(risk, RISK_TIERS),
        "service_path": service_path(tx["entry_system"], tx["flow_type"], tx["payment_solution"]),
    }


def derive_frame(df: pd.DataFrame) -> pd.DataFrame:
    """The same derived features, vectorised over a DataFrame of transactions."""
    ts = pd.to_datetime(df["event_timestamp"], utc=True)
    exponent = df["currency"].map(CURRENCY_EXPONENT).astype("int64")
    amt = df["amount_minor"].astype("float64") / np.power(10.0, exponent)
    w = COMPOSITE_RISK_WEIGHTS
    risk = (
        w["fraud_score"] * df["fraud_score"]
        + w["aml_risk_score"] * df["aml_risk_score"]
        + w["device_distrust"] * (1.0 - df["device_trust_score"])
    ).round(6)
    dow = ts.dt.weekday
    hour = ts.dt.hour
    return pd.DataFrame(
        {
            "amount_major": amt,
            "amount_bucket": _bucket_series(amt, AMOUNT_BUCKETS),
            "is_cross_border": df["issuer_country"] != df["geo_country"],
            "hour_of_day": hour.astype("int64"),
            "day_of_week": dow.astype("int64"),
            "is_weekend": dow >= 5,
            "is_night": hour.isin(list(NIGHT_HOURS)),
            "composite_risk_score": risk,
            "risk_tier": _bucket_series(risk, RISK_TIERS),
            "service_path": df["entry_system"] + "/" + df["flow_type"] + "/" + df["payment_solution"],
        },
        index=df.index,
    )


def _bucket_series(values: pd.Series, table: tuple[tuple[float, str], ...]) -> pd.Series:
    bounds = np.array([upper for upper, _ in table[:-1]])
    labels = np.array([label for _, label in table])
    return pd.Series(labels[np.searchsorted(bounds, values.to_numpy(), side="right")], index=values.index)
