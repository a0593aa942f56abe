"""Gold partial aggregates: additive across any split of silver, exact percentiles, lag buckets."""

from __future__ import annotations

from datetime import timedelta

import numpy as np

from spark.etl import gold, gold_partials, silver
from tests.spark.factories import T0, bronze_frame, event

D = timedelta


def _events():
    out = []
    for i in range(40):
        out.append(
            event(
                i + 1,
                merchant_id=f"m_{i % 3}",
                card_token_id=f"tok_{i % 5}",
                merchant_segment=("Retail", "Gaming")[i % 2],
                card_network=("visa", "mastercard")[i % 3 == 0],
                payment_solution=("standard", "3ds", "network_token")[i % 3],
                is_network_token=i % 3 == 2,
                processing_time_ms=50 + 37 * (i % 11),
                amount_minor=1000 + 250 * i,
                is_approved=i % 4 != 1,
                decline_reason=(None if i % 4 != 1 else ("INSUFFICIENT_FUNDS", "DO_NOT_HONOR")[i % 8 == 1]),
                is_retry=i % 10 == 5,
                retry_count=int(i % 10 == 5),
                attempt_number=1 + int(i % 10 == 5),
                previous_decline_code="INSUFFICIENT_FUNDS" if i % 10 == 5 else None,
                fraud_score=(i % 7) / 10,
                is_fraud=i % 13 == 0,
                event_timestamp=T0 + D(hours=i % 30, minutes=i),
            )
        )
    return out


def _views(spark, partials):
    """Every gold view over ``partials`` (silver, bronze and quarantine registered by the caller)."""
    partials.createOrReplaceTempView(gold_partials.PARTIALS)
    out = {}
    for d in gold.in_dependency_order(gold.VIEWS):
        if d.name in ("v_approval_kpis_last_hour", "v_active_alerts"):  # wall clock
            continue
        df = gold.build(spark, d.name)
        df.createOrReplaceTempView(d.name)
        cols = [c for c in df.columns if c not in ("evaluated_at",)]
        out[d.name] = sorted(tuple(r) for r in df.select(*cols).collect())
    return out


def test_partials_of_any_split_give_the_same_gold(spark):
    bronze = bronze_frame(spark, _events())
    bronze.createOrReplaceTempView("bronze_transactions")
    bronze_frame(spark, [], topic="payments.transactions.dlq").createOrReplaceTempView("bronze_dead_letters")
    silver.silver_quarantine(bronze).createOrReplaceTempView("silver_quarantine")
    rows = silver.silver_transactions(bronze).cache()
    rows.createOrReplaceTempView("silver_transactions")
    whole = _views(spark, gold_partials.partial_aggregates(rows.coalesce(1)))
    # three "micro-batches", each spread over partitions: more partial rows, same sums
    thirds = rows.randomSplit([1.0, 1.0, 1.0], seed=3)
    split = thirds[0].repartition(3)
    for t in thirds[1:]:
        split = split.unionByName(t.repartition(2))
    parts = gold_partials.partial_aggregates(split).cache()
    assert parts.count() > gold_partials.partial_aggregates(rows.coalesce(1)).count()
    assert _views(spark, parts) == whole
    kpis = spark.table("v_approval_kpis_daily").agg({"transactions": "sum"}).first()[0]
    assert kpis == 40
    rows.unpersist()


def test_percentiles_are_the_rank_statistic_of_percentile_approx(spark):
    latencies = [5, 1, 9, 3, 7, 2, 8, 4, 6, 10, 20, 15, 11, 19, 12, 18, 13, 17, 14, 16, 100]
    events = [
        event(
            i + 1,
            payment_solution="standard",
            card_network="visa",
            processing_time_ms=ms,
            event_timestamp=T0 + D(seconds=i),
        )
        for i, ms in enumerate(latencies)
    ]
    rows = silver.silver_transactions(bronze_frame(spark, events))
    gold_partials.partial_aggregates(rows.repartition(3)).createOrReplaceTempView(gold_partials.PARTIALS)
    (r,) = gold.build(spark, "v_routing_performance").collect()
    (expected,) = rows.selectExpr(
        "percentile_approx(processing_time_ms, array(0.5, 0.95, 0.99), 10000) AS p", "max(processing_time_ms) AS m"
    ).collect()
    assert [r.p50_latency_ms, r.p95_latency_ms, r.p99_latency_ms] == list(expected.p) == [11, 20, 100]
    assert r.max_latency_ms == expected.m == 100 and r.transactions == len(latencies)


def test_ingestion_lag_kept_to_three_significant_digits():
    x = np.array([0.0, 0.0123456, 1.23456, 98765.4, 1234567.0, -2.3456])
    assert list(gold_partials._three_significant_digits(x)) == [0.0, 0.0123, 1.23, 98800.0, 1230000.0, -2.35]
