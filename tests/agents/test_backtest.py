"""Expected lift by backtest: the risk assessor's review rule replayed with the real backtest
(``spark.jobs.backtest.run`` on the session's Spark, the live starter set against the live set plus the
candidate, over the lake's silver history), its result read through the job's own ``--result-json``
writer, as the control plane reads it from the backtest step."""

from __future__ import annotations

import json
import shutil
from decimal import Decimal

import pytest

from agents import Orchestrator, RunRequest
from agents.backtest import BacktestUnavailable, lift_from_result
from payments_core.rules.model import Rule, RuleSet, starter_rule_set
from spark.common.tables import Lakehouse
from spark.jobs import backtest
from tests.agents.conftest import SILVER_VIEW

CENT = Decimal("0.01")


@pytest.fixture(scope="module")
def backtest_host(spark, agents_lake, tmp_path_factory):
    """A host's backtest runner: the real job's ``run`` over a copy of the lake's silver (its results table
    is written there, not in the shared lake), the result as the job's JSON. Records every call."""
    root = tmp_path_factory.mktemp("agents_backtest")
    lh = Lakehouse(catalog="c", schema="bt", warehouse_dir=root)
    shutil.copytree(agents_lake.folder / "silver_transactions", lh.path("silver_transactions"))
    calls: list[dict] = []

    def run(rules: list[dict], note: str) -> dict:
        live = starter_rule_set()
        candidate = RuleSet(version="agents-candidate", rules=[*live.rules, *(Rule(**r) for r in rules)])
        settings = backtest.BacktestSettings(lh, days=30, tracking_uri=f"sqlite:///{root / 'registry.db'}")
        backtest_id, out = backtest.run(spark, settings, live_rules=live, candidate_rules=candidate)
        path = root / f"{backtest_id}.json"
        backtest.write_result_json(path, backtest_id, out)
        result = json.loads(path.read_text())
        calls.append({"rules": rules, "note": note, "result": result})
        return result

    return run, calls


def test_the_risk_rule_is_backtested_against_the_live_set_within_the_runs_budget(reader, backtest_host, spark, silver):
    runner, calls = backtest_host
    result = Orchestrator(reader, backtest=runner, max_backtests=1).run(RunRequest("specialist", agent="risk_assessor"))
    recs = result.recommendations
    assert len(recs) >= 2 and len(calls) == 1, "one backtest, as the budget allows"
    measured = [r for r in recs if r.lift.status == "estimated"]
    assert len(measured) == 1
    rec = measured[0]
    others = [r for r in recs if r is not rec]
    assert all(r.lift.status == "not_run" and "budget (1) is used up" in r.lift.summary for r in others)

    # the candidate handed to the backtest: the proposed rule, deciding (not shadow), nothing else
    (call,) = calls
    (rule,) = call["rules"]
    assert rule["id"] == rec.rule_id and rule["shadow"] is False and rule["active"] is True
    assert (rule["condition"], rule["action"]) == (rec.action.condition, rec.action.action)
    assert call["note"] == f"agents {rec.rule_id}"

    # the lift is the job's comparison, money rounded to cents and kept as Decimal
    job = {m["metric"]: m for m in call["result"]["metrics"]}
    for name in ("fraud_caught_value_usd", "false_decline_value_usd", "approved_value_usd"):
        shown = rec.lift.figures[name]
        assert shown["delta"] == Decimal(str(job[name]["delta"])).quantize(CENT)
        assert shown["live"] == Decimal(str(job[name]["live"])).quantize(CENT)
    assert rec.lift.figures["approval_rate"]["delta"] == pytest.approx(job["approval_rate"]["delta"])
    fraud, false_value = rec.lift.figures["fraud_caught_value_usd"], rec.lift.figures["false_decline_value_usd"]
    assert rec.lift.value_usd == fraud["delta"] - false_value["delta"]
    assert rec.lift.backtest["rows"] == call["result"]["rows"] > 0

    # independently: the rule only reviews its cell, so it can catch at most the fraud value in that cell
    tier, segment = rec.scope.split("/")
    (cell,) = spark.sql(
        f"SELECT COALESCE(SUM(CASE WHEN is_fraud THEN amount_usd END), 0) AS fraud_usd FROM {SILVER_VIEW} "
        f"WHERE risk_tier = '{tier}' AND merchant_segment = '{segment}'"
    ).collect()
    assert Decimal(0) < fraud["delta"] <= cell.fraud_usd
    assert rec.lift.figures["approval_rate"]["delta"] <= 0  # reviewing more never approves more

    evidence = json.loads(rec.row()["evidence"])
    metrics = {m["metric"]: m for m in evidence["lift"]["backtest"]["metrics"]}
    assert metrics["fraud_caught_value_usd"]["delta"] == str(fraud["delta"])  # a string, never a float
    assert isinstance(metrics["transactions"]["live"], int)


def test_no_backtest_when_not_asked_or_not_available(reader):
    def refusing(rules, note):
        raise BacktestUnavailable("step 'backtest' is already running (run 4)")

    not_asked = Orchestrator(reader, backtest=refusing).run(
        RunRequest("specialist", agent="risk_assessor", backtest=False)
    )
    assert all("not requested" in r.lift.summary for r in not_asked.recommendations)
    failed = Orchestrator(reader, backtest=refusing, max_backtests=1).run(
        RunRequest("specialist", agent="risk_assessor")
    )
    statuses = [r.lift.status for r in failed.recommendations]
    assert statuses.count("failed") == 1 and "already running" in failed.recommendations[0].lift.summary + "".join(
        r.lift.summary for r in failed.recommendations
    )
    assert [e["status"] for e in failed.transcript if e["event"] == "backtest"] == ["started", "failed"]


def test_lift_from_a_result_without_metrics_is_a_failure():
    lift = lift_from_result({"rows": 0, "metrics": []})
    assert (lift.method, lift.status) == ("backtest", "failed")
