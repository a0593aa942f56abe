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
