"""/decisions against real parts: decisions and transactions produced to a real Kafka broker reach the
list, the detail and the server-sent event stream (joined with their transaction's facts); invalid
records are skipped and counted; "Try a transaction" goes to a real scoring API process."""

from __future__ import annotations

import json
import logging
import os
import random
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest
from confluent_kafka import Producer
from fastapi.testclient import TestClient

from launcher.infra import free_port
from launcher.local import stop_process
from launcher.topics import ensure_topics
from payments_core.contract import DecisionEvent, ReasonCode, TransactionEvent, TransactionRequest
from payments_core.contract.topics import DECISIONS, TRANSACTIONS, prefixed
from payments_core.engine import DecisionEngine
from payments_core.rules import starter_rule_set
from payments_core.samples import sample_request

REPO = Path(__file__).resolve().parents[3]
API_KEY = "decisions-page-test-key"
WAIT_S = 30.0

ENGINE = DecisionEngine(starter_rule_set())
QUIET = logging.getLogger("tests.decisions.kafka")
QUIET.setLevel(logging.CRITICAL)  # the broker stops at the end of the session; its reconnect noise is not news


# ----------------------------------------------------------------------------------------- helpers
def wait_for(check: Callable[[], object], timeout: float = WAIT_S, what: str = "condition") -> object:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


def make_transaction(merchant_id: str, **overrides) -> TransactionEvent:
    request = sample_request(
        random.Random(uuid.uuid4().int),
        merchant_id=merchant_id,
        transaction_id=f"txn_{uuid.uuid4().hex[:16]}",
        **overrides,
    )
    return TransactionEvent.model_validate(
        {**request, "is_approved": True, "processing_time_ms": 120, "is_fraud": False}, strict=False
    )


def make_decision(tx: TransactionEvent, **updates) -> DecisionEvent:
    request = tx.model_dump(
        exclude={"is_approved", "decline_reason", "decline_code_raw", "processing_time_ms", "is_fraud"}
    )
    decision = ENGINE.decide(request, source="stream")
    return decision.model_copy(update=updates) if updates else decision


class Topics:
    """Produces to the contract's topics under one prefix."""

    def __init__(self, bootstrap: str, prefix: str):
        self.prefix = prefix
        self.producer = Producer({"bootstrap.servers": bootstrap, "logger": QUIET})

    def send(self, *records: TransactionEvent | DecisionEvent | tuple[str, bytes]) -> None:
        for record in records:
            if isinstance(record, tuple):
                topic, value = prefixed(DECISIONS, self.prefix), record[1]
                key = record[0].encode()
            else:
                spec = DECISIONS if isinstance(record, DecisionEvent) else TRANSACTIONS
                topic, value = prefixed(spec, self.prefix), record.model_dump_json().encode()
                key = record.transaction_id.encode()
            self.producer.produce(topic, key=key, value=value)
        assert self.producer.flush(10) == 0


def sse_events(lines: Iterator[str]) -> Iterator[tuple[str, object]]:
    """(event, parsed data) from a text/event-stream, comments skipped."""
    event, data = "message", []
    for line in lines:
        if line == "":
            if data:
                yield event, json.loads("\n".join(data))
            event, data = "message", []
        elif line.startswith("event:"):
            event = line[6:].strip()
        elif line.startswith("data:"):
            data.append(line[5:].strip())


def next_decision(
    events: Iterator[tuple[str, object]], predicate: Callable[[dict], bool], timeout: float = WAIT_S
) -> dict:
    deadline = time.monotonic() + timeout
    for event, data in events:  # a status event every few seconds wakes this loop up
        if event == "decision" and predicate(data):
            return data
        if time.monotonic() > deadline:
            break
    raise AssertionError("the decision did not arrive on the stream")


# ----------------------------------------------------------------------------------------- fixtures
@pytest.fixture
def fresh_prefix(kafka_bootstrap) -> str:
    """Topics of this test alone (exact counts, nothing from other tests)."""
    prefix = f"dec{uuid.uuid4().hex[:8]}."
    ensure_topics(kafka_bootstrap, prefix)
    return prefix


