"""GET/POST /similar and the /score enrichment through the real app: real Redis and Kafka, a real
usearch index file under the data folder, picked up when it appears or changes."""

from __future__ import annotations

import random
import time
import uuid
from pathlib import Path

import orjson
import pandas as pd
import pytest
from fastapi.testclient import TestClient

from payments_core.contract.events import TransactionEvent, TransactionRequest
from payments_core.samples import EXAMPLE_REQUEST, sample_request, synthetic_labels
from payments_core.similarity import SimilarIndex, default_index_path, outcome_rows, vectors_of_frame
from services.scoring_api.app import create_app
from services.scoring_api.settings import Settings
from tests.services.scoring_api.conftest import API_KEY

TWIN = "txn_0000000000000bbb"


def _events(n: int, seed: int) -> list[dict]:
    rng = random.Random(seed)
    out = []
    for _ in range(n):
        tx = sample_request(rng)
        labels = synthetic_labels(tx, rng)
        reason = None if labels["is_approved"] else rng.choice(["INSUFFICIENT_FUNDS", "DO_NOT_HONOR"])
        out.append(TransactionEvent(**tx, **labels, decline_reason=reason, processing_time_ms=120).model_dump())
    return out


def _json_body(event: dict) -> dict:
    req = TransactionRequest(**{k: v for k, v in event.items() if k in TransactionRequest.model_fields})
    return orjson.loads(req.model_dump_json())


def _write_index(path: Path, events: list[dict]) -> None:
    df = pd.DataFrame(events)
    index = SimilarIndex.empty()
    index.add(vectors_of_frame(df), outcome_rows(df))
    index.save(path)


@pytest.fixture
def events() -> list[dict]:
    base = _events(400, seed=21)
    twin = {**base[7], "transaction_id": TWIN, "amount_minor": base[7]["amount_minor"] + 3}
    return [*base, twin]


@pytest.fixture
def settings_for(redis_url, kafka_bootstrap, kafka_topics, tmp_path):
    def make(**kw) -> Settings:
        base = dict(
            env="prod",
            api_keys=API_KEY,
            kafka_bootstrap=kafka_bootstrap,  # the API publishes its decisions
            topic_prefix=kafka_topics,
            redis_url=redis_url,
            redis_prefix=f"t{uuid.uuid4().hex[:8]}",
            data_dir=tmp_path,
            refresh_seconds=3600,
        )
        return Settings(**{**base, **kw})

    return make


@pytest.fixture
def indexed_client(settings_for, events, tmp_path):
    _write_index(default_index_path(tmp_path), events)
    with TestClient(create_app(settings_for()), headers={"Authorization": f"Bearer {API_KEY}"}) as c:
        yield c


def test_get_answers_the_neighbours_of_an_indexed_transaction(indexed_client, events):
    target = events[7]["transaction_id"]
    r = indexed_client.get(f"/similar/{target}", params={"k": 5})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["transaction_id"] == target and body["indexed"] is True and body["k"] == 5
    assert body["index"]["transactions"] == 401 and body["index"]["built_at"]
    ids = [n["transaction_id"] for n in body["neighbours"]]
    assert len(ids) == 5 and ids[0] == TWIN and target not in ids
    by_id = {e["transaction_id"]: e for e in events}
    for n in body["neighbours"]:
        src = by_id[n["transaction_id"]]
        assert (n["is_approved"], n["decline_reason"], n["is_fraud"], n["amount_minor"]) == (
            src["is_approved"],
            src["decline_reason"],
            src["is_fraud"],
            src["amount_minor"],
        )
        assert isinstance(n["amount"], str)  # money as exact decimal text
    mix = body["mix"]
    assert mix["neighbours"] == 5 and mix["approval_rate"] == sum(n["is_approved"] for n in body["neighbours"]) / 5
    assert mix["fraud_labelled"] == 5
    assert len(indexed_client.get(f"/similar/{target}").json()["neighbours"]) == 20  # default k


def test_unknown_id_is_a_404_naming_it_and_bad_ids_or_k_are_422(indexed_client):
    r = indexed_client.get("/similar/txn_0123456789abcdef")
    assert r.status_code == 404 and "txn_0123456789abcdef" in r.json()["detail"]
    assert indexed_client.get("/similar/not-an-id").status_code == 422
    for k in (0, 101):
        r = indexed_client.get(f"/similar/{TWIN}", params={"k": k})
        assert r.status_code == 422 and r.json()["detail"][0]["loc"] == ["query", "k"]


