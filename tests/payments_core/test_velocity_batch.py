"""The one-call batch velocity script against the per-transaction script, on a real Redis."""

from __future__ import annotations

import random
import uuid
from datetime import UTC, datetime, timedelta

import numpy as np
import pandas as pd
import redis

from payments_core.features import VELOCITY_FEATURES
from payments_core.samples import sample_request
from payments_core.velocity import BUCKET_MIN_MEMBERS, InMemoryVelocityStore, RedisVelocityStore, entity_key
from payments_core.velocity_batch import ENTITY_COLUMNS, BatchRedisVelocity

T0 = datetime(2026, 3, 2, 12, 0, tzinfo=UTC)


def _txs(n: int, seed: int, start: datetime = T0) -> list[dict]:
    """Out of order over 50 minutes (more than the merchant window, less than the grace period:
    see the module docstring of ``velocity_batch`` for events later than that), some at the same
    millisecond."""
    rng = random.Random(seed)
    out = []
    for _ in range(n):
        tx = sample_request(
            rng,
            base_time=T0,
            card_token_id=f"tok_{rng.randrange(12)}",
            device_fingerprint=f"dev_{rng.randrange(7)}",
            merchant_id=f"m_{rng.randrange(4)}",
        )
        tx["event_timestamp"] = start + timedelta(
            seconds=rng.randrange(0, 3000), milliseconds=rng.choice([0, 0, 1, 999])
        )
        out.append(tx)
    return out


def test_batch_script_equals_per_transaction_script_and_leaves_the_same_state(redis_url):
    client = redis.Redis.from_url(redis_url)
    a, b = f"test:vb:{uuid.uuid4().hex[:8]}", f"test:vb:{uuid.uuid4().hex[:8]}"
    one, many = RedisVelocityStore(client, prefix=a), BatchRedisVelocity(client, prefix=b)
    txs = _txs(700, seed=3)
    # mixed sizes, one replayed row, and a last batch two days later (trims the old members)
    batches = [
        txs[:1],
        txs[1:300],
        txs[300:301],
        txs[300:650],
        txs[650:],
        _txs(80, seed=5, start=T0 + timedelta(days=2)),
    ]
    total = 0
    for batch in batches:
        want = pd.DataFrame(one.features_batch(batch), columns=list(VELOCITY_FEATURES))
        got = many.features_frame(pd.DataFrame(batch))
        assert got.columns.tolist() == list(VELOCITY_FEATURES)
        assert np.array_equal(got.to_numpy(), want.to_numpy())
        total += int(got.to_numpy().sum())
    assert total > 0  # the windows really held something
    # read-only: no recording, same answers as the per-transaction read
    probe = _txs(50, seed=4)
    want = pd.DataFrame(one.features_batch(probe, record=False), columns=list(VELOCITY_FEATURES))
    assert np.array_equal(many.features_frame(pd.DataFrame(probe), record=False).to_numpy(), want.to_numpy())
    # the stored state is the same one (the scoring API reads it)
    for key in client.scan_iter(f"{a}:*"):
        other = key.decode().replace(a, b, 1)
        if key.endswith(b":b"):  # the amount buckets (velocity.py's exact sums for busy keys)
            assert client.hgetall(key) == client.hgetall(other)
        else:
            assert client.zrange(key, 0, -1, withscores=True) == client.zrange(other, 0, -1, withscores=True)
    assert len(list(client.scan_iter(f"{b}:*"))) == len(list(client.scan_iter(f"{a}:*"))) > 0


def test_empty_batch(redis_url):
    store = BatchRedisVelocity.from_url(redis_url, prefix=f"test:vb:{uuid.uuid4().hex[:8]}")
    assert store.features_arrays([], [], [], [[], [], []]).shape == (0, len(VELOCITY_FEATURES))


