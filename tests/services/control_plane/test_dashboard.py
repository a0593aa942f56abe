"""/dashboard and /alerts: Delta tables written by Spark with the stream processor's own code, read by the
control plane without a JVM (delta-rs), numbers checked against the rows written.

The decision log is built from Kafka-shaped decision records by ``decision_rows`` and the minute metrics
and alerts by ``MetricsWriter.refresh``, exactly as the stream does. Deletion vectors (a DELETE on the
log, a MERGE on the alerts) check that the reader honours them.
"""

from __future__ import annotations

import random
import time
import uuid
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import numpy as np
import pytest
from confluent_kafka import Producer
from pyspark.sql import types as T

from launcher.topics import ensure_topics
from payments_core.contract.events import DecisionEvent
from payments_core.contract.money import from_minor_units
from payments_core.contract.serde import DEFAULT_SERDE
from payments_core.contract.topics import TRANSACTIONS, TRANSACTIONS_DLQ, prefixed
from services.control_plane import lakehouse
from services.stream_processor.decision_log import DecisionLogWriter, decision_rows
from services.stream_processor.metrics import AlertThresholds, MetricsWriter
from services.stream_processor.tables import ALERTS, DECISION_LOG, METRICS_1M, DeltaTarget

CATALOG, SCHEMA = "main", "payment_analysis"
PER_MINUTE = 20
NORMAL, FRAUD = "normal", "fraud"


def minute_profile(k: int) -> tuple[str, bool]:
    """(traffic kind, slow) of the minute ``k`` minutes before the base minute."""
    kind = FRAUD if 1 <= k <= 5 else NORMAL
    slow = k == 8 or 1 <= k <= 3  # a one-minute latency episode that ended, and one going on
    return kind, slow


def make_decisions(base: datetime) -> list[dict]:
    """Decisions of minutes base-10 .. base-1 and one old minute (base-180), deterministic counts."""
    rng = random.Random(11)
    rows = []
    for k in (180, *range(10, 0, -1)):
        kind, slow = minute_profile(k)
        for i in range(PER_MINUTE):
            decided = base - timedelta(minutes=k) + timedelta(milliseconds=2500 * i + 7)
            if kind == FRAUD:  # 20% processor approvals, half the decisions high risk
                approved, risk = i < 4, (0.7 + 0.01 * i if i < 10 else 0.1)
                outcome = "decline" if i < 10 else ("approve" if i < 16 else "review")
            else:  # 90% processor approvals, no high risk
                approved, risk = i < 18, 0.05 + 0.01 * i
                outcome = "approve" if i < 16 else ("challenge_3ds" if i < 18 else "decline")
            rows.append(
                {
                    "transaction_id": f"tx-{k}-{i}",
                    "decided_at": decided,
                    "outcome": outcome,
                    "is_approved": approved,
                    "risk_score": risk,
                    "fraud_score": round(rng.uniform(0, 0.4), 4),
                    "latency_ms": round(rng.uniform(0.5, 25.0), 3),
                    "e2e_ms": rng.randint(1500, 3000) if slow else rng.randint(40, 400),
                    "amount_minor": rng.randint(100, 200_000),
                    "currency": rng.choice(["BRL", "USD", "CLP"]),
                }
            )
    return rows


def kafka_record(row: dict, offset: int) -> tuple:
    """A record of the decisions topic as the scoring query publishes it (value + pa.context header)."""
    decision = DecisionEvent(
        decision_id=f"d-{row['transaction_id']}",
        transaction_id=row["transaction_id"],
        outcome=row["outcome"],
        approval_probability=0.5,
        risk_score=row["risk_score"],
        recommended_route="standard",
        reason_codes=[],
        rule_set_version="rs-test",
        model_versions={"risk": "1"},
        latency_ms=row["latency_ms"],
        decided_at=row["decided_at"],
        source="stream",
    )
    decided_ms = int(row["decided_at"].timestamp() * 1000)
    context = {
        "merchant_id": "m1",
        "merchant_segment": "retail",
        "amount_minor": row["amount_minor"],
        "currency": row["currency"],
        "card_network": "visa",
        "payment_solution": "standard",
        "geo_country": "BR",
        "is_approved": row["is_approved"],
        "fraud_score": row["fraud_score"],
        "processing_time_ms": 12,
        "event_timestamp_ms": decided_ms - row["e2e_ms"],
        "source_partition": 0,
        "source_offset": offset,
    }
    published = datetime.fromtimestamp(decided_ms / 1000, UTC)  # e2e = published - event = e2e_ms exactly
    return (
        DEFAULT_SERDE.dumps(decision.model_dump(mode="json")),
        [("pa.context", DEFAULT_SERDE.dumps(context))],
        0,
        offset,
        published,
    )


