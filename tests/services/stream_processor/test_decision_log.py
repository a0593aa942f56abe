"""The decision log's idempotent append (``append_new``) on a real Delta table: a batch replayed with
its (query id, batch id) is skipped by Delta itself; rows already logged are dropped by the anti
join, even under a new query id (a new checkpoint over old topic data); new rows are appended."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import orjson
import pytest
from pyspark.sql import functions as F

from services.stream_processor.decision_log import DecisionLogWriter, append_new, decision_rows
from services.stream_processor.scoring import CONTEXT_HEADER
from services.stream_processor.tables import DeltaTarget

T0 = datetime(2026, 11, 27, 12, 0, tzinfo=UTC)


def kafka_rows(spark, ids: range, *, published_offset: int = 0):
    """Decisions-topic records (value, headers, partition, offset, timestamp) for ``tx-<i>``."""
    records = []
    for i in ids:
        at = T0 + timedelta(milliseconds=10 * i)
        decision = {
            "decision_id": f"d{i}",
            "transaction_id": f"tx-{i}",
            "outcome": "approve",
            "approval_probability": 0.9,
            "risk_score": 0.1,
            "recommended_route": "standard",
            "reason_codes": [],
            "rule_set_version": "rs-1",
            "model_versions": {"approval": "1"},
            "latency_ms": 1.5,
            "decided_at": (at + timedelta(milliseconds=200)).isoformat(),
            "source": "stream",
        }
        context = {
            "merchant_id": "m1",
            "amount_minor": 1000,
            "currency": "EUR",
            "event_timestamp_ms": int(at.timestamp() * 1000),
            "source_partition": 0,
            "source_offset": i,
        }
        records.append(
            (
                orjson.dumps(decision),
                [(CONTEXT_HEADER, orjson.dumps(context))],
                0,
                published_offset + i,
                at + timedelta(milliseconds=250),
            )
        )
    schema = (
        "value binary, headers array<struct<key:string,value:binary>>, partition int, offset long, timestamp timestamp"
    )
    return decision_rows(spark.createDataFrame(records, schema))


def bounds(rows):
    b = rows.agg(F.min(F.unix_micros("event_timestamp")), F.max(F.unix_micros("event_timestamp"))).first()
    return b[0], b[1]


@pytest.fixture
def log_table(spark, tmp_path):
    target = DeltaTarget("stream_decision_log", tmp_path / "log")
    DecisionLogWriter(target).ensure(spark)
    return target


def logged_ids(spark, target) -> list[str]:
    return [r[0] for r in target.read(spark).select("transaction_id").collect()]


def test_replayed_batch_is_skipped_by_its_transaction_tag(spark, log_table):
    first = kafka_rows(spark, range(50))
    append_new(spark, log_table, first, *bounds(first), app_id="query-a", batch_id=7)
    # same (app id, batch id), rows the log does not hold: Delta skips the commit as already done
    other = kafka_rows(spark, range(50, 60))
    append_new(spark, log_table, other, *bounds(other), app_id="query-a", batch_id=7)
    assert sorted(logged_ids(spark, log_table)) == sorted(f"tx-{i}" for i in range(50))
    # the next batch id is written
    append_new(spark, log_table, other, *bounds(other), app_id="query-a", batch_id=8)
    assert len(logged_ids(spark, log_table)) == 60


def test_rows_already_logged_are_dropped_even_under_a_new_query_id(spark, log_table):
    first = kafka_rows(spark, range(40))
    append_new(spark, log_table, first, *bounds(first), app_id="query-a", batch_id=0)
    # a new checkpoint re-reads the topic (new query id, batch ids from 0) plus 20 new decisions;
    # duplicates published again sit at other offsets
    again = kafka_rows(spark, range(20, 60), published_offset=1000)
    append_new(spark, log_table, again, *bounds(again), app_id="query-b", batch_id=0)
    ids = logged_ids(spark, log_table)
    assert len(ids) == len(set(ids)) == 60


def test_writer_refuses_to_run_unbound(spark, log_table):
    writer = DecisionLogWriter(log_table)
    writer._bound.wait = lambda _timeout: False  # do not wait two minutes
    with pytest.raises(RuntimeError, match="bind"):
        writer(kafka_rows(spark, range(3)), 0)


def test_a_creation_interrupted_before_its_first_commit_does_not_block_the_next(spark, tmp_path):
    # what a processor stopped during its first ensure() leaves behind
    (tmp_path / "log" / "_delta_log" / "_commits").mkdir(parents=True)
    target = DeltaTarget("stream_decision_log", tmp_path / "log")
    DecisionLogWriter(target).ensure(spark)
    rows = kafka_rows(spark, range(5))
    append_new(spark, target, rows, *bounds(rows), app_id="query-a", batch_id=0)
    assert len(logged_ids(spark, target)) == 5
