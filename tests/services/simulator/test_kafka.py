"""Against the real local Kafka: delivery and read-back, graceful shutdown, scenario switches, CLI."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import orjson
import pyarrow.parquet as pq
import pytest
from confluent_kafka import Consumer, TopicPartition

from launcher.topics import ensure_topics
from payments_core.contract.events import TransactionEvent
from payments_core.contract.topics import SIMULATOR_CONTROL, TRANSACTIONS, TopicSpec, prefixed
from services.simulator.control import ControlListener, publish_switch
from services.simulator.encode import ARROW_SCHEMA
from services.simulator.generator import GeneratorConfig, TransactionGenerator
from services.simulator.producer import EventProducer
from services.simulator.runner import backfill, run
from services.simulator.scenarios import ScenarioSwitch
from tests.services.simulator.conftest import START

REPO = Path(__file__).resolve().parents[3]


@pytest.fixture
def own_topics(kafka_bootstrap: str) -> str:
    """Fresh transactions + control topics under a prefix of this test's own."""
    prefix = f"sim{uuid.uuid4().hex[:8]}."
    ensure_topics(kafka_bootstrap, prefix, (TRANSACTIONS, SIMULATOR_CONTROL))
    return prefix


def read_all(bootstrap: str, topic: str, timeout: float = 60.0) -> list:
    """Every message of a topic, up to the end offsets at call time."""
    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": f"t-{uuid.uuid4().hex}",
            "enable.auto.commit": False,
            "auto.offset.reset": "earliest",
        }
    )
    try:
        meta = consumer.list_topics(topic, timeout=10).topics[topic]
        parts = [TopicPartition(topic, p) for p in meta.partitions]
        ends = {p.partition: consumer.get_watermark_offsets(p, timeout=10)[1] for p in parts}
        consumer.assign([TopicPartition(topic, p, 0) for p in ends])
        want = sum(ends.values())
        out: list = []
        deadline = time.monotonic() + timeout
        while len(out) < want and time.monotonic() < deadline:
            for msg in consumer.consume(10_000, timeout=1.0):
                if msg.error() is None:
                    out.append(msg)
        return out
    finally:
        consumer.close()


def _env(bootstrap: str, prefix: str) -> dict[str, str]:
    return {
        **os.environ,
        "PA_KAFKA_BOOTSTRAP": bootstrap,
        "PA_TOPIC_PREFIX": prefix,
        "PYTHONPATH": str(REPO),
        "PYTHONUNBUFFERED": "1",
    }


def test_delivers_exactly_the_produced_count_keyed_by_card_token(kafka_bootstrap, own_topics):
    topic = prefixed(TRANSACTIONS, own_topics)
    gen = TransactionGenerator(GeneratorConfig(seed=9, start=START))
    producer = EventProducer(kafka_bootstrap, topic)
    report = run(gen, producer, count=25_000, batch_size=4_000, progress=None)
    assert report.events == report.enqueued == report.delivered == 25_000
    assert report.failed == report.undelivered == 0
    messages = read_all(kafka_bootstrap, topic)
    assert len(messages) == 25_000
    ids = set()
    for msg in messages[::25]:
        event = TransactionEvent.model_validate_json(msg.value())
        assert msg.key().decode() == event.card_token_id
        ids.add(event.transaction_id)
    assert len({orjson.loads(m.value())["transaction_id"] for m in messages}) == 25_000
    # the same card always lands on the same partition
    by_card: dict[bytes, set[int]] = {}
    for msg in messages:
        by_card.setdefault(msg.key(), set()).add(msg.partition())
    assert all(len(p) == 1 for p in by_card.values())


