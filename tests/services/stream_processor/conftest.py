"""Fixtures of the stream processor tests: per-test topics and settings, Kafka helpers."""

from __future__ import annotations

import random
import subprocess
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson
import pytest
from confluent_kafka import Consumer, Producer, TopicPartition

from launcher.topics import ensure_topics
from payments_core.samples import sample_request
from payments_core.taxonomy import DECLINES
from services.stream_processor.settings import StreamProcessorSettings


def make_events(n: int, seed: int = 1, *, start: datetime | None = None, **overrides: Any) -> list[dict[str, Any]]:
    """``n`` valid TransactionEvent dicts (JSON-ready), in event-time order."""
    rng = random.Random(seed)
    start = start or datetime(2026, 3, 2, 12, 0, tzinfo=UTC)
    out = []
    for i in range(n):
        tx = sample_request(rng, **overrides)
        tx["event_timestamp"] = (start + timedelta(milliseconds=37 * i)).isoformat()
        approved = rng.random() < 0.82
        reason = None if approved else rng.choice(sorted(DECLINES))
        tx.update(
            is_approved=approved,
            decline_reason=reason,
            decline_code_raw=None if approved else DECLINES[reason].raw_code,
            processing_time_ms=rng.randrange(80, 900),
        )
        out.append(tx)
    return out


def produce(
    bootstrap: str,
    topic: str,
    values: list[bytes | None],
    keys: list[bytes | str | None] | None = None,
    partition: int | None = None,
) -> list[tuple[int, int]]:
    """Produce and wait; returns (partition, offset) of each value, in order."""
    producer = Producer({"bootstrap.servers": bootstrap, "linger.ms": 20, "enable.idempotence": True})
    where: list[tuple[int, int] | None] = [None] * len(values)

    def delivered(i: int) -> Callable:
        def cb(err, msg):
            assert err is None, err
            where[i] = (msg.partition(), msg.offset())

        return cb

    for i, value in enumerate(values):
        kw: dict[str, Any] = {"value": value, "key": keys[i] if keys else None, "on_delivery": delivered(i)}
        if partition is not None:
            kw["partition"] = partition
        producer.produce(topic, **kw)
        if i % 5000 == 4999:
            producer.flush(30)
    assert producer.flush(30) == 0
    return where  # type: ignore[return-value]


def consume_all(bootstrap: str, topic: str, *, timeout: float = 30.0, expect: int | None = None) -> list:
    """Every message of ``topic`` from the beginning (until ``expect`` are seen or the topic end)."""
    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": f"t-{uuid.uuid4().hex}",
            "auto.offset.reset": "earliest",
            "enable.auto.commit": False,
        }
    )
    meta = consumer.list_topics(topic, timeout=10).topics[topic]
    ends = {}
    for p in meta.partitions:
        _, hi = consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10)
        ends[p] = hi
    consumer.assign([TopicPartition(topic, p, 0) for p in meta.partitions])
    out, done = [], {p for p, hi in ends.items() if hi == 0}
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if expect is None and len(done) == len(ends):
            break
        if expect is not None and len(out) >= expect:
            break
        msg = consumer.poll(0.5)
        if msg is None or msg.error():
            continue
        out.append(msg)
        if msg.offset() + 1 >= ends.get(msg.partition(), 0):
            done.add(msg.partition())
    consumer.close()
    return out


def wait_until(
    check: Callable[[], bool],
    what: str,
    watch: Any = None,
    log: Path | None = None,
    timeout: float = 240.0,
    every: float = 0.5,
) -> None:
    """Poll ``check`` until it holds: the way a test waits for an EVENT (a decision published, a
    checkpoint file written). ``timeout`` only bounds a failure, it never places a fault. ``watch``: a
    subprocess or a streaming query that must stay alive meanwhile (its log tail on failure)."""
    deadline = time.monotonic() + timeout
    while True:
        if isinstance(watch, subprocess.Popen):
            tail = log.read_text(errors="replace")[-4000:] if log is not None and log.exists() else ""
            assert watch.poll() is None, f"exited with {watch.returncode} while waiting for {what}:\n{tail}"
        elif watch is not None:
            assert watch.exception() is None, watch.exception()
        if check():
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}")
        time.sleep(every)


def as_json(events: list[dict[str, Any]]) -> list[bytes]:
    return [orjson.dumps(e) for e in events]


@pytest.fixture
def topic_prefix_sp(kafka_bootstrap: str, kafka_topics: str) -> str:
    """A fresh set of the contract's topics for one test (the processor reads a whole topic)."""
    prefix = f"{kafka_topics}sp{uuid.uuid4().hex[:6]}."
    ensure_topics(kafka_bootstrap, prefix)
    return prefix


@pytest.fixture
def sp_settings(
    tmp_path: Path, kafka_bootstrap: str, topic_prefix_sp: str, redis_url: str, warehouse_dir: Path
) -> StreamProcessorSettings:
    return StreamProcessorSettings(
        kafka_bootstrap=kafka_bootstrap,
        redis_url=redis_url,
        redis_prefix=f"t{uuid.uuid4().hex[:8]}",
        topic_prefix=topic_prefix_sp,
        data_dir=tmp_path / "data",
        warehouse_dir=tmp_path / "warehouse",
        mlflow_tracking_uri=None,
        stream_engine_refresh_seconds=0.0,
        stream_log_interval="1 second",
        _env_file=None,
    )
