"""The live decision stream behind /decisions: a background thread with its own Kafka consumer.

It reads ``payments.decisions`` and ``payments.transactions`` (the control plane imports no other
service: Kafka is the interface), keeps the last ``decision_buffer`` decisions in a ring buffer and a
bounded map transaction_id -> transaction facts, and joins the two whichever arrives first. New (or
newly joined) decisions are fanned out to subscribers: asyncio queues of the web server's event loop,
fed thread-safely and bounded, so a slow browser drops its oldest pending rows instead of growing memory.

Offsets: partitions are assigned by hand (no consumer-group rebalance to wait for, every replica of
the app sees every decision). Partitions known at the first successful metadata fetch start a little
before their end (the last decisions, so the page is not empty after a restart); a topic or partition
that appears later starts at its first record stamped after the app started (minus a minute for clock
skew), so nothing produced after the app started is missed and no old history is replayed.
A broker that is down is retried quietly; ``status()`` says so.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import threading
import time
import uuid
from collections import OrderedDict, deque
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from confluent_kafka import Consumer, KafkaError, KafkaException, TopicPartition
from pydantic import ValidationError

from payments_core.contract import DecisionEvent, TransactionEvent, from_minor_units
from payments_core.contract.topics import DECISIONS, TRANSACTIONS, prefixed
from services.control_plane.settings import ControlPlaneSettings

log = logging.getLogger("control_plane.decision_feed")
_quiet = logging.getLogger("control_plane.decision_feed.kafka")
_quiet.setLevel(logging.CRITICAL)  # librdkafka's own retries are noise; status() reports the state

METADATA_REFRESH_S = 10.0  # how often new topics / partitions are looked for once assigned
METADATA_RETRY_S = 2.0  # while a topic is still missing
POLL_TIMEOUT_S = 0.5
LATE_PARTITION_LOOKBACK_MS = 60_000  # producers' clocks may run a little behind ours
BATCH = 500
SUBSCRIBER_QUEUE = 1000  # rows pending per browser before the oldest are dropped
TRANSACTION_FACTS_PER_DECISION = 4  # the facts map holds this many transactions per buffered decision
# The hidden ground-truth label is for training and backtests, not for people watching live decisions.
HIDDEN_FACTS: set[str] = {"is_fraud"}


@dataclass(frozen=True)
class DecisionFilter:
    """Filters of the list and the stream; empty values match everything."""

    outcome: str | None = None
    reason_code: str | None = None  # case-insensitive substring of any reason code
    merchant: str | None = None  # case-insensitive substring of the merchant id
    source: str | None = None

    def matches(self, entry: dict[str, Any]) -> bool:
        if self.outcome and entry["outcome"] != self.outcome:
            return False
        if self.source and entry["source"] != self.source:
            return False
        if self.reason_code:
            wanted = self.reason_code.lower()
            if not any(wanted in r["code"].lower() for r in entry["reason_codes"]):
                return False
        if self.merchant:
            facts = entry.get("transaction")
            if not facts or self.merchant.lower() not in facts["merchant_id"].lower():
                return False
        return True


@dataclass(eq=False)
class Subscription:
    """One browser's stream: a bounded asyncio queue on the server's loop, fed by the feed's thread."""

    loop: asyncio.AbstractEventLoop
    filter: DecisionFilter
    queue: asyncio.Queue = field(default_factory=lambda: asyncio.Queue(SUBSCRIBER_QUEUE))
    dropped: int = 0

    def offer(self, entry: dict[str, Any]) -> None:
        """Runs on the loop (via call_soon_threadsafe): a full queue loses its oldest row."""
        if self.queue.full():
            self.queue.get_nowait()
            self.dropped += 1
        self.queue.put_nowait(entry)


def transaction_facts(event: TransactionEvent) -> dict[str, Any]:
    """The transaction as shown next to its decision: JSON types, plus the amount in major units."""
    facts = event.model_dump(mode="json", exclude=HIDDEN_FACTS)
    facts["amount"] = str(from_minor_units(event.amount_minor, event.currency))  # Decimal as text, never float
    return facts


