"""Decisions in Redis, one key per transaction: ``{prefix}:decision:{transaction_id}`` -> the
DecisionEvent JSON. First writer wins (SET NX), whether the API or the stream decided, which makes
decisions idempotent by transaction_id; entries expire after ``ttl_seconds``."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any


class DecisionStore:
    def __init__(self, client: Any, prefix: str = "pa", ttl_seconds: int = 3600):
        self.client = client
        self.prefix = prefix
        self.ttl = int(ttl_seconds)

    def key(self, transaction_id: str) -> str:
        return f"{self.prefix}:decision:{transaction_id}"

    async def get(self, transaction_id: str) -> bytes | None:
        return await self.client.get(self.key(transaction_id))

    async def put(self, transaction_id: str, body: bytes) -> tuple[bytes, bool]:
        """Store unless present; returns (what is stored, whether it is ours)."""
        key = self.key(transaction_id)
        if await self.client.set(key, body, nx=True, ex=self.ttl):
            return body, True
        stored = await self.client.get(key)
        return (stored, False) if stored is not None else (body, True)

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


class WriteBehindDecisions:
    """The API's own decisions: answered at once, written to Redis (SET NX) in the next automatic
    pipeline, and kept in process until Redis has acknowledged them, so a re-score or a GET of the
    same transaction_id in between still finds the decision.

    A concurrent re-score of the same id on ANOTHER worker within that window (about one Redis round
    trip) decides again; the decision is the same (deterministic engine; velocity recording is
    idempotent and excludes the transaction itself) apart from ``decided_at``/``latency_ms``, and the
    first write wins in Redis."""

    def __init__(self, store: DecisionStore, pipeline: Any):
        self.store = store
        self.pipeline = pipeline
        self._unacked: dict[str, bytes] = {}

    def local(self, transaction_id: str) -> bytes | None:
        return self._unacked.get(transaction_id)

    def put(self, transaction_id: str, body: bytes) -> None:
        self._unacked[transaction_id] = body

        def done(reply: Any) -> None:  # stored, or refused (NX: the stream decided first), or failed
            if self._unacked.get(transaction_id) is body:
                del self._unacked[transaction_id]

        self.pipeline.send("SET", self.store.key(transaction_id), body, "NX", "EX", self.store.ttl, on_done=done)

    @property
    def unacknowledged(self) -> int:
        return len(self._unacked)