def test_record_only_leaves_the_state_of_per_transaction_recording(redis_url):
    client = redis.Redis.from_url(redis_url)
    a, b = f"test:vb:{uuid.uuid4().hex[:8]}", f"test:vb:{uuid.uuid4().hex[:8]}"
    one, many = RedisVelocityStore(client, prefix=a), BatchRedisVelocity(client, prefix=b)
    txs = _txs(300, seed=8)
    for tx in txs:
        one.record(tx)
    df = pd.DataFrame(txs)
    ms = pd.to_datetime(df["event_timestamp"], utc=True).astype("datetime64[us, UTC]").astype("int64") // 1000
    many.record_arrays(
        df["transaction_id"].tolist(),
        ms.tolist(),
        df["amount_minor"].tolist(),
        [df[c].tolist() for c in ENTITY_COLUMNS],
    )
    keys = sorted(k.decode() for k in client.scan_iter(f"{a}:*"))
    assert keys and sorted(k.decode() for k in client.scan_iter(f"{b}:*")) == [k.replace(a, b, 1) for k in keys]
    assert any(k.endswith(":b") for k in keys)
    for key in keys:
        if key.endswith(":b"):  # amount buckets
            assert client.hgetall(key) == client.hgetall(key.replace(a, b, 1))
        else:
            assert client.zrange(key, 0, -1, withscores=True) == client.zrange(
                key.replace(a, b, 1), 0, -1, withscores=True
            )
        assert client.pttl(key.replace(a, b, 1)) > 0
    # and the batch reads agree afterwards
    probe = _txs(40, seed=9)
    want = pd.DataFrame(one.features_batch(probe, record=False), columns=list(VELOCITY_FEATURES))
    assert np.array_equal(many.features_frame(pd.DataFrame(probe), record=False).to_numpy(), want.to_numpy())
    assert want.to_numpy().sum() > 0


def test_buckets_kept_by_the_batch_script_serve_the_per_transaction_reads(redis_url):
    """The stream records in batches, POST /score reads one by one from the buckets: exact sums."""
    client = redis.Redis.from_url(redis_url)
    prefix = f"test:vb:{uuid.uuid4().hex[:8]}"
    many = BatchRedisVelocity(client, prefix=prefix)
    one = RedisVelocityStore(client, prefix=prefix, scan_limit=0)  # every window sum from the buckets
    mem = InMemoryVelocityStore()
    txs = _txs(900, seed=12)
    for start in range(0, len(txs), 250):
        many.features_frame(pd.DataFrame(txs[start : start + 250]))
    for tx in txs:
        mem.record(tx)
    probe = _txs(60, seed=13)
    assert one.features_batch(probe, record=False) == mem.features_batch(probe, record=False)


def test_a_busy_merchant_is_read_from_the_buckets_with_the_same_answers(redis_url):
    """A small batch against a merchant holding thousands of members in its window takes the bucket
    path (no range scan); answers equal the in-memory store's."""
    client = redis.Redis.from_url(redis_url)
    prefix = f"test:vb:{uuid.uuid4().hex[:8]}"
    many = BatchRedisVelocity(client, prefix=prefix)
    mem = InMemoryVelocityStore()
    rng = random.Random(21)
    busy = []
    for i in range(4000):
        tx = sample_request(rng, base_time=T0, merchant_id="m_busy")
        tx["transaction_id"] = f"txn_{i:016x}"
        tx["event_timestamp"] = T0 + timedelta(milliseconds=rng.randrange(0, 600_000))
        busy.append(tx)
    many.features_frame(pd.DataFrame(busy))
    for tx in busy:
        mem.record(tx)
    for seed in (22, 23):  # batches of 3: 4,000 members in range > 50 per transaction
        small = []
        for j in range(3):
            tx = sample_request(random.Random(seed * 10 + j), base_time=T0, merchant_id="m_busy")
            tx["event_timestamp"] = T0 + timedelta(milliseconds=random.Random(seed + j).randrange(300_000, 600_000))
            small.append(tx)
        got = many.features_frame(pd.DataFrame(small))
        want = pd.DataFrame(mem.features_batch(small), columns=list(VELOCITY_FEATURES))
        assert np.array_equal(got.to_numpy(), want.to_numpy())
        assert (got["merchant_txn_count_300s"] > 1000).all()


