"""Each specialist on the real lakehouse (four days of simulated history through silver, gold and the
dashboard tables, read through DeltaReader as in the app), its figures recomputed independently
from silver with Spark, its rules valid for the decision core, its evidence re-runnable."""

from __future__ import annotations

import json
from decimal import ROUND_HALF_UP, Decimal

import pytest

from agents import BY_NAME, Orchestrator, RunRequest, route
from agents.backtest import Backtester
from agents.model import Recommendation, RuleProposal
from agents.specialists import ROUTABLE, Analysis
from agents.tools import DATASETS, QUERY_TOOLS, Toolbox, ToolRefused
from payments_core.rules.model import Rule
from services.control_plane.lakehouse import DeltaReader
from tests.agents.conftest import SILVER_VIEW

CENT = Decimal("0.01")


def run(reader: DeltaReader, name: str, **arguments) -> tuple[list[Recommendation], Analysis]:
    analysis = Analysis(Toolbox(reader), Backtester(None))
    return BY_NAME[name].run(analysis, arguments), analysis


def cents(value: Decimal) -> Decimal:
    return value.quantize(CENT, rounding=ROUND_HALF_UP)


def rate4(numerator: int, denominator: int) -> float:
    return float((Decimal(numerator) / Decimal(denominator)).quantize(Decimal("0.0001"), rounding=ROUND_HALF_UP))


def sql_rows(spark, sql: str) -> list[dict]:
    return [r.asDict() for r in spark.sql(sql.format(silver=SILVER_VIEW)).collect()]


def check_evidence(reader: DeltaReader, rec: Recommendation) -> dict:
    """The stored evidence: JSON with money as strings, each query re-runnable to the same row count, the
    proposed rule valid for the decision core."""
    evidence = json.loads(rec.row(run_id=7)["evidence"])
    assert evidence["agent"] == rec.agent and evidence["run_id"] == 7
    assert evidence["queries"], "a recommendation lists the queries behind it"
    for q in evidence["queries"]:
        assert q["table"].startswith("dash_") and q["sql"].startswith("SELECT ") and q["table"] in q["sql"]
        again = reader.query(q["sql"], q["table"])
        assert again is not None and again.num_rows == q["rows"]
        assert q["table_version"] is not None
    lift = evidence["lift"]
    assert lift["method"] in ("backtest", "gold_estimate", "none") and lift["summary"]
    if lift["value_usd"] is not None:
        assert isinstance(lift["value_usd"], str) and Decimal(lift["value_usd"]) == rec.lift.value_usd
    if isinstance(rec.action, RuleProposal):
        rule = Rule(**rec.action.rule_body(rec.rule_id, shadow=True))
        assert rule.shadow and rule.id == evidence["action"]["rule_id"]
    return evidence


def test_smart_routing_moves_volume_to_the_best_route_with_figures_from_silver(spark, silver, reader):
    recs, _ = run(reader, "smart_routing")
    assert recs, "the history has networks whose routes approve differently"
    truth = {
        (r["card_network"], r["payment_solution"]): r
        for r in sql_rows(
            spark,
            "SELECT card_network, payment_solution, COUNT(*) AS n, COUNT_IF(is_approved) AS approved, "
            "SUM(CASE WHEN is_approved THEN amount_usd END) AS approved_usd, COUNT_IF(is_fraud) AS fraud "
            "FROM {silver} GROUP BY card_network, payment_solution",
        )
    }
    for rec in recs:
        network = rec.figures["card_network"]
        src, dst = rec.figures["source_route"], rec.figures["target_route"]
        for shown in (src, dst):
            t = truth[(network, shown["payment_solution"])]
            assert (shown["transactions"], shown["approved"]) == (t["n"], t["approved"])
            assert shown["approval_rate"] == rate4(t["approved"], t["n"])
            assert Decimal(shown["approved_value_usd"]) == t["approved_usd"]  # DECIMAL(18,2), read as a string
        # the target is the best of the routes a merchant chooses with enough volume
        candidates = [(k[1], v) for k, v in truth.items() if k[0] == network and k[1] in ROUTABLE and v["n"] >= 50]
        best = max(candidates, key=lambda c: (rate4(c[1]["approved"], c[1]["n"]), c[1]["n"]))
        assert dst["payment_solution"] == best[0] and src["payment_solution"] in ("standard", "network_token")
        # the lift, recomputed: source volume x rate gap x the source's average approved ticket
        s, d = truth[(network, src["payment_solution"])], truth[(network, dst["payment_solution"])]
        gap = Decimal(str(rate4(d["approved"], d["n"]))) - Decimal(str(rate4(s["approved"], s["n"])))
        extra = (Decimal(s["n"]) * gap).quantize(Decimal("0.1"))
        assert rec.lift.figures["extra_approvals"] == extra
        assert rec.lift.value_usd == cents(extra * cents(s["approved_usd"] / s["approved"]))
        assert isinstance(rec.action, RuleProposal) and rec.action.type == "routing"
        assert rec.action.action == f"route:{dst['payment_solution']}"
        assert f"card_network = '{network}'" in rec.action.condition
        assert rec.lift.method == "gold_estimate"  # a route changes advice, not the replayed outcome
        check_evidence(reader, rec)
    # a network filter narrows the query and the recommendations
    only, _ = run(reader, "smart_routing", card_network=recs[0].figures["card_network"])
    assert only and {r.figures["card_network"] for r in only} == {recs[0].figures["card_network"]}


