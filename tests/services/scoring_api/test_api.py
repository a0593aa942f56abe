"""The scoring API end to end: real Redis, a registered model in a real MLflow, the real app."""

from __future__ import annotations

import logging
import random
import threading
import time
import uuid

import orjson
import pytest
from fastapi.testclient import TestClient

from payments_core.contract.events import DecisionEvent
from payments_core.rules import Rule, RuleSet, write_ruleset
from payments_core.rules.model import ruleset_path
from payments_core.samples import EXAMPLE_REQUEST, sample_request
from payments_core.velocity import entity_key
from services.scoring_api.app import create_app
from services.scoring_api.keyfile import ensure_local_key
from tests.payments_core.helpers import mlflow_uri, register_all, train_models
from tests.services.scoring_api.conftest import API_KEY


def _json(tx: dict) -> dict:
    return orjson.loads(orjson.dumps(tx))


def test_score_returns_a_full_decision_from_the_registered_models(client):
    r = client.post("/score", json=EXAMPLE_REQUEST)
    assert r.status_code == 200, r.text
    d = DecisionEvent.model_validate_json(r.content)
    assert d.transaction_id == EXAMPLE_REQUEST["transaction_id"] and d.source == "api"
    assert d.model_versions == {"approval": "1", "risk": "1", "routing": "1", "retry": "1"}
    assert d.rule_set_version.startswith("starter-1+")
    assert d.outcome in ("approve", "challenge_3ds", "review", "decline")
    assert 0 <= d.approval_probability <= 1 and d.latency_ms > 0
    assert any(c.kind == "policy" for c in d.reason_codes)


def test_rescoring_the_same_request_replays_the_decision(heuristic_client):
    client = heuristic_client
    tx = {**EXAMPLE_REQUEST, "transaction_id": "txn_1de0000000000001", "event_timestamp": "2026-03-14T15:09:26Z"}
    first = client.post("/score", json=tx)
    # the same request, the same instant written with another offset: the stored decision
    again = client.post("/score", json={**tx, "event_timestamp": "2026-03-14T12:09:26-03:00"})
    assert first.status_code == again.status_code == 200
    assert again.content == first.content and again.headers["idempotent-replay"] == "true"
    assert "idempotent-replay" not in first.headers
    got = client.get(f"/decisions/{tx['transaction_id']}")
    assert got.status_code == 200 and got.content == first.content


def test_the_same_id_with_a_different_request_is_a_409(make_settings):
    """Like a payment API's idempotency key: a reused transaction_id must carry the same request."""
    with TestClient(create_app(make_settings(mlflow_tracking_uri=None)), headers={"X-API-Key": API_KEY}) as client:
        card = entity_key(client.app.state.velocity.prefix, "card", "tok_409")
        for change in (
            {"fraud_score": 0.99},
            {"amount_minor": 5401},
            {"merchant_id": "m_other"},
            {"card_token_id": "t"},
        ):
            tx = {**EXAMPLE_REQUEST, "transaction_id": "txn_" + uuid.uuid4().hex[:16], "card_token_id": "tok_409"}
            first = client.post("/score", json=tx)
            assert first.status_code == 200
            before = state_members(client, card)
            r = client.post("/score", json={**tx, **change})
            assert r.status_code == 409, (change, r.text)
            detail = r.json()["detail"]
            assert tx["transaction_id"] in detail and "different request" in detail and "new transaction_id" in detail
            assert state_members(client, card) == before  # the conflicting request recorded nothing
            assert client.get(f"/decisions/{tx['transaction_id']}").content == first.content
            again = client.post("/score", json=tx)  # the original request still gets its decision
            assert again.status_code == 200 and again.content == first.content
            batch = client.post("/score/batch", json={"transactions": [{**tx, **change}]})
            assert batch.status_code == 409 and tx["transaction_id"] in batch.json()["detail"]
            twice = {**tx, "transaction_id": "txn_" + uuid.uuid4().hex[:16]}
            clash = client.post("/score/batch", json={"transactions": [twice, {**twice, **change}]})
            assert clash.status_code == 409 and twice["transaction_id"] in clash.json()["detail"]
            assert client.get(f"/decisions/{twice['transaction_id']}").status_code == 404  # nothing decided
        assert "pa_idempotency_conflicts_total 12.0" in client.get("/metrics").text


def state_members(client: TestClient, key: str) -> list[bytes]:
    import redis  # noqa: PLC0415

    with redis.Redis.from_url(client.app.state.settings.redis_url) as r:
        return r.zrange(key, 0, -1)


