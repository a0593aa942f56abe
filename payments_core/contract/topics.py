"""Kafka topic names and layouts: the one place they are defined."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class TopicSpec:
    name: str
    partitions: int
    key: str
    description: str
    config: tuple[tuple[str, str], ...] = ()


TRANSACTIONS = TopicSpec("payments.transactions", 6, "card_token_id", "Transaction events from the simulator / gateway")
TRANSACTIONS_DLQ = TopicSpec(
    "payments.transactions.dlq",
    1,
    "source offset",
    "Malformed or invalid transaction events with the reason, raw bytes and source offset",
)
DECISIONS = TopicSpec("payments.decisions", 6, "transaction_id", "One decision event per transaction")
DECISIONS_DLQ = TopicSpec(
    "payments.decisions.dlq",
    1,
    "source offset",
    "Invalid records of payments.decisions (not a valid decision, or a broken pa.context header) with the "
    "reason, raw bytes, source offset and the consumer that refused them",
)
SIMULATOR_CONTROL = TopicSpec(
    "payments.simulator.control",
    1,
    "none",
    "Scenario switches for running simulators",
    (("cleanup.policy", "compact"),),
)

TOPICS: tuple[TopicSpec, ...] = (TRANSACTIONS, TRANSACTIONS_DLQ, DECISIONS, DECISIONS_DLQ, SIMULATOR_CONTROL)


def prefixed(spec: TopicSpec, prefix: str) -> str:
    """Topic name under an isolation prefix (tests give each run its own topics)."""
    return f"{prefix}{spec.name}" if prefix else spec.name
