"""Faults with the real servers, each placed by an event the test waits for, never by the clock.

* Redis restarts while the scoring query runs: the batch that meets Redis down retries its velocity
  call until Redis is back (no query failure, no transaction decided twice or without velocity), and
  the velocity windows afterwards are exactly those of recording every transaction once.
* ``kill -9`` of the stream processor (``python -m services.stream_processor run``) in real-time mode,
  in the middle of its real-time batch (the batch lasts ten minutes: it cannot have committed when the
  kill lands), then a restart of the query from its checkpoint: the batch is replayed (every decision
  of it published again), no transaction is without a decision, the decision log holds exactly one row
  per transaction. The same run checks, at no extra start-up cost:
  random bytes and truncated JSON on the transactions topic (all dead-lettered, the processor alive and
  deciding what follows), a future-dated transaction (dead-lettered naming ``event_timestamp``), and
  forged or broken records on the decisions topic (refused by the decision log into the decisions DLQ
  with the reason, never logged; the real decision of the same transaction, published after them, is).
"""

from __future__ import annotations

import os
import random
import signal
import socket
import subprocess
import sys
import threading
import uuid
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson
import pytest
import redis
from confluent_kafka import Producer

from launcher import infra, local
from launcher.topics import ensure_topics
from payments_core.contract.dead_letters import DeadLetter
from payments_core.contract.decision_records import CONTEXT_HEADER
from payments_core.contract.events import DecisionEvent
from payments_core.contract.topics import DECISIONS, DECISIONS_DLQ, TRANSACTIONS, TRANSACTIONS_DLQ, TopicSpec
from payments_core.velocity import InMemoryVelocityStore, RedisVelocityStore
from payments_core.velocity_batch import BatchRedisVelocity
from services.stream_processor import pipeline
from services.stream_processor.decision_log import DeadLetterSink, DecisionLogWriter
from services.stream_processor.settings import StreamProcessorSettings
from services.stream_processor.tables import DECISION_LOG, DeltaTarget
from tests.services.stream_processor.conftest import consume_all, make_events, produce, wait_until

REPO = Path(__file__).resolve().parents[3]


def _decided(bootstrap: str, topic: str) -> Counter:
    """transaction_id -> how many times a decision for it is on ``topic``."""
    return Counter(DecisionEvent.model_validate_json(m.value()).transaction_id for m in consume_all(bootstrap, topic))


def _offsets_in_flight(checkpoint: Path) -> int:
    """The total of the source's end offsets in the latest offset-log entry of a query (0 without one)."""
    logs = sorted((checkpoint / "offsets").glob("[0-9]*"), key=lambda p: int(p.name))
    if not logs:
        return 0
    ends = orjson.loads(logs[-1].read_text().splitlines()[-1])
    return sum(int(v) for parts in ends.values() for v in parts.values())


