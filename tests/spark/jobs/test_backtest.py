"""Backtest: a candidate rule set replayed over silver with the shared decision core."""

from __future__ import annotations

from decimal import Decimal

import numpy as np
import pandas as pd
import pytest

from payments_core.contract.events import TransactionRequest
from payments_core.engine import DecisionEngine
from payments_core.features import VELOCITY_FEATURES
from payments_core.models import ModelBundle
from payments_core.rules import starter_rule_set
from payments_core.rules.model import Rule, RuleSet
from spark.common.tables import Lakehouse
from spark.etl import silver
from spark.jobs import backtest
from spark.ml.dataset import load_history
from tests.spark.etl.test_gold import _history
from tests.spark.factories import bronze_frame


def test_outcome_metrics_known_answers():
    history = pd.DataFrame(
        {
            "is_fraud": [True, True, False, False, False],
            "amount_usd": [Decimal("10.00"), Decimal("20.00"), Decimal("5.00"), Decimal("7.50"), None],
        }
    )
    m = backtest.outcome_metrics(history, np.array(["decline", "approve", "decline", "challenge_3ds", "review"]))
    assert (m["transactions"], m["approval_rate"], m["decline_rate"], m["review_rate"]) == (5, 0.2, 0.4, 0.2)
    assert (m["fraud_caught"], m["fraud_caught_rate"], m["fraud_caught_value_usd"], m["fraud_approved_value_usd"]) == (
        1,
        0.5,
        10.0,
        20.0,
    )
    assert (m["false_declines"], m["false_decline_rate"], m["false_decline_value_usd"]) == (
        1,
        pytest.approx(1 / 3),
        5.0,
    )
    assert m["approved_value_usd"] == 27.5


def test_backtest_candidate_rules_against_live(spark, tmp_path):
    lh = Lakehouse(catalog="c", schema="bt", warehouse_dir=tmp_path / "wh")
    lh.write(silver.silver_transactions(bronze_frame(spark, _history())), "silver_transactions")
    live = starter_rule_set()
    strict = Rule(
        id="T001",
        name="Decline medium fraud scores",
        type="risk",
        condition="fraud_score >= 0.5",
        action="decline",
        priority=1,
    )
    candidate = RuleSet(version="candidate-1", rules=[*live.rules, strict])
    settings = backtest.BacktestSettings(lh, days=30, tracking_uri=f"sqlite:///{tmp_path / 'empty.db'}")
    backtest_id, out = backtest.run(spark, settings, live_rules=live, candidate_rules=candidate)

    m = out.set_index("metric")
    assert m.loc["transactions", "live_value"] == m.loc["transactions", "candidate_value"] == 8
    # events 4 and 5 have fraud_score 0.8: the candidate declines both; only 4 is fraud
    assert (m.loc["fraud_caught", "candidate_value"], m.loc["fraud_transactions", "candidate_value"]) == (1, 1)
    assert m.loc["false_declines", "candidate_value"] >= 1
    assert (m["delta"] == m["candidate_value"] - m["live_value"]).all()
    assert m.loc["declines", "delta"] >= 0 and m.loc["approved_value_usd", "delta"] <= 0
    assert out["candidate_rule_set_version"].iloc[0] == candidate.full_version
    assert (
        out["live_model_versions"].iloc[0] == '{"approval": "heuristic", "retry": "heuristic", '
        '"risk": "heuristic", "routing": "heuristic"}'
    )

    # the backtest's decisions are the decision core's one-row decisions (same engine, same features)
    history = load_history(spark, lh)
    outcomes = backtest.decide(history, backtest.DecisionSet("candidate", candidate, ModelBundle.heuristic()))
    engine = DecisionEngine(candidate, ModelBundle.heuristic())

    for i, row in history.iterrows():
        request = {k: row[k] for k in TransactionRequest.model_fields}
        request = {k: (None if isinstance(v, float) and np.isnan(v) else v) for k, v in request.items()}
        velocity = {k: int(row[k]) for k in VELOCITY_FEATURES}
        assert engine.decide(request, velocity).outcome == outcomes[i]
    assert outcomes[history["transaction_id"] == "txn_0000000000000004"][0] == "decline"

    stored = lh.read(spark, "gold_backtest_results").where(f"backtest_id = '{backtest_id}'")
    assert stored.count() == len(out) == 15
