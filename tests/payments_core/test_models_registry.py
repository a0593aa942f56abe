"""Registry contract against a real MLflow (sqlite): log, register, alias, load, reload on alias move."""

from __future__ import annotations

import mlflow
import numpy as np
import pytest
from sklearn.linear_model import LogisticRegression

from payments_core.contract.events import TransactionRequest
from payments_core.engine import DecisionEngine
from payments_core.model_features import feature_vector
from payments_core.models import (
    FEATURES_SHA256,
    ModelSource,
    log_and_register,
    registered_name,
)
from payments_core.rules import RuleSource, starter_rule_set
from payments_core.samples import EXAMPLE_REQUEST
from tests.payments_core.helpers import mlflow_uri, register_all, train_models
from tests.payments_core.test_engine import _compare_paths


@pytest.fixture(scope="module")
def registry(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("mlflow")
    uri = mlflow_uri(tmp)
    linear = train_models(seed=7, kind="linear")
    versions = register_all(uri, tmp / "artifacts", linear, thresholds={"risk": 0.7})
    return {"uri": uri, "tmp": tmp, "linear": linear, "versions": versions}


def test_names_and_prefix():
    assert registered_name("risk") == "payment_analysis_risk"
    assert registered_name("retry", "main", "payments") == "main.payments.payment_analysis_retry"
    with pytest.raises(ValueError):
        registered_name("fraud")


def test_registered_models_carry_the_contract(registry):
    client = mlflow.MlflowClient(tracking_uri=registry["uri"])
    mv = client.get_model_version_by_alias("payment_analysis_risk", "champion")
    assert str(mv.version) == registry["versions"]["risk"]
    assert mv.tags["pa.features_sha256"] == FEATURES_SHA256 and mv.tags["pa.threshold"] == "0.7"
    assert mv.tags["pa.kind"] == "risk" and mv.tags["pa.fast_path"] == "linear"


def test_engine_loads_champions_and_uses_them(registry):
    src = ModelSource(registry["uri"])
    engine = DecisionEngine.from_sources(RuleSource(None), src)
    assert engine.model_versions == {k: "1" for k in ("approval", "risk", "routing", "retry")}
    assert engine._state.risk_decline == 0.7  # the risk model's operating threshold
    est = registry["linear"]["models"]["approval"]
    d = engine.decide(TransactionRequest(**EXAMPLE_REQUEST))
    x = feature_vector(TransactionRequest(**EXAMPLE_REQUEST).model_dump(), None, None)
    assert d.approval_probability == pytest.approx(est.predict_proba(x[None, :])[0, 1], abs=1e-5)
    _compare_paths(engine, n=300)


def test_tree_models_one_row_equals_batch(registry, tmp_path):
    uri = mlflow_uri(tmp_path)
    register_all(uri, tmp_path / "artifacts", train_models(seed=3, kind="trees"))
    engine = DecisionEngine.from_sources(RuleSource(None), ModelSource(uri))
    assert {m.fast.kind for m in engine.bundle.champions.values()} == {"trees"}
    _compare_paths(engine, n=300, seed=4)


def test_reload_on_alias_move_without_restart(registry, tmp_path):
    uri = mlflow_uri(tmp_path)
    first = train_models(seed=1, kind="linear")
    register_all(uri, tmp_path / "artifacts", first)
    engine = DecisionEngine.from_sources(RuleSource(None), ModelSource(uri))
    before = engine.decide(TransactionRequest(**EXAMPLE_REQUEST))
    assert engine.refresh() is False  # nothing moved
    # a new approval model, registered as challenger first: logged, not deciding
    second = train_models(seed=99, kind="trees")
    mlflow.set_tracking_uri(uri)
    with mlflow.start_run():
        v2 = log_and_register("approval", second["models"]["approval"], threshold=0.5, aliases=("challenger",))
    assert engine.refresh() is True
    mid = engine.decide(TransactionRequest(**EXAMPLE_REQUEST))
    assert mid.model_versions["approval"] == "1" and mid.model_versions["approval@challenger"] == v2
    assert mid.approval_probability == before.approval_probability
    # promote: move champion
    mlflow.MlflowClient(tracking_uri=uri).set_registered_model_alias("payment_analysis_approval", "champion", v2)
    assert engine.refresh() is True
    after = engine.decide(TransactionRequest(**EXAMPLE_REQUEST))
    assert after.model_versions["approval"] == v2
    assert after.approval_probability != before.approval_probability
    assert after.decision_id != before.decision_id
    assert engine.bundle.champions["risk"] is not None and after.model_versions["risk"] == "1"


def test_models_outside_the_contract_are_refused(tmp_path):
    uri = mlflow_uri(tmp_path)
    mlflow.set_tracking_uri(uri)
    mlflow.set_experiment("refused")
    X = np.random.default_rng(0).random((50, 4)).astype(np.float32)
    small = LogisticRegression().fit(X, (X[:, 0] > 0.5).astype(int))
    with pytest.raises(ValueError, match="features"):
        log_and_register("approval", small, threshold=0.5)
    # registered by hand without the contract tags: the core refuses it and keeps the heuristic
    with mlflow.start_run():
        mlflow.sklearn.log_model(
            small,
            name="m",
            serialization_format="skops",
            registered_model_name="payment_analysis_risk",
            pip_requirements=[],
        )
    mlflow.MlflowClient().set_registered_model_alias("payment_analysis_risk", "champion", "1")
    engine = DecisionEngine.from_sources(RuleSource(None), ModelSource(uri))
    assert engine.model_versions["risk"] == "heuristic"
    assert engine.decide(TransactionRequest(**EXAMPLE_REQUEST)).outcome in ("approve", "challenge_3ds")


def test_unreachable_registry_falls_back_to_heuristic(tmp_path):
    engine = DecisionEngine.from_sources(RuleSource(None), ModelSource(f"sqlite:///{tmp_path}/missing/x.db"))
    assert engine.model_versions["approval"] == "heuristic"
    assert engine.rule_set_version == starter_rule_set().full_version