# ------------------------------------------------------------------------------------------ Redis
def test_redis_restart_mid_traffic_the_batch_retries_and_velocity_stays_consistent(
    spark, sp_settings, kafka_bootstrap, tmp_path
):
    host, port = "127.0.0.1", infra.free_port()
    spec = infra.redis_server(tmp_path / "redis", host, port, persist=True)  # saved on shutdown, loaded on start
    url = f"redis://{host}:{port}/0"
    settings = sp_settings.model_copy(
        update={
            "redis_url": url,
            "stream_interval": "200 milliseconds",
            "stream_max_offsets_per_trigger": 120,
            # synchronous offset log: the file of a batch exists before the batch runs (the event below)
            "stream_async_progress": False,
            "stream_python_workers": 1,  # one scoring task: one client knocking (see below)
        }
    )
    events = make_events(480, seed=61)
    for i, e in enumerate(events):  # few cards and merchants: windows with many members
        e.update(card_token_id=f"tok_rr{i % 9}", device_fingerprint=f"dev_rr{i % 5}", merchant_id=f"m_rr{i % 3}")
    first, second = events[:240], events[240:]
    checkpoint = Path(settings.checkpoint(pipeline.SCORE_QUERY))

    server = RedisServer(spec, tmp_path / "redis.log")
    server.start()
    door: ClosedDoor | None = None
    query = pipeline.start_scoring(spark, settings)
    try:
        produce(kafka_bootstrap, settings.topics.transactions, [orjson.dumps(e) for e in first])
        wait_until(lambda: len(_decided(kafka_bootstrap, settings.topics.decisions)) == len(first), "wave 1", query)
        server.stop()  # Redis shuts down (and saves)

        # while Redis is down its port drops every connection (counted): the test sees the batch's calls
        door = ClosedDoor(host, port)
        # how many connections ONE velocity call makes against it (the client's own retries, if any)
        probe = BatchRedisVelocity.from_url(url, prefix=f"{settings.redis_prefix}:probe")
        with pytest.raises(redis.ConnectionError):
            probe.features_arrays(["txn_0000000000000000"], [0], [1], [["c"], ["d"], ["m"]])
        per_call, door.knocks = door.knocks, 0
        produce(kafka_bootstrap, settings.topics.transactions, [orjson.dumps(e) for e in second])
        # the events: a batch with wave-2 records started (its offsets are logged), and its one task has
        # called Redis more often than one call does: the outage outlasts what the client absorbs by
        # itself, and the batch retries its velocity call (before the fix the task failed, the query too)
        wait_until(lambda: _offsets_in_flight(checkpoint) > len(first), "a wave-2 batch to start", query)
        wait_until(lambda: door.knocks > per_call, "the batch to retry its velocity call", query)
        assert query.isActive and query.exception() is None
        decided = _decided(kafka_bootstrap, settings.topics.decisions)
        assert not set(decided) & {e["transaction_id"] for e in second}  # nothing decided without velocity
        door.close()

        server.start()  # Redis is back: same port, same data
        ids = {e["transaction_id"] for e in events}
        wait_until(lambda: set(_decided(kafka_bootstrap, settings.topics.decisions)) == ids, "wave 2", query)
        assert query.isActive and query.exception() is None
        query.stop()

        decided = _decided(kafka_bootstrap, settings.topics.decisions)
        assert set(decided) == ids and max(decided.values()) == 1  # retried within the batch: no replay
        assert not consume_all(kafka_bootstrap, settings.topics.dlq, timeout=5)
        # velocity: what recording every transaction once gives (the restart lost nothing, doubled nothing)
        online = RedisVelocityStore(redis.Redis.from_url(url), prefix=f"{settings.redis_prefix}:vel")
        reference = InMemoryVelocityStore()
        reference.features_batch(events)
        assert online.features_batch(events, record=False) == reference.features_batch(events, record=False)
    finally:
        query.stop()
        if door is not None:
            door.close()
        server.stop()


class ClosedDoor:
    """A listener on a stopped server's port that accepts each connection and closes it at once (what
    a client meets while the server goes down), counting them."""

    def __init__(self, host: str, port: int):
        self.knocks = 0
        self._sock = socket.create_server((host, port), reuse_port=False)
        self._sock.settimeout(0.2)
        self._open = True
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        while self._open:
            try:
                conn, _ = self._sock.accept()
            except OSError:
                continue
            self.knocks += 1
            conn.close()

    def close(self) -> None:
        self._open = False
        self._thread.join(5)
        self._sock.close()


class RedisServer:
    """A Redis of this test's own, stopped and started again on the same port and data folder."""

    def __init__(self, spec: infra.ServerSpec, log: Path):
        self.spec, self.log = spec, log
        self._running: Any = None

    def start(self) -> None:
        self._running = local.run_server(self.spec, self.log)
        self._running.__enter__()

    def stop(self) -> None:
        running, self._running = self._running, None
        if running is not None:
            running.__exit__(None, None, None)