def test_velocity_is_recorded_and_used(make_settings):
    rules = RuleSet(
        version="vel",
        rules=[Rule(id="V1", name="burst", type="risk", condition="card_txn_count_600s >= 3", action="decline")],
    )
    settings = make_settings()
    write_ruleset(rules, ruleset_path(settings.data_dir))
    with TestClient(create_app(settings), headers={"X-API-Key": API_KEY}) as c:
        rng = random.Random(1)
        outcomes = []
        for i in range(5):
            tx = _json(
                sample_request(
                    rng, card_token_id="tok_burst", fraud_score=0.01, antifraud_used=False, antifraud_result=None
                )
            )
            tx["event_timestamp"] = f"2026-03-01T10:00:0{i}Z"
            d = c.post("/score", json=tx).json()
            outcomes.append("V1" in [r["code"] for r in d["reason_codes"]])
        assert outcomes == [False, False, False, True, True]
        body = c.get("/ready").json()  # what decides: the registered models, the published rules file
        assert body["ready"] is True and body["rule_set_version"] == rules.full_version
        for kind in ("approval", "risk", "routing", "retry"):
            assert body["models"][kind] == {
                "source": "registry",
                "name": f"payment_analysis_{kind}",
                "version": "1",
                "alias": "champion",
                "registry_version": "1",
                "reason": None,
            }
        assert body["rules"] == {
            "version": rules.full_version,
            "source": "file",
            "path": str(ruleset_path(settings.data_dir)),
            "error": None,
        }
        assert body["consumer"] == {"expected": False, "running": None}
        assert body["publisher"]["topic"] == f"{settings.topic_prefix}payments.decisions"
        text = c.get("/metrics").text
        assert 'pa_model_fallback{kind="approval"} 0.0' in text and "pa_rules_fallback 0.0" in text


def test_batch_matches_single_and_dedupes(heuristic_client):
    client = heuristic_client
    rng = random.Random(2)
    txs = [_json(sample_request(rng)) for _ in range(20)]
    r = client.post("/score/batch", json={"transactions": txs + [txs[0]]})
    assert r.status_code == 200, r.text
    decisions = r.json()["decisions"]
    assert [d["transaction_id"] for d in decisions] == [t["transaction_id"] for t in txs + [txs[0]]]
    assert decisions[0] == decisions[-1]
    for tx, d in zip(txs[:5], decisions):  # stored: single scoring returns the same
        assert client.post("/score", json=tx).json() == d


def test_batch_limit_names_the_field(make_settings):
    with TestClient(
        create_app(make_settings(max_batch=2, mlflow_tracking_uri=None)), headers={"X-API-Key": API_KEY}
    ) as c:
        rng = random.Random(3)
        r = c.post("/score/batch", json={"transactions": [_json(sample_request(rng)) for _ in range(3)]})
        assert r.status_code == 422 and r.json()["detail"][0]["loc"] == ["body", "transactions"]


@pytest.mark.parametrize(
    "change, field",
    [
        ({"amount_minor": -5}, "amount_minor"),
        ({"currency": "XYZ"}, "currency"),
        ({"transaction_id": "nope"}, "transaction_id"),
        ({"fraud_score": 1.5}, "fraud_score"),
        ({"surprise": 1}, "surprise"),
        ({"event_timestamp": "yesterday"}, "event_timestamp"),
    ],
)
def test_invalid_payloads_are_422_naming_the_field(heuristic_client, change, field):
    client = heuristic_client
    r = client.post("/score", json={**EXAMPLE_REQUEST, **change})
    assert r.status_code == 422
    assert any(e["loc"][-1] == field for e in r.json()["detail"]), r.json()


def test_missing_field_and_garbage_bodies(heuristic_client):
    client = heuristic_client
    body = {k: v for k, v in EXAMPLE_REQUEST.items() if k != "merchant_id"}
    r = client.post("/score", json=body)
    assert r.status_code == 422 and r.json()["detail"][0]["loc"] == ["body", "merchant_id"]
    assert client.post("/score", content=b"{not json", headers={"content-type": "application/json"}).status_code == 422
    assert client.post("/score", json=[1, 2]).status_code == 422
    # not UTF-8 (found by the OpenAPI fuzz): a 422 echoing the body as text, not a 500
    bad = client.post("/score", content=b"\xffI\x1c\x0c", headers={"content-type": "application/json"})
    assert bad.status_code == 422 and bad.json()["detail"][0]["loc"][0] == "body", bad.text
    assert client.get("/decisions/not-an-id").status_code == 422
    assert client.get("/decisions/txn_ffffffffffffffff").status_code == 404


