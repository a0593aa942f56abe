"""The vectorised offline velocity equals the core's online semantics (InMemoryVelocityStore)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import numpy as np
import pandas as pd

from payments_core.features import VELOCITY_FEATURES
from payments_core.velocity import InMemoryVelocityStore
from spark.ml.velocity import velocity_frame


def test_offline_velocity_equals_online_store():
    rng = np.random.default_rng(3)
    n = 400
    t0 = datetime(2026, 11, 1, tzinfo=UTC)
    offsets = np.sort(rng.integers(0, 3 * 86400 * 1000, n))
    offsets[10] = offsets[9]  # same millisecond: not counted for each other
    df = pd.DataFrame(
        {
            "transaction_id": [f"txn_{i:016x}" for i in range(n)],
            "event_timestamp": [t0 + timedelta(milliseconds=int(o)) for o in offsets],
            "amount_minor": rng.integers(100, 100_000, n),
            "card_token_id": rng.choice([f"tok_{i}" for i in range(15)], n),
            "device_fingerprint": rng.choice([f"dev_{i}" for i in range(8)], n),
            "merchant_id": rng.choice([f"m_{i}" for i in range(5)], n),
        }
    ).sample(frac=1.0, random_state=1)  # order must not matter
    expected = InMemoryVelocityStore(grace_seconds=None).features_frame(df)
    got = velocity_frame(df)
    assert list(got.columns) == list(VELOCITY_FEATURES)
    pd.testing.assert_frame_equal(got, expected, check_dtype=False)
    assert got["card_txn_count_86400s"].max() > 0 and got["merchant_txn_count_300s"].max() > 0
