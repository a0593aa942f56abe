"""Real-time mode (``trigger(realTime=...)``, PySpark 4.2) runs the same scoring query locally.

Lean on purpose: one partition, a few records. What it pins down:
* OSS Spark's real-time allow-list refuses the Python scorer (``ArrowEvalPythonExec``), with the
  exact error the README documents;
* with the check off (what ``start_scoring`` does in real-time mode), the unchanged query decides
  valid records and dead-letters invalid ones; only the trigger differs from micro-batch mode;
* both ways of publishing in real-time mode: the Python workers' own producer (the default, see
  ``scoring.score_publish_udf``) and Spark's Kafka sink.
"""

from __future__ import annotations

import time
import uuid

import orjson
import pytest
from pyspark.errors import StreamingQueryException

from launcher.topics import ensure_topics
from payments_core.contract.events import DecisionEvent
from payments_core.contract.topics import DECISIONS, TRANSACTIONS, TRANSACTIONS_DLQ, TopicSpec
from services.stream_processor import pipeline
from tests.services.stream_processor.conftest import consume_all, make_events, produce

ONE_PARTITION = tuple(TopicSpec(t.name, 1, t.key, t.description) for t in (TRANSACTIONS, TRANSACTIONS_DLQ, DECISIONS))


@pytest.fixture
def rt_settings(spark, sp_settings, kafka_bootstrap, kafka_topics):
    prefix = f"{kafka_topics}rt{uuid.uuid4().hex[:6]}."
    ensure_topics(kafka_bootstrap, prefix, ONE_PARTITION)  # one long-running task fits local[2]
    # start_scoring sets real-time mode's small batches and buffers on the shared session
    keys = ("spark.sql.execution.arrow.maxRecordsPerBatch", "spark.sql.execution.pandas.udf.buffer.size")
    before = {k: spark.conf.get(k, None) for k in keys}
    yield sp_settings.model_copy(
        update={
            "topic_prefix": prefix,
            "stream_trigger": "realtime",
            "stream_interval": "3 seconds",
            "stream_starting_offsets": "earliest",
        }
    )
    for key, value in before.items():
        if value is None:
            spark.conf.unset(key)
        else:
            spark.conf.set(key, value)


def test_allow_list_refuses_python_udfs_unless_disabled(spark, rt_settings):
    session = spark.newSession()
    session.conf.set("spark.sql.streaming.realTimeMode.allowlistCheck", "true")
    session.conf.set("spark.sql.streaming.realTimeMode.minBatchDuration", "1000")
    source = pipeline.kafka_source(session, rt_settings, rt_settings.topics.transactions, realtime=True)
    records = pipeline.score_stream(source, pipeline.scoring_config(rt_settings))
    query = (
        records.writeStream.format("kafka")
        .options(**rt_settings.kafka_client_options())
        .option("checkpointLocation", rt_settings.checkpoint("allowlist"))
        .outputMode("update")
        .trigger(realTime="3 seconds")
        .start()
    )
    try:
        with pytest.raises(StreamingQueryException) as failed:
            query.awaitTermination(120)
        error = str(failed.value)
    finally:
        query.stop()
    assert "STREAMING_REAL_TIME_MODE.OPERATOR_OR_SINK_NOT_IN_ALLOWLIST" in error
    assert "ArrowEvalPythonExec" in error


@pytest.mark.parametrize("publish", ["worker", "sink"])
def test_the_same_query_decides_in_real_time_mode(spark, rt_settings, kafka_bootstrap, publish):
    rt_settings = rt_settings.model_copy(update={"stream_realtime_publish": publish})
    events = make_events(30, seed=51)
    query = pipeline.start_scoring(spark, rt_settings)
    try:
        produce(
            kafka_bootstrap, rt_settings.topics.transactions, [orjson.dumps(e) for e in events] + [b"{broken", b"[]"]
        )
        deadline = time.monotonic() + 120
        decided: set[str] = set()
        while time.monotonic() < deadline and len(decided) < len(events):
            assert query.exception() is None, query.exception()
            decided = {
                DecisionEvent.model_validate_json(m.value()).transaction_id
                for m in consume_all(kafka_bootstrap, rt_settings.topics.decisions, timeout=5)
            }
            time.sleep(1)
        assert decided == {e["transaction_id"] for e in events}
        assert len(consume_all(kafka_bootstrap, rt_settings.topics.dlq, expect=2, timeout=60)) == 2
        assert "RealTime" in query._jsq.streamingQuery().trigger().getClass().getName()
        assert spark.conf.get("spark.sql.execution.arrow.maxRecordsPerBatch") == str(
            rt_settings.stream_realtime_arrow_batch_rows
        )
    finally:
        query.stop()
