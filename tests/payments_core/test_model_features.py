"""The model feature vector: one definition, scalar and vectorised paths bit-identical."""

from __future__ import annotations

import random

import numpy as np
import pandas as pd

from payments_core.features import VELOCITY_FEATURES, derive_one
from payments_core.model_features import (
    FEATURE_INDEX,
    MODEL_FEATURES,
    N_FEATURES,
    ROUTE_COLUMNS,
    feature_matrix,
    feature_vector,
    next_attempt,
    retry_feature_vector,
    with_route,
)
from payments_core.samples import sample_request


def _rows(n=400, seed=3):
    rng = random.Random(seed)
    rows = [sample_request(rng) for _ in range(n)]
    rows[0].update(geo_country="JP", antifraud_result=None, previous_decline_code=None)
    vel = [{name: rng.randrange(0, 50) * (1000 if "amount" in name else 1) for name in VELOCITY_FEATURES} for _ in rows]
    return rows, vel


def test_names_are_unique_and_fixed_vocabularies():
    assert len(set(MODEL_FEATURES)) == N_FEATURES == len(MODEL_FEATURES)
    assert "payment_solution=passkey" in FEATURE_INDEX and "geo_country=other" in FEATURE_INDEX
    assert "antifraud_result=none" in FEATURE_INDEX
    assert set(ROUTE_COLUMNS) == {"standard", "3ds", "network_token", "passkey", "apple_pay", "google_pay"}


def test_matrix_and_vector_are_bit_identical():
    rows, vel = _rows()
    X = feature_matrix(pd.DataFrame(rows), velocity=pd.DataFrame(vel))
    assert X.dtype == np.float32 and X.shape == (len(rows), N_FEATURES)
    for i, (tx, v) in enumerate(zip(rows, vel)):
        x = feature_vector(tx, derive_one(tx), v)
        assert x.tobytes() == X[i].tobytes(), i


def test_known_encoding():
    rows, _ = _rows(1)
    tx = rows[0]
    x = feature_vector(tx, None, {"card_txn_count_600s": 3, "card_amount_minor_600s": 999})
    assert x[FEATURE_INDEX["geo_country=other"]] == 1.0  # JP is outside the markets
    assert x[FEATURE_INDEX["antifraud_result=none"]] == 1.0
    assert x[FEATURE_INDEX[f"payment_solution={tx['payment_solution']}"]] == 1.0
    assert sum(x[i] for i in ROUTE_COLUMNS.values()) == 1.0
    assert x[FEATURE_INDEX["card_txn_count_600s"]] == 3.0
    assert x[FEATURE_INDEX["card_amount_minor_600s_log1p"]] == np.float32(np.log1p(999))
    assert x[FEATURE_INDEX["device_txn_count_3600s"]] == 0.0  # missing velocity is 0


def test_missing_velocity_columns_are_zero_and_extra_columns_ignored():
    rows, _ = _rows(5)
    df = pd.DataFrame(rows).assign(is_approved=True, something_else="x")
    X = feature_matrix(df)
    for name in VELOCITY_FEATURES:
        col = FEATURE_INDEX.get(name, FEATURE_INDEX.get(f"{name}_log1p"))
        assert (X[:, col] == 0).all()


def test_route_and_retry_helpers_match_recomputation():
    rows, vel = _rows(50)
    for tx, v in zip(rows, vel):
        x = feature_vector(tx, None, v)
        y = feature_vector({**tx, "payment_solution": "passkey"}, None, v)
        assert with_route(x, "passkey").tobytes() == y.tobytes()
        nxt = next_attempt(tx, "INSUFFICIENT_FUNDS")
        assert retry_feature_vector(x, "INSUFFICIENT_FUNDS").tobytes() == feature_vector(nxt, None, v).tobytes()
