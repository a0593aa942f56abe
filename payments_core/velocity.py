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
than the largest window plus ``grace_seconds`` (relative to the transaction being recorded) are
trimmed (and taken out of their buckets), and keys expire after the largest window plus grace of
inactivity.

Batches (``features_batch`` / ``features_frame``) first record every transaction of the batch, then
compute features, all in ONE pipelined round trip; so within a batch the result is the same as if
the transactions had been recorded one by one in event-time order.

``InMemoryVelocityStore`` has the same semantics without Redis (backtests, tests), trimming
included; only the key expiry (wall-clock inactivity) has no equivalent. Events later than the
grace period (relative to a newer event of the same entity) are not counted: keep ``grace_seconds``
above the stream's allowed lateness.
"""
from __future__ import annotations

import bisect
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

import pandas as pd

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

# Lua shared with the batch script (velocity_batch.py): exact count and sum over [lo, hi) of a key
_WINDOW_LUA = """
local function vel_amount(m) return tonumber(string.match(m, '|(%d+)$')) or 0 end

-- the bucket fields of the second of an event time: 's<second>', 't<ten seconds>', 'm<minute>', 'h<hour>'
-- (one table per second for the whole script call: a batch has many events in few seconds; read only)
local vel_fields_of_second = {}
local function vel_bucket_fields(ms)
  local sec = math.floor(ms / 1000)
  local fields = vel_fields_of_second[sec]
  if fields == nil then
    local minute = math.floor(sec / 60)
    fields = {'s' .. string.format('%d', sec), 't' .. string.format('%d', math.floor(sec / 10)),
              'm' .. string.format('%d', minute), 'h' .. string.format('%d', math.floor(minute / 60))}
    vel_fields_of_second[sec] = fields
  end
  return fields
end

-- sum of the amounts of the members scored in [lo, hi)
local function vel_scan_sum(key, lo, hi)
  if lo >= hi then return 0 end
  local s = 0
  for _, m in ipairs(redis.call('ZRANGEBYSCORE', key, lo, '(' .. hi)) do s = s + vel_amount(m) end
  return s
end

-- Amount buckets are kept only for sets of at least VEL_BUCKET_MIN members. Every writer keeps
-- "the hash <set>:b is complete iff ZCARD(set) >= VEL_BUCKET_MIN" (checked after its trim): below
-- that a window is summed from its members anyway, and most cards and devices never pay the three
-- HINCRBYs per transaction.
local VEL_BUCKET_MIN = __BUCKET_MIN__

-- add amount a at event time ms to the field -> change table of a write
local function vel_delta_add(delta, ms, a)
  if a == 0 then return end
  for _, f in ipairs(vel_bucket_fields(ms)) do delta[f] = (delta[f] or 0) + a end
end

