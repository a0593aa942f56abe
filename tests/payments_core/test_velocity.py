"""Velocity features against a real Redis, and the in-memory store with the same semantics."""

from __future__ import annotations

import asyncio
import random
import uuid
from datetime import UTC, datetime, timedelta

import pandas as pd
import pytest
import redis
import redis.asyncio

from payments_core.features import VELOCITY_FEATURES
from payments_core.samples import sample_request
from payments_core.velocity import AsyncRedisVelocityStore, InMemoryVelocityStore, RedisVelocityStore, entity_key

T0 = datetime(2026, 3, 2, 12, 0, tzinfo=UTC)


@pytest.fixture
def store(redis_url):
    return RedisVelocityStore(redis.Redis.from_url(redis_url), prefix=f"test:vel:{uuid.uuid4().hex[:8]}")


def _tx(i, seconds, card="tok_a", device="dev_a", merchant="m_a", amount=1000):
    return {
        "transaction_id": f"txn_{i:016x}",
        "event_timestamp": T0 + timedelta(seconds=seconds),
        "card_token_id": card,
        "device_fingerprint": device,
        "merchant_id": merchant,
        "amount_minor": amount,
    }


def test_windows_counts_and_sums_as_of_event_time(store):
    assert store.features(_tx(1, 0)) == {name: 0 for name in VELOCITY_FEATURES}  # nothing before it
    store.features(_tx(2, 100, amount=2000))
    store.features(_tx(3, 400, merchant="m_b", amount=500))
    f = store.features(_tx(4, 700, amount=300))
    # card: 600 s window = [100, 700): txns 2 and 3; 3600 s: 1, 2, 3
    assert (f["card_txn_count_600s"], f["card_amount_minor_600s"]) == (2, 2500)
    assert (f["card_txn_count_3600s"], f["card_amount_minor_3600s"]) == (3, 3500)
    assert f["card_txn_count_86400s"] == 3
    # merchant m_a, 300 s window = [400, 700): nothing (3 was m_b)
    assert f["merchant_txn_count_300s"] == 0
    # the lower bound is inclusive, the upper bound exclusive
    g = store.features(_tx(5, 700 + 600 - 0.0, card="tok_a"), record=False)
    assert g["card_txn_count_600s"] == 1  # [700, 1300): only txn 4 (at exactly 700)


def test_recording_is_idempotent_and_excludes_itself(store):
    tx = _tx(10, 0)
    store.features(tx)
    later = _tx(11, 10)
    first = store.features(later)
    for _ in range(3):
        store.features(tx)
        assert store.features(later) == first  # re-recording changes nothing
    assert first["card_txn_count_600s"] == 1
    same_time = _tx(12, 10)
    assert store.features(same_time)["card_txn_count_600s"] == 1  # same millisecond: not counted


def test_order_independent_once_recorded(store):
    txs = [_tx(i, s) for i, s in enumerate([50, 10, 30, 20, 40], start=100)]
    out = store.features_batch(txs)
    counts = [o["card_txn_count_600s"] for o in out]
    assert counts == [4, 0, 2, 1, 3]


