"""Topic sizes for the status panel (low/high watermarks per partition)."""

from __future__ import annotations

import logging

from confluent_kafka import Consumer, TopicPartition

from payments_core.contract.topics import TOPICS, prefixed

_quiet = logging.getLogger("control_plane.kafka")
_quiet.setLevel(logging.CRITICAL)


def topic_status(bootstrap: str, prefix: str = "", timeout: float = 2.0) -> dict:
    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": "control-plane-status",
            "enable.auto.commit": False,
            "logger": _quiet,
        }
    )
    try:
        meta = consumer.list_topics(timeout=timeout)
        topics = []
        for spec in TOPICS:
            name = prefixed(spec, prefix)
            if name not in meta.topics:
                topics.append({"topic": name, "exists": False, "messages": 0})
                continue
            total = produced = 0
            for pid in meta.topics[name].partitions:
                low, high = consumer.get_watermark_offsets(TopicPartition(name, pid), timeout=timeout)
                total += high - low
                produced += high
            topics.append(
                {
                    "topic": name,
                    "exists": True,
                    "partitions": len(meta.topics[name].partitions),
                    "messages": total,
                    "high_watermark": produced,
                }
            )
        return {"status": "up", "bootstrap": bootstrap, "topics": topics}
    except Exception as exc:  # broker down: the page says so instead of failing
        return {"status": "down", "bootstrap": bootstrap, "error": str(exc)[:200], "topics": []}
    finally:
        consumer.close()
