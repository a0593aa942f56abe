"""Decisions in Redis, one key per transaction: ``{prefix}:decision:{transaction_id}``.

First writer wins (SET NX), whether the API or the stream decided, which makes decisions idempotent by
transaction_id; entries expire after ``ttl_seconds``.

A decision the API made is stored with the fingerprint of its request (SHA-256 of the canonical
request: ``TransactionRequest.model_dump`` as sorted-key JSON, so ``...Z`` and ``+00:00`` are the same
request) in front of the JSON: ``sha256:<64 hex>\\n{...}``. Scoring the same transaction_id again with
the same request replays the decision; with a different request (another amount, merchant, any
field) it is a 409, like a payment API's idempotency key. Decisions the stream published (consumed
into Redis by ``consumer.py``) carry no fingerprint: the API replays them for any request of that id.
``unpack`` gives (fingerprint or None, decision JSON) of a stored value.

Writing a new API decision (``STORE_LUA``, awaited before the answer, one pipelined command) also adds
it to this API process's outbox (``publisher.py``): the decision is in Redis before the client has it.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta
from typing import Any, get_args

import orjson

from payments_core.contract.events import TransactionRequest
from payments_core.velocity import lua_script

FINGERPRINT_PREFIX = b"sha256:"
_FP_LEN = len(FINGERPRINT_PREFIX) + 64


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MICROSECOND = timedelta(microseconds=1)


def _types_in(annotation: Any) -> tuple[Any, ...]:
    """The annotation itself and the members of a union (``datetime | None``)."""
    return (annotation, *get_args(annotation))


def _in_utc(value: datetime) -> datetime | str:
    try:
        return value.astimezone(UTC)
    except OverflowError:  # e.g. 0001-01-01T00:00:00+00:12: before year 1 in UTC; the same instant, exactly
        return f"{(value - _EPOCH) // _MICROSECOND}us"


# the request's fields that can hold a datetime: the only values the canonical form rewrites
_TIME_FIELDS = tuple(name for name, f in TransactionRequest.model_fields.items() if datetime in _types_in(f.annotation))


def fingerprint(request: dict[str, Any]) -> bytes:
    """Hex SHA-256 of the canonical request (a ``TransactionRequest.model_dump()``; times in UTC, so
    one instant written with two offsets is one request)."""
    # a time already at offset zero is written as the same "Z" instant by orjson: only others are rewritten
    aware = [k for k in _TIME_FIELDS if isinstance(v := request.get(k), datetime) and v.utcoffset()]
    if aware:
        request = {**request, **{k: _in_utc(request[k]) for k in aware}}
    canonical = orjson.dumps(request, option=orjson.OPT_SORT_KEYS | orjson.OPT_NAIVE_UTC | orjson.OPT_UTC_Z)
    return hashlib.sha256(canonical).hexdigest().encode()


def pack(fp: bytes, body: bytes) -> bytes:
    return FINGERPRINT_PREFIX + fp + b"\n" + body


def unpack(value: bytes) -> tuple[bytes | None, bytes]:
    """(fingerprint or None, decision JSON) of a stored value."""
    if value.startswith(FINGERPRINT_PREFIX) and value[_FP_LEN : _FP_LEN + 1] == b"\n":
        return value[len(FINGERPRINT_PREFIX) : _FP_LEN], value[_FP_LEN + 1 :]
    return None, value


# Reading the stored decision and computing the velocity features (recording the transaction) in one
# call: the velocity script of payments_core (its KEYS[1] is the lookup key when ARGV[5] is 'lookup'),
# except that a transaction already decided returns at once with the stored value, recording
# nothing: a replay changes nothing anyway, and a conflicting request (409) must not record its amount.
LOOKUP_LUA = (
    "if ARGV[5] == 'lookup' then\n"
    "  local stored = redis.call('GET', KEYS[1])\n"
    "  if stored then return {stored} end\n"
    "end\n" + lua_script("velocity.lua")
)

# KEYS: decision key, outbox. ARGV: packed value, ttl (s), outbox member, now (ms), outbox max.
# -> {1} stored (and in the outbox), {0, existing value} someone decided first, {2} outbox full.
STORE_LUA = """
if redis.call('ZCARD', KEYS[2]) >= tonumber(ARGV[5]) then return {2} end
if redis.call('SET', KEYS[1], ARGV[1], 'NX', 'EX', ARGV[2]) then
  redis.call('ZADD', KEYS[2], ARGV[4], ARGV[3])
  return {1}
end
return {0, redis.call('GET', KEYS[1])}
"""
STORED, EXISTS, OUTBOX_FULL = 1, 0, 2


class DecisionStore:
    def __init__(self, client: Any, prefix: str = "pa", ttl_seconds: int = 3600):
        self.client = client
        self.prefix = prefix
        self.ttl = int(ttl_seconds)

    def key(self, transaction_id: str) -> str:
        return f"{self.prefix}:decision:{transaction_id}"

    async def get(self, transaction_id: str) -> bytes | None:
        """The stored decision JSON (fingerprint removed), or None."""
        value = await self.client.get(self.key(transaction_id))
        return None if value is None else unpack(value)[1]

    async def put_many(self, items: Iterable[tuple[str, bytes]]) -> int:
        """SET NX every (transaction_id, body); returns how many were new."""
        pipe = self.client.pipeline(transaction=False)
        n = 0
        for txn, body in items:
            pipe.set(self.key(txn), body, nx=True, ex=self.ttl)
            n += 1
        if not n:
            return 0
        return sum(1 for r in await pipe.execute() if r)
