"""Bootstrap (empty lakehouse, then with silver; a second run changes nothing) and the gold views job."""

from __future__ import annotations

import json
import re

from payments_core.rules import starter_rule_set
from payments_core.rules.model import Rule
from spark.common.tables import Lakehouse
from spark.etl import gold, gold_partials, silver
from spark.jobs import bootstrap, gold_views
from tests.spark.dashboard_lake import EVENTS
from tests.spark.etl.test_gold import _history
from tests.spark.factories import bronze_frame, event


def test_bootstrap_is_idempotent_and_gold_views_job(spark, tmp_path):
    lh = Lakehouse(catalog="c", schema="boot", warehouse_dir=tmp_path / "wh")
    settings = bootstrap.BootstrapSettings(lh, max_summaries=5)

    # 1. empty lakehouse: everything is created, nothing needs data or models
    first = bootstrap.run(spark, settings)
    starter = starter_rule_set()
    assert first["approval_rules"] == len(starter.rules) and first["app_config"] == 2
    assert lh.read(spark, "online_features").count() == 0 and lh.read(spark, "transaction_summaries").count() == 0
    rules = [r.asDict() for r in lh.read(spark, "approval_rules").collect()]
    # the table is consumable by the decision core: every row is a valid Rule
    assert sorted(Rule(**{k: v for k, v in r.items() if k != "rule_set_version"}).id for r in rules) == sorted(
        r.id for r in starter.rules
    )
    assert {r["rule_set_version"] for r in rules} == {starter.full_version}
    assert {r.key: r.value for r in lh.read(spark, "app_config").collect()} == {"catalog": "c", "schema": "boot"}
    assert lh.read(spark, "countries").where("country_code = 'BR'").first().country_name == "Brazil"

    # 2. with silver: online features and summaries are filled
    bronze = bronze_frame(spark, _history())
    lh.write(silver.silver_transactions(bronze), "silver_transactions")
    second = bootstrap.run(spark, settings)
    assert second["approval_rules"] == 0 and second["online_features"] is True and second["transaction_summaries"] == 5
    cards = {r.entity_id: r for r in lh.read(spark, "online_features").where("entity_type = 'card'").collect()}
    assert (cards["tok_A"].transactions, cards["tok_A"].approved, cards["tok_A"].soft_declines) == (2, 1, 1)
    summary = lh.read(spark, "transaction_summaries").where("transaction_id = 'txn_0000000000000007'").first().summary
    assert summary.startswith("Declined EXPIRED_CARD : 200.00 BRL Retail visa credit BR->BR via standard")

    # 3. a user edit survives, and a re-run on the same data writes nothing at all
    spark.sql(f"UPDATE delta.`{lh.path('approval_rules')}` SET active = false WHERE id = 'R001'")
    tables = [
        "app_config",
        "approval_rules",
        "approval_recommendations",
        "countries",
        "online_features",
        "transaction_summaries",
    ]
    versions = {t: lh.version(spark, t) for t in tables}
    third = bootstrap.run(spark, settings)
    assert {t: lh.version(spark, t) for t in tables} == versions
    assert not any(third.values())
    assert lh.read(spark, "approval_rules").where("id = 'R001'").first().active is False

    # gold views job: SQL for Databricks qualifies every reference; locally views are materialised
    sql = gold_views.render_view_sql(lh)
    assert sql.count("CREATE OR REPLACE VIEW") == len(gold.VIEWS) and not re.search(r"\{[a-z_]+\}", sql)
    assert "FROM `c`.`boot`.`silver_transactions`" in sql
    report = gold_views.run(spark, lh)
    # the pipeline's other tables (gold partials, bronze, quarantine) are missing: only the silver views run
    assert set(report.skipped) == {d.name for d in gold.VIEWS} - {"v_approval_kpis_last_hour", "v_active_alerts"}


def test_gold_views_job_over_the_pipeline_tables(spark, dashboard_lake):
    """Over what the pipeline writes (the dashboards' four days: silver, quarantine, dead letters,
    gold partials), where the session's fixture already ran the job once: every view is there, a
    second run changes nothing, and a fresh registration gives live views over the same tables."""
    lh, _ = dashboard_lake
    again = gold_views.run(spark, lh)
    assert set(again.created) | set(again.unchanged) == {d.name for d in gold.VIEWS} and not again.skipped
    assert "v_daily_trends" in again.unchanged and "v_recommendations" in again.unchanged
    daily = lh.read(spark, "v_daily_trends").collect()
    assert sum(r.transactions for r in daily) == EVENTS and len(daily) >= 4
    assert "v_active_alerts" in lh.register(spark)
    assert spark.table("v_daily_trends").count() == len(daily)


def test_single_event_summary_has_no_retry_marker(spark):
    df = silver.silver_transactions(bronze_frame(spark, [event(1)]))
    (row,) = bootstrap.transaction_summaries(df, 0).collect()
    assert "retry" not in row.summary and row.summary.startswith("Approved : 54.00 BRL Retail")


def test_gold_views_list_json(capsys):
    assert gold_views.main(["--list", "--json"]) == 0
    listed = json.loads(capsys.readouterr().out)
    assert [d["name"] for d in listed] == list(gold.GOLD_NAMES)
    by_name = {d["name"]: d for d in listed}
    assert by_name["v_daily_trends"]["kind"] == "view" and by_name["v_daily_trends"]["sources"] == [
        "v_approval_kpis_daily"
    ]
    assert by_name["dim_merchants"]["kind"] == "view" and by_name["dim_merchants"]["dashboards"] == [5]
    assert by_name["dim_merchants"]["sources"] == [gold_partials.PARTIALS]
