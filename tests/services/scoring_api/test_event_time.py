"""POST /score refuses an event time ahead of the server clock (422 naming ``event_timestamp``), and
such a request leaves the card's and merchant's velocity windows intact (real Redis, the real app)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from payments_core.samples import EXAMPLE_REQUEST
from payments_core.velocity import RedisVelocityStore


def _tx(n: int, at: datetime) -> dict:
    return {**EXAMPLE_REQUEST, "transaction_id": f"txn_fe{n:014x}", "event_timestamp": at.isoformat()}


def test_a_future_event_time_is_refused_with_422_naming_the_field_and_wipes_nothing(client):
    now = datetime.now(UTC)
    for n in range(3):  # the card's and merchant's recent history
        assert client.post("/score", json=_tx(n, now - timedelta(seconds=30 - n))).status_code == 200

    r = client.post("/score", json=_tx(9, now + timedelta(days=2)))
    assert r.status_code == 422, r.text
    errors = r.json()["detail"]
    assert [e["loc"] for e in errors] == [["body", "event_timestamp"]]
    assert errors[0]["type"] == "event_in_future" and "ahead of the server clock" in errors[0]["msg"]
    # the batch endpoint names the transaction
    batch = client.post("/score/batch", json={"transactions": [_tx(10, now), _tx(11, now + timedelta(hours=1))]})
    assert batch.status_code == 422
    assert [e["loc"] for e in batch.json()["detail"]] == [["body", "transactions", 1, "event_timestamp"]]
    # within the allowed skew (300 s) is accepted
    assert client.post("/score", json=_tx(12, now + timedelta(seconds=60))).status_code == 200

    # the windows still hold the history (a recorded far-future event used to trim all of it)
    settings = client.app.state.settings
    store = RedisVelocityStore.from_url(settings.redis_url, prefix=f"{settings.redis_prefix}:vel")
    features = store.features(_tx(99, now + timedelta(seconds=1)), record=False)
    assert features["card_txn_count_3600s"] == features["merchant_txn_count_300s"] == 3