@pytest.fixture(scope="module")
def lake(spark, tmp_path_factory):
    """A warehouse with the stream's decision log, one-minute metrics and alerts (Spark-written)."""

    warehouse = tmp_path_factory.mktemp("lake")
    target = {name: DeltaTarget.of(name, warehouse, CATALOG, SCHEMA) for name in (DECISION_LOG, METRICS_1M, ALERTS)}
    metrics = MetricsWriter(target[METRICS_1M], target[ALERTS], AlertThresholds(min_volume=10))
    log_writer = DecisionLogWriter(target[DECISION_LOG], metrics)
    log_writer.ensure(spark)
    kafka_schema = T.StructType(
        [
            T.StructField("value", T.BinaryType()),
            T.StructField(
                "headers",
                T.ArrayType(
                    T.StructType([T.StructField("key", T.StringType()), T.StructField("value", T.BinaryType())])
                ),
            ),
            T.StructField("partition", T.IntegerType()),
            T.StructField("offset", T.LongType()),
            T.StructField("timestamp", T.TimestampType()),
        ]
    )

    base = lakehouse.minute_floor(datetime.now(UTC))
    decisions = make_decisions(base)
    records = [kafka_record(row, offset) for offset, row in enumerate(decisions)]
    target[DECISION_LOG].append(decision_rows(spark.createDataFrame(records, kafka_schema)))
    micros = [int(r["decided_at"].timestamp() * 1_000_000) for r in decisions]
    metrics.refresh(spark, target[DECISION_LOG], min(micros), max(micros))

    # deletion vectors: a row appended then deleted from the log, a MERGE that updates an alert row
    for t in target.values():
        spark.sql(f"ALTER TABLE {t.sql} SET TBLPROPERTIES ('delta.enableDeletionVectors' = 'true')")
    bogus = {**decisions[-1], "transaction_id": "bogus", "amount_minor": 10**9, "outcome": "approve"}
    target[DECISION_LOG].append(decision_rows(spark.createDataFrame([kafka_record(bogus, 10**6)], kafka_schema)))
    spark.sql(f"DELETE FROM {target[DECISION_LOG].sql} WHERE transaction_id = 'bogus'")
    last_minute = base - timedelta(minutes=1)
    spark.sql(f"""MERGE INTO {target[ALERTS].sql} t
        USING (SELECT timestamp_micros({int(last_minute.timestamp() * 1_000_000)}) AS ws) s
        ON t.window_start = s.ws AND t.alert_type = 'fraud_spike'
        WHEN MATCHED THEN UPDATE SET message = 'merged message'""")

    # PySpark collects timestamps as naive local times: make them aware UTC
    metric_rows = [
        {k: v.astimezone(UTC) if isinstance(v, datetime) else v for k, v in r.asDict().items()}
        for r in target[METRICS_1M].read(spark).orderBy("window_start").collect()
    ]
    return {
        "warehouse": warehouse,
        "base": base,
        "decisions": decisions,
        "metric_rows": metric_rows,
        "deletion_vectors": {name: _has_deletion_vectors(spark, t) for name, t in target.items()},
    }


def _has_deletion_vectors(spark, target) -> bool:
    detail = spark.sql(f"DESCRIBE DETAIL {target.sql}").first()
    return "deletionVectors" in (detail["tableFeatures"] or [])


@pytest.fixture
def client(make_client, lake):
    return make_client(warehouse_dir=lake["warehouse"])