@pytest.fixture
def live(make_client, kafka_bootstrap, kafka_topics) -> tuple[TestClient, Topics]:
    client = make_client(decision_feed=True, kafka_bootstrap=kafka_bootstrap, topic_prefix=kafka_topics)
    return client, Topics(kafka_bootstrap, kafka_topics)


def listed(client: TestClient, **params) -> list[dict]:
    resp = client.get("/api/decisions", params=params)
    assert resp.status_code == 200, resp.text
    return resp.json()


# ----------------------------------------------------------------------------------------- the feed
def test_a_decision_and_its_transaction_are_listed_joined_and_detailed(live):
    client, topics = live
    merchant = f"m_{uuid.uuid4().hex[:10]}"
    tx = make_transaction(merchant, amount_minor=123456, currency="BRL", card_network="amex", geo_country="MX")
    decision = make_decision(tx)
    topics.send(tx, decision)

    rows = wait_for(
        lambda: [r for r in listed(client, merchant=merchant) if r["transaction"]],
        what="the joined decision in /api/decisions",
    )
    assert len(rows) == 1
    row = rows[0]
    assert row["transaction_id"] == tx.transaction_id
    assert row["outcome"] == decision.outcome
    assert row["source"] == "stream"
    facts = row["transaction"]
    assert facts["merchant_id"] == merchant
    assert facts["merchant_segment"] == tx.merchant_segment
    assert facts["amount"] == "1234.56" and facts["currency"] == "BRL"  # Decimal text, not a float
    assert facts["card_network"] == "amex" and facts["geo_country"] == "MX"
    assert facts["fraud_score"] == tx.fraud_score
    assert "is_fraud" not in facts  # the hidden ground truth is not shown

    detail = client.get(f"/api/decisions/{tx.transaction_id}").json()
    assert detail["transaction"]["payment_solution"] == tx.payment_solution
    assert detail["rule_set_version"] == decision.rule_set_version
    assert detail["model_versions"] == decision.model_versions
    assert detail["latency_ms"] == pytest.approx(decision.latency_ms)
    assert [r["code"] for r in detail["reason_codes"]] == [r.code for r in decision.reason_codes]
    assert all({"code", "kind", "detail"} <= set(r) for r in detail["reason_codes"])
    assert detail["decided_at"].startswith(decision.decided_at.strftime("%Y-%m-%dT%H:%M:%S"))

    status = client.get("/api/decisions/feed").json()
    assert status["status"] == "connected" and status["connected"] is True
    assert status["consumed"]["decisions"] >= 1 and status["consumed"]["transactions"] >= 1
    assert status["buffer_size"] == 2000 and status["buffered"] >= 1


def test_the_stream_pushes_new_decisions_and_their_late_facts(live):
    client, topics = live
    merchant = f"m_{uuid.uuid4().hex[:10]}"
    first = make_transaction(merchant)
    late = make_transaction(merchant)
    with client.stream("GET", "/api/decisions/stream") as resp:
        assert resp.status_code == 200
        assert resp.headers["content-type"].startswith("text/event-stream")
        events = sse_events(resp.iter_lines())
        kind, status = next(events)
        assert kind == "status" and "consumed" in status

        topics.send(first, make_decision(first))
        got = next_decision(events, lambda d: d["transaction_id"] == first.transaction_id and d["transaction"])
        assert got["transaction"]["merchant_id"] == merchant

        # the decision before its transaction: sent at once without facts, again when they arrive
        topics.send(make_decision(late))
        bare = next_decision(events, lambda d: d["transaction_id"] == late.transaction_id)
        assert bare["transaction"] is None
        topics.send(late)
        joined = next_decision(events, lambda d: d["transaction_id"] == late.transaction_id)
        assert joined["transaction"]["merchant_id"] == merchant
    assert client.get("/api/decisions/feed").json()["joined"] >= 2