def test_smart_retry_compares_advised_and_early_retries_as_silver_has_them(spark, silver, reader):
    recs, analysis = run(reader, "smart_retry")
    truth = {
        r["reason"]: r
        for r in sql_rows(
            spark,
            "SELECT previous_decline_code AS reason, "
            "COUNT_IF(retry_waited_as_advised) AS advised, "
            "COUNT_IF(retry_waited_as_advised AND is_approved) AS adv_ok, "
            "COUNT_IF(NOT retry_waited_as_advised) AS early, "
            "COUNT_IF(NOT retry_waited_as_advised AND is_approved) AS early_ok, "
            "COUNT_IF(is_approved) AS recovered, SUM(CASE WHEN is_approved THEN amount_usd END) AS recovered_usd "
            "FROM {silver} WHERE is_retry AND previous_decline_code IS NOT NULL GROUP BY previous_decline_code",
        )
    }
    assert recs
    by_reason = {r.scope: r for r in recs}
    for reason, rec in by_reason.items():
        t = truth[reason]
        f = rec.figures
        assert (f["advised_retries"], f["early_retries"], f["recovered"]) == (t["advised"], t["early"], t["recovered"])
        assert f["advised_success_rate"] == rate4(t["adv_ok"], t["advised"])
        assert f["baseline_success_rate"] == rate4(t["early_ok"], t["early"])
        assert Decimal(f["recovered_value_usd"]) == t["recovered_usd"]
        lift = Decimal(str(f["lift_over_baseline"]))
        ticket = cents(t["recovered_usd"] / t["recovered"])
        moved = t["early"] if lift > 0 else t["advised"]
        extra = (Decimal(moved) * abs(lift)).quantize(Decimal("0.1"))
        assert rec.lift.value_usd == cents(extra * ticket)
        if lift > 0:  # waiting pays: a retry rule with the taxonomy's wait
            assert isinstance(rec.action, RuleProposal) and rec.action.type == "retry"
            assert rec.action.action.startswith("retry:") and reason in rec.action.condition
        else:  # earlier retries do better: a configuration change, not a rule
            assert rec.action.kind == "config" and rec.action.key.endswith(f"{reason}.retry_after_seconds")
        check_evidence(reader, rec)
    # reasons with too few retries in a group, or hard declines, get no recommendation, and the run says why
    for reason, t in truth.items():
        if min(t["advised"], t["early"]) < 10:
            assert reason not in by_reason
        if reason not in by_reason:
            assert any(note.startswith(reason + ":") for note in analysis.notes), reason