def test_delivery_errors_are_counted_not_dropped(kafka_bootstrap, own_topics):
    # the broker refuses every record batch of a topic whose max.message.bytes is tiny
    tiny = TopicSpec(f"tiny.{uuid.uuid4().hex[:6]}", 1, "none", "refuses everything", (("max.message.bytes", "64"),))
    ensure_topics(kafka_bootstrap, own_topics, (tiny,))
    producer = EventProducer(kafka_bootstrap, prefixed(tiny, own_topics), extra={"message.timeout.ms": 5_000})
    gen = TransactionGenerator(GeneratorConfig(seed=1, start=START))
    report = run(gen, producer, count=500, progress=None, flush_timeout=30)
    assert report.events == 500
    assert report.failed + report.undelivered == 500 and report.delivered == 0
    assert report.lost == 500 and report.errors


def test_sigterm_flushes_everything_in_flight(kafka_bootstrap, own_topics):
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "services.simulator",
            "run",
            "--rate",
            "max",
            "--no-control",
            "--progress-interval",
            "0.5",
            "--seed",
            "3",
        ],
        cwd=REPO,
        env=_env(kafka_bootstrap, own_topics),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    lines: list[str] = []
    try:
        # wait until it is producing flat out, then stop it mid-stream
        for line in proc.stdout:
            lines.append(line)
            if re.search(r"^\s*[\d,]+ events", line) and int(line.split()[0].replace(",", "")) > 20_000:
                break
        proc.send_signal(signal.SIGTERM)
        rest, _ = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    output = "".join(lines) + rest
    assert proc.returncode == 0, output
    done = re.search(r"done: events=([\d,]+) delivered=([\d,]+) failed=0 undelivered=0", output)
    assert done, output
    produced, delivered = (int(g.replace(",", "")) for g in done.groups())
    assert produced == delivered > 20_000
    assert len(read_all(kafka_bootstrap, prefixed(TRANSACTIONS, own_topics))) == produced