def expected_kpis(decisions: list[dict], since: datetime) -> dict:
    rows = [r for r in decisions if r["decided_at"] >= since]
    n = len(rows)
    e2e = np.array([r["e2e_ms"] for r in rows], dtype=float)
    latency = np.array([r["latency_ms"] for r in rows], dtype=float)
    value: dict[str, dict] = {}
    for r in rows:
        v = value.setdefault(r["currency"], {"transactions": 0, "total": 0, "approved": 0, "declined": 0})
        v["transactions"] += 1
        v["total"] += r["amount_minor"]
        v["approved"] += r["amount_minor"] if r["outcome"] == "approve" else 0
        v["declined"] += r["amount_minor"] if r["outcome"] == "decline" else 0
    return {
        "transactions": n,
        "outcomes": {o: sum(r["outcome"] == o for r in rows) for o in lakehouse.OUTCOMES},
        "decision_approval_rate": sum(r["outcome"] == "approve" for r in rows) / n,
        "processor_approval_rate": sum(r["is_approved"] for r in rows) / n,
        "high_risk_share": sum(r["risk_score"] >= 0.6 for r in rows) / n,
        "avg_fraud_score": sum(r["fraud_score"] for r in rows) / n,
        "e2e_p50_ms": float(np.percentile(e2e, 50)),
        "e2e_p99_ms": float(np.percentile(e2e, 99)),
        "decision_p50_ms": float(np.percentile(latency, 50)),
        "decision_p99_ms": float(np.percentile(latency, 99)),
        "value": value,
    }


def test_spark_wrote_deletion_vectors_the_reader_must_honour(lake):
    assert lake["deletion_vectors"]["stream_decision_log"] and lake["deletion_vectors"]["stream_alerts"]


@pytest.mark.parametrize("minutes", [60, 1440])
def test_dashboard_kpis_equal_the_numbers_of_the_rows_written(client, lake, minutes):
    body = client.get(f"/api/dashboard?minutes={minutes}").json()
    since = datetime.fromisoformat(body["from"])
    assert since == lakehouse.window_since(datetime.fromisoformat(body["to"]), minutes)
    want = expected_kpis(lake["decisions"], since)
    assert want["transactions"] == (10 * PER_MINUTE if minutes == 60 else 11 * PER_MINUTE)
    kpis = body["kpis"]
    assert kpis["transactions"] == want["transactions"]
    assert kpis["outcomes"] == want["outcomes"]
    for key in ("decision_approval_rate", "processor_approval_rate", "high_risk_share", "avg_fraud_score"):
        assert kpis[key] == pytest.approx(want[key], rel=1e-9), key
    assert kpis["transactions_per_minute"] == pytest.approx(want["transactions"] / minutes)

    latency = body["latency"]
    assert latency["source"] == "stream_decision_log" and latency["exact"] and latency["rows"] == want["transactions"]
    for key in ("e2e_p50_ms", "e2e_p99_ms", "decision_p50_ms", "decision_p99_ms"):
        assert latency[key] == pytest.approx(want[key], rel=1e-6), key  # DataFusion interpolates to ~1e-9
    window_minutes = [m for m in lake["metric_rows"] if m["window_start"] >= since]
    assert latency["worst_minute_e2e_p99_ms"] == max(m["e2e_latency_p99_ms"] for m in window_minutes)

    value = {v["currency"]: v for v in body["value"]["by_currency"]}
    assert body["value"]["available"] and set(value) == set(want["value"])
    for currency, expected in want["value"].items():
        got = value[currency]
        assert got["transactions"] == expected["transactions"]
        assert got["total_minor"] == expected["total"] and got["approved_minor"] == expected["approved"]
        assert Decimal(got["total"]) == from_minor_units(expected["total"], currency)
        assert Decimal(got["declined"]) == from_minor_units(expected["declined"], currency)

    # per-minute series: exactly the metrics rows Spark wrote for the window
    assert [s["minute"] for s in body["series"]] == [lakehouse.iso(m["window_start"]) for m in window_minutes]
    for point, row in zip(body["series"], window_minutes, strict=True):
        for key in (
            "transactions",
            "approve",
            "decline",
            "processor_approval_rate",
            "e2e_latency_p99_ms",
            "decision_latency_p99_ms",
            "high_risk_share",
        ):
            assert point[key] == row[key], key
    assert body["updated_at"] and body["sources"]["stream_metrics_1m"]["exists"] and body["message"] is None
    assert body["latest_minute"] == lakehouse.iso(lake["base"] - timedelta(minutes=1))