@pytest.mark.parametrize("scan_limit", [0, 128], ids=["buckets", "scan"])
def test_redis_and_in_memory_agree(store, scan_limit):
    store.scan_limit = scan_limit  # 0: every window's sum from the per-second/minute buckets
    rng = random.Random(5)
    txs = []
    for _ in range(300):
        tx = sample_request(
            rng,
            base_time=T0,
            card_token_id=f"tok_{rng.randrange(8)}",
            device_fingerprint=f"dev_{rng.randrange(5)}",
            merchant_id=f"m_{rng.randrange(3)}",
        )
        tx["event_timestamp"] = T0 + timedelta(seconds=rng.randrange(0, 7200), milliseconds=rng.randrange(1000))
        txs.append(tx)
    mem = InMemoryVelocityStore()
    half = len(txs) // 2
    # first half one by one (in arrival order), second half as one pipelined batch
    got = [store.features(tx) for tx in txs[:half]] + store.features_batch(txs[half:])
    want = [mem.features(tx) for tx in txs[:half]] + mem.features_batch(txs[half:])
    assert got == want
    # and as of the final state, in any order, both agree again
    shuffled = txs[:]
    rng.shuffle(shuffled)
    assert store.features_batch(shuffled, record=False) == mem.features_batch(shuffled, record=False)
    frame = store.features_frame(pd.DataFrame(shuffled), record=False)
    assert list(frame.columns) == list(VELOCITY_FEATURES)
    assert frame.to_dict("records") == mem.features_frame(pd.DataFrame(shuffled), record=False).to_dict("records")
    assert any(r["card_txn_count_86400s"] > 10 for r in got)


def test_old_members_are_trimmed_and_keys_expire(store):
    store.features(_tx(200, 0, card="tok_trim"))
    store.features(_tx(201, 86400 + 3600 + 10, card="tok_trim"))
    key = entity_key(store.prefix, "card", "tok_trim")
    assert store.client.zcard(key) == 1  # the first is older than the largest window + grace
    ttl = store.client.pttl(key)
    assert 0 < ttl <= (86400 + 3600) * 1000


def test_async_store_matches_sync(redis_url):
    asyncio.run(_async_store_matches_sync(redis_url))


async def _async_store_matches_sync(redis_url):
    prefix = f"test:vel:{uuid.uuid4().hex[:8]}"
    sync = RedisVelocityStore(redis.Redis.from_url(redis_url), prefix=prefix)
    client = redis.asyncio.Redis.from_url(redis_url)
    try:
        astore = AsyncRedisVelocityStore(client, prefix=prefix)
        a = await astore.features(_tx(300, 0))
        b = await astore.features(_tx(301, 5, amount=70))
        assert a["card_txn_count_600s"] == 0 and b["card_amount_minor_600s"] == 1000
        assert sync.features(_tx(302, 6), record=False)["card_amount_minor_600s"] == 1070
        batch = await astore.features_batch([_tx(303, 7), _tx(304, 8)])
        assert [r["card_txn_count_600s"] for r in batch] == [2, 3]
    finally:
        await client.aclose()


def test_a_busy_merchant_sums_from_buckets_exactly(store):
    """Thousands of payments in the merchant's 5-minute window, at millisecond edges and out of
    order, some recorded twice: bucket sums agree with the in-memory scan, trimming included."""
    rng = random.Random(11)
    mem = InMemoryVelocityStore()
    txs = []
    for i in range(3000):
        offset = rng.choice([rng.uniform(0, 900), 300.0, 299.999, 600.0, 60.0, 59.999])
        txs.append(
            {
                **_tx(5000 + i, offset, card=f"tok_{i}", device=f"dev_{i}", merchant="m_busy"),
                "amount_minor": rng.choice([0, 10**12, rng.randrange(1, 10**7)]),
            }
        )
    again = txs[:50]
    got = store.features_batch(txs + again)
    want = mem.features_batch(txs + again)
    assert got == want
    probe = [
        _tx(9000 + k, s, card="tok_p", device="dev_p", merchant="m_busy")
        for k, s in enumerate([299.9995, 300, 360, 600.0005, 901, 86400 * 2])
    ]
    assert store.features_batch(probe, record=False) == mem.features_batch(probe, record=False)
    assert max(g["merchant_txn_count_300s"] for g in got) > store.scan_limit  # the bucket path ran
    # a busy card over two days: its day window sums hour buckets too
    cards = [
        {
            **_tx(
                20000 + i, 86400 * 5 + rng.uniform(0, 172_800), card="tok_busy", device=f"dev_c{i}", merchant=f"m_c{i}"
            ),
            "amount_minor": rng.randrange(1, 10**6),
        }
        for i in range(1500)
    ]
    got = store.features_batch(cards)
    assert got == mem.features_batch(cards)
    assert max(g["card_txn_count_86400s"] for g in got) > 500
    # a transaction far later trims everything before it; one member left: no buckets any more
    key = entity_key(store.prefix, "merchant", "m_busy")
    assert store.client.exists(f"{key}:b")
    store.features(_tx(9999, 86400 * 3, card="tok_q", device="dev_q", merchant="m_busy"))
    assert store.client.zcard(key) == 1
    assert not store.client.exists(f"{key}:b")


