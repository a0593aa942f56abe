"""What the decisions consumer (faust agent, its own process) tells ``/ready``: a JSON status in Redis,
``{prefix}:consumer:status`` (expires after ``STATUS_TTL_S``), written by the consumer's heartbeat and
at once when the agent fails:

* ``at``: when it was written (a stale or missing status means the consumer process is gone);
* ``lag``: records of ``payments.decisions`` not yet consumed (high watermark minus position, summed
  over the assigned partitions; null before the first assignment);
* ``failing``: the last attempt to store a batch failed (``last_error``), or the agent crashed and has
  not stored a batch since (faust restarts a crashed agent);
* ``last_error`` / ``last_error_at``: the exception class and its message, addresses removed.

``/ready`` is red while a consumer is expected (``PA_DECISIONS_CONSUMER``, set by ``serve``) and its
status is missing, older than ``STALE_S`` or ``failing``.
"""

from __future__ import annotations

import asyncio
import logging
import re
import time
from typing import Any

import orjson

log = logging.getLogger("scoring_api.consumer")

STATUS_TTL_S = 30
STALE_S = 20.0
RETRY_MAX_S = 5.0

_ADDRESS = re.compile(
    r"(?:[a-z][a-z0-9+.-]*://[^\s'\"]+)"  # URLs
    r"|(?:\b\d{1,3}(?:\.\d{1,3}){3}(?::\d+)?\b)"  # IPv4 (and port)
    r"|(?:\[[0-9a-f:]+\](?::\d+)?)"  # [IPv6]:port
    r"|(?:\b[\w.-]+:\d{2,5}\b)",  # host:port
    re.IGNORECASE,
)


def redact(text: str) -> str:
    """``text`` without network addresses (hosts, ports, URLs)."""
    return _ADDRESS.sub("<address>", text)


def describe(exc: BaseException) -> str:
    """``Class: message`` of an exception, addresses removed, one line, at most 300 characters."""
    message = redact(str(exc).splitlines()[0] if str(exc) else "")
    return f"{type(exc).__name__}: {message}"[:300] if message else type(exc).__name__


def status_key(prefix: str) -> str:
    return f"{prefix}:consumer:status"


class ConsumerStatus:
    """Kept by the consumer process; ``write`` puts it in Redis."""

    def __init__(self, key: str):
        self.key = key
        self.last_ok_at: float | None = None
        self.last_error: str | None = None
        self.last_error_at: float | None = None
        self.lag: int | None = None

    @property
    def failing(self) -> bool:
        return self.last_error_at is not None and (self.last_ok_at is None or self.last_error_at > self.last_ok_at)

    def ok(self) -> None:
        self.last_ok_at = time.time()

    def error(self, exc: BaseException) -> None:
        self.last_error, self.last_error_at = describe(exc), time.time()

    def as_json(self) -> bytes:
        return orjson.dumps(
            {
                "at": time.time(),
                "lag": self.lag,
                "failing": self.failing,
                "last_error": self.last_error,
                "last_error_at": self.last_error_at,
            }
        )

    async def write(self, client: Any) -> None:
        await client.set(self.key, self.as_json(), ex=STATUS_TTL_S)

    async def try_write(self, client: Any) -> None:
        try:
            await asyncio.wait_for(self.write(client), timeout=2)
        except Exception as exc:  # Redis is what fails: the status goes stale, /ready sees that too
            log.debug("consumer status not written: %s", exc)

    async def retrying(self, client: Any, store: Any, items: list[tuple[str, bytes]]) -> int:
        """``store(items)`` until it succeeds (a batch is never dropped: its offsets are committed only
        after this returns), recording each failure in the status at once."""
        delay = 0.2
        while True:
            try:
                stored = await store(items)
            except (asyncio.CancelledError, KeyboardInterrupt):
                raise
            except Exception as exc:
                self.error(exc)
                log.error("storing %d decisions failed (retrying in %.1fs): %s", len(items), delay, self.last_error)
                await self.try_write(client)
                await asyncio.sleep(delay)
                delay = min(delay * 2, RETRY_MAX_S)
                continue
            if self.failing:
                self.ok()
                await self.try_write(client)
            else:
                self.ok()
            return stored

    async def measure_lag(self, app: Any) -> None:
        """High watermark minus position over the partitions assigned to this consumer."""
        try:
            consumer = app.consumer
            total = 0
            for tp in consumer.assignment():
                high = consumer.highwater(tp)
                position = await consumer.position(tp)
                if high is not None and position is not None:
                    total += max(0, int(high) - int(position))
            self.lag = total
        except Exception as exc:  # not assigned yet, or a rebalance in progress
            log.debug("lag not measured: %s", exc)


def read_status(raw: bytes | None, expected: bool, now: float | None = None) -> tuple[bool, dict[str, Any]]:
    """(healthy, what /ready shows) of the consumer's status value."""
    now = time.time() if now is None else now
    if raw is None:
        return (not expected), {"expected": expected, "running": False if expected else None}
    try:
        status = orjson.loads(raw)
        age = round(now - float(status["at"]), 3)
    except (ValueError, KeyError, TypeError):
        return (not expected), {"expected": expected, "running": None, "last_error": "unreadable status"}
    stale = age > STALE_S
    failing = bool(status.get("failing"))
    view = {
        "expected": expected,
        "running": not stale,
        "heartbeat_age_s": age,
        "lag": status.get("lag"),
        "failing": failing,
        "last_error": status.get("last_error"),
        "last_error_at": status.get("last_error_at"),
    }
    return (not expected) or (not stale and not failing), view