def test_dashboard_without_the_decision_log_uses_the_minute_metrics(lake):
    reader = lakehouse.DeltaReader(lake["warehouse"], CATALOG, SCHEMA)
    rows = lakehouse.minute_rows(reader, lake["base"] - timedelta(minutes=59))
    latency = lakehouse.metrics_latency(rows)
    assert latency["source"] == "stream_metrics_1m" and not latency["exact"]
    weights = [r["transactions"] for r in rows]
    assert latency["e2e_p99_ms"] == pytest.approx(np.average([r["e2e_latency_p99_ms"] for r in rows], weights=weights))
    assert latency["worst_minute_decision_p99_ms"] == max(r["decision_latency_p99_ms"] for r in rows)


def test_active_alerts_say_when_they_started_and_what_crossed_which_threshold(client, lake):
    base = lake["base"]
    body = client.get("/api/alerts").json()
    assert body["message"] is None and body["updated_at"]
    active = {a["alert_type"]: a for a in body["active"]}
    assert set(active) == {"approval_drop", "fraud_spike", "latency"}
    fraud = active["fraud_spike"]
    assert fraud["started_at"] == lakehouse.iso(base - timedelta(minutes=5)) and fraud["minutes"] == 5
    assert (fraud["metric"], fraud["value"], fraud["threshold"]) == ("high_risk_share", 0.5, 0.08)
    assert fraud["severity"] == "critical" and fraud["message"] == "merged message"  # the MERGE's update
    drop = active["approval_drop"]
    assert drop["started_at"] == lakehouse.iso(base - timedelta(minutes=5))
    assert drop["metric"] == "processor_approval_rate" and drop["value"] == pytest.approx(0.2)
    baseline = (5 * 18 + 4 * 4) / (9 * PER_MINUTE)  # minutes base-10..base-2, processor approvals
    assert drop["baseline"] == pytest.approx(baseline) and drop["threshold"] == pytest.approx(baseline - 0.10)
    latency = active["latency"]
    assert latency["started_at"] == lakehouse.iso(base - timedelta(minutes=3)) and latency["minutes"] == 3
    assert latency["metric"] == "e2e_latency_p99_ms" and latency["value"] > latency["threshold"] == 1000.0
    assert body["active"][0]["severity"] == "critical"  # most severe first

    ended = [e for e in body["history"] if e["alert_type"] == "latency" and not e["ongoing"]]
    assert [(e["started_at"], e["ended_at"], e["minutes"]) for e in ended] == [
        (lakehouse.iso(base - timedelta(minutes=8)), lakehouse.iso(base - timedelta(minutes=7)), 1)
    ]
    assert len(body["history"]) == 4
    only = client.get("/api/alerts?active_only=true").json()
    assert len(only["active"]) == 3 and only["history"] == []


def test_an_alert_the_stream_stopped_updating_is_flagged_stale(lake):
    reader = lakehouse.DeltaReader(lake["warehouse"], CATALOG, SCHEMA)
    fresh = lakehouse.alerts(reader, now=lake["base"] + timedelta(seconds=30))
    assert fresh["active"] and not any(a["stale"] for a in fresh["active"])
    later = lakehouse.alerts(reader, now=lake["base"] + timedelta(minutes=30))
    assert later["active"] and all(a["stale"] for a in later["active"])
    gone = lakehouse.alerts(reader, history_hours=1, now=lake["base"] + timedelta(hours=3))
    assert gone["active"] == [] and "no minute judged" in gone["message"]