def test_post_looks_up_any_transaction_validated_like_score(indexed_client, events):
    new = _json_body(events[7]) | {"transaction_id": "txn_00000000000fffff"}  # not indexed, same features
    r = indexed_client.post("/similar", json=new, params={"k": 3})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["indexed"] is False and len(body["neighbours"]) == 3
    assert body["neighbours"][0]["transaction_id"] == events[7]["transaction_id"]
    assert body["neighbours"][0]["distance"] == 0.0
    # an indexed transaction's own body: never its own neighbour
    own = indexed_client.post("/similar", json=_json_body(events[7]), params={"k": 3}).json()
    assert own["indexed"] is True and events[7]["transaction_id"] not in [
        n["transaction_id"] for n in own["neighbours"]
    ]

    bad = indexed_client.post("/similar", json={**new, "fraud_score": 1.5})
    assert bad.status_code == 422 and bad.json()["detail"][0]["loc"] == ["body", "fraud_score"]
    missing = {k: v for k, v in new.items() if k != "currency"}
    r = indexed_client.post("/similar", json=missing)
    assert r.status_code == 422 and r.json()["detail"][0]["loc"] == ["body", "currency"]
    r = indexed_client.post("/similar", json={**new, "is_approved": True})  # an outcome is not part of the request
    assert r.status_code == 422 and r.json()["detail"][0]["loc"] == ["body", "is_approved"]
    # a lookup records nothing: the same id is then scored as a new transaction
    assert "idempotent-replay" not in indexed_client.post("/score", json=new).headers


def test_both_endpoints_need_the_scoring_key(indexed_client, events):
    target = events[0]["transaction_id"]
    body = _json_body(events[0])
    for headers, status in (({"Authorization": ""}, 401), ({"Authorization": "Bearer wrong"}, 403)):
        assert indexed_client.get(f"/similar/{target}", headers=headers).status_code == status
        assert indexed_client.post("/similar", json=body, headers=headers).status_code == status
    assert (
        indexed_client.get(f"/similar/{target}", headers={"Authorization": "", "X-API-Key": API_KEY}).status_code == 200
    )


def test_no_index_is_a_503_until_the_file_appears_then_changes_are_picked_up(settings_for, events, tmp_path):
    settings = settings_for(refresh_seconds=0.2)
    with TestClient(create_app(settings), headers={"X-API-Key": API_KEY}) as c:
        r = c.get(f"/similar/{TWIN}")
        assert r.status_code == 503 and "spark.jobs.similar_index" in r.json()["detail"]
        path = default_index_path(tmp_path)
        _write_index(path, events[:100])

        def transactions() -> int | None:
            got = c.post("/similar", json=_json_body(events[0]), params={"k": 1})
            return got.json()["index"]["transactions"] if got.status_code == 200 else None

        _wait_for(lambda: transactions() == 100)
        _write_index(path, events)  # the job swapped in a bigger index
        _wait_for(lambda: transactions() == 401)
        assert c.get(f"/similar/{TWIN}").status_code == 200


def test_score_enrichment_is_off_by_default_and_adds_the_mix_when_on(settings_for, events, tmp_path):
    _write_index(default_index_path(tmp_path), events)
    tx = {**EXAMPLE_REQUEST, "transaction_id": "txn_0000000000e00001"}
    with TestClient(create_app(settings_for()), headers={"X-API-Key": API_KEY}) as c:
        plain = c.post("/score", json=tx)
        assert plain.status_code == 200 and "similar" not in plain.json()
    with TestClient(create_app(settings_for(similar_enrich=True)), headers={"X-API-Key": API_KEY}) as c:
        tx2 = {**tx, "transaction_id": "txn_0000000000e00002"}
        r = c.post("/score", json=tx2)
        assert r.status_code == 200, r.text
        decision = r.json()
        similar = decision.pop("similar")
        lookup = c.post("/similar", json=tx2, params={"k": 20}).json()["mix"]
        assert similar.pop("k") == 20 and similar.pop("lookup_ms") >= 0
        assert similar == lookup and similar["neighbours"] == 20
        assert decision["outcome"] in ("approve", "challenge_3ds", "review", "decline")
        again = c.post("/score", json=tx2)  # the stored decision carries it: a replay answers the same body
        assert again.headers["idempotent-replay"] == "true" and again.json()["similar"] == r.json()["similar"]


def _wait_for(check, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.1)
    raise AssertionError("condition not met in time")
