"""Every decision ``POST /score`` (and ``/score/batch``) returns is also published to
``payments.decisions`` (source ``api``), so the Delta decision log holds the decisions of every path.

The guarantee, precisely
------------------------
A 200 with a NEW decision is sent only after Redis has acknowledged, in one script (``store.STORE_LUA``),
both the decision key and an entry in this process's outbox (a sorted set
``{prefix}:outbox:{instance}``, member = the ``pa.context`` header and the decision JSON). The
decision is then handed to an idempotent Kafka producer (confluent-kafka, ``enable.idempotence``,
``acks=all``, key = transaction_id, the Java client's murmur2 partitioner like the stream's sink)
before the response is written: no broker round trip on the response path, only librdkafka's bounded
in-memory queue. When the broker acknowledges it, the outbox entry is removed: the delivery reports are
served on the event loop (``producer.poll(0)`` every ``POLL_INTERVAL_S``), not by a thread of their own,
whose GIL hand-overs, one per report, interrupted the requests in flight.

So a returned decision reaches the topic unless Redis loses it too:

* the API process dies (kill -9, OOM): its instance key ``{prefix}:outbox:alive:{instance}`` expires
  after ``ALIVE_MS``; any other API process of the same Redis prefix (another worker, or the restarted
  one) adopts the outbox atomically (``ADOPT_LUA``) and publishes it again;
* the broker is down or slow: librdkafka retries up to ``message.timeout.ms``; what it gives up on
  (or could not queue: ``BufferError`` when the queue is full) stays in the outbox and is sent again
  after ``RESEND_AFTER_MS``; the outbox is bounded (``PA_DECISIONS_OUTBOX_MAX`` per process: above it
  ``/score`` answers 503 and ``/ready`` is red);
* graceful stop: the producer is flushed (up to ``FLUSH_TIMEOUT_S``); what is still unacknowledged
  stays in the outbox for the next process.

Redis itself is the durable part: with an append-only file (``make up``, compose: ``appendfsync
everysec``) a Redis crash or power loss can lose the last second of writes, outbox included.
A re-publication may duplicate a decision already on the topic (the ack was lost with the process):
every consumer absorbs that (Redis SET NX, the decision log keeps one row per transaction_id).
Decisions enriched with ``similar`` (``PA_SIMILAR_ENRICH``) are published without it: the record is
a ``DecisionEvent`` of the contract.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import operator
import threading
import time
import uuid
from datetime import datetime
from typing import Any

import orjson

from payments_core.contract.decision_records import CONTEXT_FIELDS, CONTEXT_HEADER
from payments_core.contract.events import TransactionRequest
from payments_core.contract.topics import DECISIONS, prefixed
from services.scoring_api import metrics
from services.scoring_api.consumer_status import describe, redact
from services.scoring_api.pipelining import AutoPipeline, eval_script
from services.scoring_api.settings import Settings

log = logging.getLogger("scoring_api.publisher")

SWEEP_SECONDS = 1.0
ALIVE_MS = 5_000  # an API process that has not refreshed its instance key for this long is dead
MESSAGE_TIMEOUT_MS = 30_000  # librdkafka gives a message up after this (then the outbox sends it again)
RESEND_AFTER_MS = 45_000  # own outbox entries older than this are sent again
SWEEP_BATCH = 5_000
FLUSH_TIMEOUT_S = 10.0
LINGER_MS = 150  # how long librdkafka gathers decisions into one produce request
QUEUE_MAX_MESSAGES = 100_000  # librdkafka's in-memory queue (produce raises BufferError above it)
POLL_INTERVAL_S = 0.02  # how often the event loop serves the delivery reports (and librdkafka's errors)

# KEYS: the instances set. ARGV: prefix, own instance id, now (ms), max members.
# Moves the outbox of every instance whose alive key expired into our own; returns the members moved.
ADOPT_LUA = """
local mine = ARGV[1] .. ':outbox:' .. ARGV[2]
local budget = tonumber(ARGV[4])
local out = {}
for _, id in ipairs(redis.call('SMEMBERS', KEYS[1])) do
  if id ~= ARGV[2] and redis.call('EXISTS', ARGV[1] .. ':outbox:alive:' .. id) == 0 then
    local dead = ARGV[1] .. ':outbox:' .. id
    local members = redis.call('ZRANGE', dead, 0, budget - #out - 1)
    for _, m in ipairs(members) do
      redis.call('ZADD', mine, ARGV[3], m)
      redis.call('ZREM', dead, m)
      out[#out + 1] = m
    end
    if redis.call('EXISTS', dead) == 0 then redis.call('SREM', KEYS[1], id) end
    if #out >= budget then break end
  end
end
return out
"""
# KEYS: own outbox. ARGV: cutoff (ms), now (ms), max. Entries older than the cutoff, re-stamped now.
STALE_LUA = """
local members = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1], 'LIMIT', 0, tonumber(ARGV[3]))
for _, m in ipairs(members) do redis.call('ZADD', KEYS[1], 'XX', ARGV[2], m) end
return members
"""


# the context fields a request can carry (outcome fields such as is_approved come after the decision)
_REQUEST_CONTEXT = tuple(name for name in CONTEXT_FIELDS if name in TransactionRequest.model_fields)
_CONTEXT_VALUES = operator.itemgetter(*_REQUEST_CONTEXT)


def context_of(tx: dict[str, Any]) -> bytes:
    """The ``pa.context`` header of an API decision: the transaction facts the decision log reads
    (outcome fields unknown before authorisation are left out) and the event time. ``tx`` is a
    ``TransactionRequest.model_dump()``: every field is there, None when not given."""
    values = zip(_REQUEST_CONTEXT, _CONTEXT_VALUES(tx), strict=True)
    ctx: dict[str, Any] = {name: v for name, v in values if v is not None}
    ts = tx.get("event_timestamp")
    if isinstance(ts, datetime):
        ctx["event_timestamp_ms"] = int(ts.timestamp() * 1000)
    return orjson.dumps(ctx)


def member_of(context: bytes, decision: bytes) -> bytes:
    return context + b"\n" + decision


def split_member(member: bytes) -> tuple[bytes, bytes]:
    context, _, decision = member.partition(b"\n")
    return context, decision


class DecisionPublisher:
    """One per API process (uvicorn worker): the producer, its delivery reports (served on the event
    loop) and the outbox sweeper."""

    def __init__(self, settings: Settings, client: Any, pipeline: AutoPipeline):
        self.settings = settings
        self.client = client
        self.pipeline = pipeline
        self.prefix = settings.redis_prefix
        self.instance = uuid.uuid4().hex[:16]
        self.outbox_key = f"{self.prefix}:outbox:{self.instance}"
        self.instances_key = f"{self.prefix}:outbox:instances"
        self.alive_key = f"{self.prefix}:outbox:alive:{self.instance}"
        self.topic = prefixed(DECISIONS, settings.topic_prefix)
        self.last_error: str | None = None
        self.last_error_at: float | None = None
        self.outbox_size = 0
        self._adopt = client.register_script(ADOPT_LUA)
        self._stale = client.register_script(STALE_LUA)
        self._done: list[tuple[bytes, Any]] = []
        self._stopping = threading.Event()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._poller: asyncio.TimerHandle | None = None
        self._task: asyncio.Task | None = None
        from confluent_kafka import Producer  # noqa: PLC0415 - the API imports it only when it starts

        self.producer = Producer(
            {
                "bootstrap.servers": settings.kafka_bootstrap,
                "client.id": f"pa-scoring-api-{self.instance}",
                "enable.idempotence": True,
                "acks": "all",
                # no response waits for the broker, so batches can be large: at 5 ms the broker took
                # ~0.45 core at 750 decisions/s on a 2-core host (p99 of /score 25 ms), at 50 ms ~0.18;
                # at 150 ms a third of the 50 ms figure at /score's saturation (docs/performance.md)
                "linger.ms": LINGER_MS,
                "partitioner": "murmur2_random",  # the Java client's: same partition as the stream's records
                "queue.buffering.max.messages": QUEUE_MAX_MESSAGES,
                "message.timeout.ms": MESSAGE_TIMEOUT_MS,
                "error_cb": self._on_error,
            },
            logger=logging.getLogger("scoring_api.kafka"),
        )

    # ---------------------------------------------------------------------------------- lifecycle
    async def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._poller = self._loop.call_later(POLL_INTERVAL_S, self._poll)
        try:
            await asyncio.wait_for(self._register(), timeout=5)
        except Exception as exc:  # Redis down at start: the sweeper registers when it is back
            log.warning("decision outbox not registered yet: %s", type(exc).__name__)
        self._task = asyncio.create_task(self._sweeper())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            # asyncio.wait, not await: a sweep stuck on a Redis reply that never comes must not hold the stop
            await asyncio.wait({self._task}, timeout=5)
        self._stopping.set()
        if self._poller is not None:
            self._poller.cancel()
        # the reports of the flush come on its thread (``_on_delivery`` only appends), handled here after
        remaining = await asyncio.to_thread(self.producer.flush, FLUSH_TIMEOUT_S)
        self._dispatch()
        try:
            await asyncio.wait_for(self.pipeline.drain(), timeout=5)
            left = await asyncio.wait_for(self.client.zcard(self.outbox_key), timeout=2)
            if left == 0:
                await asyncio.wait_for(self.client.srem(self.instances_key, self.instance), timeout=2)
                await asyncio.wait_for(self.client.delete(self.alive_key), timeout=2)
            else:  # adopted by the next API process once the alive key expires
                log.warning("%d decisions not acknowledged by Kafka stay in the outbox %s", left, self.outbox_key)
        except Exception as exc:
            log.warning("decision outbox not cleaned up at stop: %s", type(exc).__name__)
        if remaining:
            log.warning("%d decisions still queued for Kafka at stop (they are in the outbox)", remaining)

    async def _register(self) -> None:
        pipe = self.client.pipeline(transaction=False)
        pipe.sadd(self.instances_key, self.instance)
        pipe.set(self.alive_key, b"1", px=ALIVE_MS)
        await pipe.execute()

    # ---------------------------------------------------------------------------------- publishing
    def publish(self, transaction_id: str, member: bytes, parts: tuple[bytes, bytes] | None = None) -> None:
        """Hand one outbox member to the producer (never blocks; a full queue leaves it to the outbox).
        ``parts``: the member's (context, decision) when the caller has them (``/score`` built it)."""
        context, decision = parts or split_member(member)
        try:
            self.producer.produce(
                self.topic,
                key=transaction_id.encode(),
                value=decision,
                headers=[(CONTEXT_HEADER, context)],
                on_delivery=functools.partial(self._on_delivery, member),  # (headers are not in delivery reports)
            )
        except BufferError:
            metrics.PUBLISH_ERRORS.inc()
            self._error("producer queue full (Kafka not keeping up); the outbox sends it again")
        except Exception as exc:  # e.g. KafkaException: the producer is fatally broken
            metrics.PUBLISH_ERRORS.inc()
            self._error(f"produce failed: {describe(exc)}")

    def _on_delivery(self, member: bytes, err: Any, msg: Any) -> None:  # in poll (event loop) or flush (a thread)
        self._done.append((member, err))

    def _on_error(self, err: Any) -> None:  # in poll or flush
        self._error(f"Kafka {err.name()}: {redact(err.str())}")

    def _error(self, text: str) -> None:
        if text != self.last_error:
            log.warning("decision publishing: %s", text)
        self.last_error, self.last_error_at = text, time.time()

    def _poll(self) -> None:  # on the event loop, every POLL_INTERVAL_S until stop
        try:
            self.producer.poll(0)
            self._dispatch()
        except Exception:  # never let the reports stop being served
            log.exception("serving Kafka delivery reports failed")
        finally:
            if not self._stopping.is_set() and self._loop is not None:
                self._poller = self._loop.call_later(POLL_INTERVAL_S, self._poll)

    def _dispatch(self) -> None:  # on the event loop
        if not self._done:
            return
        batch, self._done = self._done, []
        self._acknowledged(batch)

    def _acknowledged(self, batch: list[tuple[bytes, Any]]) -> None:  # on the event loop
        acked = [member for member, err in batch if err is None]
        failed = len(batch) - len(acked)
        if acked:
            metrics.PUBLISHED.inc(len(acked))
            self.pipeline.send("ZREM", self.outbox_key, *acked)
        if failed:
            metrics.PUBLISH_ERRORS.inc(failed)
            err = next(err for _, err in batch if err is not None)
            self._error(f"{failed} decisions not acknowledged: Kafka {err.name()}: {redact(err.str())}")

    # ---------------------------------------------------------------------------------- the sweeper
    async def _sweeper(self) -> None:
        while True:
            try:
                await asyncio.wait_for(self.sweep(), timeout=10)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # Redis down or slow: next round
                log.debug("outbox sweep failed: %s", exc)
            await asyncio.sleep(SWEEP_SECONDS)

    async def sweep(self) -> int:
        """Refresh this process's alive key, adopt the outboxes of dead processes, send again what is
        stale. Returns how many decisions were (re)published."""
        await self._register()
        now = int(time.time() * 1000)
        adopted = await eval_script(
            self.pipeline, self._adopt, [self.instances_key], [self.prefix, self.instance, now, SWEEP_BATCH]
        )
        stale = await eval_script(
            self.pipeline, self._stale, [self.outbox_key], [now - RESEND_AFTER_MS, now, SWEEP_BATCH]
        )
        if adopted:
            log.warning("publishing %d decisions of a stopped API process (its outbox)", len(adopted))
        for member in [*adopted, *stale]:
            _, decision = split_member(member)
            self.publish(orjson.loads(decision)["transaction_id"], member)
        if adopted or stale:
            metrics.REPUBLISHED.inc(len(adopted) + len(stale))
        self.outbox_size = int(await self.pipeline.call("ZCARD", self.outbox_key))
        metrics.OUTBOX.set(self.outbox_size)
        return len(adopted) + len(stale)

    def status(self) -> dict[str, Any]:
        return {
            "topic": self.topic,
            "outbox": self.outbox_size,
            "outbox_max": self.settings.decisions_outbox_max,
            "queued": len(self.producer),
            "last_error": self.last_error,
            "last_error_age_s": round(time.time() - self.last_error_at, 1) if self.last_error_at else None,
        }