def test_oversized_bodies_are_refused(make_settings):
    with TestClient(
        create_app(make_settings(max_body_bytes=4096, mlflow_tracking_uri=None)), headers={"X-API-Key": API_KEY}
    ) as c:
        big = {**EXAMPLE_REQUEST, "merchant_id": "m" * 5000}
        assert c.post("/score", json=big).status_code == 413

        def chunks():  # no content-length: counted while streaming
            yield b'{"transactions": ['
            for _ in range(100):
                yield b'{"a": "' + b"x" * 100 + b'"},'
            yield b"{}]}"

        r = c.post("/score/batch", content=chunks(), headers={"content-type": "application/json"})
        assert r.status_code == 413
        assert c.post("/score", json=EXAMPLE_REQUEST).status_code == 200  # the worker is fine


def test_auth_401_403_in_every_mode(make_settings, tmp_path):
    with TestClient(create_app(make_settings(mlflow_tracking_uri=None))) as c:
        r = c.post("/score", json=EXAMPLE_REQUEST)
        assert r.status_code == 401 and r.headers["www-authenticate"] == "Bearer"
        assert c.post("/score", json=EXAMPLE_REQUEST, headers={"X-API-Key": "wrong"}).status_code == 403
        assert c.post("/score", json=EXAMPLE_REQUEST, headers={"Authorization": "Bearer wrong"}).status_code == 403
        assert c.get("/decisions/txn_ffffffffffffffff").status_code == 401
        assert c.post("/score/batch", json={"transactions": [EXAMPLE_REQUEST]}).status_code == 401
        assert c.post("/score", json=EXAMPLE_REQUEST, headers={"X-API-Key": API_KEY}).status_code == 200
        assert c.get("/health").status_code == 200 and c.get("/metrics").status_code == 200  # public by default
        assert c.get("/docs").status_code == 200 and c.get("/openapi.json").status_code == 200
    # dev (what `make up` sets) is no exception; without PA_API_KEYS the local key file is created once
    data_dir = tmp_path / "dev"
    with TestClient(
        create_app(make_settings(env="dev", api_keys="", data_dir=data_dir, mlflow_tracking_uri=None))
    ) as c:
        assert c.post("/score", json=EXAMPLE_REQUEST).status_code == 401
        key_file = data_dir / "scoring_api.key"
        assert key_file.stat().st_mode & 0o777 == 0o600
        key = key_file.read_text().strip()
        assert len(key) >= 40 and ensure_local_key(data_dir) == (key, False)
        assert c.post("/score", json=EXAMPLE_REQUEST, headers={"X-API-Key": key}).status_code == 200
    with TestClient(
        create_app(make_settings(env="dev", data_dir=data_dir, mlflow_tracking_uri=None))
    ) as c:  # PA_API_KEYS and the file
        for k in (API_KEY, key):
            assert c.post("/score", json=EXAMPLE_REQUEST, headers={"X-API-Key": k}).status_code == 200
    with pytest.raises(SystemExit, match="PA_AUTH=off is refused with PA_ENV=prod"):
        create_app(make_settings(auth="off"))
    with TestClient(create_app(make_settings(env="test", auth="off", mlflow_tracking_uri=None))) as c:  # tests only
        assert c.post("/score", json=EXAMPLE_REQUEST).status_code == 200


def test_rate_limit_per_key_with_retry_after(make_settings):
    with TestClient(
        create_app(make_settings(api_keys="key-a,key-b", rate_limit="3/minute", mlflow_tracking_uri=None))
    ) as c:
        a, b = {"X-API-Key": "key-a"}, {"Authorization": "Bearer key-b"}
        assert [c.post("/score", json=EXAMPLE_REQUEST, headers=a).status_code for _ in range(3)] == [200] * 3
        r = c.post("/score", json=EXAMPLE_REQUEST, headers=a)
        assert r.status_code == 429 and 1 <= int(r.headers["retry-after"]) <= 20
        assert "rate limit" in r.json()["detail"] and "3/minute" in r.json()["detail"]
        assert c.get("/decisions/txn_ffffffffffffffff", headers=a).status_code == 429
        assert c.post("/score", json=EXAMPLE_REQUEST, headers=b).status_code == 200  # per key
        assert c.get("/health").status_code == 200 and c.get("/ready").status_code == 200  # never limited
        assert "pa_rate_limited_total 2.0" in c.get("/metrics").text
    with TestClient(create_app(make_settings(rate_limit="off", mlflow_tracking_uri=None))) as c:
        assert {
            c.get("/decisions/txn_ffffffffffffffff", headers={"X-API-Key": API_KEY}).status_code for _ in range(30)
        } == {404}