def _recent(n: int, prefix: str, **entities) -> list[dict]:
    """``n`` transactions over the last ``n`` seconds (wall clock), the given card/device/merchant."""
    now = datetime.now(UTC)
    return [
        {
            "transaction_id": f"txn_{prefix}{i:08x}",
            "event_timestamp": now - timedelta(seconds=n - i),
            "amount_minor": 100 + i,
            **entities,
        }
        for i in range(n)
    ]


def _record_future(path: str, client, prefix: str, tx: dict) -> None:
    from payments_core.velocity_batch import ENTITY_COLUMNS, BatchRedisVelocity  # noqa: PLC0415

    if path in ("features", "record"):
        store = RedisVelocityStore(client, prefix=prefix)
        store.features(tx) if path == "features" else store.record(tx)
        return
    batch = BatchRedisVelocity(client, prefix=prefix)
    args = (
        [tx["transaction_id"]],
        [int(tx["event_timestamp"].timestamp() * 1000)],
        [tx["amount_minor"]],
        [[tx[c]] for c in ENTITY_COLUMNS],
    )
    batch.features_arrays(*args) if path == "batch_features" else batch.record_arrays(*args)


@pytest.mark.parametrize("path", ["features", "record", "batch_features", "batch_record", "in_memory"])
def test_a_future_dated_transaction_leaves_existing_windows_intact(redis_url, path):
    # A client clock days ahead: recording trims relative to event time, and used to trim everything
    # older than (event time - largest window - grace): the card's and the merchant's whole history.
    client = redis.Redis.from_url(redis_url)
    prefix = f"test:vel:{uuid.uuid4().hex[:8]}"
    entities = {"card_token_id": "tok_f", "device_fingerprint": "dev_f", "merchant_id": "m_f"}
    # the merchant with more members than BUCKET_MIN_MEMBERS: its amount buckets are kept up to date too
    history = _recent(90, "a", **entities)
    memory = InMemoryVelocityStore()
    store = RedisVelocityStore(client, prefix=prefix)
    store.features_batch(history)
    memory.features_batch(history)
    probe = {
        **entities,
        "transaction_id": "txn_ffffffffffffffff",
        "amount_minor": 1,
        "event_timestamp": datetime.now(UTC),
    }
    before = store.features(probe, record=False)
    assert before["card_txn_count_3600s"] == before["merchant_txn_count_300s"] == 90
    assert before == memory.features(probe, record=False)

    future = {**entities, "transaction_id": "txn_fffffffffffffffe", "amount_minor": 7}
    future["event_timestamp"] = datetime.now(UTC) + timedelta(days=3)
    if path == "in_memory":
        memory.record(future)
        assert memory.features(probe, record=False) == before
        return
    _record_future(path, client, prefix, future)
    after = store.features(probe, record=False)
    assert after == before, {k: (before[k], after[k]) for k in before if before[k] != after[k]}
    for entity, value in (("card", "tok_f"), ("device", "dev_f"), ("merchant", "m_f")):
        assert client.zcard(entity_key(prefix, entity, value)) == 91  # the history and the future one
    # the merchant's amount buckets still add up to its members (the sums over windows read them)
    buckets = client.hgetall(entity_key(prefix, "merchant", "m_f") + ":b")
    assert sum(int(v) for f, v in buckets.items() if f.startswith(b"h")) == sum(t["amount_minor"] for t in history) + 7
