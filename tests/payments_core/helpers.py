"""Test helpers: tiny models trained on synthetic data, registered in a real (sqlite) MLflow."""

from __future__ import annotations

import random
from pathlib import Path

import numpy as np
import pandas as pd

from payments_core.model_features import feature_matrix
from payments_core.models import log_and_register
from payments_core.samples import sample_request, synthetic_labels


def synthetic_frame(n: int, seed: int = 7) -> tuple[pd.DataFrame, np.ndarray, np.ndarray]:
    rng = random.Random(seed)
    rows, approved, fraud = [], [], []
    for _ in range(n):
        tx = sample_request(rng)
        labels = synthetic_labels(tx, rng)
        rows.append(tx)
        approved.append(labels["is_approved"])
        fraud.append(labels["is_fraud"])
    return pd.DataFrame(rows), np.array(approved, dtype=int), np.array(fraud, dtype=int)


def train_models(n: int = 1500, seed: int = 7, kind: str = "linear") -> dict:
    """Four fitted classifiers over MODEL_FEATURES (kind: linear | trees)."""
    # scikit-learn and MLflow take seconds to import: only the tests that train load them
    from sklearn.ensemble import HistGradientBoostingClassifier  # noqa: PLC0415
    from sklearn.linear_model import LogisticRegression  # noqa: PLC0415
    from sklearn.pipeline import make_pipeline  # noqa: PLC0415
    from sklearn.preprocessing import StandardScaler  # noqa: PLC0415

    df, approved, fraud = synthetic_frame(n, seed)
    X = feature_matrix(df)

    def make():
        if kind == "trees":
            return HistGradientBoostingClassifier(max_iter=20, max_depth=4, random_state=seed)
        return make_pipeline(StandardScaler(), LogisticRegression(max_iter=500))

    retry_rows = df["is_retry"].to_numpy()
    models = {
        "approval": make().fit(X, approved),
        "risk": make().fit(X, fraud),
        "routing": make().fit(X, approved),
        "retry": make().fit(X[retry_rows], approved[retry_rows]),
    }
    return {"models": models, "X": X}


def mlflow_uri(tmp: Path) -> str:
    return f"sqlite:///{tmp / 'mlflow.db'}"


def register_all(
    tracking_uri: str, artifacts: Path, trained: dict, aliases=("champion",), thresholds: dict | None = None
) -> dict[str, str]:
    import mlflow  # noqa: PLC0415 - seconds to import (see train_models)

    mlflow.set_tracking_uri(tracking_uri)
    mlflow.set_registry_uri(tracking_uri)
    exp = "pa-tests"
    if mlflow.get_experiment_by_name(exp) is None:
        mlflow.create_experiment(exp, artifact_location=artifacts.as_uri())
    mlflow.set_experiment(exp)
    versions = {}
    with mlflow.start_run(run_name="train"):
        for kind, est in trained["models"].items():
            versions[kind] = log_and_register(
                kind,
                est,
                threshold=(thresholds or {}).get(kind, 0.8),
                metrics={"auc": 0.5},
                X_sample=trained["X"][:3],
                aliases=aliases,
            )
    return versions
