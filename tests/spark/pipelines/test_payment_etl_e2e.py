"""End to end: simulator -> Kafka -> spark-pipelines CLI (bronze, silver, gold) -> gold numbers.

One pipeline update through the real CLI over a small simulated sample (with a replayed event, a
malformed record and a dead letter); every table agrees with what the simulator produced. Then local
continuous mode: two incremental updates in one warm Connect session (``spark.pipelines.warm_runner``).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pandas as pd
from confluent_kafka import Producer

from launcher.topics import ensure_topics
from payments_core.contract.topics import TRANSACTIONS, TRANSACTIONS_DLQ, prefixed
from services.simulator.generator import GeneratorConfig, TransactionGenerator
from spark.common.tables import Lakehouse
from spark.etl.bronze import KafkaSource
from spark.pipelines.local import LocalPipeline
from spark.pipelines.payment_etl import PipelineSettings


def _produce(producer: Producer, topic: str, batch) -> tuple[pd.DataFrame, list[bytes]]:
    values = batch.json_values()
    for key, value in zip(batch.keys(), values):
        producer.produce(topic, key=key, value=value)
    assert producer.flush(30) == 0
    return batch.to_pandas(), values


def test_simulator_to_gold_through_the_pipeline_cli(spark, kafka_bootstrap, kafka_topics, tmp_path):
    # Topics of its own: other tests produce to the session's topics, and this one counts every record.
    kafka_topics = f"{kafka_topics}e2e."
    ensure_topics(kafka_bootstrap, kafka_topics)
    topic = prefixed(TRANSACTIONS, kafka_topics)
    producer = Producer({"bootstrap.servers": kafka_bootstrap, "linger.ms": 5})
    gen = TransactionGenerator(
        GeneratorConfig(
            seed=7,
            start=datetime.now(UTC) - timedelta(hours=3),
            events_per_second=0.5,
            n_merchants=200,
            n_cardholders=2000,
        )
    )
    events, values = _produce(producer, topic, gen.batch(2000))
    producer.produce(topic, key=b"dup", value=values[0])  # a replayed event
    producer.produce(topic, key=b"bad", value=b'{"transaction_id": "txn_00000000000000ff"')  # truncated JSON
    producer.produce(prefixed(TRANSACTIONS_DLQ, kafka_topics), key=b"x", value=b'{"reason": "schema"}')
    assert producer.flush(30) == 0

    lakehouse = Lakehouse(catalog="test", schema="e2e", warehouse_dir=tmp_path / "warehouse")
    pipeline = LocalPipeline(
        lakehouse,
        PipelineSettings(KafkaSource(kafka_bootstrap, kafka_topics)),
        driver_memory="1g",
        shuffle_partitions=2,
    )
    assert pipeline.run_once(timeout=600) == 0

    registered = lakehouse.register(spark)
    assert {"silver_transactions", "v_approval_kpis_daily", "v_active_alerts", "v_recommendations"} <= set(registered)
    assert spark.table("bronze_transactions").count() == len(events) + 2
    assert spark.table("bronze_dead_letters").count() == 1
    silver = spark.table("silver_transactions")
    assert silver.count() == len(events) == silver.select("transaction_id").distinct().count()
    (q,) = spark.table("silver_quarantine").collect()
    assert q.quarantine_reason == "malformed_json" and q.record_key == "bad"

    daily = spark.table("v_approval_kpis_daily").toPandas()
    assert daily["transactions"].sum() == len(events)
    assert daily["approved"].sum() == int(events["is_approved"].sum())
    by_reason = events[~events["is_approved"]].groupby("decline_reason").size().to_dict()
    codes = {r.decline_reason: r.declines for r in spark.table("v_reason_code_insights").collect()}
    assert codes == by_reason
    dq = {r.check_name: r.affected_rows for r in spark.table("v_data_quality").collect()}
    assert (dq["duplicate"], dq["malformed_json"], dq["dead_letter"]) == (1, 1, 1)
    routing = spark.table("v_routing_performance").toPandas()
    assert routing["transactions"].sum() == len(events)
    # retry features: attempt_sequence follows the card-merchant history the simulator produced
    retries = silver.where("is_retry").select("attempt_sequence", "seconds_since_previous_attempt").toPandas()
    assert len(retries) == int(events["is_retry"].sum()) > 0
    assert (retries["attempt_sequence"] >= 2).all() and (retries["seconds_since_previous_attempt"] > 0).all()


def test_warm_runner_incremental_updates(spark, kafka_bootstrap, kafka_topics, tmp_path):
    """Local continuous mode: two updates in one warm session; the second sees only the new records,
    drops a replay of a record of the first one (dedup state across updates), and every table and
    gold view reflects both."""
    kafka_topics = f"{kafka_topics}warm."
    ensure_topics(kafka_bootstrap, kafka_topics)
    topic = prefixed(TRANSACTIONS, kafka_topics)
    producer = Producer({"bootstrap.servers": kafka_bootstrap, "linger.ms": 5})
    gen = TransactionGenerator(
        GeneratorConfig(
            seed=8,
            start=datetime.now(UTC) - timedelta(hours=3),
            events_per_second=0.5,
            n_merchants=200,
            n_cardholders=2000,
        )
    )
    first, first_values = _produce(producer, topic, gen.batch(600))
    lakehouse = Lakehouse(catalog="test", schema="warm", warehouse_dir=tmp_path / "warehouse")
    pipeline = LocalPipeline(
        lakehouse,
        PipelineSettings(KafkaSource(kafka_bootstrap, kafka_topics)),
        driver_memory="1g",
        shuffle_partitions=2,
    )
    with pipeline.warm(tmp_path / "warm.log") as warm:
        assert warm.update(timeout=600) > 0
        assert spark.read.format("delta").load(str(lakehouse.path("silver_transactions"))).count() == len(first)
        second, _ = _produce(producer, topic, gen.batch(400))
        producer.produce(topic, key=b"dup", value=first_values[5])  # a replay of an earlier record
        assert producer.flush(30) == 0
        warm.update(timeout=600)
        phases = warm.last_phases
    assert 0 < phases["register"] <= phases["queued"] <= phases["silver_transactions"] <= phases["gold_partials"]

    registered = lakehouse.register(spark)
    assert "v_data_quality" in registered
    assert spark.table("bronze_transactions").count() == len(first) + len(second) + 1
    silver = spark.table("silver_transactions")
    assert silver.count() == len(first) + len(second) == silver.select("transaction_id").distinct().count()
    daily = spark.table("v_approval_kpis_daily").toPandas()
    assert daily["transactions"].sum() == len(first) + len(second)
    assert daily["approved"].sum() == int(first["is_approved"].sum() + second["is_approved"].sum())
    dq = {r.check_name: r.affected_rows for r in spark.table("v_data_quality").collect()}
    assert dq["duplicate"] == 1
    # retry features continue across updates: attempt numbers never restart for a card-merchant pair
    both = pd.concat([first, second])
    pairs = both.groupby(["card_token_id", "merchant_id"]).size()
    got = silver.groupBy("card_token_id", "merchant_id").agg({"attempt_sequence": "max"}).toPandas()
    assert dict(zip(zip(got["card_token_id"], got["merchant_id"]), got["max(attempt_sequence)"])) == pairs.to_dict()