def test_missing_tables_give_empty_results_with_a_message(make_client, tmp_path):
    client = make_client(data_dir=tmp_path / "empty")
    body = client.get("/api/dashboard?minutes=15").json()
    assert body["kpis"] is None and body["series"] == [] and "start the stream processor" in body["message"]
    assert body["value"]["available"] is False and "not there yet" in body["value"]["message"]
    assert body["dlq"]["source"] is None and "DLQ rate unknown" in body["dlq"]["message"]
    assert body["updated_at"] is None and body["sources"]["stream_metrics_1m"]["exists"] is False
    alerts = client.get("/api/alerts").json()
    assert alerts["active"] == [] and alerts["history"] == [] and "start the stream processor" in alerts["message"]
    assert client.get("/api/dashboard?minutes=0").status_code == 422
    assert client.get("/api/dashboard?minutes=1441").status_code == 422


def test_dlq_rate_from_the_kafka_topics(make_client, tmp_path, kafka_bootstrap):
    prefix = f"dash{uuid.uuid4().hex[:6]}."
    ensure_topics(kafka_bootstrap, prefix)
    producer = Producer({"bootstrap.servers": kafka_bootstrap})
    old_ms = int((time.time() - 3 * 3600) * 1000)
    for i in range(2):  # dead letters from before the window (produced first: offsets follow time)
        producer.produce(prefixed(TRANSACTIONS_DLQ, prefix), value=b"old", timestamp=old_ms + i)
    for _ in range(3):
        producer.produce(prefixed(TRANSACTIONS_DLQ, prefix), value=b"{bad json")
    for i in range(10):
        producer.produce(prefixed(TRANSACTIONS, prefix), key=f"card{i}".encode(), value=b"{}")
    assert producer.flush(10) == 0

    client = make_client(data_dir=tmp_path / "kafka", kafka_bootstrap=kafka_bootstrap, topic_prefix=prefix)
    dlq = client.get("/api/dashboard?minutes=60").json()["dlq"]
    assert dlq["source"] == "kafka" and dlq["topic"] == f"{prefix}payments.transactions.dlq"
    assert (dlq["dead_letters"], dlq["transactions_received"]) == (3, 10)
    assert dlq["per_minute"] == pytest.approx(3 / 60) and dlq["share"] == pytest.approx(0.3)
    day = client.get("/api/dashboard?minutes=1440").json()["dlq"]
    assert day["dead_letters"] == 5 and day["per_minute"] == pytest.approx(5 / 1440)


def test_dlq_rate_falls_back_to_bronze_dead_letters(spark, make_client, tmp_path):
    warehouse = tmp_path / "bronze"
    now = datetime.now(UTC)
    rows = [(f"v{i}", now - timedelta(minutes=i)) for i in (1, 2, 3, 300)]
    schema = T.StructType(
        [T.StructField("record_value", T.StringType()), T.StructField("kafka_timestamp", T.TimestampType())]
    )
    spark.createDataFrame(rows, schema).write.format("delta").save(
        str(warehouse / CATALOG / SCHEMA / lakehouse.BRONZE_DEAD_LETTERS)
    )
    client = make_client(data_dir=tmp_path / "data", warehouse_dir=warehouse)  # the broker is unreachable
    dlq = client.get("/api/dashboard?minutes=60").json()["dlq"]
    assert dlq["source"] == "bronze_dead_letters" and dlq["dead_letters"] == 3
    assert "not reachable" in dlq["message"] and "bronze_dead_letters" in dlq["message"]


def test_pages_render_for_signed_in_users_and_redirect_anonymous_ones(client, make_client):
    dashboard = client.get("/dashboard")
    assert dashboard.status_code == 200
    assert '<script src="/vendor/echarts.min.js"></script>' in dashboard.text
    assert "/static/dashboard.js" in dashboard.text
    assert 'id="chart-approval"' in dashboard.text and '<option value="1440"' in dashboard.text
    alerts = client.get("/alerts")
    assert alerts.status_code == 200 and 'id="alerts-active"' in alerts.text and "/static/alerts.js" in alerts.text
    for asset in ("/static/dashboard.js", "/static/alerts.js"):
        assert client.get(asset).status_code == 200
    anonymous = make_client(signed_in=False)
    for path in ("/dashboard", "/alerts"):
        resp = anonymous.get(path, follow_redirects=False)
        assert resp.status_code == 303 and resp.headers["location"].startswith(f"/login?next={path}")
    assert anonymous.get("/api/dashboard").status_code == 401
    assert anonymous.get("/api/alerts").status_code == 401