def test_decline_analyst_ranks_reasons_by_declined_value_and_finds_where_they_concentrate(spark, silver, reader):
    recs, _ = run(reader, "decline_analyst", limit=3)
    reasons = sql_rows(
        spark,
        "SELECT decline_reason_std AS reason, COUNT(*) AS n, SUM(amount_usd) AS value FROM {silver} "
        "WHERE NOT is_approved GROUP BY decline_reason_std ORDER BY value DESC, reason LIMIT 3",
    )
    assert sorted(r.scope for r in recs) == sorted(r["reason"] for r in reasons)
    spots = sql_rows(
        spark,
        "SELECT decline_reason_std AS reason, merchant_segment, payment_solution, SUM(amount_usd) AS value, "
        "COUNT(*) AS n FROM {silver} WHERE NOT is_approved GROUP BY 1, 2, 3",
    )
    for rec in recs:
        t = next(r for r in reasons if r["reason"] == rec.scope)
        assert (rec.figures["declines"], Decimal(rec.figures["declined_value_usd"])) == (t["n"], t["value"])
        top = max((s for s in spots if s["reason"] == rec.scope), key=lambda s: s["value"])
        hot = rec.figures["hotspots"][0]
        assert Decimal(hot["declined_value_usd"]) == top["value"] and hot["declines"] == top["n"]
        if isinstance(rec.action, RuleProposal):  # an issuer-policy decline: retry with a 3DS step-up
            assert rec.action.type == "authentication" and rec.action.action == "challenge_3ds"
            assert rec.lift.status == "not_run" and "no backtest step" in rec.lift.summary
        check_evidence(reader, rec)
    # a segment narrows where the analyst looks for concentration
    travel, _ = run(reader, "decline_analyst", merchant_segment="Travel", limit=2)
    assert all(h["merchant_segment"] == "Travel" for r in travel for h in r.figures["hotspots"])


def test_risk_assessor_picks_cells_where_fraud_is_approved(spark, silver, reader):
    recs, _ = run(reader, "risk_assessor")
    cells = sql_rows(
        spark,
        "SELECT risk_tier, merchant_segment, COUNT(*) AS n, COUNT_IF(is_fraud) AS fraud, "
        "COUNT_IF(is_fraud AND is_approved) AS fraud_approved, "
        "COALESCE(SUM(CASE WHEN is_fraud AND is_approved THEN amount_usd END), 0) AS fraud_approved_usd "
        "FROM {silver} GROUP BY risk_tier, merchant_segment",
    )
    expected = sorted(
        (c for c in cells if c["n"] >= 10 and c["fraud_approved"] >= 1 and c["fraud"] / c["n"] >= 0.05),
        key=lambda c: (-c["fraud_approved_usd"], c["risk_tier"], c["merchant_segment"]),
    )[:3]
    assert expected, "the simulated history approves some fraud"
    assert sorted(r.scope for r in recs) == sorted(f"{c['risk_tier']}/{c['merchant_segment']}" for c in expected)
    for rec in recs:
        c = next(c for c in expected if f"{c['risk_tier']}/{c['merchant_segment']}" == rec.scope)
        assert (rec.figures["transactions"], rec.figures["fraud_transactions"]) == (c["n"], c["fraud"])
        assert Decimal(rec.figures["fraud_approved_value_usd"]) == c["fraud_approved_usd"]
        assert isinstance(rec.action, RuleProposal) and (rec.action.type, rec.action.action) == ("risk", "review")
        assert rec.lift.method == "backtest" and rec.lift.status == "not_run"
        assert Decimal(rec.lift.figures["fraud_approved_value_usd"]) == c["fraud_approved_usd"]
        check_evidence(reader, rec)


def test_performance_recommender_flags_segments_under_the_overall_rate(spark, silver, reader):
    recs, _ = run(reader, "performance_recommender", min_gap_pp=1.0)
    segments = sql_rows(
        spark,
        "SELECT merchant_segment, COUNT(*) AS n, COUNT_IF(is_approved) AS approved, SUM(amount_usd) AS value "
        "FROM {silver} GROUP BY merchant_segment",
    )
    overall = Decimal(sum(s["approved"] for s in segments)) / Decimal(sum(s["n"] for s in segments))
    under = {
        s["merchant_segment"]
        for s in segments
        if Decimal(str(rate4(s["approved"], s["n"]))) < overall - Decimal("0.01")
    }
    flagged = {r.scope for r in recs if not r.scope.startswith("routing:")}
    assert flagged == under and under
    for rec in recs:
        if rec.scope in under:
            s = next(s for s in segments if s["merchant_segment"] == rec.scope)
            gap = overall - Decimal(str(rate4(s["approved"], s["n"])))
            missing = (Decimal(s["n"]) * gap).quantize(Decimal("0.1"))
            assert rec.lift.figures["missing_approvals"] == missing
            assert rec.figures["overall_approval_rate"] == float(round(overall, 4))
        else:  # the gold layer's segment x network routing opportunity, its impact as gold computed it
            assert rec.scope.startswith("routing:")
            assert rec.lift.value_usd == Decimal(rec.figures["estimated_impact_usd"])
        check_evidence(reader, rec)