def test_the_stream_applies_filters_and_replays_a_backlog(live):
    client, topics = live
    merchant = f"m_{uuid.uuid4().hex[:10]}"
    old = make_transaction(merchant)
    topics.send(old, make_decision(old, outcome="review"))
    wait_for(lambda: listed(client, merchant=merchant), what="the first decision")
    declined, approved = make_transaction(merchant), make_transaction(merchant)
    with client.stream(
        "GET", "/api/decisions/stream", params={"merchant": merchant, "outcome": "decline", "backlog": 50}
    ) as resp:
        events = sse_events(resp.iter_lines())
        topics.send(
            approved, make_decision(approved, outcome="approve"), declined, make_decision(declined, outcome="decline")
        )
        seen = []
        got = next_decision(events, lambda d: seen.append(d) or d["transaction_id"] == declined.transaction_id)
        assert got["outcome"] == "decline"
        assert {d["transaction_id"] for d in seen} == {declined.transaction_id}  # neither the review nor the approve
    with client.stream("GET", "/api/decisions/stream", params={"merchant": merchant, "backlog": 10}) as resp:
        events = sse_events(resp.iter_lines())
        backlog = next_decision(events, lambda d: True)
        assert backlog["transaction_id"] == old.transaction_id  # the backlog comes oldest first


def test_filters_of_the_list(live):
    client, topics = live
    merchant = f"m_{uuid.uuid4().hex[:10]}"
    a, b, c = (make_transaction(merchant) for _ in range(3))
    velocity = ReasonCode(code="velocity_burst_card", kind="rule", detail="5 in 10 min")
    sent = (
        (a, make_decision(a, outcome="decline", reason_codes=[velocity])),
        (b, make_decision(b, outcome="approve", reason_codes=[], source="api")),
        (
            c,
            make_decision(c, outcome="review", reason_codes=[ReasonCode(code="high_fraud_score", kind="model_factor")]),
        ),
    )
    for count, (tx, decision) in enumerate(sent, 1):  # one at a time: partitions do not keep order between them
        topics.send(tx, decision)
        wait_for(
            lambda count=count: len([r for r in listed(client, merchant=merchant) if r["transaction"]]) == count,
            what=f"{count} joined decisions",
        )

    def ids(**f):
        return [r["transaction_id"] for r in listed(client, merchant=merchant, **f)]

    assert ids() == [c.transaction_id, b.transaction_id, a.transaction_id]  # newest first
    assert ids(outcome="decline") == [a.transaction_id]
    assert ids(source="api") == [b.transaction_id]
    assert ids(reason_code="VELOCITY") == [a.transaction_id]  # part of the code, any case
    assert ids(reason_code="fraud", outcome="review") == [c.transaction_id]
    assert ids(limit=2) == [c.transaction_id, b.transaction_id]
    assert ids(outcome="", source="") == ids()  # empty filters are "any"
    assert listed(client, merchant=merchant[:-1] + "!") == []
    assert client.get("/api/decisions", params={"outcome": "maybe"}).status_code == 422
    bad_source = client.get("/api/decisions/stream", params={"source": "fax"})
    assert bad_source.status_code == 422 and "source" in bad_source.json()["detail"]


def test_invalid_records_are_skipped_and_counted(make_client, kafka_bootstrap, fresh_prefix):
    client = make_client(decision_feed=True, kafka_bootstrap=kafka_bootstrap, topic_prefix=fresh_prefix)
    topics = Topics(kafka_bootstrap, fresh_prefix)
    tx = make_transaction("m_invalid_test")
    wrong = make_decision(tx).model_dump(mode="json") | {"outcome": "maybe"}
    topics.send(("junk", b"{not json"), ("junk", json.dumps(wrong).encode()), tx, make_decision(tx))
    topics.producer.produce(prefixed(TRANSACTIONS, fresh_prefix), value=b'{"transaction_id": "txn_x"}')
    topics.producer.flush(10)

    status = wait_for(
        lambda: (
            (s := client.get("/api/decisions/feed").json())["invalid"]["transactions"] == 1
            and s["invalid"]["decisions"] == 2
            and s["consumed"]["decisions"] == 1
            and s
        ),
        what="the feed to count the invalid records",
    )
    assert status["consumed"]["transactions"] == 1
    assert status["last_invalid"]["error"]
    assert [r["transaction_id"] for r in listed(client)] == [tx.transaction_id]  # only the valid one
    assert client.get("/api/decisions/feed").json()["status"] == "connected"  # still running


