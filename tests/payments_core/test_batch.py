"""Pieces of the vectorised batch path against the definitions they replace."""

from __future__ import annotations

import random

import numpy as np
import pandas as pd

from payments_core import batch
from payments_core.features import VELOCITY_FEATURES, derive_frame
from payments_core.model_features import feature_matrix, feature_vector
from payments_core.samples import sample_request


def test_feature_matrix_rows_are_the_one_row_vectors_including_missing_and_unknown_values():
    rng = random.Random(3)
    df = pd.DataFrame([sample_request(rng) for _ in range(400)])
    df.loc[::7, "previous_decline_code"] = None
    df.loc[::11, "antifraud_result"] = np.nan
    df.loc[::13, "entry_mode"] = "not_in_the_vocabulary"
    df["event_timestamp"] = pd.to_datetime(df["event_timestamp"], utc=True)
    derived = derive_frame(df)
    vel = pd.DataFrame(
        np.arange(len(df) * len(VELOCITY_FEATURES)).reshape(len(df), -1) % 97, columns=list(VELOCITY_FEATURES)
    )
    got = feature_matrix(df, derived, vel)
    want = np.stack(
        [
            feature_vector(row, derived.iloc[k].to_dict(), vel.iloc[k].to_dict())
            for k, row in enumerate(df.to_dict("records"))
        ]
    )
    assert got.dtype == want.dtype and got.shape == want.shape
    assert np.array_equal(got, want)
    assert (got[::13] != 0).any()


def test_top_factors_follow_a_stable_descending_sort_while_positive():
    contrib = np.array([[0.5, 0.2, 0.5, -1.0, 0.0], [0.0, 0.0, 0.0, 0.0, 0.0], [-0.1, 0.3, 0.0, 0.0, 0.0]])
    idx, ok = batch._top_factors(contrib.copy(), np.array([1.0, 1.0, -1.0]), 3)
    assert [i for i, g in zip(idx[0], ok[0]) if g] == [0, 2, 1]  # tie 0.5/0.5: lower index first
    assert not ok[1].any()
    assert [i for i, g in zip(idx[2], ok[2]) if g] == [0]  # direction -1: only -0.1 becomes positive
