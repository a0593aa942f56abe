"""Fast model scorers: same probabilities as scikit-learn, one row == the same row in a batch."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.ensemble import (
    ExtraTreesClassifier,
    GradientBoostingClassifier,
    HistGradientBoostingClassifier,
    RandomForestClassifier,
)
from sklearn.linear_model import LogisticRegression
from sklearn.neighbors import KNeighborsClassifier
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.tree import DecisionTreeClassifier

from payments_core.fastpath import LinearModel, RawEstimator, TreeEnsemble, build_fast_model
from payments_core.model_features import N_FEATURES, feature_matrix
from tests.payments_core.helpers import synthetic_frame


@pytest.fixture(scope="module")
def data():
    df, approved, _ = synthetic_frame(800, seed=21)
    return feature_matrix(df), approved


@pytest.mark.parametrize(
    "make, kind",
    [
        (lambda: make_pipeline(StandardScaler(), LogisticRegression(max_iter=500)), LinearModel),
        (lambda: LogisticRegression(max_iter=1000), LinearModel),
        (lambda: DecisionTreeClassifier(max_depth=6, random_state=0), TreeEnsemble),
        (lambda: RandomForestClassifier(n_estimators=15, max_depth=6, random_state=0), TreeEnsemble),
        (lambda: ExtraTreesClassifier(n_estimators=10, max_depth=5, random_state=0), TreeEnsemble),
        (lambda: GradientBoostingClassifier(n_estimators=15, max_depth=3, random_state=0), TreeEnsemble),
        (lambda: HistGradientBoostingClassifier(max_iter=15, random_state=0), TreeEnsemble),
        (lambda: make_pipeline(StandardScaler(), HistGradientBoostingClassifier(max_iter=10)), TreeEnsemble),
        (lambda: KNeighborsClassifier(5), RawEstimator),
    ],
)
def test_fast_path_matches_sklearn_and_is_row_independent(data, make, kind):
    X, y = data
    est = make().fit(X, y)
    fast = build_fast_model(est, N_FEATURES)
    assert isinstance(fast, kind)
    proba, contrib = fast.predict(X)
    np.testing.assert_allclose(proba, est.predict_proba(X)[:, 1], rtol=0, atol=1e-6)
    for i in range(0, len(X), 37):  # one row alone gives bit-identical numbers
        p1, c1 = fast.predict(X[i : i + 1])
        assert p1[0] == proba[i]
        if contrib is not None:
            assert c1[0].tobytes() == contrib[i].tobytes()
    if kind is not RawEstimator:
        assert contrib.shape == X.shape and np.abs(contrib).sum() > 0
