"""Velocity of a whole batch in ONE Redis script call: same keys, members and semantics as
``payments_core.velocity`` (the scoring API's per-transaction script), a fraction of the cost.

``RedisVelocityStore.features_batch`` sends two script calls per transaction (record, then read),
and each read scans the entity's whole window (``ZRANGEBYSCORE``): per transaction that is
~100 µs of client-side packing plus a window scan per key, so a popular merchant's five-minute
window is scanned once per transaction of that merchant. Here the batch goes as one ``EVALSHA``:

1. record: one ``ZADD`` per key with all of the batch's members of that key, then one trim
   (relative to the key's newest event of the batch) and one ``PEXPIRE``;
2. read: per key ONE ``ZRANGEBYSCORE`` over ``[oldest - largest window, newest)`` of the batch,
   prefix sums of the amounts, and per transaction and window two binary searches
   (count and sum of ``t - w <= s < t``, exactly the per-transaction definition).

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

from payments_core.features import VELOCITY_FEATURES
from payments_core.velocity import _ENTITIES, _OUTPUT_NAMES, _WINDOW_ARGS, DEFAULT_GRACE_SECONDS, DEFAULT_PREFIX, \
    ENTITY_FIELDS

_BATCH_LUA = """
local grace = tonumber(ARGV[1])
local mode = ARGV[2]
local nent = tonumber(ARGV[3])
local windows = {}
for e = 1, nent do
  local ws = {}
  for w in string.gmatch(ARGV[3 + e], '%d+') do ws[#ws + 1] = tonumber(w) * 1000 end
  windows[e] = ws
end
-- key index -> entity index
local key_entity = {}
local pos = 1
for e = 1, nent do
  local count = tonumber(ARGV[3 + nent + e])
  for k = pos, pos + count - 1 do key_entity[k] = e end
  pos = pos + count
end
-- transactions: "member ts k1 k2 ... k<nent>" per line
local members, stamps, tkeys = {}, {}, {}
local pattern = '(%S+) (%d+)' .. string.rep(' (%d+)', nent)
local n = 0
for line in string.gmatch(ARGV[4 + 2 * nent], '[^\\n]+') do
  local parts = {string.match(line, pattern)}
  n = n + 1
  members[n] = parts[1]
  stamps[n] = tonumber(parts[2])
  local ks = {}
  for e = 1, nent do ks[e] = tonumber(parts[2 + e]) end
  tkeys[n] = ks
end
-- per key: its transactions, newest and oldest event time
local by_key = {}
for i = 1, n do
  for e = 1, nent do
    local k = tkeys[i][e]
    local list = by_key[k]
    if list == nil then list = {}; by_key[k] = list end
    list[#list + 1] = i
  end
end
if mode ~= '0' then
  for k, list in pairs(by_key) do
    local key = KEYS[k]
    local maxw = windows[key_entity[k]][#windows[key_entity[k]]]
    local newest = -1
    local args = {}
    for _, i in ipairs(list) do
      args[#args + 1] = stamps[i]
      args[#args + 1] = members[i]
      if stamps[i] > newest then newest = stamps[i] end
      if #args >= 4000 then redis.call('ZADD', key, unpack(args)); args = {} end
    end
    if #args > 0 then redis.call('ZADD', key, unpack(args)) end
    redis.call('ZREMRANGEBYSCORE', key, '-inf', '(' .. tostring(newest - maxw - grace))
    redis.call('PEXPIRE', key, maxw + grace)
  end
end
-- first index with s[idx] >= x (1..#s+1)
local function lower(s, x)
  local lo, hi = 1, #s + 1
  while lo < hi do
    local mid = math.floor((lo + hi) / 2)
    if s[mid] < x then lo = mid + 1 else hi = mid end
  end
  return lo
end
local out = {}
local nout = 0
for e = 1, nent do nout = nout + 2 * #windows[e] end
for i = 1, n * nout do out[i] = 0 end
local offset = {}
local acc = 0
for e = 1, nent do offset[e] = acc; acc = acc + 2 * #windows[e] end
for k, list in pairs(by_key) do
  local e = key_entity[k]
  local ws = windows[e]
  local maxw = ws[#ws]
  local lo_ts, hi_ts = nil, nil
  for _, i in ipairs(list) do
    local t = stamps[i]
    if lo_ts == nil or t < lo_ts then lo_ts = t end
    if hi_ts == nil or t > hi_ts then hi_ts = t end
  end
  local items = redis.call('ZRANGEBYSCORE', KEYS[k], tostring(lo_ts - maxw), '(' .. tostring(hi_ts), 'WITHSCORES')
  local s, p = {}, {0}
  local m = 0
  for j = 1, #items, 2 do
    m = m + 1
    s[m] = tonumber(items[j + 1])
    p[m + 1] = p[m] + (tonumber(string.match(items[j], '|(%d+)$')) or 0)
  end
  for _, i in ipairs(list) do
    local t = stamps[i]
    local hi = lower(s, t)
    local base = (i - 1) * nout + offset[e]
    for j = 1, #ws do
      local lo = lower(s, t - ws[j])
      out[base + 2 * j - 1] = hi - lo
      out[base + 2 * j] = p[hi] - p[lo]
    end
  end
end
return out
"""

# the script's output column order = ``velocity._OUTPUT_NAMES``; positions of VELOCITY_FEATURES in it
_COLUMN_ORDER = np.array([_OUTPUT_NAMES.index(name) for name in VELOCITY_FEATURES])
_ENTITY_COLUMNS = tuple(ENTITY_FIELDS[e] for e in _ENTITIES)


class BatchRedisVelocity:
    """Velocity features of a batch in one script call over a synchronous ``redis.Redis``."""

    def __init__(self, client: Any, prefix: str = DEFAULT_PREFIX, grace_seconds: int = DEFAULT_GRACE_SECONDS):
        self.client = client
        self.prefix = prefix
        self.grace_ms = int(grace_seconds) * 1000
        self._script = client.register_script(_BATCH_LUA)

    @classmethod
    def from_url(cls, url: str, **kw: Any) -> BatchRedisVelocity:
        import redis

        return cls(redis.Redis.from_url(url), **kw)

    def features_arrays(self, transaction_id: Sequence[str], event_ms: Sequence[int], amount_minor: Sequence[int],
                        entities: Sequence[Sequence[str]], record: bool = True) -> np.ndarray:
        """``(n, len(VELOCITY_FEATURES))`` int64 in VELOCITY_FEATURES order.

        ``event_ms``: event time in integer epoch milliseconds (floored, as ``velocity.event_millis``);
        ``entities``: one sequence per entity of ``velocity.ENTITY_FIELDS`` (card, device, merchant)."""
        n = len(transaction_id)
        if n == 0:
            return np.zeros((0, len(VELOCITY_FEATURES)), dtype=np.int64)
        keys: list[str] = []
        counts: list[int] = []
        indices: list[list[int]] = []
        for e, values in zip(_ENTITIES, entities, strict=True):
            index: dict[str, int] = {}
            base = len(keys)
            col = []
            for v in values:
                j = index.get(v)
                if j is None:
                    j = index[v] = base + len(index) + 1  # 1-based KEYS index
                col.append(j)
            keys.extend(f"{self.prefix}:{e}:{v}" for v in index)
            counts.append(len(index))
            indices.append(col)
        lines = "\n".join(
            f"{tid}|{int(amt)} {int(ts)} " + " ".join(str(col[i]) for col in indices)
            for i, (tid, amt, ts) in enumerate(zip(transaction_id, amount_minor, event_ms, strict=True)))
        args = [self.grace_ms, "1" if record else "0", len(_ENTITIES), *_WINDOW_ARGS, *counts, lines]
        reply = self._script(keys=keys, args=args)
        flat = np.asarray(reply, dtype=np.int64).reshape(n, len(_OUTPUT_NAMES))
        return flat[:, _COLUMN_ORDER]

    def features_frame(self, df: Any, record: bool = True) -> Any:
        """VELOCITY_FEATURES columns for a pandas DataFrame of contract fields, aligned to ``df.index``."""
        import pandas as pd

        from payments_core.velocity import event_millis

        ts = df["event_timestamp"]
        if pd.api.types.is_datetime64_any_dtype(ts):
            ms = (pd.to_datetime(ts, utc=True).astype("datetime64[us, UTC]").astype("int64") // 1000).tolist()
        else:
            ms = [event_millis(v) for v in ts.tolist()]
        out = self.features_arrays(df["transaction_id"].tolist(), ms, df["amount_minor"].tolist(),
                                   [df[c].tolist() for c in _ENTITY_COLUMNS], record=record)
        return pd.DataFrame(out, index=df.index, columns=list(VELOCITY_FEATURES))
