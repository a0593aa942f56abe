"""The Arrow adapter over the decision core, without Spark: one output per input, in order."""

from __future__ import annotations

import gc
from datetime import UTC, datetime

import orjson
import pyarrow as pa

from payments_core.contract.events import DecisionEvent
from payments_core.engine import DecisionEngine
from services.stream_processor.parse import DeadLetter
from services.stream_processor.pipeline import scoring_config
from services.stream_processor.scoring import (
    CONTEXT_HEADER,
    OUTPUT_ARROW,
    SMALL_BATCH_ROWS,
    Runtime,
    ScoringConfig,
    process_arrays,
)
from services.stream_processor.settings import StreamProcessorSettings
from tests.services.stream_processor.conftest import make_events

CONFIG = ScoringConfig(
    "t.payments.decisions", "t.payments.transactions.dlq", redis_url=None, mlflow_tracking_uri=None, rules_path=None
)


def _kafka_arrays(values: list[bytes | None]) -> list[pa.Array]:
    n = len(values)
    return [
        pa.array([b"k"] * n, pa.binary()),
        pa.array(values, pa.binary()),
        pa.array(["t.payments.transactions"] * n),
        pa.array([2] * n, pa.int32()),
        pa.array(range(100, 100 + n), pa.int64()),
        pa.array([datetime(2026, 3, 2, tzinfo=UTC)] * n, pa.timestamp("us", tz="UTC")),
    ]


def test_one_record_out_per_record_in_in_order_with_the_core_decision():
    events = make_events(6, seed=61)
    values: list[bytes | None] = [orjson.dumps(e) for e in events]
    values[2:2] = [b"not json", None]
    out = process_arrays(CONFIG, *_kafka_arrays(values))
    assert out.type == OUTPUT_ARROW and len(out) == len(values)
    rows = out.to_pylist()
    engine = DecisionEngine.from_sources()
    valid = [r for r in rows if r["topic"] == CONFIG.decisions_topic]
    assert [r["key"].decode() for r in valid] == [e["transaction_id"] for e in events]
    for row, event in zip(valid, events, strict=True):
        ours = DecisionEvent.model_validate_json(row["value"])
        one = engine.decide(dict(event), None, source="stream")
        assert ours.model_dump(exclude={"latency_ms", "decided_at"}) == one.model_dump(
            exclude={"latency_ms", "decided_at"}
        )
        ((key, ctx),) = [(h["key"], h["value"]) for h in row["headers"]]
        assert key == CONTEXT_HEADER and orjson.loads(ctx)["amount_minor"] == event["amount_minor"]
    for i in (2, 3):
        assert rows[i]["topic"] == CONFIG.dlq_topic and rows[i]["headers"] == []
        assert rows[i]["key"] == f"t.payments.transactions/2/{100 + i}".encode()
        assert DeadLetter.model_validate_json(rows[i]["value"]).source_offset == 100 + i


def test_a_batch_of_only_dead_letters():
    out = process_arrays(CONFIG, *_kafka_arrays([b"{", b"{}"]))
    assert [r["topic"] for r in out.to_pylist()] == [CONFIG.dlq_topic] * 2


def test_unity_catalog_model_names_come_from_the_typed_settings(monkeypatch):
    monkeypatch.setenv("PA_UC_CATALOG", "prod")
    monkeypatch.setenv("PA_UC_SCHEMA", "payments")
    config = scoring_config(StreamProcessorSettings(_env_file=None))
    assert (config.uc_catalog, config.uc_schema) == ("prod", "payments")
    monkeypatch.delenv("PA_UC_CATALOG")
    monkeypatch.delenv("PA_UC_SCHEMA")
    assert scoring_config(StreamProcessorSettings(_env_file=None)).uc_catalog is None


def test_the_real_time_workers_producers_linger_as_configured(monkeypatch):
    """PA_STREAM_REALTIME_LINGER_MS reaches the workers' own producer; PA_KAFKA_OPTIONS still wins."""
    publish = dict(scoring_config(StreamProcessorSettings(_env_file=None), publish=True).publish or ())
    assert publish["linger.ms"] == "20"
    monkeypatch.setenv("PA_STREAM_REALTIME_LINGER_MS", "5")
    assert dict(scoring_config(StreamProcessorSettings(_env_file=None), publish=True).publish or ())["linger.ms"] == "5"
    monkeypatch.setenv("PA_KAFKA_OPTIONS", '{"linger.ms": "0"}')
    assert dict(scoring_config(StreamProcessorSettings(_env_file=None), publish=True).publish or ())["linger.ms"] == "0"
    monkeypatch.delenv("PA_STREAM_REALTIME_LINGER_MS")
    monkeypatch.delenv("PA_KAFKA_OPTIONS")


def _decisions(out: pa.StructArray) -> list[dict]:
    rows = [orjson.loads(r["value"]) for r in out.to_pylist() if r["topic"] == CONFIG.decisions_topic]
    for d in rows:
        d.pop("latency_ms"), d.pop("decided_at")
    return rows


def test_small_batches_take_the_one_row_path_and_decide_exactly_as_large_ones():
    events = make_events(3 * SMALL_BATCH_ROWS, seed=62)
    values: list[bytes | None] = [orjson.dumps(e) for e in events]
    values[7:7] = [b"{}"]  # a dead letter in the large batch
    large = _decisions(process_arrays(CONFIG, *_kafka_arrays(values)))
    small = []
    for a in range(0, len(events), 5):
        small += _decisions(process_arrays(CONFIG, *_kafka_arrays([orjson.dumps(e) for e in events[a : a + 5]])))
    assert len(large) == len(small) == len(events)
    assert large == small
    assert len({d["outcome"] for d in large}) >= 2
    engine = DecisionEngine.from_sources()
    for d, event in zip(large, events, strict=True):
        one = engine.decide(event, None, source="stream").model_dump(mode="json")
        one.pop("latency_ms"), one.pop("decided_at")
        assert d == one


def test_the_worker_runtime_is_kept_out_of_the_garbage_collector():
    # PySpark's worker daemon runs gc.collect() after every task; what the runtime loads lives as
    # long as the worker, so it is frozen (gc.freeze) instead of being traversed each time
    gc.unfreeze()
    try:
        Runtime(
            ScoringConfig(decisions_topic="d", dlq_topic="q", redis_url=None, mlflow_tracking_uri=None, rules_path=None)
        )
        assert gc.get_freeze_count() > 10_000
    finally:
        gc.unfreeze()
