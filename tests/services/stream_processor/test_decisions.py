"""The stream decides exactly like POST /score (same core, same velocity, registered models), and
picks up a new rule set and a new champion without a restart, recording the versions it used."""

from __future__ import annotations

import time

import orjson
import pytest
from fastapi.testclient import TestClient

from payments_core.contract.events import DecisionEvent, TransactionRequest
from payments_core.rules.model import RuleSet, ruleset_path, starter_rule_set, write_ruleset
from payments_core.velocity import RedisVelocityStore
from services.scoring_api.app import create_app
from services.scoring_api.settings import Settings
from services.stream_processor import pipeline
from tests.payments_core.helpers import mlflow_uri, register_all, train_models
from tests.services.stream_processor.conftest import consume_all, make_events, produce

VOLATILE = {"latency_ms", "decided_at", "source"}


@pytest.fixture(scope="module")
def trained():
    return train_models(n=1200, seed=5)


def _decisions(msgs) -> dict[str, DecisionEvent]:
    return {d.transaction_id: d for d in (DecisionEvent.model_validate_json(m.value()) for m in msgs)}


def test_stream_and_post_score_give_identical_decisions(
    spark, sp_settings, kafka_bootstrap, redis_url, trained, tmp_path
):
    uri = mlflow_uri(tmp_path)
    versions = register_all(uri, tmp_path / "artifacts", trained)
    settings = sp_settings.model_copy(update={"mlflow_tracking_uri": uri})
    # few cards, devices and merchants, so velocity features are not zero
    events = make_events(240, seed=21)
    for i, e in enumerate(events):
        e.update(card_token_id=f"tok_par{i % 7}", device_fingerprint=f"dev_par{i % 5}", merchant_id=f"m_par{i % 3}")
    # one partition, in event-time order: the stream records velocity in the order the API sees it
    produce(kafka_bootstrap, settings.topics.transactions, [orjson.dumps(e) for e in events], partition=0)
    q = pipeline.start_scoring(spark, settings, available_now=True)
    q.awaitTermination(300)
    assert q.exception() is None
    stream = _decisions(consume_all(kafka_bootstrap, settings.topics.decisions, expect=len(events)))
    assert len(stream) == len(events)

    api_settings = Settings(
        env="test",
        auth="off",
        redis_url=redis_url,
        redis_prefix=settings.redis_prefix,
        kafka_bootstrap=kafka_bootstrap,
        topic_prefix=settings.topic_prefix,
        data_dir=settings.data_dir,
        mlflow_tracking_uri=uri,
    )
    sample = events[::3]
    with TestClient(create_app(api_settings)) as client:
        for e in sample:
            request = {k: v for k, v in e.items() if k in TransactionRequest.model_fields}
            resp = client.post("/score", json=request)
            assert resp.status_code == 200, resp.text
            api = DecisionEvent.model_validate_json(resp.content)
            ours = stream[e["transaction_id"]]
            assert api.source == "api" and ours.source == "stream"
            assert ours.model_dump(exclude=VOLATILE) == api.model_dump(exclude=VOLATILE)
    assert {d.model_versions["approval"] for d in stream.values()} == {versions["approval"]}
    assert len({d.outcome for d in stream.values()}) > 1
    # velocity took part: the stream recorded the transactions in the online store the API reads
    store = RedisVelocityStore.from_url(redis_url, prefix=f"{settings.redis_prefix}:vel")
    features = store.features(events[-1], record=False)
    assert features["card_txn_count_3600s"] > 5 and features["merchant_txn_count_300s"] > 5


def test_new_rule_set_and_champion_are_picked_up_without_restart(
    spark, sp_settings, kafka_bootstrap, trained, tmp_path
):
    uri = mlflow_uri(tmp_path)
    settings = sp_settings.model_copy(
        update={"mlflow_tracking_uri": uri, "stream_interval": "500 milliseconds", "stream_engine_refresh_seconds": 0.0}
    )
    first, second = make_events(60, seed=31), make_events(60, seed=32)
    query = pipeline.start_scoring(spark, settings)
    try:
        produce(kafka_bootstrap, settings.topics.transactions, [orjson.dumps(e) for e in first])
        before = _wait_for(kafka_bootstrap, settings.topics.decisions, {e["transaction_id"] for e in first}, query)
        assert {d.model_versions["approval"] for d in before.values()} == {"heuristic"}
        assert {d.rule_set_version for d in before.values()} == {starter_rule_set().full_version}

        rules = RuleSet(
            version="ops-2", rules=[r.model_copy(update={"priority": r.priority + 1}) for r in starter_rule_set().rules]
        )
        write_ruleset(rules, ruleset_path(settings.data_dir))
        versions = register_all(uri, tmp_path / "artifacts", trained)

        produce(kafka_bootstrap, settings.topics.transactions, [orjson.dumps(e) for e in second])
        after = _wait_for(kafka_bootstrap, settings.topics.decisions, {e["transaction_id"] for e in second}, query)
        assert query.isActive
        assert {d.rule_set_version for d in after.values()} == {rules.full_version}
        assert {d.model_versions[k] for d in after.values() for k in versions} == set(versions.values())
        assert all(d.model_versions[k] == versions[k] for d in after.values() for k in versions)
    finally:
        query.stop()


def _wait_for(bootstrap: str, topic: str, ids: set[str], query, timeout: float = 180.0) -> dict[str, DecisionEvent]:
    deadline = time.monotonic() + timeout
    found: dict[str, DecisionEvent] = {}
    while time.monotonic() < deadline:
        assert query.exception() is None, query.exception()
        found = {k: v for k, v in _decisions(consume_all(bootstrap, topic, timeout=10)).items() if k in ids}
        if len(found) == len(ids):
            return found
        time.sleep(1.0)
    raise AssertionError(f"only {len(found)} of {len(ids)} decisions after {timeout}s")
