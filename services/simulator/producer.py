"""Kafka producer for pre-serialised events: idempotent, ``acks=all``, compressed, every delivery
error counted (never silently dropped), clean flush on shutdown."""

from __future__ import annotations

import logging
import threading
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from confluent_kafka import KafkaError, Producer

log = logging.getLogger("services.simulator.producer")

COMPRESSIONS = ("zstd", "lz4", "snappy", "gzip", "none")


def producer_config(
    bootstrap: str,
    *,
    compression: str = "lz4",
    linger_ms: int = 20,
    batch_bytes: int = 1_000_000,
    queue_max_messages: int = 500_000,
    extra: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """The tuned configuration (shared with the benchmark's bare-producer ceiling)."""
    if compression not in COMPRESSIONS:
        raise ValueError(f"compression must be one of {', '.join(COMPRESSIONS)}, not {compression!r}")
    if linger_ms < 0 or batch_bytes <= 0 or queue_max_messages <= 0:
        raise ValueError("linger_ms must be >= 0, batch_bytes and queue_max_messages > 0")
    config: dict[str, Any] = {
        "bootstrap.servers": bootstrap,
        "enable.idempotence": True,  # implies acks=all, retries, in-order per partition
        "acks": "all",
        "compression.type": compression,
        "linger.ms": linger_ms,
        "batch.size": batch_bytes,
        "batch.num.messages": 100_000,
        "queue.buffering.max.messages": queue_max_messages,
        "queue.buffering.max.kbytes": 1_048_576,
        "message.timeout.ms": 120_000,
        # success reports cost a Python call each; failures are still reported, one by one
        "delivery.report.only.error": True,
    }
    config.update(extra or {})
    return config


@dataclass
class DeliveryStats:
    enqueued: int = 0
    failed: int = 0
    bytes: int = 0
    errors: Counter = field(default_factory=Counter)

    def delivered(self, in_flight: int) -> int:
        return self.enqueued - self.failed - in_flight


class EventProducer:
    """Produce (key, value) byte pairs to one topic; see :func:`producer_config` for the settings."""

    def __init__(self, bootstrap: str, topic: str, **config: Any):
        self.topic = topic
        self.stats = DeliveryStats()
        conf = producer_config(bootstrap, **config)
        conf["on_delivery"] = self._on_delivery
        conf["error_cb"] = self._on_error
        #: the bare confluent-kafka ``Producer`` (benchmarks measure it without this class's bookkeeping)
        self.client = Producer(conf)

    def _on_delivery(self, err: KafkaError | None, msg: Any) -> None:
        if err is not None:
            self.stats.failed += 1
            self.stats.errors[err.name()] += 1
            if self.stats.failed <= 10 or self.stats.failed % 10_000 == 0:
                log.error("delivery failed (%d so far): %s", self.stats.failed, err)

    def _on_error(self, err: KafkaError) -> None:
        # client-level errors (broker down, ...): librdkafka keeps retrying; fatal ones are raised
        if err.fatal():
            log.critical("fatal producer error: %s", err)
        else:
            log.warning("producer: %s", err)

    def send(self, values: list[bytes], keys: list[bytes], stop: threading.Event | None = None) -> int:
        """Enqueue the messages, waiting for room when the local queue is full (never drops).

        Returns how many were enqueued: all of them, unless ``stop`` is set while waiting for room
        (broker unreachable and a shutdown requested) - the rest are then not sent at all."""
        produce, topic = self.client.produce, self.topic
        n = len(values)
        pos = 0
        while pos < n:
            try:
                for pos in range(pos, n):  # noqa: B020 - pos is the retry point on BufferError
                    produce(topic, values[pos], keys[pos])
                pos = n
            except BufferError:
                if stop is not None and stop.is_set():
                    break
                self.client.poll(0.05)
        self.stats.enqueued += pos
        self.stats.bytes += sum(map(len, values[:pos])) if pos < n else sum(map(len, values))
        self.client.poll(0)
        return pos

    def poll(self, timeout: float = 0.0) -> None:
        self.client.poll(timeout)

    @property
    def in_flight(self) -> int:
        return len(self.client)

    def flush(self, timeout: float = 60.0) -> int:
        """Wait for outstanding deliveries; returns how many are still undelivered after ``timeout``."""
        return self.client.flush(timeout)
