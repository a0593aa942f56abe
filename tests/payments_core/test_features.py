"""Derived features: scalar and vectorised implementations agree, with known answers."""

from __future__ import annotations

from datetime import UTC, datetime

import pandas as pd
import pytest

from payments_core.features import DERIVED_FEATURES, derive_frame, derive_one
from payments_core.taxonomy import DECLINES, RAW_CODE_TO_REASON, SOFT_DECLINES


def _tx(**kw):
    base = dict(
        event_timestamp=datetime(2026, 11, 28, 3, 15, tzinfo=UTC),
        amount_minor=5400,
        currency="BRL",
        issuer_country="BR",
        geo_country="US",
        fraud_score=0.2,
        aml_risk_score=0.1,
        device_trust_score=0.5,
        entry_system="CHECKOUT",
        flow_type="standard_ecom",
        payment_solution="3ds",
    )
    base.update(kw)
    return base


def test_known_answers():
    f = derive_one(_tx())
    assert f["amount_major"] == 54.0 and f["amount_bucket"] == "medium"
    assert f["is_cross_border"] is True
    assert (f["hour_of_day"], f["day_of_week"], f["is_weekend"], f["is_night"]) == (3, 5, True, True)
    assert f["composite_risk_score"] == pytest.approx(0.5 * 0.2 + 0.2 * 0.1 + 0.3 * 0.5)
    assert f["risk_tier"] == "low"  # 0.27
    assert derive_one(_tx(fraud_score=0.8))["risk_tier"] == "medium"  # 0.57
    assert f["service_path"] == "CHECKOUT/standard_ecom/3ds"
    assert derive_one(_tx(amount_minor=1000))["amount_bucket"] == "small"  # 10.00 is not micro
    assert derive_one(_tx(amount_minor=999, currency="CLP"))["amount_bucket"] == "large"


def test_scalar_and_vectorised_agree():
    rows = [
        _tx(amount_minor=a, fraud_score=f, event_timestamp=datetime(2026, 11, d, h, tzinfo=UTC))
        for a, f, d, h in [(1, 0.0, 23, 0), (999, 0.9, 24, 7), (5000, 0.5, 25, 12), (10**8, 1.0, 29, 23)]
    ]
    frame = derive_frame(pd.DataFrame(rows))
    assert list(frame.columns) == list(DERIVED_FEATURES)
    for i, row in enumerate(rows):
        expected = derive_one(row)
        got = frame.iloc[i].to_dict()
        for name in DERIVED_FEATURES:
            assert (
                got[name] == pytest.approx(expected[name])
                if isinstance(expected[name], float)
                else got[name] == expected[name]
            ), name


def test_taxonomy_is_consistent():
    assert len(RAW_CODE_TO_REASON) == len(DECLINES) == 8
    assert SOFT_DECLINES == {"INSUFFICIENT_FUNDS", "LIMIT_EXCEEDED", "ISSUER_UNAVAILABLE", "DO_NOT_HONOR"}
    assert all((d.retry_after_seconds is None) == (not d.soft) for d in DECLINES.values())
