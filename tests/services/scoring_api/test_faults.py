"""Faults of the scoring API's dependencies, with the real servers: the API process killed under load
(every decision a client received is on payments.decisions), a stalled Redis (503 within the budget,
then recovery), a failing decisions agent (readiness red, then green, nothing dropped), and the model
registry read by a fresh process that never set MLflow's process-wide URIs. The kill -9 test also runs the
stream processor's decision-log query over the topic: the decisions are in the Delta decision log."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

import httpx
import orjson
import redis
from confluent_kafka import Consumer, Producer, TopicPartition
from fastapi.testclient import TestClient

from launcher import local
from launcher.infra import free_port
from launcher.topics import ensure_topics
from payments_core.contract.events import DecisionEvent
from payments_core.contract.topics import DECISIONS, prefixed
from payments_core.engine import DecisionEngine
from payments_core.models import MODEL_KINDS
from payments_core.rules import starter_rule_set
from payments_core.samples import EXAMPLE_REQUEST
from services.scoring_api.app import create_app
from tests.services.scoring_api.conftest import API_KEY

REPO = Path(__file__).resolve().parents[3]
AUTH = {"Authorization": f"Bearer {API_KEY}"}


def _txn() -> str:
    return f"txn_{uuid.uuid4().hex[:16]}"


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PA_", "MLFLOW_"))}
    return {**env, "PYTHONPATH": str(REPO), "PA_ENV": "prod", "PA_API_KEYS": API_KEY, **extra}


class Serve:
    """``python -m services.scoring_api serve`` as a real process."""

    def __init__(self, env: dict[str, str], log: Path, *args: str):
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.log = log
        with log.open("ab") as out:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "services.scoring_api", "serve", "--port", str(self.port), *args],
                cwd=REPO,
                env=env,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )

    def wait(self, condition, what: str, timeout: float = 90) -> dict:
        """Poll /ready until ``condition(status, body)``; the deadline only bounds a failure."""
        deadline = time.monotonic() + timeout
        last = None
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                break
            try:
                r = httpx.get(f"{self.base}/ready", timeout=2)
                last = (r.status_code, r.json())
                if condition(*last):
                    return last[1]
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        raise AssertionError(f"{what}: last /ready {last}\n--- {self.log} ---\n{self.log.read_text()[-4000:]}")

    def stop(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()


def _topic_decisions(bootstrap: str, topic: str, wanted: set[str], timeout: float = 60) -> dict[str, list[dict]]:
    """transaction_id -> the records of ``wanted`` transactions on ``topic`` (reads until all are seen)."""
    consumer = Consumer(
        {"bootstrap.servers": bootstrap, "group.id": f"t-{uuid.uuid4().hex}", "enable.auto.commit": False}
    )
    partitions = consumer.list_topics(topic, timeout=10).topics[topic].partitions
    consumer.assign([TopicPartition(topic, p, 0) for p in partitions])
    found: dict[str, list[dict]] = {}
    deadline = time.monotonic() + timeout
    try:
        while set(found) < wanted and time.monotonic() < deadline:
            for msg in consumer.consume(500, timeout=0.5):
                if msg.error() is None:
                    record = orjson.loads(msg.value())
                    found.setdefault(record["transaction_id"], []).append(
                        {**record, "_key": msg.key(), "_headers": dict(msg.headers() or [])}
                    )
    finally:
        consumer.close()
    return found


# ------------------------------------------------------------------------------------ item 2: kill -9
def test_every_decision_a_client_received_is_in_the_log_after_kill_9(
    kafka_bootstrap, kafka_topics, redis_url, tmp_path, spark
):
    prefix = f"{kafka_topics}k9{uuid.uuid4().hex[:6]}."
    ensure_topics(kafka_bootstrap, prefix)
    env = _env(
        PA_KAFKA_BOOTSTRAP=kafka_bootstrap,
        PA_TOPIC_PREFIX=prefix,
        PA_REDIS_URL=redis_url,
        PA_REDIS_PREFIX=f"k9{uuid.uuid4().hex[:6]}",
        PA_DATA_DIR=str(tmp_path),
        PA_RATE_LIMIT="off",
    )
    first = Serve(env, tmp_path / "first.log", "--no-consumer")
    received: dict[str, str] = {}  # transaction_id -> decision_id of every 200 a client got
    lock, stop, enough = threading.Lock(), threading.Event(), threading.Event()

    def client(base: str) -> None:
        with httpx.Client(base_url=base, headers=AUTH, timeout=5) as http:
            while not stop.is_set():
                txn = _txn()
                try:
                    r = http.post("/score", json={**EXAMPLE_REQUEST, "transaction_id": txn})
                except httpx.HTTPError:
                    continue  # the server is gone: not a decision the client received
                if r.status_code == 200:
                    with lock:
                        received[txn] = r.json()["decision_id"]
                        if len(received) >= 300:
                            enough.set()

    try:
        first.wait(lambda code, body: code == 200, "the API did not become ready")
        threads = [threading.Thread(target=client, args=(first.base,), daemon=True) for _ in range(8)]
        for t in threads:
            t.start()
        assert enough.wait(60), f"only {len(received)} decisions under load"
        os.kill(first.proc.pid, signal.SIGKILL)  # under load: requests in flight, deliveries unacknowledged
        first.proc.wait()
        stop.set()
        for t in threads:
            t.join(10)
    finally:
        stop.set()
        first.stop()
    answered = dict(received)
    second = Serve(env, tmp_path / "second.log", "--no-consumer")
    try:
        second.wait(lambda code, body: code == 200, "the restarted API did not become ready")
        found = _topic_decisions(kafka_bootstrap, prefixed(DECISIONS, prefix), set(answered))
        missing = sorted(set(answered) - set(found))
        republished = [
            line for line in httpx.get(f"{second.base}/metrics").text.splitlines() if "republished_total " in line
        ]
        assert not missing, f"{len(missing)} of {len(answered)} returned decisions not on the topic ({republished})"
        for txn, decision_id in answered.items():
            records = found[txn]
            assert {r["decision_id"] for r in records} == {decision_id}  # redeliveries only, never another one
            record = records[0]
            DecisionEvent.model_validate({k: v for k, v in record.items() if not k.startswith("_")})
            assert record["source"] == "api" and record["_key"] == txn.encode()
            context = orjson.loads(record["_headers"]["pa.context"])
            assert context["amount_minor"] == EXAMPLE_REQUEST["amount_minor"] and context["event_timestamp_ms"] > 0
    finally:
        second.stop()
    # and in the Delta decision log, through the stream processor's own decision-log query
    from services.stream_processor import pipeline  # noqa: PLC0415 - imports pyspark
    from services.stream_processor.settings import StreamProcessorSettings  # noqa: PLC0415
    from services.stream_processor.tables import DECISION_LOG, DeltaTarget  # noqa: PLC0415

    settings = StreamProcessorSettings(
        kafka_bootstrap=kafka_bootstrap,
        topic_prefix=prefix,
        redis_url=redis_url,
        data_dir=tmp_path / "sp",
        warehouse_dir=tmp_path / "warehouse",
        _env_file=None,
    )
    query = pipeline.start_decision_log(spark, settings, available_now=True)
    query.awaitTermination(300)
    assert query.exception() is None
    target = DeltaTarget.of(DECISION_LOG, settings.warehouse, settings.catalog, settings.lakehouse_schema)
    rows = spark.read.format("delta").load(str(target.path)).select("transaction_id", "decision_id", "source").collect()
    logged = {r.transaction_id: (r.decision_id, r.source) for r in rows}
    assert len(logged) == len(rows)  # one row per transaction, redeliveries absorbed
    missing = sorted(set(answered) - set(logged))
    assert not missing, f"{len(missing)} of {len(answered)} returned decisions not in the decision log"
    assert all(logged[txn] == (decision_id, "api") for txn, decision_id in answered.items())


# --------------------------------------------------------------------------------- item 7: stalled Redis
def test_a_stalled_redis_is_a_503_within_the_budget_and_recovers_by_itself(make_settings, tmp_path):
    with local.redis(tmp_path) as url:
        pid = redis.Redis.from_url(url).info("server")["process_id"]
        settings = make_settings(redis_url=url, mlflow_tracking_uri=None)
        assert settings.redis_timeout_ms <= 250  # the default budget
        with TestClient(create_app(settings), headers=AUTH) as c:
            assert c.post("/score", json={**EXAMPLE_REQUEST, "transaction_id": _txn()}).status_code == 200
            stalled = {**EXAMPLE_REQUEST, "transaction_id": _txn()}
            os.kill(pid, signal.SIGSTOP)
            try:
                for request in (
                    lambda: c.post("/score", json=stalled),
                    lambda: c.post("/score/batch", json={"transactions": [stalled]}),
                    lambda: c.get(f"/decisions/{stalled['transaction_id']}"),
                ):
                    started = time.perf_counter()
                    r = request()
                    elapsed = time.perf_counter() - started
                    # the budget is 250 ms; before the fix this took the 5 s socket timeout. The bound
                    # leaves room for a loaded CI machine and still fails the old behaviour.
                    assert r.status_code == 503 and elapsed < 2.5, (r.status_code, elapsed)
                    assert r.json()["detail"].startswith("decision store unavailable or too slow; retry with the same")
                started = time.perf_counter()
                ready = c.get("/ready")
                assert ready.status_code == 503 and ready.json()["redis"] is False
                assert time.perf_counter() - started < 3.0
            finally:
                os.kill(pid, signal.SIGCONT)
            deadline = time.monotonic() + 20  # by itself: no restart, no reconnect call
            while (r := c.post("/score", json=stalled)).status_code != 200:
                assert r.status_code == 503 and time.monotonic() < deadline, r.text
                time.sleep(0.1)
            assert DecisionEvent.model_validate_json(r.content).transaction_id == stalled["transaction_id"]
            assert c.get("/ready").status_code == 200


# -------------------------------------------------------------------------- item 6: the decisions agent
def test_a_failing_decisions_agent_turns_ready_red_and_drops_nothing(kafka_bootstrap, kafka_topics, tmp_path):
    prefix = f"{kafka_topics}ag{uuid.uuid4().hex[:6]}."
    ensure_topics(kafka_bootstrap, prefix)
    with local.redis(tmp_path) as url:
        env = _env(
            PA_KAFKA_BOOTSTRAP=kafka_bootstrap,
            PA_TOPIC_PREFIX=prefix,
            PA_REDIS_URL=url,
            PA_REDIS_PREFIX="ag",
            PA_CONSUMER_GROUP=f"pa-test-{uuid.uuid4().hex[:6]}",
            PA_DATA_DIR=str(tmp_path),
        )
        server = Serve(env, tmp_path / "serve.log")  # with its consumer process
        r = redis.Redis.from_url(url)
        try:
            body = server.wait(
                lambda code, body: code == 200 and body["consumer"].get("running") is True, "consumer not running"
            )
            assert body["consumer"]["expected"] is True and body["consumer"]["failing"] is False
            # Redis refuses the agent's writes of decisions (an ACL: read anything, write only the status)
            r.execute_command("ACL", "SETUSER", "default", "resetkeys", "%R~*", "%W~ag:consumer:*", "%W~ag:outbox:*")
            decision = DecisionEngine(starter_rule_set()).decide({**EXAMPLE_REQUEST, "transaction_id": _txn()})
            producer = Producer({"bootstrap.servers": kafka_bootstrap})
            producer.produce(
                prefixed(DECISIONS, prefix), key=decision.transaction_id.encode(), value=decision.model_dump_json()
            )
            assert producer.flush(10) == 0
            red = server.wait(lambda code, body: code == 503, "readiness stayed green while the agent failed", 60)
            assert red["redis"] is True and red["consumer"]["failing"] is True
            assert red["consumer"]["last_error"].startswith("NoPermissionError"), red["consumer"]
            r.execute_command("ACL", "SETUSER", "default", "allkeys")
            green = server.wait(
                lambda code, body: code == 200 and body["consumer"]["lag"] == 0, "readiness did not recover", 60
            )
            assert green["consumer"]["failing"] is False and green["consumer"]["last_error"] is not None
            got = httpx.get(f"{server.base}/decisions/{decision.transaction_id}", headers=AUTH, timeout=5)
            assert got.status_code == 200 and DecisionEvent.model_validate_json(got.content) == decision  # retried
        finally:
            r.execute_command("ACL", "SETUSER", "default", "allkeys")
            server.stop()


# ------------------------------------------------------------------- item 6: the registry, fresh process
def test_registered_models_load_in_a_fresh_process_without_mlflow_tracking_uri(registry_uri, tmp_path):
    """MLflow resolves models:/ through its process-wide registry URI; ModelSource must not depend on it
    (the scoring API and the backtest never set it): else every model silently falls back."""
    code = (
        "import json\n"
        "from payments_core.models import ModelSource\n"
        f"source = ModelSource({registry_uri!r})\n"
        "bundle = source.load_bundle()\n"
        "print(json.dumps({'versions': bundle.versions(), 'errors': source.errors}))\n"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_")}
    out = subprocess.run(
        [sys.executable, "-c", code],
        cwd=tmp_path,
        env={**env, "PYTHONPATH": str(REPO)},
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert result == {"versions": dict.fromkeys(MODEL_KINDS, "1"), "errors": {}}, out.stderr[-3000:]
    assert not (tmp_path / "mlflow.db").exists(), "a stray registry was created in the working directory"