def test_private_docs_and_metrics(make_settings):
    with TestClient(create_app(make_settings(private_docs=True, private_metrics=True, mlflow_tracking_uri=None))) as c:
        for path in ("/docs", "/redoc", "/openapi.json", "/metrics"):
            assert c.get(path).status_code == 401, path
            assert c.get(path, headers={"X-API-Key": "wrong"}).status_code == 403, path
            assert c.get(path, headers={"X-API-Key": API_KEY}).status_code == 200, path
        spec = c.get("/openapi.json", headers={"X-API-Key": API_KEY}).json()
        assert "/score" in spec["paths"] and "/docs" not in spec["paths"]
        assert c.get("/health").status_code == 200 and c.get("/ready").status_code == 200


def test_health_ready_metrics(client):
    assert client.get("/health").json() == {"status": "ok"}
    ready = client.get("/ready").json()
    assert ready["ready"] is True and ready["redis"] is True and ready["models_heuristic"] is False
    client.post("/score", json={**EXAMPLE_REQUEST, "transaction_id": "txn_00000000000000aa"})
    text = client.get("/metrics").text
    assert "pa_scoring_request_seconds_bucket" in text and 'route="/score"' in text
    assert "pa_decisions_total{outcome=" in text
    assert 'pa_model_version_info{kind="approval",version="1"} 1.0' in text


def test_without_redis_503_and_no_internal_detail_in_the_body(make_settings, caplog):
    with TestClient(
        create_app(make_settings(redis_url="redis://127.0.0.1:1/0", mlflow_tracking_uri=None)),
        headers={"X-API-Key": API_KEY},
    ) as c:
        r = c.get("/ready")
        assert r.status_code == 503 and r.json()["redis"] is False
        for resp in (
            c.post("/score", json=EXAMPLE_REQUEST),
            c.post("/score/batch", json={"transactions": [EXAMPLE_REQUEST]}),
            c.get("/decisions/txn_ffffffffffffffff"),
        ):
            assert resp.status_code == 503 and resp.headers["retry-after"] == "1"
            assert resp.json()["detail"].startswith("decision store unavailable or too slow; retry with the same")
            for leak in ("127.0.0.1", ":1", "refused", "Error", "redis://"):
                assert leak not in resp.text, resp.text
    assert any("Redis unavailable" in rec.message and rec.levelname == "WARNING" for rec in caplog.records)


def test_without_registry_the_heuristic_decides_and_says_so(make_settings, caplog):
    caplog.set_level(logging.WARNING, logger="scoring_api")
    with TestClient(create_app(make_settings(mlflow_tracking_uri=None)), headers={"X-API-Key": API_KEY}) as c:
        d = c.post("/score", json=EXAMPLE_REQUEST).json()
        assert d["model_versions"]["approval"] == "heuristic"
        ready = c.get("/ready")
        assert ready.status_code == 200  # a fallback is reported, it does not stop decisions
        body = ready.json()
        assert body["models_heuristic"] is True
        assert body["models"]["risk"] == {
            "source": "fallback",
            "name": None,
            "version": "heuristic",
            "alias": None,
            "registry_version": None,
            "reason": "no model registry configured (PA_MLFLOW_TRACKING_URI)",
        }
        assert body["rules"]["source"] == "starter" and body["rules"]["version"].startswith("starter-")
        text = c.get("/metrics").text
        assert 'pa_model_fallback{kind="approval"} 1.0' in text and "pa_rules_fallback 1.0" in text
    warnings = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert any("model approval: the heuristic fallback decides" in w for w in warnings), warnings
    assert any("rules: the starter rule set decides" in w for w in warnings), warnings


def test_openapi_documents_examples_and_security(heuristic_client):
    client = heuristic_client
    spec = client.get("/openapi.json").json()
    body = spec["paths"]["/score"]["post"]["requestBody"]["content"]["application/json"]
    assert "typical" in body["examples"]
    assert spec["paths"]["/score"]["post"]["responses"]["200"]["content"]["application/json"]["schema"][
        "$ref"
    ].endswith("DecisionEvent")
    assert {"HTTPBearer", "APIKeyHeader"} <= set(spec["components"]["securitySchemes"])


