"""The Spark feature/taxonomy adapter gives exactly what the core gives on the same rows."""

from __future__ import annotations

from datetime import UTC, datetime

import pandas as pd
import pytest

from payments_core.features import DERIVED_FEATURES, derive_frame
from payments_core.taxonomy import DECLINES
from spark.common.features import TAXONOMY_COLUMNS, with_derived_features, with_taxonomy

ROWS = [
    # amount_minor, currency, fraud, aml, trust, ts, issuer, geo, entry, flow, solution
    (1, "BRL", 0.0, 0.0, 1.0, datetime(2026, 11, 23, 0, 0, tzinfo=UTC), "BR", "BR", "PD", "payment_link", "standard"),
    (999, "BRL", 0.9, 0.3, 0.1, datetime(2026, 11, 24, 7, 59, tzinfo=UTC), "US", "BR", "WS", "legacy_ws", "3ds"),
    (
        1000,
        "USD",
        0.2,
        0.1,
        0.5,
        datetime(2026, 11, 28, 3, 15, tzinfo=UTC),
        "BR",
        "US",
        "CHECKOUT",
        "standard_ecom",
        "passkey",
    ),
    (
        5000,
        "CLP",
        0.5,
        0.5,
        0.5,
        datetime(2026, 11, 29, 23, 0, tzinfo=UTC),
        "CL",
        "CL",
        "SEP",
        "recurring",
        "apple_pay",
    ),
    (
        10**8,
        "ARS",
        1.0,
        1.0,
        0.0,
        datetime(2026, 11, 25, 5, 59, tzinfo=UTC),
        "AR",
        "AR",
        "PD",
        "payment_link_sep",
        "network_token",
    ),
    (
        19999,
        "EUR",
        0.7,
        0.2,
        0.6,
        datetime(2026, 11, 27, 6, 0, tzinfo=UTC),
        "DE",
        "BR",
        "CHECKOUT",
        "standard_ecom",
        "google_pay",
    ),
]
COLS = [
    "amount_minor",
    "currency",
    "fraud_score",
    "aml_risk_score",
    "device_trust_score",
    "event_timestamp",
    "issuer_country",
    "geo_country",
    "entry_system",
    "flow_type",
    "payment_solution",
]


def test_spark_derived_features_equal_core(spark):
    pdf = pd.DataFrame(ROWS, columns=COLS)
    expected = derive_frame(pdf)
    # a non-UTC session time zone must not change the UTC time fields
    spark.conf.set("spark.sql.session.timeZone", "America/Sao_Paulo")
    try:
        got = (
            with_derived_features(spark.createDataFrame(pdf))
            .orderBy("amount_minor")
            .select(*DERIVED_FEATURES)
            .toPandas()
        )
    finally:
        spark.conf.set("spark.sql.session.timeZone", "UTC")
    expected = expected.assign(amount_minor=pdf["amount_minor"]).sort_values("amount_minor").reset_index(drop=True)
    for name in DERIVED_FEATURES:
        left, right = got[name].tolist(), expected[name].tolist()
        if isinstance(right[0], float):
            assert left == pytest.approx(right, abs=1e-12), name
        else:
            assert [type(v)(x) for v, x in zip(right, left)] == right, name
    assert got["risk_tier"].tolist() == ["low", "high", "low", "medium", "medium", "high"]
    assert got["amount_bucket"].tolist() == ["micro", "micro", "small", "very_large", "medium", "very_large"]


def test_taxonomy_columns_from_reason_or_raw_code(spark):
    rows = [("DO_NOT_HONOR", None), (None, "51"), (None, None), ("EXPIRED_CARD", "54"), (None, "zz")]
    df = spark.createDataFrame(rows, "decline_reason string, decline_code_raw string")
    got = [r.asDict() for r in with_taxonomy(df).select(*TAXONOMY_COLUMNS).collect()]
    dnh = DECLINES["DO_NOT_HONOR"]
    assert got[0] == {
        "decline_reason_std": "DO_NOT_HONOR",
        "decline_code_std": "05",
        "decline_group": dnh.group,
        "is_soft_decline": True,
        "recommended_action": dnh.recommended_action,
        "retry_after_seconds": dnh.retry_after_seconds,
        "max_retry_attempts": dnh.max_attempts,
    }
    assert got[1]["decline_reason_std"] == "INSUFFICIENT_FUNDS" and got[1]["retry_after_seconds"] == 6 * 3600
    assert all(v is None for v in got[2].values())
    assert got[3]["is_soft_decline"] is False and got[3]["retry_after_seconds"] is None
    assert got[3]["recommended_action"] == "request_card_update"
    assert got[4]["decline_reason_std"] is None
