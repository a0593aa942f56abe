"""The decision detail's similar past transactions: the control plane asks a real scoring API process
over HTTP (POST /similar with the transaction's facts from the live Kafka feed, else GET /similar/{id}),
which serves a real usearch index from its data folder."""

from __future__ import annotations

import random
import uuid

import pandas as pd

from launcher.local import stop_process
from payments_core.contract import TransactionEvent
from payments_core.samples import sample_request, synthetic_labels
from payments_core.similarity import SimilarIndex, default_index_path, outcome_rows, vectors_of_frame
from tests.services.control_plane.test_decisions import (
    API_KEY,
    Topics,
    make_decision,
    start_scoring_api,
    wait_for,
)


def _indexed_events(n: int) -> list[dict]:
    rng = random.Random(8)
    out = []
    for _ in range(n):
        tx = sample_request(rng)
        labels = synthetic_labels(tx, rng)
        reason = None if labels["is_approved"] else "DO_NOT_HONOR"
        out.append(TransactionEvent(**tx, **labels, decline_reason=reason, processing_time_ms=90).model_dump())
    return out


def test_the_decision_detail_shows_similar_past_transactions(
    make_client, tmp_path_factory, redis_url, kafka_bootstrap, kafka_topics
):
    api_dir = tmp_path_factory.mktemp("similar_api")
    events = _indexed_events(300)
    frame = pd.DataFrame(events)
    index = SimilarIndex.empty()
    index.add(vectors_of_frame(frame), outcome_rows(frame))
    index.save(default_index_path(api_dir))

    proc, base = start_scoring_api(api_dir, redis_url, kafka_bootstrap, kafka_topics)
    try:
        client = make_client(
            decision_feed=True,
            kafka_bootstrap=kafka_bootstrap,
            topic_prefix=kafka_topics,
            scoring_api_url=base,
            scoring_api_key=API_KEY,
        )
        assert 'id="detail-similar"' in client.get("/decisions").text

        # a live decision whose transaction has the features of an indexed one: found by its facts
        twin = events[5]
        live = TransactionEvent(**{**twin, "transaction_id": f"txn_{uuid.uuid4().hex[:16]}"})
        Topics(kafka_bootstrap, kafka_topics).send(live, make_decision(live))
        wait_for(
            lambda: client.get(f"/api/decisions/{live.transaction_id}").json().get("transaction"),
            what="the decision joined with its transaction",
        )
        r = client.get(f"/api/decisions/{live.transaction_id}/similar", params={"k": 5})
        assert r.status_code == 200, r.text
        body = r.json()
        assert body["looked_up_by"] == "facts" and body["indexed"] is False and body["k"] == 5
        first = body["neighbours"][0]
        assert (first["transaction_id"], first["distance"]) == (twin["transaction_id"], 0.0)
        assert (first["is_approved"], first["decline_reason"]) == (twin["is_approved"], twin["decline_reason"])
        assert body["mix"]["neighbours"] == 5 and body["index"]["transactions"] == 300

        # not among the decisions the control plane has seen, but in the index: looked up by id
        by_id = client.get(f"/api/decisions/{events[9]['transaction_id']}/similar", params={"k": 3}).json()
        assert by_id["looked_up_by"] == "id" and by_id["indexed"] is True and len(by_id["neighbours"]) == 3
        unknown = client.get("/api/decisions/txn_00000000deadbeef/similar")
        assert unknown.status_code == 404 and "txn_00000000deadbeef" in unknown.json()["detail"]
        assert client.get(f"/api/decisions/{live.transaction_id}/similar", params={"k": 101}).status_code == 422

        keyless = make_client(scoring_api_url=base, scoring_api_key="")
        refused = keyless.get(f"/api/decisions/{events[9]['transaction_id']}/similar")
        assert refused.status_code == 502 and "PA_SCORING_API_KEY" in refused.json()["detail"]
    finally:
        stop_process(proc)
    down = client.get(f"/api/decisions/{events[9]['transaction_id']}/similar")
    assert down.status_code == 503 and "not reachable" in down.json()["detail"]
