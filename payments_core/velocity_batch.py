"""Velocity of a whole batch in ONE Redis script call: same keys, members and semantics as
``payments_core.velocity`` (the scoring API's per-transaction script), a fraction of the cost.

``RedisVelocityStore.features_batch`` sends two script calls per transaction (record, then read),
and each read scans the entity's whole window (``ZRANGEBYSCORE``): per transaction that is
~100 µs of client-side packing plus a window scan per key, so a popular merchant's five-minute
window is scanned once per transaction of that merchant. Here the batch goes as one ``EVALSHA``:

1. record: one ``ZADD`` per key with all of the batch's members of that key (``ZMSCORE`` first, or
   the answer of ``ZADD`` for a key with one member in the batch: the members not stored yet go into
   the amount buckets of ``velocity.py`` when the set has them), then one trim (relative to the key's
   newest event of the batch, or to the Redis server's clock when that is earlier: a future-dated
   event never trims the present; trimmed members leave their buckets; for cards and devices it reads the
   whole set once, which then serves the read too), the buckets kept complete iff the set holds
   ``velocity.BUCKET_MIN_MEMBERS``, and one ``PEXPIRE`` of the set and of its buckets;
2. read: per key ONE ``ZRANGEBYSCORE`` over ``[oldest - largest window, newest)`` of the batch,
   prefix sums of the amounts, and per transaction and window two binary searches
   (count and sum of ``t - w <= s < t``, exactly the per-transaction definition). A key with amount
   buckets (a busy merchant) in a batch shorter than its window is read from the batch's edges
   instead: each window's whole seconds from the buckets (and ``ZCOUNT``) once per distinct pair of
   seconds, its two partial seconds by binary search in two range reads shared by the batch. Work in
   proportion to the batch, not to the window: at a high rate every batch has most merchants, and a
   scan of their 5-minute windows grew with the traffic.

So the result equals ``features_batch`` (record every transaction of the batch, then read;
``tests/payments_core/test_velocity_batch.py``), and the stored state is the same one the scoring
API reads and writes. (One corner differs, as documented for the in-memory store: an event later
than the grace period relative to a NEWER event of the same key in the same batch is trimmed at
once instead of at that key's next write.)
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd
import redis

from payments_core.features import VELOCITY_FEATURES
from payments_core.velocity import (
    DEFAULT_GRACE_SECONDS,
    DEFAULT_PREFIX,
    ENTITIES,
    ENTITY_FIELDS,
    OUTPUT_NAMES,
    WINDOW_ARGS,
    entity_key,
    event_millis,
    lua_script,
)

_BATCH_LUA = lua_script("velocity_batch.lua")
# the script's output column order = ``velocity.OUTPUT_NAMES``; positions of VELOCITY_FEATURES in it
_COLUMN_ORDER = np.array([OUTPUT_NAMES.index(name) for name in VELOCITY_FEATURES])
ENTITY_COLUMNS = tuple(ENTITY_FIELDS[e] for e in ENTITIES)
# Read timeout of ``from_url``'s client (seconds): one script call records and reads a whole batch, and
# a large batch legitimately keeps Redis busy for seconds (redis-py 8 reads with a 5 s timeout by
# default; in the stream processor a timeout failed the whole query)
READ_TIMEOUT_S = 120.0
# how each entity's sorted set is read: "all" (small sets: cards, devices -- one read, the trim only
# when something is old enough) or "window" (merchants: only the batch's windows)
_READS = tuple("window" if e == "merchant" else "all" for e in ENTITIES)


class BatchRedisVelocity:
    """Velocity features of a batch in one script call over a synchronous ``redis.Redis``."""

    def __init__(self, client: Any, prefix: str = DEFAULT_PREFIX, grace_seconds: int = DEFAULT_GRACE_SECONDS):
        self.client = client
        self.prefix = prefix
        self.grace_ms = int(grace_seconds) * 1000
        self._script = client.register_script(_BATCH_LUA)

    @classmethod
    def from_url(cls, url: str, socket_timeout: float = READ_TIMEOUT_S, **kw: Any) -> BatchRedisVelocity:
        return cls(redis.Redis.from_url(url, socket_timeout=socket_timeout), **kw)

    def features_arrays(
        self,
        transaction_id: Sequence[str],
        event_ms: Sequence[int],
        amount_minor: Sequence[int],
        entities: Sequence[Sequence[str]],
        record: bool = True,
        *,
        mode: str | None = None,
    ) -> np.ndarray:
        """``(n, len(VELOCITY_FEATURES))`` int64 in VELOCITY_FEATURES order.

        ``event_ms``: event time in integer epoch milliseconds (floored, as ``velocity.event_millis``);
        ``entities``: one sequence per entity of ``velocity.ENTITY_FIELDS`` (card, device, merchant)."""
        n = len(transaction_id)
        if n == 0:
            return np.zeros((0, len(VELOCITY_FEATURES)), dtype=np.int64)
        keys: list[str] = []
        counts: list[int] = []
        indices: list[list[int]] = []
        for e, values in zip(ENTITIES, entities, strict=True):
            index: dict[str, int] = {}
            base = len(keys)
            col = []
            for v in values:
                j = index.get(v)
                if j is None:
                    j = index[v] = base + len(index) + 1  # 1-based KEYS index
                col.append(j)
            keys.extend(entity_key(self.prefix, e, v) for v in index)
            counts.append(len(index))
            indices.append(col)
        keys += [f"{k}:b" for k in keys]  # each sorted set's bucket hash (velocity.py's layout)
        members = " ".join([f"{tid}|{int(amt)}" for tid, amt in zip(transaction_id, amount_minor, strict=True)])
        stamps = " ".join([str(int(ts)) for ts in event_ms])
        args = [
            self.grace_ms,
            mode or ("1" if record else "0"),
            len(ENTITIES),
            *WINDOW_ARGS,
            *counts,
            *_READS,
            members,
            stamps,
            *(" ".join(map(str, col)) for col in indices),
        ]
        reply = self._script(keys=keys, args=args)
        if mode == "2":
            return np.zeros((n, len(VELOCITY_FEATURES)), dtype=np.int64)
        # one comma-separated string (Lua's %.14g: exact integers far beyond any amount sum)
        flat = np.fromstring(reply, dtype=np.float64, sep=",").astype(np.int64).reshape(n, len(OUTPUT_NAMES))
        return flat[:, _COLUMN_ORDER]

    def record_arrays(
        self,
        transaction_id: Sequence[str],
        event_ms: Sequence[int],
        amount_minor: Sequence[int],
        entities: Sequence[Sequence[str]],
    ) -> None:
        """Record a batch without reading (the same stored state as ``features_arrays``)."""
        self.features_arrays(transaction_id, event_ms, amount_minor, entities, mode="2")

    def features_frame(self, df: Any, record: bool = True) -> Any:
        """VELOCITY_FEATURES columns for a pandas DataFrame of contract fields, aligned to ``df.index``."""

        ts = df["event_timestamp"]
        if pd.api.types.is_datetime64_any_dtype(ts):
            ms = (pd.to_datetime(ts, utc=True).astype("datetime64[us, UTC]").astype("int64") // 1000).tolist()
        else:
            ms = [event_millis(v) for v in ts.tolist()]
        out = self.features_arrays(
            df["transaction_id"].tolist(),
            ms,
            df["amount_minor"].tolist(),
            [df[c].tolist() for c in ENTITY_COLUMNS],
            record=record,
        )
        return pd.DataFrame(out, index=df.index, columns=list(VELOCITY_FEATURES))
