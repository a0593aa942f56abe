"""Velocity features: per card, device and merchant, counts and amount sums over sliding windows.

Semantics (identical in every implementation, tests keep them in agreement):

* entities: card = ``card_token_id``, device = ``device_fingerprint``, merchant = ``merchant_id``;
  windows per entity from ``payments_core.features.VELOCITY_WINDOWS``;
* the features of transaction *t* count the OTHER recorded transactions of the same entity whose
  event time ``s`` (millisecond precision, floored) satisfies ``t - w <= s < t``: as of the
  transaction's own event time, excluding itself and anything at the same millisecond or later.
  So the result does not depend on processing order once earlier transactions are recorded;
* ``*_txn_count_<w>s`` is the number of such transactions, ``*_amount_minor_<w>s`` the sum of their
  ``amount_minor`` (minor units as recorded, whatever the currency);
* recording is idempotent by ``transaction_id``: a transaction is a sorted-set member
  ``<transaction_id>|<amount_minor>`` scored by its event time, so recording it again changes nothing.

Redis layout: one sorted set per entity value, ``{prefix}:v2:{entity}:{value}`` (``entity_key``),
and next to it, once the set holds ``BUCKET_MIN_MEMBERS`` members, a hash ``...:b`` of amount sums
per second, ten seconds, minute and hour. Every writer keeps "the hash is complete iff the set holds
that many": built when a write brings the set there, dropped when a trim takes it below (a smaller
window is summed from its members anyway, and most cards and devices never pay the bucket writes).
A Lua script records and computes in one call (one round trip per transaction, or one per pipelined
batch). Counts come from ``ZCOUNT``; sums from the members themselves when a window holds few
(``scan_limit``, or fewer than the buckets it would take), otherwise from the buckets of the whole
seconds/ten seconds/minutes/hours inside the window plus the members of the partial seconds at its
edges: still exact, but bounded work for a merchant taking hundreds of payments a second. Members older
than the largest window plus ``grace_seconds`` (relative to the transaction being recorded, or to the
Redis server's clock when that is earlier) are trimmed (and taken out of their buckets), and keys
expire after the largest window plus grace of inactivity. The clock cap is defence in depth: a
transaction dated far in the future would otherwise trim an entity's whole history (the contract
already refuses event times ahead of the server clock, ``payments_core.contract.clock``).

Batches (``features_batch`` / ``features_frame``) first record every transaction of the batch, then
compute features, all in ONE pipelined round trip; so within a batch the result is the same as if
the transactions had been recorded one by one in event-time order.

``InMemoryVelocityStore`` has the same semantics without Redis (backtests, tests), trimming
(and its cap by this machine's clock) included; only the key expiry (wall-clock inactivity) has no
equivalent. Events later than the
grace period (relative to a newer event of the same entity) are not counted: keep ``grace_seconds``
above the stream's allowed lateness.
"""

from __future__ import annotations

import bisect
import time
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from importlib import resources
from typing import Any

import pandas as pd
import redis
import redis.asyncio

from payments_core.features import VELOCITY_FEATURES, VELOCITY_WINDOWS

ENTITY_FIELDS: dict[str, str] = {"card": "card_token_id", "device": "device_fingerprint", "merchant": "merchant_id"}
DEFAULT_PREFIX = "pa:vel"
DEFAULT_GRACE_SECONDS = 3600
# up to this many members in a window, the script sums their amounts one by one; above it, from the
# amount buckets plus the members of the two partial seconds at the edges
DEFAULT_SCAN_LIMIT = 128
# the amount buckets of a set exist only while it holds at least this many members (see the Lua)
BUCKET_MIN_MEMBERS = 64
KEY_LAYOUT = "v2"
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def lua_script(name: str) -> str:
    """A Redis script of ``payments_core/lua`` with the shared window helpers (``velocity_common.lua``)
    in front, loaded as package resources like the rule grammar."""
    folder = resources.files("payments_core.lua")
    common = folder.joinpath("velocity_common.lua").read_text().replace("__BUCKET_MIN__", str(BUCKET_MIN_MEMBERS))
    return common + "\n" + folder.joinpath(name).read_text()


_LUA = lua_script("velocity.lua")
ENTITIES = tuple(VELOCITY_WINDOWS)
WINDOW_ARGS = tuple(",".join(str(w) for w in sorted(VELOCITY_WINDOWS[e])) for e in ENTITIES)
# output order of the Lua script: entity, window ascending, (count, sum)
OUTPUT_NAMES: tuple[str, ...] = tuple(
    name
    for e in ENTITIES
    for w in sorted(VELOCITY_WINDOWS[e])
    for name in (f"{e}_txn_count_{w}s", f"{e}_amount_minor_{w}s")
)
assert set(OUTPUT_NAMES) == set(VELOCITY_FEATURES)


def entity_key(prefix: str, entity: str, value: Any) -> str:
    """The sorted set of one entity value (its amount buckets: the same key + ``:b``). The layout
    version in it changes when the stored format does (v2: ten-second buckets), so a new version
    starts from empty windows instead of misreading the old format."""
    return f"{prefix}:{KEY_LAYOUT}:{entity}:{value}"