-- the hash rebuilt from every member of the set (the write that brings it to VEL_BUCKET_MIN)
local function vel_build_buckets(key, bkey)
  redis.call('DEL', bkey)  -- (a hash left by an older writer)
  local all = redis.call('ZRANGE', key, 0, -1, 'WITHSCORES')
  local b = {}
  for j = 1, #all, 2 do vel_delta_add(b, tonumber(all[j + 1]), vel_amount(all[j])) end
  local args = {}
  for f, v in pairs(b) do
    if v ~= 0 then args[#args + 1] = f; args[#args + 1] = v end
    if #args >= 2000 then redis.call('HSET', bkey, unpack(args)); args = {} end
  end
  if #args > 0 then redis.call('HSET', bkey, unpack(args)) end
end

-- after a write that took the set from card_before to card_after members (additions, then the
-- trim): keep the invariant. delta: field -> change of the write's new and trimmed members; it is
-- only used (so only needed) when both cards are at least VEL_BUCKET_MIN.
local function vel_sync_buckets(key, bkey, card_before, card_after, delta, ttl)
  if card_after >= VEL_BUCKET_MIN then
    if card_before >= VEL_BUCKET_MIN then
      for field, d in pairs(delta) do
        if d ~= 0 and redis.call('HINCRBY', bkey, field, d) == 0 then redis.call('HDEL', bkey, field) end
      end
    else
      vel_build_buckets(key, bkey)
    end
    redis.call('PEXPIRE', bkey, ttl)
  elseif card_before >= VEL_BUCKET_MIN then
    redis.call('DEL', bkey)
  end
end

local VEL_PREFIX = {'s', 't', 'm', 'h'}
local VEL_UP = {10, 6, 60}  -- how many units of a level make one of the next

-- the bucket fields covering the whole units [a, b) of a level (1 second, 2 ten seconds, 3 minute,
-- 4 hour), coarsest first: appended to names (a 5-minute window: ~17 fields, not ~64 without the
-- ten-second level)
local function vel_cover(level, a, b, names)
  if a >= b then return end
  local r = VEL_UP[level]
  if r then
    local up_a, up_b = math.ceil(a / r), math.floor(b / r)
    if up_a < up_b then
      vel_cover(level, a, up_a * r, names)
      vel_cover(level + 1, up_a, up_b, names)
      vel_cover(level, up_b * r, b, names)
      return
    end
  end
  for x = a, b - 1 do names[#names + 1] = VEL_PREFIX[level] .. string.format('%d', x) end
end

-- sum of the bucket fields names of bkey (absent fields: 0), in HMGETs of at most 1,000 fields
local function vel_bucket_sum(bkey, names)
  local sum = 0
  for c = 1, #names, 1000 do
    local part = {}
    for q = c, math.min(c + 999, #names) do part[#part + 1] = names[q] end
    for _, v in ipairs(redis.call('HMGET', bkey, unpack(part))) do if v then sum = sum + tonumber(v) end end
  end
  return sum
end

-- count and amount sum of the members scored in [lo, hi): exact. The sum comes from the members
-- one by one when that is cheaper, otherwise from the buckets of the whole seconds, minutes and
-- hours inside the window plus the members of its two partial seconds.
local function vel_window(key, bkey, lo, hi, scan_limit)
  local n = redis.call('ZCOUNT', key, lo, '(' .. hi)
  -- (n >= VEL_BUCKET_MIN: the set holds at least n members, so it has its buckets)
  if n <= scan_limit or n < VEL_BUCKET_MIN then return n, vel_scan_sum(key, lo, hi) end
  local s_lo, s_hi = math.ceil(lo / 1000), math.floor(hi / 1000)  -- whole seconds inside
  if s_lo >= s_hi then return n, vel_scan_sum(key, lo, hi) end
  local names = {}
  vel_cover(1, s_lo, s_hi, names)
  if #names >= n then return n, vel_scan_sum(key, lo, hi) end
  return n, vel_scan_sum(key, lo, s_lo * 1000) + vel_scan_sum(key, s_hi * 1000, hi) + vel_bucket_sum(bkey, names)
end
""".replace("__BUCKET_MIN__", str(BUCKET_MIN_MEMBERS))

_LUA = _WINDOW_LUA + """
-- KEYS: [lookup key,] then per entity its sorted set and its bucket hash
-- ARGV: member, ts (ms), mode (1 record+read, 2 record, 0 read), grace (ms), 'lookup' or '-',
--       scan limit, then per entity its windows in seconds, comma-separated, ascending
local member = ARGV[1]
local ts = tonumber(ARGV[2])
local mode = ARGV[3]
local grace = tonumber(ARGV[4])
local scan_limit = tonumber(ARGV[6])
local out = {}
local first = 1
if ARGV[5] == 'lookup' then
  -- KEYS[1] is a plain key to read in the same call (the scoring API's stored decision)
  out[1] = redis.call('GET', KEYS[1])
  first = 2
end

local e = 0
for i = first, #KEYS, 2 do
  e = e + 1
  local key, bkey = KEYS[i], KEYS[i + 1]
  local windows = {}
  for w in string.gmatch(ARGV[6 + e], '%d+') do windows[#windows + 1] = tonumber(w) * 1000 end
  local maxw = windows[#windows]
  local card = nil
  if mode ~= '0' then
    local added = redis.call('ZADD', key, ts, member)
    local cut = '(' .. string.format('%d', ts - maxw - grace)
    local card_before = redis.call('ZCARD', key) - added
    local delta, removed = {}, 0
    if card_before >= VEL_BUCKET_MIN then
      -- the buckets exist: the new member in, the trimmed ones out
      if added == 1 then vel_delta_add(delta, ts, vel_amount(member)) end
      local old = redis.call('ZRANGEBYSCORE', key, '-inf', cut, 'WITHSCORES')
      if #old > 0 then
        for k = 1, #old, 2 do vel_delta_add(delta, tonumber(old[k + 1]), -vel_amount(old[k])) end
        removed = redis.call('ZREMRANGEBYSCORE', key, '-inf', cut)
      end
    else
      removed = redis.call('ZREMRANGEBYSCORE', key, '-inf', cut)
    end
    card = card_before + added - removed
    vel_sync_buckets(key, bkey, card_before, card, delta, maxw + grace)
    redis.call('PEXPIRE', key, maxw + grace)
  end
  if mode ~= '2' then
    local items, n = nil, 0
    if card ~= nil and card <= scan_limit then
      -- a small set (most cards and devices): read the window without counting it first
      items = redis.call('ZRANGEBYSCORE', key, ts - maxw, '(' .. ts, 'WITHSCORES')
      n = #items / 2
    else
      n = redis.call('ZCOUNT', key, ts - maxw, '(' .. ts)
    end
    if n <= scan_limit then
      -- few members: one scan serves every window
      local counts, sums = {}, {}
      for j = 1, #windows do counts[j] = 0; sums[j] = 0 end
      if n > 0 then
        items = items or redis.call('ZRANGEBYSCORE', key, ts - maxw, '(' .. ts, 'WITHSCORES')
        for k = 1, #items, 2 do
          local s = tonumber(items[k + 1])
          local amt = vel_amount(items[k])
          for j = 1, #windows do
            if s >= ts - windows[j] then counts[j] = counts[j] + 1; sums[j] = sums[j] + amt end
          end
        end
      end
      for j = 1, #windows do out[#out + 1] = counts[j]; out[#out + 1] = sums[j] end
    else
      for j = 1, #windows do
        local c, sm = vel_window(key, bkey, ts - windows[j], ts, scan_limit)
        out[#out + 1] = c; out[#out + 1] = sm
      end
    end
  end
end
return out
"""

_ENTITIES = tuple(VELOCITY_WINDOWS)
_WINDOW_ARGS = tuple(",".join(str(w) for w in sorted(VELOCITY_WINDOWS[e])) for e in _ENTITIES)
# output order of the Lua script: entity, window ascending, (count, sum)
_OUTPUT_NAMES: tuple[str, ...] = tuple(
    name
    for e in _ENTITIES
    for w in sorted(VELOCITY_WINDOWS[e])
    for name in (f"{e}_txn_count_{w}s", f"{e}_amount_minor_{w}s")
)
assert set(_OUTPUT_NAMES) == set(VELOCITY_FEATURES)


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
    return {name: 0 for name in VELOCITY_FEATURES}


class RedisVelocityStore:
    """Velocity over Redis with a synchronous client (``redis.Redis``): stream processor, jobs."""

    def __init__(self, client: Any, prefix: str = DEFAULT_PREFIX, grace_seconds: int = DEFAULT_GRACE_SECONDS,
                 scan_limit: int = DEFAULT_SCAN_LIMIT):
        self.client = client
        self.prefix = prefix
        self.grace_ms = int(grace_seconds) * 1000
        self.scan_limit = int(scan_limit)
        self._script = client.register_script(_LUA)

    @classmethod
    def from_url(cls, url: str, **kw: Any) -> RedisVelocityStore:
        import redis

        return cls(redis.Redis.from_url(url), **kw)

    # the arguments of one script call: shared with the async store
    def keys_args(self, tx: Mapping[str, Any], mode: str) -> tuple[list[str], list[Any]]:
        keys = []
        for e in _ENTITIES:
            key = entity_key(self.prefix, e, tx[ENTITY_FIELDS[e]])
            keys += (key, key + ":b")
        args = [member_of(tx), event_millis(tx["event_timestamp"]), mode, self.grace_ms, "-", self.scan_limit,
                *_WINDOW_ARGS]
        return keys, args

    @staticmethod
    def parse(reply: Sequence[Any]) -> dict[str, int]:
        return {name: int(v) for name, v in zip(_OUTPUT_NAMES, reply, strict=True)}

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
        return [self.parse(r) for r in replies[len(txs) if record else 0:]]

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
        import redis.asyncio

        return cls(redis.asyncio.Redis.from_url(url), **kw)

    def add_to_pipeline(self, pipe: Any, tx: Mapping[str, Any], record: bool = True, mode: str | None = None) -> None:
        """Queue the script call on an asyncio pipeline (its reply: ``parse`` it)."""
        keys, args = self.keys_args(tx, mode or ("1" if record else "0"))
        pipe.scripts.add(self._script)
        pipe.evalsha(self._script.sha, len(keys), *keys, *args)

    async def lookup_and_features(self, lookup_key: str, tx: Mapping[str, Any],
                                  record: bool = True) -> tuple[bytes | None, dict[str, int]]:
        """GET ``lookup_key`` and the velocity features (recording ``tx``) in ONE command (one Lua
        call: cheaper for the client than a pipeline). Returns (value or None, features)."""
        keys, args = self.lookup_keys_args(lookup_key, tx, record)
        return self.parse_lookup(await self._script(keys=keys, args=args))

    def lookup_keys_args(self, lookup_key: str, tx: Mapping[str, Any], record: bool = True) -> tuple[list[str], list[Any]]:
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

    async def features_batch(self, txs: Sequence[Mapping[str, Any]],  # type: ignore[override]
                             record: bool = True) -> list[dict[str, int]]:
        if not txs:
            return []
        pipe = self.client.pipeline(transaction=False)
        if record:
            for tx in txs:
                self.add_to_pipeline(pipe, tx, mode="2")
        for tx in txs:
            self.add_to_pipeline(pipe, tx, mode="0")
        replies = await pipe.execute()
        return [self.parse(r) for r in replies[len(txs) if record else 0:]]


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
        member = member_of(tx)
        for e in _ENTITIES:
            key = (e, str(tx[ENTITY_FIELDS[e]]))
            members = self._members.setdefault(key, set())
            items = self._index.setdefault(key, [])
            if member not in members:
                members.add(member)
                bisect.insort(items, (ts, member))
            if self.grace_ms is not None:
                cut = bisect.bisect_left(items, (ts - max(VELOCITY_WINDOWS[e]) * 1000 - self.grace_ms, ""))
                for _, m in items[:cut]:
                    members.discard(m)
                del items[:cut]

    def features(self, tx: Mapping[str, Any], record: bool = True) -> dict[str, int]:
        if record:
            self.record(tx)
        ts = event_millis(tx["event_timestamp"])
        out: dict[str, int] = {}
        for e in _ENTITIES:
            items = self._index.get((e, str(tx[ENTITY_FIELDS[e]])), [])
            hi = bisect.bisect_left(items, (ts, ""))
            for w in sorted(VELOCITY_WINDOWS[e]):
                lo = bisect.bisect_left(items, (ts - w * 1000, ""))
                window = items[lo:hi]
                out[f"{e}_txn_count_{w}s"] = len(window)
                out[f"{e}_amount_minor_{w}s"] = sum(int(m.rsplit("|", 1)[1]) for _, m in window)
        return {name: out[name] for name in _OUTPUT_NAMES}

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
