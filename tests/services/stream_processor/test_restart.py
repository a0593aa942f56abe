"""kill -9 the processor mid-stream, restart it: every transaction produced has exactly one decision in
the Delta decision log and in Redis (through the scoring API's faust consumer); none is lost.

The processor runs as a real subprocess (``python -m services.stream_processor run``) with its own
checkpoints, warehouse and topics; the whole process group (driver, JVM, Python workers) is killed
with SIGKILL while a micro-batch is in flight. The kill is placed by events, never by the clock (a fast
machine once decided everything before the old time-based kill landed): decisions flowing and the
decision log merging, then a scoring batch held inside Redis (``CLIENT PAUSE ... WRITE``: its velocity
script cannot run, so the batch cannot finish) with the rest of the transactions produced only then."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import orjson
import redis

from launcher.topics import ensure_topics
from payments_core.contract.events import DecisionEvent
from payments_core.contract.topics import DECISIONS, TRANSACTIONS, TRANSACTIONS_DLQ, prefixed
from services.stream_processor.tables import DECISION_LOG
from tests.services.stream_processor.conftest import consume_all, make_events, produce, wait_until

REPO = Path(__file__).resolve().parents[3]
N_FIRST, N_SECOND = 4000, 2000


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PA_")}
    env.update(PYTHONPATH=str(REPO), PYTHONUNBUFFERED="1", PYSPARK_PYTHON=sys.executable, **extra)
    return env


def _log_versions(table: Path) -> int:
    return len(list((table / "_delta_log").glob("*.json"))) if (table / "_delta_log").is_dir() else 0


def _decided(bootstrap: str, prefix: str) -> int:
    return len(consume_all(bootstrap, prefixed(DECISIONS, prefix), timeout=5))


def test_kill_9_mid_stream_then_restart_loses_nothing_and_logs_each_transaction_once(
    spark, kafka_bootstrap, kafka_topics, redis_url, tmp_path
):
    prefix = f"{kafka_topics}k9{uuid.uuid4().hex[:6]}."
    ensure_topics(kafka_bootstrap, prefix)
    redis_prefix = f"k9{uuid.uuid4().hex[:6]}"
    common = dict(
        PA_KAFKA_BOOTSTRAP=kafka_bootstrap,
        PA_REDIS_URL=redis_url,
        PA_REDIS_PREFIX=redis_prefix,
        PA_TOPIC_PREFIX=prefix,
        PA_DATA_DIR=str(tmp_path / "data"),
    )
    processor_env = _env(
        **common,
        PA_WAREHOUSE_DIR=str(tmp_path / "warehouse"),
        PA_STREAM_DRIVER_MEMORY="1g",
        PA_STREAM_MAX_OFFSETS_PER_TRIGGER="200",
        PA_STREAM_INTERVAL="2 seconds",
        PA_STREAM_LOG_INTERVAL="1 second",
        PA_STREAM_SHUFFLE_PARTITIONS="2",
    )
    log_table = tmp_path / "warehouse" / "main" / "payment_analysis" / DECISION_LOG
    events = make_events(N_FIRST + N_SECOND, seed=41)
    ids = {e["transaction_id"] for e in events}
    transactions = prefixed(TRANSACTIONS, prefix)
    # The first wave in two halves: the decision-log query starts its own low-priority JVM, 25-80 s
    # after scoring starts depending on the machine, and the processor must still be busy when the
    # log is up and the kill lands, so the second half is produced only then (and held, see below).
    half = N_FIRST // 2
    produce(
        kafka_bootstrap,
        transactions,
        [orjson.dumps(e) for e in events[:half]],
        [e["card_token_id"] for e in events[:half]],
    )

    consumer = subprocess.Popen(
        [sys.executable, "-m", "services.scoring_api", "consume"],
        cwd=REPO,
        start_new_session=True,
        env=_env(**common, PA_ENV="test", PA_AUTH="off", PA_CONSUMER_GROUP=f"k9-{uuid.uuid4().hex[:6]}"),
        stdout=(tmp_path / "consumer.log").open("wb"),
        stderr=subprocess.STDOUT,
    )
    first_log = (tmp_path / "processor-1.log").open("wb")
    proc = subprocess.Popen(
        [sys.executable, "-m", "services.stream_processor", "run"],
        cwd=REPO,
        env=processor_env,
        start_new_session=True,
        stdout=first_log,
        stderr=subprocess.STDOUT,
    )
    client = redis.Redis.from_url(redis_url)
    try:
        # the events that place the kill mid-stream, none of them a race with the clock:
        # 1. decisions flowing and the decision log merging (its own JVM starts 25-80 s after scoring)
        wait_until(
            lambda: _decided(kafka_bootstrap, prefix) >= 1000 and _log_versions(log_table) >= 2,
            "decisions flowing and the decision log merging",
            proc,
            tmp_path / "processor-1.log",
            timeout=360,
        )
        # 2. a scoring batch held in flight: Redis pauses writes, so the batch's velocity script (a
        #    write) waits inside Redis and the batch cannot finish; the second half is produced only
        #    now, so it cannot have been decided, whatever the speed of the machine
        client.execute_command("CLIENT", "PAUSE", 120_000, "WRITE")
        try:
            produce(
                kafka_bootstrap,
                transactions,
                [orjson.dumps(e) for e in events[half:N_FIRST]],
                [e["card_token_id"] for e in events[half:N_FIRST]],
            )
            wait_until(
                lambda: any(c["cmd"] == "evalsha" and "b" in c["flags"] for c in client.client_list()),
                "a scoring batch held in Redis",
                proc,
                tmp_path / "processor-1.log",
            )
            decided = _decided(kafka_bootstrap, prefix)
            assert 1000 <= decided < N_FIRST, f"{decided} decided: not mid-stream"
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(30)
        finally:
            client.execute_command("CLIENT", "UNPAUSE")

        produce(
            kafka_bootstrap,
            transactions,
            [orjson.dumps(e) for e in events[N_FIRST:]],
            [e["card_token_id"] for e in events[N_FIRST:]],
        )
        restart = subprocess.run(
            [sys.executable, "-m", "services.stream_processor", "run", "--available-now"],
            cwd=REPO,
            env=processor_env,
            capture_output=True,
            timeout=600,
        )
        assert restart.returncode == 0, restart.stdout.decode()[-4000:] + restart.stderr.decode()[-4000:]

        # Delta decision log: exactly one row per produced transaction, nothing else
        table = spark.read.format("delta").load(str(log_table))
        assert table.count() == len(ids)
        assert {r[0] for r in table.select("transaction_id").collect()} == ids
        # Kafka: every transaction decided (the replayed batch may have published some twice)
        published = consume_all(kafka_bootstrap, prefixed(DECISIONS, prefix))
        assert {DecisionEvent.model_validate_json(m.value()).transaction_id for m in published} == ids
        assert not consume_all(kafka_bootstrap, prefixed(TRANSACTIONS_DLQ, prefix), timeout=5)

        # Redis, through the scoring API's consumer: one decision per transaction
        keys: set[bytes] = set()
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            keys = set(client.scan_iter(f"{redis_prefix}:decision:*", count=1000))
            if len(keys) >= len(ids):
                break
            assert consumer.poll() is None, (tmp_path / "consumer.log").read_text()[-4000:]
            time.sleep(1)
        assert {k.decode().rsplit(":", 1)[1] for k in keys} == ids
        stored = client.mget(sorted(keys)[:200])
        assert all(DecisionEvent.model_validate_json(v).source == "stream" for v in stored)
    finally:
        for p in (proc, consumer):
            if p.poll() is None:
                os.killpg(p.pid, signal.SIGTERM)
                try:
                    p.wait(30)
                except subprocess.TimeoutExpired:
                    os.killpg(p.pid, signal.SIGKILL)
                    p.wait()