def test_arguments_are_checked_before_any_query():
    with pytest.raises(ToolRefused, match="not one of"):
        BY_NAME["smart_routing"].run(Analysis(Toolbox(None), Backtester(None)), {"card_network": "diners"})  # type: ignore[arg-type]
    with pytest.raises(ToolRefused, match="Additional properties"):
        BY_NAME["risk_assessor"].run(Analysis(Toolbox(None), Backtester(None)), {"segment": "Travel"})  # type: ignore[arg-type]


def test_questions_are_routed_by_intent_and_the_data_they_name():
    r = route("Why are Travel payments declined with insufficient funds?")
    assert r.specialists == ["decline_analyst"]
    assert r.filters == {"merchant_segment": "Travel", "decline_reason": "INSUFFICIENT_FUNDS"}
    r = route("Which route approves best for visa? And is latency OK?")
    assert r.specialists == ["smart_routing"] and r.filters == {"card_network": "visa"}
    r = route("How much fraud do we approve on high-risk Digital payments?")
    assert r.specialists[0] == "risk_assessor" and r.filters["risk_tier"] == "high"
    assert route("Should we retry DO_NOT_HONOR sooner?").specialists[0] == "smart_retry"
    fallback = route("Good morning")
    assert fallback.fallback and fallback.specialists == ["performance_recommender"]


def test_a_question_run_answers_with_templated_text_and_every_specialist_runs_on_schedule(reader):
    orchestrator = Orchestrator(reader)
    result = orchestrator.run(RunRequest("question", question="Why are Travel payments declined?", backtest=False))
    assert result.planner == "rules" and result.agents == ["decline_analyst"]
    assert "Decline analyst" in result.answer and "merchant_segment = Travel" in result.answer
    assert result.recommendations and all(r.agent == "decline_analyst" for r in result.recommendations)
    for rec in result.recommendations:  # the answer quotes each recommendation's own lift
        assert rec.lift.summary in result.answer
    events = [e["event"] for e in result.transcript]
    assert events[0] == "route" and "analysis" in events and events[-1] == "done"

    scheduled = orchestrator.run(RunRequest("scheduled"))
    assert {r.agent for r in scheduled.recommendations} == set(BY_NAME)
    values = [r.rank_value for r in scheduled.recommendations]
    assert values == sorted(values, reverse=True), "highest expected value first"
    assert len({r.id for r in scheduled.recommendations}) == len(scheduled.recommendations)


def test_a_lake_without_dashboard_tables_says_what_to_run(tmp_path):
    empty = DeltaReader(tmp_path, "c", "none")
    result = Orchestrator(empty).run(RunRequest("specialist", agent="smart_routing"))
    assert result.recommendations == []
    assert "dash_routing is not there yet" in result.answer and "Gold views" in result.answer


def test_every_tool_reads_its_dashboard_dataset_with_the_datasets_own_columns(reader):
    toolbox = Toolbox(reader)
    for tool in QUERY_TOOLS:
        dataset = DATASETS[tool.dataset]
        assert tool.table == dataset.table and tool.table.startswith("dash_")
        rows, record = toolbox.query(tool.name)
        assert rows, f"{tool.name}: {record.sql}"
        result = reader.query(record.sql, tool.table)
        assert result is not None
        plain_columns = [c for c in result.column_names if c in dataset.columns]
        aggregated = {"declines", "soft_declines", "declined_value_usd", "recoverable_value_usd"}  # SUM(x) AS x
        assert set(result.column_names) - set(plain_columns) <= aggregated, tool.name
    with pytest.raises(ToolRefused, match="unknown tool"):
        toolbox.query("drop_table")
