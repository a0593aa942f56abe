"""Every gold dataset's numbers on a small hand-made history with known answers."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest

from spark.etl import gold, gold_partials, silver
from tests.spark.factories import T0, bronze_frame, event

D = timedelta
DAY2 = T0 + D(days=1)


def _history():
    """8 transactions over two days (see the expected numbers in the tests)."""
    kw3ds = dict(uses_3ds=True, three_ds_routed=True, three_ds_authenticated=True)
    return [
        event(1, merchant_id="m_1", amount_minor=10000, processing_time_ms=100, event_timestamp=T0),
        event(
            2,
            merchant_id="m_A",
            card_token_id="tok_A",
            amount_minor=5000,
            processing_time_ms=300,
            is_approved=False,
            decline_reason="INSUFFICIENT_FUNDS",
            event_timestamp=T0 + D(minutes=1),
        ),
        event(
            3,
            merchant_id="m_A",
            card_token_id="tok_A",
            amount_minor=5000,
            processing_time_ms=200,
            is_retry=True,
            retry_count=1,
            attempt_number=2,
            previous_decline_code="INSUFFICIENT_FUNDS",
            event_timestamp=T0 + D(hours=7, minutes=1),
        ),
        event(
            4,
            merchant_id="m_B",
            card_token_id="tok_B",
            merchant_segment="Gaming",
            card_network="mastercard",
            payment_solution="3ds",
            currency="USD",
            amount_minor=2000,
            geo_country="US",
            processing_time_ms=500,
            is_approved=False,
            decline_reason="DO_NOT_HONOR",
            fraud_score=0.8,
            is_fraud=True,
            event_timestamp=T0 + D(minutes=3),
            **kw3ds,
        ),
        event(
            5,
            merchant_id="m_B",
            card_token_id="tok_B",
            merchant_segment="Gaming",
            card_network="mastercard",
            payment_solution="3ds",
            currency="USD",
            amount_minor=2000,
            geo_country="US",
            processing_time_ms=600,
            is_approved=False,
            decline_reason="DO_NOT_HONOR",
            fraud_score=0.8,
            is_retry=True,
            retry_count=1,
            attempt_number=2,
            previous_decline_code="DO_NOT_HONOR",
            event_timestamp=T0 + D(minutes=4),
            **kw3ds,
        ),
        event(
            6,
            merchant_id="m_3",
            merchant_segment="Gaming",
            card_network="mastercard",
            payment_solution="network_token",
            is_network_token=True,
            currency="USD",
            amount_minor=1000,
            issuer_country="US",
            geo_country="US",
            entry_system="PD",
            flow_type="payment_link",
            processing_time_ms=150,
            event_timestamp=DAY2,
        ),
        event(
            7,
            merchant_id="m_1",
            amount_minor=20000,
            processing_time_ms=400,
            is_approved=False,
            decline_reason="EXPIRED_CARD",
            event_timestamp=DAY2 + D(hours=1),
        ),
        event(
            8,
            merchant_id="m_2",
            amount_minor=2000,
            payment_solution="3ds",
            processing_time_ms=900,
            three_ds_friction=True,
            event_timestamp=DAY2 + D(hours=2),
            **kw3ds,
        ),
    ]


@pytest.fixture(scope="module")
def gold_env(spark):
    history = _history()
    bronze = bronze_frame(spark, [*history, history[0], "not json"]).cache()
    bronze.createOrReplaceTempView("bronze_transactions")
    silver.silver_transactions(bronze).cache().createOrReplaceTempView("silver_transactions")
    silver.silver_quarantine(bronze).createOrReplaceTempView("silver_quarantine")
    bronze_frame(spark, ["refused"], topic="payments.transactions.dlq").createOrReplaceTempView("bronze_dead_letters")
    gold_partials.partial_aggregates(spark.table("silver_transactions")).cache().createOrReplaceTempView(
        gold_partials.PARTIALS
    )
    for d in gold.in_dependency_order(gold.MATERIALIZED):
        gold.build(spark, d.name).cache().createOrReplaceTempView(d.name)
    available = {
        "bronze_transactions",
        "bronze_dead_letters",
        "silver_transactions",
        "silver_quarantine",
        gold_partials.PARTIALS,
        *(d.name for d in gold.MATERIALIZED),
    }
    registered = gold.register_views(spark, available=available)
    assert set(registered) == {d.name for d in gold.VIEWS}
    yield spark
    spark.catalog.clearCache()


def rows(spark, name, order):
    return [r.asDict() for r in spark.table(name).orderBy(*order).collect()]


def test_registry_is_consistent():
    assert len(gold.GOLD_NAMES) == len(set(gold.GOLD_NAMES))
    expected = {
        "v_approval_kpis_daily",
        "v_approval_kpis_hourly",
        "v_approval_kpis_last_hour",
        "v_decline_patterns",
        "v_risk_signals",
        "v_routing_performance",
        "v_retry_performance",
        "v_recommendations",
        "v_three_ds_funnel",
        "v_reason_code_insights",
        "v_entry_system_distribution",
        "v_merchant_segment_performance",
        "v_geography",
        "v_daily_trends",
        "v_streaming_ingestion",
        "v_data_quality",
        "v_active_alerts",
        "v_latency_histogram",
        "dim_merchants",
    }
    assert set(gold.GOLD_NAMES) == expected
    known = {
        "silver_transactions",
        "silver_quarantine",
        "bronze_transactions",
        "bronze_dead_letters",
        gold_partials.PARTIALS,
        *expected,
    }
    for d in gold.GOLD:
        assert set(d.sources) <= known, d.name
        assert d.render(lambda n: f"cat.sch.{n}").count("cat.sch.") == d.sql.count("{")


def test_daily_kpis_and_trends(gold_env):
    day1, day2 = rows(gold_env, "v_approval_kpis_daily", ["event_date"])
    assert (day1["transactions"], day1["approved"], day1["declined"], day1["approval_rate"]) == (5, 2, 3, 0.4)
    assert (day1["total_value_usd"], day1["approved_value_usd"], day1["declined_value_usd"]) == (
        Decimal("78.00"),
        Decimal("28.50"),
        Decimal("49.50"),
    )
    assert (day1["fraud_transactions"], day1["fraud_rate"], day1["avg_latency_ms"], day1["p95_latency_ms"]) == (
        1,
        0.2,
        340.0,
        600,
    )
    assert (day2["transactions"], day2["approval_rate"], day2["total_value_usd"], day2["p95_latency_ms"]) == (
        3,
        0.6667,
        Decimal("51.80"),
        900,
    )
    t1, t2 = rows(gold_env, "v_daily_trends", ["event_date"])
    assert t1["transactions_dod_change"] is None
    assert (
        t2["previous_transactions"],
        t2["transactions_dod_change"],
        t2["approval_rate_dod_change"],
        t2["value_dod_change"],
    ) == (5, -0.4, 0.2667, -0.3359)
    hourly = rows(gold_env, "v_approval_kpis_hourly", ["event_hour"])
    assert [h["transactions"] for h in hourly] == [4, 1, 1, 1, 1]


def test_declines_reason_codes_and_retries(gold_env):
    pats = {
        (r["decline_reason"], r["merchant_segment"]): r
        for r in rows(gold_env, "v_decline_patterns", ["decline_reason"])
    }
    assert {
        k: (v["declines"], v["declined_value_usd"], v["share_of_declines"], v["recoverable_value_usd"])
        for k, v in pats.items()
    } == {
        ("INSUFFICIENT_FUNDS", "Retail"): (1, Decimal("9.50"), 0.25, Decimal("9.50")),
        ("DO_NOT_HONOR", "Gaming"): (2, Decimal("40.00"), 0.5, Decimal("0.00")),
        ("EXPIRED_CARD", "Retail"): (1, Decimal("38.00"), 0.25, Decimal("0.00")),
    }
    codes = {r["decline_code"]: r for r in rows(gold_env, "v_reason_code_insights", ["decline_code"])}
    assert set(codes) == {"51", "05", "54"}
    assert (
        codes["05"]["declines"],
        codes["05"]["avg_declined_amount_usd"],
        codes["05"]["top_merchant_segment"],
        codes["05"]["retry_success_rate"],
    ) == (2, Decimal("20.00"), "Gaming", 0.0)
    assert codes["51"]["estimated_recoverable_value_usd"] == Decimal("9.50")
    assert codes["54"]["is_soft_decline"] is False and codes["54"]["recommended_action"] == "request_card_update"
    retry = {r["decline_reason"]: r for r in rows(gold_env, "v_retry_performance", ["decline_reason"])}
    ins, dnh = retry["INSUFFICIENT_FUNDS"], retry["DO_NOT_HONOR"]
    assert (
        ins["retries"],
        ins["recovered"],
        ins["retry_success_rate"],
        ins["recovered_value_usd"],
        ins["avg_seconds_since_previous"],
        ins["advised_retries"],
        ins["advised_success_rate"],
    ) == (1, 1, 1.0, Decimal("9.50"), 25200.0, 1, 1.0)
    assert (
        dnh["retries"],
        dnh["early_retries"],
        dnh["baseline_success_rate"],
        dnh["advised_success_rate"],
        dnh["lift_over_baseline"],
    ) == (1, 1, 0.0, None, None)
    assert ins["first_attempt_approval_rate"] == 0.5


def test_routing_latency_3ds_and_risk(gold_env):
    routes = {
        (r["payment_solution"], r["card_network"]): r for r in rows(gold_env, "v_routing_performance", ["transactions"])
    }
    sv = routes[("standard", "visa")]
    assert (sv["transactions"], sv["approval_rate"], sv["approved_value_usd"], sv["avg_latency_ms"]) == (
        4,
        0.5,
        Decimal("28.50"),
        250.0,
    )
    assert (sv["p50_latency_ms"], sv["p95_latency_ms"], sv["p99_latency_ms"], sv["max_latency_ms"]) == (
        200,
        400,
        400,
        400,
    )
    assert routes[("3ds", "mastercard")]["approval_rate"] == 0.0 and len(routes) == 4
    hist = {
        r["latency_bucket_ms"]: r["transactions"] for r in rows(gold_env, "v_latency_histogram", ["latency_bucket_ms"])
    }
    assert hist == {"0100-0199": 2, "0200-0299": 1, "0300-0499": 2, "0500-0999": 3}
    funnel = {r["card_network"]: r for r in rows(gold_env, "v_three_ds_funnel", ["card_network"])}
    mc, visa = funnel["mastercard"], funnel["visa"]
    assert (
        mc["three_ds_requested"],
        mc["three_ds_routed"],
        mc["three_ds_challenged"],
        mc["three_ds_authenticated"],
        mc["approved_after_authentication"],
        mc["authentication_rate"],
        mc["approval_rate_after_authentication"],
    ) == (2, 2, 0, 2, 0, 1.0, 0.0)
    assert (
        visa["transactions"],
        visa["three_ds_challenged"],
        visa["challenge_rate"],
        visa["approval_rate_after_authentication"],
    ) == (5, 1, 1.0, 1.0)
    risk = {(r["risk_tier"], r["merchant_segment"]): r for r in rows(gold_env, "v_risk_signals", ["risk_tier"])}
    mg = risk[("medium", "Gaming")]  # 0.5*0.8 + 0.2*0.05 + 0.3*0.1 = 0.44
    assert (
        mg["transactions"],
        mg["avg_composite_risk"],
        mg["fraud_transactions"],
        mg["fraud_rate"],
        mg["fraud_declined"],
        mg["fraud_approved"],
        mg["cross_border_share"],
    ) == (2, 0.44, 1, 0.5, 1, 0, 1.0)


def test_segments_geography_entry_systems_merchants(gold_env):
    seg = {r["merchant_segment"]: r for r in rows(gold_env, "v_merchant_segment_performance", ["merchant_segment"])}
    assert (
        seg["Retail"]["merchants"],
        seg["Retail"]["transactions"],
        seg["Retail"]["approval_rate"],
        seg["Retail"]["top_decline_reason"],
        seg["Retail"]["merchant_mcc"],
    ) == (3, 5, 0.6, "EXPIRED_CARD", "5311")
    assert (seg["Gaming"]["merchants"], seg["Gaming"]["approval_rate"], seg["Gaming"]["top_decline_reason"]) == (
        2,
        0.3333,
        "DO_NOT_HONOR",
    )
    geo = {r["country_code"]: r for r in rows(gold_env, "v_geography", ["country_code"])}
    us = geo["US"]
    assert (
        us["country_name"],
        us["latitude"],
        us["transactions"],
        us["approval_rate"],
        us["fraud_rate"],
        us["cross_border_share"],
    ) == ("United States", 37.09, 3, 0.3333, 0.3333, 0.6667)
    assert geo["BR"]["transactions"] == 5
    entry = {
        (r["entry_system"], r["flow_type"]): r for r in rows(gold_env, "v_entry_system_distribution", ["entry_system"])
    }
    assert entry[("PD", "payment_link")]["share_of_transactions"] == 0.125
    assert entry[("CHECKOUT", "standard_ecom")]["transactions"] == 7
    merchants = {r["merchant_id"]: r for r in rows(gold_env, "dim_merchants", ["merchant_id"])}
    assert (merchants["m_A"]["transactions"], merchants["m_A"]["approval_rate"], merchants["m_A"]["merchant_size"]) == (
        2,
        0.5,
        "small",
    )
    assert merchants["m_B"]["merchant_country"] == "US" and len(merchants) == 5


def test_streaming_ingestion_and_data_quality(gold_env):
    (ing,) = rows(gold_env, "v_streaming_ingestion", ["ingestion_hour"])
    assert (
        ing["bronze_events"],
        ing["silver_rows"],
        ing["quarantined_rows"],
        ing["dead_letters"],
        ing["duplicates_dropped"],
    ) == (10, 8, 1, 1, 1)
    assert ing["p95_ingestion_lag_s"] is not None and ing["last_ingested_at"] is not None
    dq = {r["check_name"]: r for r in rows(gold_env, "v_data_quality", ["check_name"])}
    assert {k: v["affected_rows"] for k, v in dq.items()} == {"malformed_json": 1, "duplicate": 1, "dead_letter": 1}
    assert dq["duplicate"]["affected_share"] == 0.1


def test_last_hour_and_active_alerts(spark):
    """Wall-clock views: the last hour against the previous 24 hours."""
    now = datetime.now(UTC).replace(microsecond=0)
    events = [
        event(100 + i, event_timestamp=now - D(hours=5, minutes=i), processing_time_ms=200, is_approved=i % 10 != 0)
        for i in range(40)
    ]
    events += [
        event(200 + i, event_timestamp=now - D(minutes=30, seconds=i), processing_time_ms=2000, is_approved=i % 2 == 0)
        for i in range(40)
    ]
    silver.silver_transactions(bronze_frame(spark, events)).createOrReplaceTempView("silver_transactions")
    (last,) = [r.asDict() for r in gold.build(spark, "v_approval_kpis_last_hour").collect()]
    assert (last["transactions"], last["approval_rate"], last["p95_latency_ms"]) == (40, 0.5, 2000)
    alerts = {r["alert_type"]: r.asDict() for r in gold.build(spark, "v_active_alerts").collect()}
    assert set(alerts) == {"approval_drop", "latency"}  # no fraud spike: same fraud scores
    assert (
        alerts["approval_drop"]["current_value"],
        alerts["approval_drop"]["baseline_value"],
        alerts["approval_drop"]["severity"],
    ) == (0.5, 0.9, "critical")
    assert (alerts["latency"]["current_value"], alerts["latency"]["baseline_value"]) == (2000.0, 200.0)


def test_recommendations(spark):
    events = []
    for i in range(60):  # Gaming/visa: standard approves 50%, network_token 90%
        events.append(
            event(
                300 + i,
                merchant_segment="Gaming",
                payment_solution="standard",
                is_approved=i % 2 == 0,
                amount_minor=10000,
                event_timestamp=T0 + D(seconds=i),
            )
        )
        events.append(
            event(
                400 + i,
                merchant_segment="Gaming",
                payment_solution="network_token",
                is_network_token=True,
                is_approved=i % 10 != 0,
                amount_minor=10000,
                event_timestamp=T0 + D(seconds=i),
            )
        )
    rows = silver.silver_transactions(bronze_frame(spark, events))
    rows.createOrReplaceTempView("silver_transactions")
    gold_partials.partial_aggregates(rows).createOrReplaceTempView(gold_partials.PARTIALS)
    for name in ("v_retry_performance", "v_reason_code_insights"):
        gold.build(spark, name).createOrReplaceTempView(name)
    recs = [r.asDict() for r in gold.build(spark, "v_recommendations").collect()]
    routing = [r for r in recs if r["category"] == "routing"]
    assert len(routing) == 1
    (r,) = routing
    assert (r["scope"], r["current_value"], r["expected_value"], r["evidence_transactions"]) == (
        "Gaming/visa",
        0.7,
        0.9,
        120,
    )
    assert "network_token" in r["recommendation"]
    assert r["estimated_impact_usd"] == Decimal("456.00")  # 120 x 19.00 USD x 0.2
    assert [x["priority"] for x in sorted(recs, key=lambda x: x["priority"])] == list(range(1, len(recs) + 1))
    # declines without any retry history have no recoverable value: no recovery recommendation
    assert not [x for x in recs if x["category"] == "decline_recovery"]
