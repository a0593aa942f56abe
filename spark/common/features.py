"""Spark adapter of the shared feature and taxonomy definitions.

``payments_core.features`` and ``payments_core.taxonomy`` hold the definitions (thresholds, weights,
the decline table) and two Python implementations; this module turns the SAME constants into Spark
Column expressions for silver enrichment. Nothing here restates a number: buckets, weights, night
hours and the decline table are read from the core. ``tests/spark/common/test_features.py`` checks
that Spark's output equals ``derive_frame`` on the same rows.

Time fields are computed in UTC whatever the session time zone is (the core works in UTC).
"""

from __future__ import annotations

from itertools import chain

from pyspark.sql import Column
from pyspark.sql import functions as F

from payments_core.contract.money import CURRENCY_EXPONENT
from payments_core.features import AMOUNT_BUCKETS, COMPOSITE_RISK_WEIGHTS, DERIVED_FEATURES, NIGHT_HOURS, RISK_TIERS
from payments_core.taxonomy import DECLINES, RAW_CODE_TO_REASON


def literal_map(mapping: dict) -> Column:
    """A literal MAP column from a Python dict."""
    return F.create_map(*[F.lit(x) for x in chain.from_iterable(mapping.items())])


def _bucket(value: Column, table: tuple[tuple[float, str], ...]) -> Column:
    """First label whose (exclusive) upper bound is above ``value`` - ``_bucket`` of the core."""
    expr = F.lit(table[-1][1])
    for upper, label in reversed(table[:-1]):
        expr = F.when(value < F.lit(upper), F.lit(label)).otherwise(expr)
    return expr


def utc_timestamp(ts: Column) -> Column:
    """``ts`` shifted so that hour()/dayofweek() give UTC values under any session time zone."""
    return F.to_utc_timestamp(ts, F.current_timezone())


def amount_major(amount_minor: Column | None = None, currency: Column | None = None) -> Column:
    amount_minor = F.col("amount_minor") if amount_minor is None else amount_minor
    currency = F.col("currency") if currency is None else currency
    exponent = literal_map(CURRENCY_EXPONENT)[currency]
    return amount_minor.cast("double") / F.pow(F.lit(10.0), exponent.cast("double"))


def composite_risk(
    fraud: Column | None = None, aml: Column | None = None, device_trust: Column | None = None
) -> Column:
    fraud = F.col("fraud_score") if fraud is None else fraud
    aml = F.col("aml_risk_score") if aml is None else aml
    device_trust = F.col("device_trust_score") if device_trust is None else device_trust
    w = COMPOSITE_RISK_WEIGHTS
    raw = (
        F.lit(w["fraud_score"]) * fraud
        + F.lit(w["aml_risk_score"]) * aml
        + F.lit(w["device_distrust"]) * (F.lit(1.0) - device_trust)
    )
    # round half-even at 6 decimals like the core (scale, rint, unscale)
    return F.rint(raw * F.lit(1e6)) / F.lit(1e6)


def derived_columns(ts_col: str = "event_timestamp") -> dict[str, Column]:
    """The derived features of ``payments_core.features.DERIVED_FEATURES`` as named Columns."""
    ts = utc_timestamp(F.col(ts_col))
    hour = F.hour(ts)
    # Spark: Sunday=1..Saturday=7; the core (Python weekday): Monday=0..Sunday=6
    dow = ((F.dayofweek(ts) + F.lit(5)) % F.lit(7)).cast("long")
    amt = amount_major()
    risk = composite_risk()
    cols = {
        "amount_major": amt,
        "amount_bucket": _bucket(amt, AMOUNT_BUCKETS),
        "is_cross_border": F.col("issuer_country") != F.col("geo_country"),
        "hour_of_day": hour.cast("long"),
        "day_of_week": dow,
        "is_weekend": dow >= F.lit(5),
        "is_night": hour.isin(list(NIGHT_HOURS)),
        "composite_risk_score": risk,
        "risk_tier": _bucket(risk, RISK_TIERS),
        "service_path": F.concat_ws("/", "entry_system", "flow_type", "payment_solution"),
    }
    assert tuple(cols) == DERIVED_FEATURES, "adapter out of date with payments_core.features"
    return cols


def with_derived_features(df, ts_col: str = "event_timestamp"):
    """``df`` plus every derived feature column (same names and meaning as the core)."""
    return df.withColumns(derived_columns(ts_col))


# ------------------------------------------------------------------------------------------ taxonomy
TAXONOMY_COLUMNS: tuple[str, ...] = (
    "decline_reason_std",
    "decline_code_std",
    "decline_group",
    "is_soft_decline",
    "recommended_action",
    "retry_after_seconds",
    "max_retry_attempts",
)


def taxonomy_columns(reason_col: str = "decline_reason", raw_col: str = "decline_code_raw") -> dict[str, Column]:
    """Decline taxonomy of a declined row: standard reason (from the reason, else from the raw ISO
    code), its standard raw code, group, soft/hard, recommended action and retry timing. Null for
    approved rows."""
    reason = F.coalesce(F.col(reason_col), literal_map(RAW_CODE_TO_REASON)[F.col(raw_col)])

    def lookup(attr: str) -> Column:
        return literal_map({r: getattr(d, attr) for r, d in DECLINES.items() if getattr(d, attr) is not None})[reason]

    return {
        "decline_reason_std": reason,
        "decline_code_std": lookup("raw_code"),
        "decline_group": lookup("group"),
        "is_soft_decline": lookup("soft"),
        "recommended_action": lookup("recommended_action"),
        "retry_after_seconds": lookup("retry_after_seconds").cast("long"),
        "max_retry_attempts": lookup("max_attempts").cast("long"),
    }


def with_taxonomy(df):
    return df.withColumns(taxonomy_columns())
