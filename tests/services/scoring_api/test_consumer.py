"""The faust agent against real Kafka: publish decisions on payments.decisions, read them back via
GET /decisions/{id} from the real `serve` process (uvicorn + the supervised consumer process). Records
that are not valid decisions (forged, broken, a non-integer amount) never reach Redis: they go to the
decisions DLQ with the reason, and the real decision published after them is the one stored."""

from __future__ import annotations

import os
import subprocess
import sys
import time
import uuid
from pathlib import Path

import httpx
import orjson
import pytest
import redis
from confluent_kafka import Producer

from launcher.infra import free_port
from launcher.local import stop_process
from payments_core.contract.dead_letters import DeadLetter
from payments_core.contract.decision_records import CONTEXT_HEADER
from payments_core.contract.events import DecisionEvent
from payments_core.contract.topics import DECISIONS, DECISIONS_DLQ, prefixed
from payments_core.engine import DecisionEngine
from payments_core.rules import starter_rule_set
from payments_core.samples import EXAMPLE_REQUEST
from tests.services.scoring_api.conftest import API_KEY
from tests.services.stream_processor.conftest import consume_all

REPO = Path(__file__).resolve().parents[3]


@pytest.fixture
def server(kafka_bootstrap, kafka_topics, redis_url, tmp_path):
    port = free_port()
    env = {
        **os.environ,
        "PA_KAFKA_BOOTSTRAP": kafka_bootstrap,
        "PA_TOPIC_PREFIX": kafka_topics,
        "PA_REDIS_URL": redis_url,
        "PA_REDIS_PREFIX": f"c{uuid.uuid4().hex[:6]}",
        "PA_DATA_DIR": str(tmp_path),
        "PA_ENV": "prod",
        "PA_API_KEYS": API_KEY,
        "PA_CONSUMER_GROUP": f"pa-test-{uuid.uuid4().hex[:6]}",
        "PYTHONPATH": str(REPO),
    }
    env.pop("PA_MLFLOW_TRACKING_URI", None)
    log = (tmp_path / "serve.log").open("wb")
    proc = subprocess.Popen(
        [sys.executable, "-m", "services.scoring_api", "serve", "--port", str(port)],
        cwd=REPO,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"{base}/health", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.3)
        else:
            raise RuntimeError((tmp_path / "serve.log").read_text()[-3000:])
        yield base, env
        children = [
            int(p)
            for p in subprocess.run(["pgrep", "-P", str(proc.pid)], capture_output=True, text=True).stdout.split()
        ]
        assert children, "serve should supervise a consumer process"
    finally:
        stop_process(proc)
        log.close()
    for pid in children:  # the consumer process was stopped with the server
        assert not Path(f"/proc/{pid}").exists() or "zombie" in Path(f"/proc/{pid}/status").read_text()


def _stored(base: str, txn: str, headers: dict[str, str]) -> DecisionEvent:
    """The decision GET /decisions/{txn} serves, once the consumer has stored it."""
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        r = httpx.get(f"{base}/decisions/{txn}", headers=headers, timeout=2)
        if r.status_code == 200:
            return DecisionEvent.model_validate_json(r.content)
        assert r.status_code == 404
        time.sleep(0.5)
    raise AssertionError(f"the decision of {txn} never arrived")


def _decision(txn: str, outcome_override: str | None = None) -> DecisionEvent:
    engine = DecisionEngine(starter_rule_set())
    d = engine.decide({**EXAMPLE_REQUEST, "transaction_id": txn}, source="stream")
    if outcome_override:
        d = d.model_copy(update={"outcome": outcome_override})
    return d


def test_published_decisions_are_served_deduplicated(server, kafka_bootstrap, kafka_topics):
    base, env = server
    topic = prefixed(DECISIONS, kafka_topics)
    txn, other = f"txn_{uuid.uuid4().hex[:16]}", f"txn_{uuid.uuid4().hex[:16]}"
    first = _decision(txn)
    second = _decision(txn, outcome_override="review" if first.outcome != "review" else "approve")
    real_other = _decision(other)
    broken_other = _decision(other, outcome_override="approve" if real_other.outcome != "approve" else "review")
    forged = {**first.model_dump(mode="json"), "outcome": "steal"}
    producer = Producer({"bootstrap.servers": kafka_bootstrap})
    refused: dict[tuple[int, int], str] = {}  # where each refused record landed -> the field its reason names

    def expect_refused(field: str):
        def delivered(err, msg):
            assert err is None, err
            refused[(msg.partition(), msg.offset())] = field

        return delivered

    # records that are not valid decisions, each ahead of the real decision of its transaction
    producer.produce(topic, key=b"garbage", value=b"{not a decision", on_delivery=expect_refused("$"))
    producer.produce(topic, key=txn.encode(), value=orjson.dumps(forged), on_delivery=expect_refused("outcome"))
    producer.produce(
        topic,
        key=other.encode(),
        value=broken_other.model_dump_json().encode(),
        headers=[(CONTEXT_HEADER, b'{"amount_minor": "12.50", "currency": "BRL"}')],  # not integer minor units
        on_delivery=expect_refused("pa.context.amount_minor"),
    )
    producer.produce(topic, key=txn.encode(), value=first.model_dump_json().encode())
    producer.produce(topic, key=txn.encode(), value=second.model_dump_json().encode())
    producer.produce(topic, key=other.encode(), value=real_other.model_dump_json().encode())
    assert producer.flush(10) == 0 and len(refused) == 3
    headers = {"Authorization": f"Bearer {API_KEY}"}
    got = {t: _stored(base, t, headers) for t in (txn, other)}
    assert got[txn] == first  # the first VALID decision wins: not the forged one, not the duplicate
    assert got[txn].source == "stream"
    assert got[other] == real_other  # not the one with the broken header, published first

    # each refused record in the decisions DLQ with its reason (the topic is shared: others' records too)
    letters: dict[tuple[int, int], DeadLetter] = {}
    deadline = time.monotonic() + 60
    while set(refused) - set(letters) and time.monotonic() < deadline:
        for m in consume_all(kafka_bootstrap, prefixed(DECISIONS_DLQ, kafka_topics), timeout=5):
            letter = DeadLetter.model_validate_json(m.value())
            if letter.refused_by == "scoring_api.consumer" and letter.source_topic == topic:
                letters[(letter.source_partition, letter.source_offset)] = letter
    assert set(refused) <= set(letters)
    for where, field in refused.items():
        assert letters[where].reasons[0].field == field and letters[where].error.startswith(f"{field}: ")
    client = redis.Redis.from_url(env["PA_REDIS_URL"])
    assert int(client.get(f"{env['PA_REDIS_PREFIX']}:consumer:refused") or 0) >= len(refused)
    # scoring the same transaction returns the stream's decision (idempotent by transaction_id)
    r = httpx.post(f"{base}/score", json={**EXAMPLE_REQUEST, "transaction_id": txn}, headers=headers, timeout=5)
    assert r.status_code == 200 and DecisionEvent.model_validate_json(r.content) == first
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:  # the consumer's heartbeat timer (every 5 s)
        ready = httpx.get(f"{base}/ready", timeout=2).json()
        if ready["consumer_heartbeat_age_s"] is not None:
            break
        time.sleep(0.5)
    assert ready["ready"] is True and 0 <= ready["consumer_heartbeat_age_s"] < 30