def test_a_moved_champion_alias_is_picked_up_without_restart(make_settings, tmp_path):
    """The registry is polled from a helper process; the worker reloads when the alias moves."""

    uri = mlflow_uri(tmp_path)
    register_all(uri, tmp_path / "artifacts", train_models(seed=5, kind="linear"))
    with TestClient(
        create_app(make_settings(mlflow_tracking_uri=uri, refresh_seconds=0.3)), headers={"X-API-Key": API_KEY}
    ) as c:
        assert c.get("/ready").json()["model_versions"]["approval"] == "1"
        register_all(uri, tmp_path / "artifacts", train_models(seed=9, kind="linear"))  # version 2 -> champion
        deadline = time.monotonic() + 60
        while c.get("/ready").json()["model_versions"]["approval"] != "2":
            assert time.monotonic() < deadline, "the new champion was not picked up"
            time.sleep(0.2)
        r = c.post("/score", json={**EXAMPLE_REQUEST, "transaction_id": "txn_00000000000000bb"})
        assert r.status_code == 200 and r.json()["model_versions"]["approval"] == "2"


def _answer(r) -> tuple[int, bytes, dict[str, str]]:
    """Status, body and headers of an answer (the content-length of a body of the same length kept)."""
    return r.status_code, r.content, dict(r.headers)


def test_the_plain_asgi_score_answers_as_the_fastapi_route(make_settings):
    """A body with a Content-Length is served by ``score_asgi`` (no FastAPI routing), a chunked one by
    the FastAPI route: the same decision, headers and errors either way."""
    with TestClient(create_app(make_settings(mlflow_tracking_uri=None))) as c:
        key = {"Authorization": f"Bearer {API_KEY}"}

        def both(tx: dict | bytes, headers: dict[str, str]) -> tuple[tuple, tuple]:
            body = tx if isinstance(tx, bytes) else orjson.dumps(tx)
            sized = c.post("/score", content=body, headers={**headers, "Content-Type": "application/json"})
            chunked = c.post("/score", content=iter([body]), headers={**headers, "Content-Type": "application/json"})
            assert "transfer-encoding" not in sized.request.headers
            assert chunked.request.headers["transfer-encoding"] == "chunked"
            return _answer(sized), _answer(chunked)

        # a new decision (by the plain endpoint), then its replay by the route and by the plain endpoint
        tx = {**EXAMPLE_REQUEST, "transaction_id": f"txn_{uuid.uuid4().hex[:16]}"}
        first = c.post("/score", content=orjson.dumps(tx), headers=key)
        assert first.status_code == 200 and "idempotent-replay" not in first.headers
        assert first.headers["content-type"] == "application/json"
        assert int(first.headers["content-length"]) == len(first.content)
        sized, chunked = both(tx, key)
        assert sized == chunked and sized[0] == 200 and sized[1] == first.content
        assert sized[2]["idempotent-replay"] == "true"
        # a new decision by the route, replayed by the plain endpoint
        tx2 = {**EXAMPLE_REQUEST, "transaction_id": f"txn_{uuid.uuid4().hex[:16]}"}
        made = c.post("/score", content=iter([orjson.dumps(tx2)]), headers=key)
        assert made.status_code == 200 and "idempotent-replay" not in made.headers
        assert c.post("/score", json=tx2, headers=key).content == made.content
        # errors: the same status, FastAPI's body and headers
        cases = [
            ({**tx, "amount_minor": -5}, key, 422),
            (b"{not json", key, 422),
            (b"\xff\xfe", key, 422),
            ({**tx, "amount_minor": tx["amount_minor"] + 1}, key, 409),
            (tx, {}, 401),
            (tx, {"X-API-Key": "wrong"}, 403),
        ]
        for body, headers, status in cases:
            sized, chunked = both(body, headers)
            assert sized == chunked, (status, sized, chunked)
            assert sized[0] == status
        assert orjson.loads(both({**tx, "amount_minor": -5}, key)[0][1])["detail"][0]["loc"] == ["body", "amount_minor"]
        assert both(tx, {})[0][2]["www-authenticate"] == "Bearer"


def test_delivery_reports_are_served_on_the_event_loop_while_it_runs(make_settings, redis_url):
    """The producer's delivery reports are served by the event loop (no thread of their own): the
    decisions a running API returned leave its outbox once Kafka acknowledged them, before any stop."""
    import redis  # noqa: PLC0415

    settings = make_settings(mlflow_tracking_uri=None)
    with TestClient(create_app(settings), headers={"Authorization": f"Bearer {API_KEY}"}) as c:
        publisher = c.app.state.publisher
        assert not any(t.name == "decision-publisher" for t in threading.enumerate())
        for _ in range(5):
            tx = {**EXAMPLE_REQUEST, "transaction_id": f"txn_{uuid.uuid4().hex[:16]}"}
            assert c.post("/score", json=tx).status_code == 200
        r = redis.Redis.from_url(redis_url)
        deadline = time.monotonic() + 20
        while r.zcard(publisher.outbox_key) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert r.zcard(publisher.outbox_key) == 0, "Kafka's acknowledgements did not empty the outbox"
        assert publisher.last_error is None