# ------------------------------------------------------------------------------------------ kill -9, real time
REALTIME_SESSION_CONF = (
    "spark.sql.streaming.realTimeMode.allowlistCheck",
    "spark.sql.streaming.realTimeMode.minBatchDuration",
    "spark.sql.execution.arrow.maxRecordsPerBatch",
    "spark.sql.execution.pandas.udf.buffer.size",
)
ONE_PARTITION = tuple(
    TopicSpec(t.name, 1, t.key, t.description) for t in (TRANSACTIONS, TRANSACTIONS_DLQ, DECISIONS, DECISIONS_DLQ)
)
RANDOM_BYTES = [random.Random(7).randbytes(n) for n in (1, 17, 300)] + [b"\x00\xff\xfe", b"\x80abc"]


def _truncated(event: dict[str, Any]) -> list[bytes]:
    raw = orjson.dumps(event)
    return [raw[:1], raw[: len(raw) // 2], raw[:-1]]


def _processor(env: dict[str, str], log: Path) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "services.stream_processor", "run"],
        cwd=REPO,
        env=env,
        start_new_session=True,
        stdout=log.open("wb"),
        stderr=subprocess.STDOUT,
    )


def _stop(proc: subprocess.Popen, sig: int = signal.SIGTERM) -> int:
    """SIGTERM to the processor itself (it stops its queries and its JVM), SIGKILL to its whole group."""
    if proc.poll() is None:
        if sig == signal.SIGKILL:
            os.killpg(proc.pid, sig)
        else:
            proc.send_signal(sig)
        try:
            return proc.wait(90)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            return proc.wait()
    return proc.returncode


def _forged(real: DecisionEvent) -> list[tuple[bytes, list[tuple[str, bytes]] | None, str]]:
    """Records on the decisions topic for the transaction of ``real``, each with the field its first
    reason must name: an outcome outside the enum, a valid decision with an amount that is not integer
    minor units in its header, a record that is not JSON."""
    body = real.model_dump(mode="json")
    return [
        (orjson.dumps({**body, "outcome": "steal"}), None, "outcome"),
        (
            orjson.dumps({**body, "outcome": "approve"}),
            [(CONTEXT_HEADER, b'{"amount_minor": "12.50"}')],
            "pa.context.amount_minor",
        ),
        (orjson.dumps(body)[:40], None, "$"),
    ]


