"""``MetricsWriter.refresh`` over a log refreshed in several steps, as the decision log does every minute,
gives the same minute metrics and alerts as one refresh of the whole range: each step reads the
baseline's earlier minutes back from the metrics table, the one refresh computes them itself."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import orjson
import pytest
from pyspark.sql import functions as F

from services.stream_processor.decision_log import decision_rows
from services.stream_processor.metrics import AlertThresholds, MetricsWriter
from services.stream_processor.scoring import CONTEXT_HEADER
from services.stream_processor.tables import ALERTS, DECISION_LOG, METRICS_1M, DeltaTarget

BASE = datetime(2026, 11, 27, 12, 0, tzinfo=UTC)
MINUTES, PER_MINUTE = 12, 20
LOW_FROM = 8  # minutes 8.. approve 20 % at the processor, the ones before 90 %
KAFKA = "value binary, headers array<struct<key:string,value:binary>>, partition int, offset long, timestamp timestamp"


def _records() -> list[tuple]:
    records = []
    for minute in range(MINUTES):
        for i in range(PER_MINUTE):
            decided = BASE + timedelta(minutes=minute, seconds=2 * i, milliseconds=500)
            n = minute * PER_MINUTE + i
            decision = {
                "decision_id": f"d{n}",
                "transaction_id": f"tx-{n}",
                "outcome": "approve" if i % 5 else "decline",
                "approval_probability": 0.9,
                "risk_score": 0.7 if i < 3 else 0.1,
                "recommended_route": "standard",
                "reason_codes": [],
                "rule_set_version": "rs-1",
                "model_versions": {"approval": "1"},
                "latency_ms": 1.0 + i,
                "decided_at": decided.isoformat(),
                "source": "stream",
            }
            context = {
                "merchant_id": "m1",
                "amount_minor": 1000 + n,
                "currency": "EUR",
                "is_approved": i < (4 if minute >= LOW_FROM else 18),
                "fraud_score": 0.1,
                "processing_time_ms": 10 + i,
                "event_timestamp_ms": int(decided.timestamp() * 1000) - 200 - 10 * i,
                "source_partition": 0,
                "source_offset": n,
            }
            headers = [(CONTEXT_HEADER, orjson.dumps(context))]
            records.append((orjson.dumps(decision), headers, 0, n, decided + timedelta(seconds=1)))
    return records


def _micros(at: datetime) -> int:
    return int(at.timestamp() * 1_000_000)


@pytest.fixture(scope="module")
def log_rows(spark):
    return decision_rows(spark.createDataFrame(_records(), KAFKA)).cache()


def _lake(spark, root, log_rows) -> tuple[DeltaTarget, MetricsWriter]:
    log = DeltaTarget(DECISION_LOG, root / "log")
    log.append(log_rows)
    writer = MetricsWriter(
        DeltaTarget(METRICS_1M, root / "metrics"),
        DeltaTarget(ALERTS, root / "alerts"),
        AlertThresholds(min_volume=10),
    )
    writer.ensure(spark)
    return log, writer


def _rows(spark, target: DeltaTarget) -> list[tuple]:
    frame = target.read(spark).drop("updated_at")
    return sorted(tuple(r) for r in frame.collect())


def test_refreshing_in_steps_judges_the_alerts_like_one_refresh(spark, tmp_path, log_rows):
    log, whole = _lake(spark, tmp_path / "whole", log_rows)
    end = BASE + timedelta(minutes=MINUTES)
    whole.refresh(spark, log, _micros(BASE), _micros(end) - 1)

    log_steps, steps = _lake(spark, tmp_path / "steps", log_rows)
    # three refreshes, each of the minutes the batches since the last one touched
    for first, last in ((0, 5), (6, 8), (9, MINUTES - 1)):
        lo = BASE + timedelta(minutes=first, seconds=1)
        hi = BASE + timedelta(minutes=last, seconds=50)
        steps.refresh(spark, log_steps, _micros(lo), _micros(hi))

    stepped = _rows(spark, steps.metrics)
    assert stepped == _rows(spark, whole.metrics)
    assert len(stepped) == MINUTES
    assert _rows(spark, steps.alerts) == _rows(spark, whole.alerts)

    # the approval drop of minute 9, judged in the last step, against minutes 0-8 written before it
    drop = (
        steps.alerts.read(spark)
        .where((F.col("alert_type") == "approval_drop") & (F.col("window_start") == BASE + timedelta(minutes=9)))
        .first()
    )
    baseline = (18 * LOW_FROM + 4) / (9 * PER_MINUTE)
    assert drop is not None and drop["active"]
    assert drop["baseline"] == pytest.approx(baseline)
    assert drop["value"] == pytest.approx(4 / PER_MINUTE)