def test_topics_created_after_the_app_started_are_read_from_their_beginning(make_client, kafka_bootstrap):
    prefix = f"late{uuid.uuid4().hex[:8]}."
    client = make_client(decision_feed=True, kafka_bootstrap=kafka_bootstrap, topic_prefix=prefix)
    wait_for(lambda: client.get("/api/decisions/feed").json()["status"] == "connected", what="the feed")
    assert not any(client.get("/api/decisions/feed").json()["topics"].values())
    ensure_topics(kafka_bootstrap, prefix)
    tx = make_transaction("m_late_topics")
    Topics(kafka_bootstrap, prefix).send(tx, make_decision(tx))
    rows = wait_for(lambda: [r for r in listed(client) if r["transaction"]], what="the decision on new topics")
    assert rows[0]["transaction_id"] == tx.transaction_id


def test_a_broker_that_is_down_is_reported_not_fatal(make_client):
    client = make_client(decision_feed=True, kafka_bootstrap=f"127.0.0.1:{free_port()}")
    status = wait_for(
        lambda: (s := client.get("/api/decisions/feed").json())["status"] == "error" and s,
        what="the feed to report the broker down",
    )
    assert status["connected"] is False and status["error"]
    assert listed(client) == []
    assert client.get("/api/decisions/feed").status_code == 200


def test_unknown_decision_is_404(live):
    client, _ = live
    resp = client.get("/api/decisions/txn_0000000000000000")
    assert resp.status_code == 404
    assert "txn_0000000000000000" in resp.json()["detail"]


# ----------------------------------------------------------------------------------------- sample and page
def test_sample_is_a_valid_request_timestamped_now(make_client):
    client = make_client()
    first = client.get("/api/decisions/sample").json()
    request = TransactionRequest.model_validate_json(json.dumps(first))
    assert abs(request.event_timestamp - datetime.now(UTC)) < timedelta(minutes=1)
    assert isinstance(first["amount_minor"], int) and first["event_timestamp"].endswith("Z")
    assert client.get("/api/decisions/sample").json()["transaction_id"] != first["transaction_id"]
    seeded = [client.get("/api/decisions/sample", params={"seed": 7}).json() for _ in range(2)]
    assert seeded[0]["transaction_id"] == seeded[1]["transaction_id"]


def test_page_renders_its_parts_for_a_signed_in_user(make_client):
    client = make_client()
    page = client.get("/decisions")
    assert page.status_code == 200
    for part in (
        'id="decisions-table"',
        'id="try-form"',
        'id="try-submit"',
        'id="try-result"',
        'id="decision-detail"',
        "/static/decisions.js",
        'name="outcome"',
        "challenge_3ds",
    ):
        assert part in page.text, part
    assert client.get("/static/decisions.js").status_code == 200


def test_anonymous_calls_are_refused_and_posts_need_the_csrf_token(make_client):
    anonymous = make_client(signed_in=False)
    assert anonymous.get("/decisions", follow_redirects=False).status_code == 303
    for path in (
        "/api/decisions",
        "/api/decisions/feed",
        "/api/decisions/sample",
        "/api/decisions/stream",
        "/api/decisions/txn_0000000000000000",
    ):
        assert anonymous.get(path).status_code == 401, path
    assert anonymous.post("/api/decisions/try", json={}).status_code == 401
    signed_in = make_client()
    del signed_in.headers["X-CSRF-Token"]
    refused = signed_in.post("/api/decisions/try", json={"transaction_id": "txn_0000000000000000"})
    assert refused.status_code == 403