def test_scenario_switch_over_the_control_topic_reaches_a_running_simulator(kafka_bootstrap, own_topics):
    control_topic = prefixed(SIMULATOR_CONTROL, own_topics)
    # an old switch from before the simulator started is ignored when the scenario was given explicitly
    publish_switch(
        kafka_bootstrap, control_topic, ScenarioSwitch(scenario="bin_attack", at=datetime.now(UTC) - timedelta(hours=1))
    )
    gen = TransactionGenerator(GeneratorConfig(seed=2))
    producer = EventProducer(kafka_bootstrap, prefixed(TRANSACTIONS, own_topics))
    listener = ControlListener(kafka_bootstrap, control_topic, since=datetime.now(UTC))
    stop = threading.Event()
    reports = []
    worker = threading.Thread(
        target=lambda: reports.append(run(gen, producer, rate=2_000, control=listener, stop=stop, progress=None))
    )
    worker.start()
    try:
        # no sleep "until the old switch has been read": the control topic has one partition, so the
        # new switch below is applied only after the old one was read (and ignored); the count of
        # switches applied at the end says whether the old one was ignored
        assert gen.scenario == "normal"
        result = subprocess.run(
            [sys.executable, "-m", "services.simulator", "scenario", "issuer_outage", "--issuer", "iss_br_03"],
            cwd=REPO,
            env=_env(kafka_bootstrap, own_topics),
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert result.returncode == 0, result.stderr
        deadline = time.monotonic() + 30
        while gen.scenario != "issuer_outage" and time.monotonic() < deadline:
            time.sleep(0.1)
        assert (gen.scenario, gen.scenario_issuer) == ("issuer_outage", "iss_br_03")
    finally:
        stop.set()
        worker.join(60)
        listener.close()
    assert reports and reports[0].scenario_switches == 1 and reports[0].lost == 0


def test_a_new_simulator_adopts_the_latest_switch(kafka_bootstrap, own_topics):
    topic = prefixed(SIMULATOR_CONTROL, own_topics)
    publish_switch(kafka_bootstrap, topic, ScenarioSwitch(scenario="fraud_ring"))
    publish_switch(kafka_bootstrap, topic, ScenarioSwitch(scenario="latency_spike"))
    listener = ControlListener(kafka_bootstrap, topic)
    try:
        deadline = time.monotonic() + 20
        switch = None
        while switch is None and time.monotonic() < deadline:
            switch = listener.poll(0.5)
        assert switch is not None and switch.scenario == "latency_spike"
    finally:
        listener.close()


def test_cli_refuses_bad_input_with_a_clear_message(kafka_bootstrap, own_topics):
    env = _env(kafka_bootstrap, own_topics)
    bad_rate = subprocess.run(
        [sys.executable, "-m", "services.simulator", "run", "--rate", "fast"],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert bad_rate.returncode == 2 and "--rate must be a number" in bad_rate.stderr
    bad_scenario = subprocess.run(
        [sys.executable, "-m", "services.simulator", "scenario", "meteor"],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert bad_scenario.returncode == 2 and "unknown scenario 'meteor'" in bad_scenario.stderr
    bad_env = subprocess.run(
        [sys.executable, "-m", "services.simulator", "run", "--count", "1"],
        cwd=REPO,
        env={**env, "PA_SIMULATOR_RATE": "-5"},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert bad_env.returncode == 2 and "simulator_rate" in bad_env.stderr


def test_backfill_to_kafka_and_to_parquet(kafka_bootstrap, own_topics, tmp_path):
    start = datetime(2026, 1, 10, tzinfo=UTC)
    topic = prefixed(TRANSACTIONS, own_topics)
    to_kafka = backfill(0.5, start, events_per_day=40_000, seed=4, producer=EventProducer(kafka_bootstrap, topic))
    assert to_kafka.delivery is not None and to_kafka.delivery.lost == 0
    assert len(read_all(kafka_bootstrap, topic)) == to_kafka.events
    assert 8_000 < to_kafka.events < 20_000  # the night half of a day: below the 20k average
    path = tmp_path / "history.parquet"
    to_file = backfill(0.5, start, events_per_day=40_000, seed=4, path=path)
    table = pq.read_table(path)
    assert table.schema == ARROW_SCHEMA and table.num_rows == to_file.events == to_kafka.events
    ts = table["event_timestamp"].to_pandas()
    assert ts.min() >= start and ts.max() < start + timedelta(days=0.5)
    # same seed, same history: Kafka and the file carry the same transactions
    ids = {orjson.loads(m.value())["transaction_id"] for m in read_all(kafka_bootstrap, topic)}
    assert ids == set(table["transaction_id"].to_pylist())


def test_cli_backfill_writes_json_lines(tmp_path, kafka_bootstrap, own_topics):
    out = tmp_path / "events.jsonl"
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "services.simulator",
            "backfill",
            "--days",
            "0.2",
            "--events-per-day",
            "20000",
            "--start",
            "2026-02-01T00:00:00Z",
            "--output",
            str(out),
            "--no-incidents",
        ],
        cwd=REPO,
        env=_env(kafka_bootstrap, own_topics),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    lines = out.read_bytes().splitlines()
    assert 3_000 < len(lines) < 5_500
    assert f"backfill: {len(lines):,} events" in result.stdout
    for line in lines[::50]:
        TransactionEvent.model_validate_json(line)


def test_same_seed_and_settings_put_the_same_events_on_kafka(kafka_bootstrap):
    streams = []
    for _ in range(2):
        prefix = f"simdet{uuid.uuid4().hex[:8]}."
        ensure_topics(kafka_bootstrap, prefix, (TRANSACTIONS,))
        topic = prefixed(TRANSACTIONS, prefix)
        gen = TransactionGenerator(GeneratorConfig(seed=21, start=START))
        report = run(gen, EventProducer(kafka_bootstrap, topic), count=6_000, rate=None, progress=None)
        assert report.delivered == 6_000
        # per partition, Kafka keeps the produced order
        by_partition: dict[int, list[tuple[bytes, bytes]]] = {}
        for msg in read_all(kafka_bootstrap, topic):
            by_partition.setdefault(msg.partition(), []).append((msg.key(), msg.value()))
        streams.append(by_partition)
    assert streams[0] == streams[1]
