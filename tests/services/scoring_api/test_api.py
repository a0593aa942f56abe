"""The scoring API end to end: real Redis, a registered model in a real MLflow, the real app."""

from __future__ import annotations

import random
import time

import orjson
import pytest
from fastapi.testclient import TestClient

from payments_core.contract.events import DecisionEvent
from payments_core.rules import Rule, RuleSet, write_ruleset
from payments_core.rules.model import ruleset_path
from payments_core.samples import EXAMPLE_REQUEST, sample_request
from services.scoring_api.app import create_app
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


def test_rescoring_is_idempotent(client):
    tx = {**EXAMPLE_REQUEST, "transaction_id": "txn_1de0000000000001"}
    first = client.post("/score", json=tx)
    again = client.post("/score", json={**tx, "fraud_score": 0.99})  # same id: the stored decision
    assert first.status_code == again.status_code == 200
    assert again.content == first.content and again.headers["idempotent-replay"] == "true"
    assert "idempotent-replay" not in first.headers
    got = client.get(f"/decisions/{tx['transaction_id']}")
    assert got.status_code == 200 and got.content == first.content


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
        assert c.get("/ready").json()["rule_set_version"] == rules.full_version


def test_batch_matches_single_and_dedupes(client):
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
    with TestClient(create_app(make_settings(max_batch=2)), headers={"X-API-Key": API_KEY}) as c:
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
def test_invalid_payloads_are_422_naming_the_field(client, change, field):
    r = client.post("/score", json={**EXAMPLE_REQUEST, **change})
    assert r.status_code == 422
    assert any(e["loc"][-1] == field for e in r.json()["detail"]), r.json()


def test_missing_field_and_garbage_bodies(client):
    body = {k: v for k, v in EXAMPLE_REQUEST.items() if k != "merchant_id"}
    r = client.post("/score", json=body)
    assert r.status_code == 422 and r.json()["detail"][0]["loc"] == ["body", "merchant_id"]
    assert client.post("/score", content=b"{not json", headers={"content-type": "application/json"}).status_code == 422
    assert client.post("/score", json=[1, 2]).status_code == 422
    assert client.get("/decisions/not-an-id").status_code == 422
    assert client.get("/decisions/txn_ffffffffffffffff").status_code == 404


def test_oversized_bodies_are_refused(make_settings):
    with TestClient(create_app(make_settings(max_body_bytes=4096)), headers={"X-API-Key": API_KEY}) as c:
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


def test_auth_401_403_and_dev_mode(make_settings):
    with TestClient(create_app(make_settings())) as c:
        r = c.post("/score", json=EXAMPLE_REQUEST)
        assert r.status_code == 401 and r.headers["www-authenticate"] == "Bearer"
        assert c.post("/score", json=EXAMPLE_REQUEST, headers={"X-API-Key": "wrong"}).status_code == 403
        assert c.post("/score", json=EXAMPLE_REQUEST, headers={"Authorization": "Bearer wrong"}).status_code == 403
        assert c.get("/decisions/txn_ffffffffffffffff").status_code == 401
        assert c.post("/score", json=EXAMPLE_REQUEST, headers={"X-API-Key": API_KEY}).status_code == 200
        assert c.get("/health").status_code == 200 and c.get("/metrics").status_code == 200  # open
    with TestClient(create_app(make_settings(env="dev", api_keys=""))) as c:
        assert c.post("/score", json=EXAMPLE_REQUEST).status_code == 200
    with pytest.raises(SystemExit, match="PA_API_KEYS"):
        create_app(make_settings(api_keys=""))


def test_health_ready_metrics(client):
    assert client.get("/health").json() == {"status": "ok"}
    ready = client.get("/ready").json()
    assert ready["ready"] is True and ready["redis"] is True and ready["models_heuristic"] is False
    client.post("/score", json={**EXAMPLE_REQUEST, "transaction_id": "txn_00000000000000aa"})
    text = client.get("/metrics").text
    assert "pa_scoring_request_seconds_bucket" in text and 'route="/score"' in text
    assert "pa_decisions_total{outcome=" in text
    assert 'pa_model_version_info{kind="approval",version="1"} 1.0' in text


def test_ready_is_503_without_redis(make_settings):
    with TestClient(create_app(make_settings(redis_url="redis://127.0.0.1:1/0")), headers={"X-API-Key": API_KEY}) as c:
        r = c.get("/ready")
        assert r.status_code == 503 and r.json()["redis"] is False
        assert c.post("/score", json=EXAMPLE_REQUEST).status_code == 503


def test_without_registry_the_heuristic_decides(make_settings):
    with TestClient(create_app(make_settings(mlflow_tracking_uri=None)), headers={"X-API-Key": API_KEY}) as c:
        d = c.post("/score", json=EXAMPLE_REQUEST).json()
        assert d["model_versions"]["approval"] == "heuristic"
        assert c.get("/ready").json()["models_heuristic"] is True


def test_openapi_documents_examples_and_security(client):
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