# ----------------------------------------------------------------------------------------- try against the real API
def start_scoring_api(
    tmp_path: Path, redis_url: str, kafka_bootstrap: str, prefix: str
) -> tuple[subprocess.Popen, str]:
    port = free_port()
    env = {
        **os.environ,
        "PA_ENV": "prod",
        "PA_API_KEYS": API_KEY,
        "PA_REDIS_URL": redis_url,
        "PA_REDIS_PREFIX": f"dec{uuid.uuid4().hex[:6]}",
        "PA_KAFKA_BOOTSTRAP": kafka_bootstrap,
        "PA_TOPIC_PREFIX": prefix,
        "PA_DATA_DIR": str(tmp_path),
        "PYTHONPATH": str(REPO),
    }
    # No model registry: the API decides with its heuristic models. An empty MLflow registry gives the same
    # decisions and costs a minute of start-up (creating its database) on a small machine.
    env.pop("PA_MLFLOW_TRACKING_URI", None)
    log = (tmp_path / "scoring_api.log").open("wb")
    proc = subprocess.Popen(
        [sys.executable, "-m", "services.scoring_api", "serve", "--port", str(port), "--no-consumer"],
        cwd=REPO,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    log.close()
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            break
        try:
            if httpx.get(f"{base}/health", timeout=1).status_code == 200:
                return proc, base
        except httpx.HTTPError:
            time.sleep(0.3)
    stop_process(proc)
    raise RuntimeError((tmp_path / "scoring_api.log").read_text()[-3000:])


def test_try_a_transaction_against_the_real_scoring_api(
    make_client, tmp_path_factory, redis_url, kafka_bootstrap, kafka_topics
):
    api_dir = tmp_path_factory.mktemp("scoring_api")
    proc, base = start_scoring_api(api_dir, redis_url, kafka_bootstrap, kafka_topics)
    try:
        client = make_client(scoring_api_url=base, scoring_api_key=API_KEY)
        sample = client.get("/api/decisions/sample").json()
        resp = client.post("/api/decisions/try", json=sample)
        assert resp.status_code == 200, resp.text
        decision = DecisionEvent.model_validate_json(resp.content)
        assert decision.transaction_id == sample["transaction_id"]
        assert decision.source == "api" and decision.rule_set_version
        assert isinstance(resp.json()["reason_codes"], list)

        risky = {
            **client.get("/api/decisions/sample").json(),
            "fraud_score": 0.99,
            "device_trust_score": 0.01,
            "aml_risk_score": 0.9,
        }
        risky_decision = client.post("/api/decisions/try", json=risky).json()
        assert risky_decision["outcome"] != "approve" and risky_decision["reason_codes"]

        replay = client.post("/api/decisions/try", json=sample)  # idempotent by transaction_id
        assert replay.json()["decision_id"] == decision.decision_id
        assert replay.headers.get("Idempotent-Replay") == "true"

        for field, value in (("amount_minor", -500), ("card_network", "bogus")):
            bad = client.post("/api/decisions/try", json={**sample, field: value})
            assert bad.status_code == 422, bad.text
            assert any(field in err["loc"] for err in bad.json()["detail"]), bad.text

        audit = client.get("/api/audit").json()
        events = audit if isinstance(audit, list) else audit.get("events", [])
        assert any(e["action"] == "decisions.try" and e["target"] == sample["transaction_id"] for e in events)

        keyless = make_client(scoring_api_url=base, scoring_api_key="")  # the API wants a key: not the user's fault
        refused = keyless.post("/api/decisions/try", json=sample)
        assert refused.status_code == 502 and "PA_SCORING_API_KEY" in refused.json()["detail"]
    finally:
        stop_process(proc)
    down = client.post("/api/decisions/try", json=sample)
    assert down.status_code == 503
    assert "not reachable" in down.json()["detail"]