def test_kill_9_in_real_time_mode_then_restart_decides_everything_once_in_the_log(
    spark, kafka_bootstrap, kafka_topics, redis_url, tmp_path
):
    prefix = f"{kafka_topics}rk{uuid.uuid4().hex[:6]}."
    ensure_topics(kafka_bootstrap, prefix, ONE_PARTITION)  # one long-running real-time task
    settings = StreamProcessorSettings(
        kafka_bootstrap=kafka_bootstrap,
        redis_url=redis_url,
        redis_prefix=f"rk{uuid.uuid4().hex[:6]}",
        topic_prefix=prefix,
        data_dir=tmp_path / "data",
        warehouse_dir=tmp_path / "warehouse",
        mlflow_tracking_uri=None,
        _env_file=None,
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("PA_")}
    env.update(
        PYTHONPATH=str(REPO),
        PYTHONUNBUFFERED="1",
        PYSPARK_PYTHON=sys.executable,
        PA_KAFKA_BOOTSTRAP=kafka_bootstrap,
        PA_REDIS_URL=redis_url,
        PA_REDIS_PREFIX=settings.redis_prefix,
        PA_TOPIC_PREFIX=prefix,
        PA_DATA_DIR=str(settings.data_dir),
        PA_WAREHOUSE_DIR=str(settings.warehouse),
        PA_STREAM_TRIGGER="realtime",
        # one real-time batch outlasts the test: it cannot commit before the kill (the fault's event)
        PA_STREAM_INTERVAL="10 minutes",
        PA_STREAM_DECISION_LOG="false",  # the log runs after the restart, from the topic
        # an Arrow batch goes to Python when full (or when the real-time batch ends): one record per
        # batch and a small buffer, so the last records of a wave are not held back until then
        PA_STREAM_REALTIME_ARROW_BATCH_ROWS="1",
        PA_STREAM_REALTIME_BUFFER_BYTES="16",
        PA_STREAM_DRIVER_MEMORY="1g",
        PA_STREAM_ENGINE_REFRESH_SECONDS="0",
    )
    topics = settings.topics
    now = datetime.now(UTC)
    events = make_events(60, seed=71, start=now - timedelta(minutes=5))
    wave1, wave2 = events[:30], events[30:]
    future = {**make_events(1, seed=72)[0], "event_timestamp": (now + timedelta(days=1)).isoformat()}
    garbage1 = RANDOM_BYTES + _truncated(wave1[0])
    garbage2 = [b"", b"{", *_truncated(wave2[0])[1:]]
    valid_ids = {e["transaction_id"] for e in events}

    # wave 1: valid transactions around random bytes and truncated JSON. Each wave ends with a junk
    # record nothing waits for: in real-time mode the last record of a partition that then goes quiet
    # was decided only once another record arrived (or, presumably, when the real-time batch ends);
    # the junk record is the one left waiting.
    values = [orjson.dumps(e) for e in wave1[:15]] + garbage1 + [orjson.dumps(e) for e in wave1[15:]] + [b"end-1"]
    where1 = produce(kafka_bootstrap, topics.transactions, values)
    bad1 = {where1[i][1] for i in range(15, 15 + len(garbage1))} | {where1[-1][1]}

    first = _processor(env, tmp_path / "processor-1.log")
    try:
        wait_until(
            lambda: (
                set(_decided(kafka_bootstrap, topics.decisions)) == {e["transaction_id"] for e in wave1}
                and bad1 - {where1[-1][1]} <= set(_letters(kafka_bootstrap, topics.dlq))
            ),
            "wave 1 decided and its garbage dead-lettered",
            first,
            tmp_path / "processor-1.log",
        )
        # mid-batch: a real-time batch logs its offsets and commits when it ends (in ten minutes)
        checkpoint = settings.checkpoint_root / pipeline.SCORE_QUERY
        assert (checkpoint / "sources" / "0").exists()
        assert not [*(checkpoint / "offsets").glob("[0-9]*"), *(checkpoint / "commits").glob("[0-9]*")]
        os.killpg(first.pid, signal.SIGKILL)
        first.wait(30)

        # while it is down: wave 2 with more garbage and a future-dated transaction, and forged
        # decisions for a wave-2 transaction ahead of its real decision
        values = [orjson.dumps(e) for e in wave2[:15]] + garbage2 + [orjson.dumps(future)]
        values += [orjson.dumps(e) for e in wave2[15:]] + [b"end-2"]
        where2 = produce(kafka_bootstrap, topics.transactions, values)
        bad2 = {where2[i][1] for i in range(15, 15 + len(garbage2))}
        future_offset = where2[15 + len(garbage2)][1]
        last = where2[-1][1]  # end-2: waits for a record that never comes
        target = wave2[3]
        real_like = DecisionEvent.model_validate(
            {
                "decision_id": "forged",
                "transaction_id": target["transaction_id"],
                "outcome": "approve",
                "approval_probability": 1.0,
                "risk_score": 0.0,
                "recommended_route": "standard",
                "reason_codes": [],
                "rule_set_version": "forged",
                "model_versions": {},
                "latency_ms": 0.0,
                "decided_at": now.isoformat(),
                "source": "stream",
            }
        )
        forged = _forged(real_like)
        producer = Producer({"bootstrap.servers": kafka_bootstrap})
        for raw, headers, _ in forged:
            producer.produce(topics.decisions, key=target["transaction_id"].encode(), value=raw, headers=headers)
        assert producer.flush(10) == 0

        wave1_ids = {e["transaction_id"] for e in wave1}

        def caught_up() -> bool:
            decided = _decided_valid(kafka_bootstrap, topics.decisions)
            replayed = all(decided[t] >= 2 for t in wave1_ids)  # the uncommitted batch ran again
            letters = _letters(kafka_bootstrap, topics.dlq)
            return set(decided) == valid_ids and replayed and bad2 | {future_offset} <= set(letters)

        # the restart: the same scoring query from the same checkpoint, in this test's Spark session
        # (what `run` starts, without a second JVM start-up)
        restarted = settings.model_copy(
            update={
                "stream_trigger": "realtime",
                "stream_interval": "10 minutes",
                "stream_realtime_arrow_batch_rows": 1,
                "stream_realtime_buffer_bytes": 16,
                "stream_engine_refresh_seconds": 0.0,
            }
        )
        before = {key: spark.conf.get(key, None) for key in REALTIME_SESSION_CONF}
        second = pipeline.start_scoring(spark, restarted)
        try:
            wait_until(caught_up, "the restarted processor to catch up", second)
            assert second.isActive and second.exception() is None  # alive after all the garbage
        finally:
            second.stop()
            for key, value in before.items():  # start_scoring set real-time mode's settings on the session
                spark.conf.unset(key) if value is None else spark.conf.set(key, value)
    finally:
        _stop(first, signal.SIGKILL)

    # every bad transaction record dead-lettered with a reason; the future one naming event_timestamp
    letters = _letters(kafka_bootstrap, topics.dlq)
    assert set(letters) - {last} == bad1 | bad2 | {future_offset}
    assert all(letter.reasons and letter.error for letter in letters.values())
    assert {letters[o].reasons[0].field for o in bad1 | bad2} == {"$"}
    assert (letters[future_offset].reasons[0].field, letters[future_offset].reasons[0].type) == (
        "event_timestamp",
        "event_in_future",
    )

    # the decision log, from the topic with its replayed duplicates and the forged records (the real
    # writer and dead letters, without the one-minute metrics: not what this test is about)
    log_target = DeltaTarget.of(DECISION_LOG, settings.warehouse, settings.catalog, settings.lakehouse_schema)
    sink = DeadLetterSink(topics.decisions_dlq, settings.kafka_client_options())
    query = pipeline.start_decision_log(
        spark, settings, available_now=True, writer=DecisionLogWriter(log_target, dead_letters=sink)
    )
    query.awaitTermination(300)
    assert query.exception() is None
    log = log_target.read(spark)
    rows = {r["transaction_id"]: r for r in log.select("transaction_id", "rule_set_version", "amount_minor").collect()}
    assert log.count() == len(rows) == len(valid_ids) and set(rows) == valid_ids
    assert rows[target["transaction_id"]]["rule_set_version"] != "forged"
    assert rows[target["transaction_id"]]["amount_minor"] == target["amount_minor"]
    refused = [DeadLetter.model_validate_json(m.value()) for m in consume_all(kafka_bootstrap, topics.decisions_dlq)]
    assert sorted(r.reasons[0].field for r in refused) == sorted(field for _, _, field in forged)
    assert {r.refused_by for r in refused} == {"decision_log"}
    assert all(r.source_topic == topics.decisions for r in refused)


def _decided_valid(bootstrap: str, topic: str) -> Counter:
    """Like ``_decided``, skipping what is not a valid decision (the forged records on the topic)."""
    out: Counter = Counter()
    for m in consume_all(bootstrap, topic):
        try:
            decision = DecisionEvent.model_validate_json(m.value())
        except ValueError:
            continue
        if decision.rule_set_version != "forged":
            out[decision.transaction_id] += 1
    return out


def _letters(bootstrap: str, topic: str) -> dict[int, DeadLetter]:
    """Dead letters by source offset (one partition)."""
    return {
        letter.source_offset: letter
        for letter in (DeadLetter.model_validate_json(m.value()) for m in consume_all(bootstrap, topic, timeout=5))
    }