def event_millis(ts: Any) -> int:
    """Event time in integer epoch milliseconds (floored); naive datetimes are UTC."""
    if isinstance(ts, pd.Timestamp):
        if ts.tzinfo is None:
            ts = ts.tz_localize("UTC")
        return int(ts.value // 1_000_000)
    if isinstance(ts, datetime):
        if ts.tzinfo is None:
            ts = ts.replace(tzinfo=UTC)
        return (ts - _EPOCH) // _MS
    if isinstance(ts, str):
        return event_millis(datetime.fromisoformat(ts.replace("Z", "+00:00")))
    if isinstance(ts, int | float):
        return int(ts)
    raise TypeError(f"unsupported timestamp {ts!r}")


_MS = pd.Timedelta(milliseconds=1).to_pytimedelta()


def member_of(tx: Mapping[str, Any]) -> str:
    return f"{tx['transaction_id']}|{int(tx['amount_minor'])}"


def zero_features() -> dict[str, int]:
    return dict.fromkeys(VELOCITY_FEATURES, 0)


class RedisVelocityStore:
    """Velocity over Redis with a synchronous client (``redis.Redis``): stream processor, jobs."""

    def __init__(
        self,
        client: Any,
        prefix: str = DEFAULT_PREFIX,
        grace_seconds: int = DEFAULT_GRACE_SECONDS,
        scan_limit: int = DEFAULT_SCAN_LIMIT,
    ):
        self.client = client
        self.prefix = prefix
        self.grace_ms = int(grace_seconds) * 1000
        self.scan_limit = int(scan_limit)
        self._script = client.register_script(_LUA)

    @classmethod
    def from_url(cls, url: str, **kw: Any) -> RedisVelocityStore:
        return cls(redis.Redis.from_url(url), **kw)

    # the arguments of one script call: shared with the async store
    def keys_args(self, tx: Mapping[str, Any], mode: str) -> tuple[list[str], list[Any]]:
        keys: list[str] = []
        for e in ENTITIES:
            key = entity_key(self.prefix, e, tx[ENTITY_FIELDS[e]])
            keys += (key, key + ":b")
        args = [
            member_of(tx),
            event_millis(tx["event_timestamp"]),
            mode,
            self.grace_ms,
            "-",
            self.scan_limit,
            *WINDOW_ARGS,
        ]
        return keys, args

    @staticmethod
    def parse(reply: Sequence[Any]) -> dict[str, int]:
        return {name: int(v) for name, v in zip(OUTPUT_NAMES, reply, strict=True)}

    def features(self, tx: Mapping[str, Any], record: bool = True) -> dict[str, int]:
        """Features of one transaction as of its event time; records it first when ``record``."""
        keys, args = self.keys_args(tx, "1" if record else "0")
        return self.parse(self._script(keys=keys, args=args))

    def record(self, tx: Mapping[str, Any]) -> None:
        keys, args = self.keys_args(tx, "2")
        self._script(keys=keys, args=args)

    def features_batch(self, txs: Sequence[Mapping[str, Any]], record: bool = True) -> list[dict[str, int]]:
        """Features of many transactions in one pipelined round trip (record all, then read)."""
        if not txs:
            return []
        pipe = self.client.pipeline(transaction=False)
        if record:
            for tx in txs:
                keys, args = self.keys_args(tx, "2")
                self._script(keys=keys, args=args, client=pipe)
        for tx in txs:
            keys, args = self.keys_args(tx, "0")
            self._script(keys=keys, args=args, client=pipe)
        replies = pipe.execute()
        return [self.parse(r) for r in replies[len(txs) if record else 0 :]]

    def features_frame(self, df: pd.DataFrame, record: bool = True) -> pd.DataFrame:
        """``features_batch`` over a DataFrame: VELOCITY_FEATURES columns, aligned to ``df.index``."""
        cols = ["transaction_id", "event_timestamp", "amount_minor", *ENTITY_FIELDS.values()]
        rows = df[cols].to_dict("records")
        return _frame(self.features_batch(rows, record=record), df.index)


class AsyncRedisVelocityStore(RedisVelocityStore):
    """The same over ``redis.asyncio.Redis`` (scoring API). ``keys_args``/``parse`` let callers put
    the script call into their own pipeline next to other commands (one round trip)."""

    @classmethod
    def from_url(cls, url: str, **kw: Any) -> AsyncRedisVelocityStore:
        return cls(redis.asyncio.Redis.from_url(url), **kw)

    def add_to_pipeline(self, pipe: Any, tx: Mapping[str, Any], record: bool = True, mode: str | None = None) -> None:
        """Queue the script call on an asyncio pipeline (its reply: ``parse`` it)."""
        keys, args = self.keys_args(tx, mode or ("1" if record else "0"))
        pipe.scripts.add(self._script)
        pipe.evalsha(self._script.sha, len(keys), *keys, *args)

    async def lookup_and_features(
        self, lookup_key: str, tx: Mapping[str, Any], record: bool = True
    ) -> tuple[bytes | None, dict[str, int]]:
        """GET ``lookup_key`` and the velocity features (recording ``tx``) in ONE command (one Lua
        call: cheaper for the client than a pipeline). Returns (value or None, features)."""
        keys, args = self.lookup_keys_args(lookup_key, tx, record)
        return self.parse_lookup(await self._script(keys=keys, args=args))

    def lookup_keys_args(
        self, lookup_key: str, tx: Mapping[str, Any], record: bool = True
    ) -> tuple[list[str], list[Any]]:
        """The script call of ``lookup_and_features`` (for callers that pipeline it themselves)."""
        keys, args = self.keys_args(tx, "1" if record else "0")
        args[4] = "lookup"
        return [lookup_key, *keys], args

    def parse_lookup(self, reply: Sequence[Any]) -> tuple[bytes | None, dict[str, int]]:
        value = reply[0] if reply[0] else None  # Lua false -> nil
        return value, self.parse(reply[1:])

    @property
    def script(self) -> Any:
        return self._script

    async def features(self, tx: Mapping[str, Any], record: bool = True) -> dict[str, int]:  # type: ignore[override]
        keys, args = self.keys_args(tx, "1" if record else "0")
        return self.parse(await self._script(keys=keys, args=args))

    async def record(self, tx: Mapping[str, Any]) -> None:  # type: ignore[override]
        keys, args = self.keys_args(tx, "2")
        await self._script(keys=keys, args=args)

    async def features_batch(  # type: ignore[override]
        self, txs: Sequence[Mapping[str, Any]], record: bool = True
    ) -> list[dict[str, int]]:
        if not txs:
            return []
        pipe = self.client.pipeline(transaction=False)
        if record:
            for tx in txs:
                self.add_to_pipeline(pipe, tx, mode="2")
        for tx in txs:
            self.add_to_pipeline(pipe, tx, mode="0")
        replies = await pipe.execute()
        return [self.parse(r) for r in replies[len(txs) if record else 0 :]]


class InMemoryVelocityStore:
    """Pure-Python store with the Redis store's semantics (backtests, tests). Not thread-safe."""

    def __init__(self, grace_seconds: int | None = DEFAULT_GRACE_SECONDS):
        # key -> sorted list of (ts_ms, member)
        self._index: dict[tuple[str, str], list[tuple[int, str]]] = {}
        self._members: dict[tuple[str, str], set[str]] = {}
        # trimming like Redis (None: keep everything, e.g. for a backtest replaying out of order)
        self.grace_ms = None if grace_seconds is None else int(grace_seconds) * 1000

    def record(self, tx: Mapping[str, Any]) -> None:
        ts = event_millis(tx["event_timestamp"])
        now_ms = int(time.time() * 1000)
        member = member_of(tx)
        for e in ENTITIES:
            key = (e, str(tx[ENTITY_FIELDS[e]]))
            members = self._members.setdefault(key, set())
            items = self._index.setdefault(key, [])
            if member not in members:
                members.add(member)
                bisect.insort(items, (ts, member))
            if self.grace_ms is not None:
                base = min(ts, now_ms)  # never relative to a time past the clock (as the Lua scripts)
                cut = bisect.bisect_left(items, (base - max(VELOCITY_WINDOWS[e]) * 1000 - self.grace_ms, ""))
                for _, m in items[:cut]:
                    members.discard(m)
                del items[:cut]

    def features(self, tx: Mapping[str, Any], record: bool = True) -> dict[str, int]:
        if record:
            self.record(tx)
        ts = event_millis(tx["event_timestamp"])
        out: dict[str, int] = {}
        for e in ENTITIES:
            items = self._index.get((e, str(tx[ENTITY_FIELDS[e]])), [])
            hi = bisect.bisect_left(items, (ts, ""))
            for w in sorted(VELOCITY_WINDOWS[e]):
                lo = bisect.bisect_left(items, (ts - w * 1000, ""))
                window = items[lo:hi]
                out[f"{e}_txn_count_{w}s"] = len(window)
                out[f"{e}_amount_minor_{w}s"] = sum(int(m.rsplit("|", 1)[1]) for _, m in window)
        return {name: out[name] for name in OUTPUT_NAMES}

    def features_batch(self, txs: Sequence[Mapping[str, Any]], record: bool = True) -> list[dict[str, int]]:
        if record:
            for tx in txs:
                self.record(tx)
        return [self.features(tx, record=False) for tx in txs]

    def features_frame(self, df: pd.DataFrame, record: bool = True) -> pd.DataFrame:
        cols = ["transaction_id", "event_timestamp", "amount_minor", *ENTITY_FIELDS.values()]
        return _frame(self.features_batch(df[cols].to_dict("records"), record=record), df.index)


def _frame(rows: list[dict[str, int]], index: pd.Index) -> pd.DataFrame:
    return pd.DataFrame(rows, columns=list(VELOCITY_FEATURES), index=index).fillna(0).astype("int64")
