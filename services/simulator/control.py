"""Run-time scenario switches over the compacted ``payments.simulator.control`` topic.

``publish_switch`` writes a :class:`ScenarioSwitch` (key ``simulator``; compaction keeps the latest).
``ControlListener`` is read by running simulators between batches (non-blocking): on start it
reads the topic from the beginning, so the latest switch wins, except switches older than
``since`` (used when the scenario was given explicitly at start).
"""

from __future__ import annotations

import logging
import uuid
from datetime import datetime

from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, Producer, TopicPartition
from pydantic import ValidationError

from payments_core.contract.control import CONTROL_KEY, ScenarioSwitch

log = logging.getLogger("services.simulator.control")


def publish_switch(bootstrap: str, topic: str, switch: ScenarioSwitch, timeout: float = 15.0) -> None:
    """Publish one switch and wait until the broker has it (raises on failure)."""
    errors: list[KafkaError] = []
    producer = Producer({"bootstrap.servers": bootstrap, "enable.idempotence": True, "acks": "all"})
    producer.produce(
        topic,
        switch.model_dump_json().encode(),
        CONTROL_KEY,
        on_delivery=lambda err, _msg: errors.append(err) if err else None,
    )
    remaining = producer.flush(timeout)
    if remaining:
        raise RuntimeError(
            f"scenario switch not delivered to {topic} at {bootstrap} within {timeout:.0f}s "
            "(is Kafka running and does the topic exist?)"
        )
    if errors:
        raise RuntimeError(f"scenario switch to {topic} failed: {errors[0]}")


class ControlListener:
    def __init__(self, bootstrap: str, topic: str, since: datetime | None = None):
        self.topic = topic
        self.since = since
        self.invalid = 0
        quiet = logging.getLogger("services.simulator.control.kafka")
        quiet.setLevel(logging.CRITICAL)
        self._consumer = Consumer(
            {
                "bootstrap.servers": bootstrap,
                "group.id": f"pa-simulator-control-{uuid.uuid4().hex[:8]}",
                "enable.auto.commit": False,
                "auto.offset.reset": "earliest",
                "logger": quiet,
            }
        )
        self._consumer.assign([TopicPartition(topic, 0, OFFSET_BEGINNING)])
        self._warned = False

    def poll(self, timeout: float = 0.0) -> ScenarioSwitch | None:
        """The latest valid switch received since the previous call, if any."""
        latest: ScenarioSwitch | None = None
        while True:
            msgs = self._consumer.consume(num_messages=100, timeout=timeout)
            timeout = 0.0
            if not msgs:
                return latest
            for msg in msgs:
                error = msg.error()
                if error is not None:
                    if not self._warned and error.code() != KafkaError._PARTITION_EOF:
                        log.warning("control topic %s: %s", self.topic, error)
                        self._warned = True
                    continue
                try:
                    switch = ScenarioSwitch.model_validate_json(msg.value() or b"")
                except ValidationError as exc:
                    self.invalid += 1
                    log.warning(
                        "ignoring invalid scenario switch at offset %s: %s", msg.offset(), exc.errors()[0].get("msg")
                    )
                    continue
                if self.since is not None and switch.at < self.since:
                    continue
                latest = switch

    def close(self) -> None:
        self._consumer.close()
