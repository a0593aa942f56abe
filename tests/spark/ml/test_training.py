"""Training registers four models in a real MLflow registry (sqlite); they load by alias and decide;
a candidate that does not beat the champion on the holdout becomes challenger."""

from __future__ import annotations

from datetime import UTC, datetime

import numpy as np
import pytest

from payments_core.engine import DecisionEngine
from payments_core.models import CHALLENGER, CHAMPION, MODEL_KINDS, ModelSource
from payments_core.rules import starter_rule_set
from services.simulator.generator import GeneratorConfig, TransactionGenerator
from spark.common.tables import Lakehouse
from spark.etl import silver
from spark.jobs import train
from spark.ml.dataset import features, load_history
from spark.ml.training import TrainingConfig
from tests.spark.factories import bronze_frame

HISTORY_START = datetime(2026, 10, 5, tzinfo=UTC)  # in the past: silver quarantines future events


@pytest.fixture(scope="module")
def history_lakehouse(spark, tmp_path_factory):
    """A silver table of simulated history (every label present in each time slice); a fixed seed and
    start, so every run trains on the same rows."""
    gen = TransactionGenerator(
        GeneratorConfig(seed=11, start=HISTORY_START, events_per_second=0.08, n_merchants=300, n_cardholders=3000)
    )
    values = [v.decode() for v in gen.batch(16_000).json_values()]
    lh = Lakehouse(catalog="c", schema="ml", warehouse_dir=tmp_path_factory.mktemp("ml") / "wh")
    lh.write(silver.silver_transactions(bronze_frame(spark, values)), "silver_transactions")
    return lh


def test_train_register_load_by_alias_and_promotion_rule(spark, history_lakehouse, tmp_path):
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    settings = train.TrainSettings(
        history_lakehouse, uri, "test_models", TrainingConfig(max_train_rows=20_000, hgb_max_iter=60)
    )
    results = {r.kind: r for r in train.run(spark, settings)}
    assert set(results) == set(MODEL_KINDS)
    for kind, r in results.items():
        assert (r.version, r.alias, r.promoted) == ("1", CHAMPION, True), kind
        assert r.rows["holdout"] > 0 and 0.5 < r.metrics["auc"] <= 1.0, kind
        assert {"auc", "precision", "recall", "brier", "ece", "threshold"} <= set(r.metrics)
        assert "auc" in r.baseline_metrics
    assert results["risk"].metrics["auc"] > 0.8  # fraud is learnable from the simulator's signals

    # the decision core loads every champion by alias and scores with it
    source = ModelSource(uri)
    bundle = source.load_bundle()
    assert bundle.versions() == {kind: "1" for kind in MODEL_KINDS}
    history = load_history(spark, history_lakehouse)
    X = features(history.tail(50))
    p, _ = bundle.champions["risk"].predict(X)
    assert p.shape == (50,) and np.all((p >= 0) & (p <= 1))
    assert bundle.champions["risk"].threshold == pytest.approx(results["risk"].threshold)
    engine = DecisionEngine(starter_rule_set(), bundle)
    decisions = engine.decide_batch(history.tail(20), source="backtest")
    assert len(decisions) == 20 and decisions[0]["model_versions"]["risk"] == "1"

    # same data, same seed: the new retry model is no better than the champion -> challenger only
    again = train.run(
        spark,
        train.TrainSettings(
            history_lakehouse,
            uri,
            "test_models",
            TrainingConfig(max_train_rows=20_000, hgb_max_iter=60, kinds=("retry",)),
        ),
    )
    (r2,) = again
    assert (r2.version, r2.alias, r2.promoted) == ("2", CHALLENGER, False)
    assert r2.champion_auc_before == pytest.approx(results["retry"].metrics["auc"])
    versions = source.alias_versions()
    assert versions[("retry", CHAMPION)] == "1" and versions[("retry", CHALLENGER)] == "2"
    metrics = history_lakehouse.read(spark, "model_training_metrics")
    assert metrics.count() == 5 and metrics.where("NOT promoted").count() == 1