def _bucket_sums(client, key: str) -> dict[bytes, int]:
    """What the amount buckets of a sorted set must hold: recomputed from its members."""
    want: dict[bytes, int] = {}
    for member, score in client.zrange(key, 0, -1, withscores=True):
        amount = int(member.rsplit(b"|", 1)[1])
        sec = int(score) // 1000
        for field in (b"s%d" % sec, b"t%d" % (sec // 10), b"m%d" % (sec // 60), b"h%d" % (sec // 3600)):
            want[field] = want.get(field, 0) + amount
    return {f: v for f, v in want.items() if v}


def test_buckets_exist_exactly_for_sets_of_bucket_min_members_whoever_writes(redis_url):
    """Both writers keep "a set has complete buckets iff it holds >= BUCKET_MIN_MEMBERS": a card
    growing past the threshold (by one script or the other), then trimmed back below it."""
    client = redis.Redis.from_url(redis_url)
    prefix = f"test:vb:{uuid.uuid4().hex[:8]}"
    one = RedisVelocityStore(client, prefix=prefix, scan_limit=0)  # reads from buckets whenever they exist
    many = BatchRedisVelocity(client, prefix=prefix)
    mem = InMemoryVelocityStore()
    key = entity_key(prefix, "card", "tok_grow")
    rng = random.Random(31)

    def tx(i: int, seconds: float) -> dict:
        t = sample_request(
            rng, base_time=T0, card_token_id="tok_grow", device_fingerprint=f"dev_{i}", merchant_id=f"m_{i % 3}"
        )
        return {**t, "transaction_id": f"txn_{i:016x}", "event_timestamp": T0 + timedelta(seconds=seconds)}

    seen = set()
    i = 0
    for size, writer in [(1, "one")] * 10 + [(20, "batch"), (1, "one"), (40, "batch"), (1, "one")] * 2:
        batch = [tx(i + j, rng.uniform(0, 3_000)) for j in range(size)]  # (within the grace period)
        i += size
        if writer == "one":
            got = [one.features(t) for t in batch]
        else:
            got = many.features_frame(pd.DataFrame(batch)).to_dict("records")
        for t in batch:
            mem.record(t)
        assert got == [mem.features(t, record=False) for t in batch]
        card = client.zcard(key)
        has = bool(client.exists(f"{key}:b"))
        assert has == (card >= BUCKET_MIN_MEMBERS), (card, has)
        if has:
            assert {f: int(v) for f, v in client.hgetall(f"{key}:b").items()} == _bucket_sums(client, key)
            assert client.pttl(f"{key}:b") > 0
        seen.add(has)
    assert seen == {False, True}  # the card crossed the threshold
    # two days later: everything older is trimmed, the buckets go with it
    for writer in ("batch", "one"):
        t = tx(i, 200_000 + i)
        i += 1
        if writer == "one":
            one.features(t)
        else:
            many.features_frame(pd.DataFrame([t]))
        assert client.zcard(key) < BUCKET_MIN_MEMBERS and not client.exists(f"{key}:b")


def test_busy_merchants_in_short_batches_have_the_same_answers_as_the_in_memory_store(redis_url):
    """Batches spanning a few seconds against merchants holding hundreds to thousands of members in
    their window (the stream at steady state: the bucket reads), stamps on and next to second
    boundaries, out of order within a batch, replays; record and read-only."""
    client = redis.Redis.from_url(redis_url)
    prefix = f"test:vb:{uuid.uuid4().hex[:8]}"
    many = BatchRedisVelocity(client, prefix=prefix)
    mem = InMemoryVelocityStore()
    rng = random.Random(31)
    clock = 0  # ms after T0
    sent: list[dict] = []
    checked = 0
    for b in range(60):
        batch = []
        for i in range(rng.randrange(20, 200)):
            tx = sample_request(
                rng,
                base_time=T0,
                merchant_id=f"m_{rng.choice([0, 0, 0, 1, 2])}",
                card_token_id=f"tok_{rng.randrange(40)}",
            )
            tx["transaction_id"] = f"txn_{b:08x}{i:08x}"
            offset = clock + rng.randrange(0, 3000)
            offset -= offset % 1000 if rng.random() < 0.2 else 0  # on a second boundary
            offset += 999 if rng.random() < 0.05 else 0
            tx["event_timestamp"] = T0 + timedelta(milliseconds=offset)
            batch.append(tx)
        if sent and b % 7 == 0:
            batch.append(rng.choice(sent[-100:]))  # a replayed transaction
        clock += 10_000
        got = many.features_frame(pd.DataFrame(batch))
        want = pd.DataFrame(mem.features_batch(batch), columns=list(VELOCITY_FEATURES))
        assert np.array_equal(got.to_numpy(), want.to_numpy()), b
        sent += batch
        checked += int((got["merchant_txn_count_300s"] > 4 * 64).sum())
    assert checked > 1000  # most reads were of busy merchants
    probe = []
    for _ in range(100):
        tx = sample_request(rng, base_time=T0, merchant_id="m_0")
        tx["event_timestamp"] = T0 + timedelta(milliseconds=clock - rng.randrange(0, 2500))
        probe.append(tx)
    got = many.features_frame(pd.DataFrame(probe), record=False)
    want = pd.DataFrame(mem.features_batch(probe, record=False), columns=list(VELOCITY_FEATURES))
    assert np.array_equal(got.to_numpy(), want.to_numpy())
    assert (got["merchant_txn_count_300s"] > 1000).all()