def _now_iso() -> str:
    return datetime.now(UTC).isoformat().replace("+00:00", "Z")


class Subscribers:
    """Live subscriptions of a decision source (the Kafka feed, the SQL warehouse poller): both hold
    ``_lock``, ``_subscribers`` and ``_counts``."""

    _lock: threading.Lock
    _subscribers: set[Subscription]
    _counts: dict[str, int]

    def subscribe(self, loop: asyncio.AbstractEventLoop, decision_filter: DecisionFilter) -> Subscription:
        subscription = Subscription(loop, decision_filter)
        with self._lock:
            self._subscribers.add(subscription)
        return subscription

    def unsubscribe(self, subscription: Subscription) -> None:
        with self._lock:
            self._subscribers.discard(subscription)
            self._counts["dropped_for_subscribers"] += subscription.dropped


class DecisionFeed(Subscribers):
    def __init__(self, settings: ControlPlaneSettings, group_id: str | None = None):
        self.settings = settings
        self.decisions_topic = prefixed(DECISIONS, settings.topic_prefix)
        self.transactions_topic = prefixed(TRANSACTIONS, settings.topic_prefix)
        # its own group, never committed: offsets are chosen by hand at assignment
        self.group_id = group_id or f"pa-control-plane-decisions-{uuid.uuid4().hex[:12]}"
        self.capacity = settings.decision_buffer
        self.facts_capacity = max(TRANSACTION_FACTS_PER_DECISION * self.capacity, 1000)
        self._lock = threading.Lock()
        self._ring: deque[dict[str, Any]] = deque()
        self._by_transaction: dict[str, dict[str, Any]] = {}  # the newest buffered decision per transaction
        self._facts: OrderedDict[str, dict[str, Any]] = OrderedDict()
        self._subscribers: set[Subscription] = set()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._assigned: set[tuple[str, int]] = set()
        self._initial_assignment_done = False
        self._next_refresh = 0.0
        self._state = "stopped"
        self._error: str | None = None
        self._counts = {
            "decisions": 0,
            "transactions": 0,
            "invalid_decisions": 0,
            "invalid_transactions": 0,
            "joined": 0,
            "dropped_for_subscribers": 0,
        }
        self._last_invalid: dict[str, Any] | None = None
        self._last_message_at: str | None = None
        self._started_at: str | None = None
        self._started_ms = 0

    # ------------------------------------------------------------------------------------ lifecycle
    def start(self) -> None:
        if self._thread is not None:
            return
        self._stop.clear()
        self._state = "starting"
        self._started_at = _now_iso()
        self._started_ms = int(time.time() * 1000)
        self._thread = threading.Thread(target=self._run, name="decision-feed", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        thread, self._thread = self._thread, None
        if thread is None:
            return
        self._stop.set()
        thread.join(timeout=10)
        self._state = "stopped"

    @property
    def running(self) -> bool:
        return self._thread is not None

    # ------------------------------------------------------------------------------------ reading
    def recent(self, decision_filter: DecisionFilter = DecisionFilter(), limit: int = 100) -> list[dict[str, Any]]:
        """Buffered decisions matching the filter, newest first."""
        out: list[dict[str, Any]] = []
        with self._lock:
            for entry in reversed(self._ring):
                if decision_filter.matches(entry):
                    out.append(dict(entry))
                    if len(out) >= limit:
                        break
        return out

    def get(self, transaction_id: str) -> dict[str, Any] | None:
        with self._lock:
            entry = self._by_transaction.get(transaction_id)
            return dict(entry) if entry is not None else None

    def status(self) -> dict[str, Any]:
        with self._lock:
            buffered, facts, subscribers = len(self._ring), len(self._facts), len(self._subscribers)
            counts = dict(self._counts)
        state = self._state
        if state == "stopped" and not self.settings.decision_feed:
            state = "disabled"
        assigned = {topic for topic, _ in self._assigned}  # the thread rebinds the set, never mutates it
        return {
            "status": state,
            "connected": state == "connected",
            "error": self._error,
            "bootstrap": self.settings.kafka_bootstrap,
            "group_id": self.group_id,
            "topics": {name: name in assigned for name in (self.decisions_topic, self.transactions_topic)},
            "consumed": {"decisions": counts["decisions"], "transactions": counts["transactions"]},
            "invalid": {"decisions": counts["invalid_decisions"], "transactions": counts["invalid_transactions"]},
            "last_invalid": self._last_invalid,
            "joined": counts["joined"],
            "dropped_for_subscribers": counts["dropped_for_subscribers"],
            "buffered": buffered,
            "buffer_size": self.capacity,
            "transactions_cached": facts,
            "subscribers": subscribers,
            "started_at": self._started_at,
            "last_message_at": self._last_message_at,
        }

    # ------------------------------------------------------------------------------------ fan-out

    def _publish(self, entry: dict[str, Any]) -> None:
        with self._lock:
            targets = [s for s in self._subscribers if s.filter.matches(entry)]
        gone = []
        for subscription in targets:
            try:
                subscription.loop.call_soon_threadsafe(subscription.offer, dict(entry))
            except RuntimeError:  # its event loop is closed: the browser's request is long gone
                gone.append(subscription)
        for subscription in gone:
            self.unsubscribe(subscription)

    # ------------------------------------------------------------------------------------ ingestion
    def add_decision(self, value: bytes | None) -> dict[str, Any] | None:
        """Validate, buffer, join and publish one decision record; an invalid one is counted and skipped."""
        try:
            decision = DecisionEvent.model_validate_json(value or b"")
        except ValidationError as exc:
            with self._lock:
                self._counts["invalid_decisions"] += 1
                self._last_invalid = {
                    "topic": self.decisions_topic,
                    "at": _now_iso(),
                    "error": str(exc.errors(include_url=False)[:3])[:500],
                }
            return None
        entry = decision.model_dump(mode="json")
        entry["received_at"] = _now_iso()
        with self._lock:
            self._counts["decisions"] += 1
            entry["transaction"] = self._facts.get(decision.transaction_id)
            if entry["transaction"] is not None:
                self._counts["joined"] += 1
            self._ring.append(entry)
            self._by_transaction[decision.transaction_id] = entry
            while len(self._ring) > self.capacity:
                evicted = self._ring.popleft()
                if self._by_transaction.get(evicted["transaction_id"]) is evicted:
                    del self._by_transaction[evicted["transaction_id"]]
        self._publish(entry)
        return entry

    def add_transaction(self, value: bytes | None) -> dict[str, Any] | None:
        """Keep one transaction's facts; a decision already waiting for them is joined and re-published."""
        try:
            event = TransactionEvent.model_validate_json(value or b"")
        except ValidationError as exc:
            with self._lock:
                self._counts["invalid_transactions"] += 1
                self._last_invalid = {
                    "topic": self.transactions_topic,
                    "at": _now_iso(),
                    "error": str(exc.errors(include_url=False)[:3])[:500],
                }
            return None
        facts = transaction_facts(event)
        waiting = None
        with self._lock:
            self._counts["transactions"] += 1
            self._facts[event.transaction_id] = facts
            self._facts.move_to_end(event.transaction_id)
            while len(self._facts) > self.facts_capacity:
                self._facts.popitem(last=False)
            entry = self._by_transaction.get(event.transaction_id)
            if entry is not None and entry["transaction"] is None:
                entry["transaction"] = facts
                self._counts["joined"] += 1
                waiting = dict(entry)
        if waiting is not None:  # browsers replace the row they showed without facts
            self._publish(waiting)
        return facts

    # ------------------------------------------------------------------------------------ the thread
    def _consumer_config(self) -> dict[str, Any]:
        return {
            "bootstrap.servers": self.settings.kafka_bootstrap,
            "group.id": self.group_id,
            "enable.auto.commit": False,
            "enable.auto.offset.store": False,
            "auto.offset.reset": "earliest",
            "enable.partition.eof": False,
            "reconnect.backoff.max.ms": 10_000,
            "socket.connection.setup.timeout.ms": 5_000,
            "client.id": "pa-control-plane-decision-feed",
            "logger": _quiet,
            "error_cb": self._on_error,
        }

    def _on_error(self, error: KafkaError) -> None:
        if error.code() in (KafkaError._ALL_BROKERS_DOWN, KafkaError._TRANSPORT, KafkaError._RESOLVE) or error.fatal():
            self._state = "error"
            self._error = error.str()[:300]

    def _run(self) -> None:
        consumer: Consumer | None = None
        backoff = 1.0
        while not self._stop.is_set():
            try:
                if consumer is None:
                    consumer = Consumer(self._consumer_config())
                if time.monotonic() >= self._next_refresh:
                    self._refresh_assignment(consumer)
                self._consume_batch(consumer)
                backoff = 1.0
            except Exception as exc:  # a broker that is down, a topic that vanished: retry, never die
                self._state, self._error = "error", str(exc)[:300]
                log.debug("decision feed: %s (retrying in %.0fs)", exc, backoff)
                self._next_refresh = 0.0
                self._stop.wait(backoff)
                backoff = min(backoff * 2, 30.0)
        if consumer is not None:
            with contextlib.suppress(KafkaException, RuntimeError):
                consumer.close()

    def _refresh_assignment(self, consumer: Consumer) -> None:
        """Assign the topics' partitions not assigned yet (also topics created after the app started)."""
        meta = consumer.list_topics(timeout=3.0)
        self._state, self._error = "connected", None
        new: list[TopicPartition] = []
        for topic in (self.decisions_topic, self.transactions_topic):
            info = meta.topics.get(topic)
            if info is None or info.error is not None:
                continue
            for pid in sorted(info.partitions):
                if (topic, pid) in self._assigned:
                    continue
                new.append(TopicPartition(topic, pid, self._start_offset(consumer, topic, pid, len(info.partitions))))
        if new:
            consumer.incremental_assign(new)
            self._assigned = self._assigned | {(tp.topic, tp.partition) for tp in new}
        self._initial_assignment_done = True
        complete = {t for t, _ in self._assigned} == {self.decisions_topic, self.transactions_topic}
        self._next_refresh = time.monotonic() + (METADATA_REFRESH_S if complete else METADATA_RETRY_S)

    def _start_offset(self, consumer: Consumer, topic: str, partition: int, partitions: int) -> int:
        low, high = consumer.get_watermark_offsets(TopicPartition(topic, partition), timeout=3.0)
        if self._initial_assignment_done:  # appeared after the app started: what was produced since
            since = TopicPartition(topic, partition, self._started_ms - LATE_PARTITION_LOOKBACK_MS)
            found = consumer.offsets_for_times([since], timeout=3.0)[0].offset
            # nothing stamped since then: all records came before the end we read first
            return found if found >= 0 else max(low, high)
        keep = self.capacity if topic == self.decisions_topic else self.facts_capacity
        return max(low, high - math.ceil(keep / partitions))

    def _consume_batch(self, consumer: Consumer) -> None:
        if not self._assigned:
            self._stop.wait(POLL_TIMEOUT_S)
            return
        for message in consumer.consume(BATCH, timeout=POLL_TIMEOUT_S):
            error = message.error()
            if error is not None:
                if error.code() != KafkaError._PARTITION_EOF:
                    self._error = error.str()[:300]
                continue
            if self._state != "connected":
                self._state, self._error = "connected", None
            self._last_message_at = _now_iso()
            if message.topic() == self.decisions_topic:
                self.add_decision(message.value())
            else:
                self.add_transaction(message.value())
