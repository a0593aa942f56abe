"""Creates the contract's topics with explicit partitions (idempotent)."""

from __future__ import annotations

import logging
import time
from typing import Any

from confluent_kafka.admin import AdminClient, NewTopic

from payments_core.contract.topics import TOPICS, TopicSpec, prefixed


def wait_for_broker(bootstrap: str, timeout: float = 60.0) -> AdminClient:
    # librdkafka logs every refused connection while the broker boots; keep that quiet.
    quiet = logging.getLogger("launcher.kafka-admin")
    quiet.setLevel(logging.CRITICAL)
    config: dict[str, Any] = {"bootstrap.servers": bootstrap, "logger": quiet}  # librdkafka takes a Logger too
    admin = AdminClient(config)
    deadline = time.monotonic() + timeout
    last: Exception | None = None
    while time.monotonic() < deadline:
        try:
            admin.list_topics(timeout=2)
            return admin
        except Exception as exc:  # broker still starting
            last = exc
            time.sleep(0.5)
    raise TimeoutError(f"Kafka at {bootstrap} not ready after {timeout:.0f}s: {last}")


def ensure_topics(bootstrap: str, prefix: str = "", specs: tuple[TopicSpec, ...] = TOPICS) -> list[str]:
    """Create missing topics; returns the names created."""
    admin = wait_for_broker(bootstrap)
    existing = set(admin.list_topics(timeout=10).topics)
    wanted = [
        NewTopic(prefixed(s, prefix), num_partitions=s.partitions, replication_factor=1, config=dict(s.config))
        for s in specs
        if prefixed(s, prefix) not in existing
    ]
    if not wanted:
        return []
    for future in admin.create_topics(wanted).values():
        try:
            future.result()
        except Exception as exc:
            if "TOPIC_ALREADY_EXISTS" not in str(exc):
                raise
    return [t.topic for t in wanted]
