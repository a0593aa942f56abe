"""The event contract, defined once.

The pydantic models in :mod:`payments_core.contract.events` are the single definition. JSON Schema
comes from pydantic; the Spark StructType is derived from the same models by
``spark.common.schema.struct_type_for`` (kept out of the core so the core never imports pyspark).
"""

from payments_core.contract.clock import DEFAULT_MAX_EVENT_SKEW_SECONDS, EventClock, configure_max_event_skew
from payments_core.contract.dead_letters import DeadLetter, Reason
from payments_core.contract.decision_records import CONTEXT_FIELDS, CONTEXT_HEADER, check_decision_record
from payments_core.contract.events import (
    SCHEMA_VERSION,
    DecisionEvent,
    DecisionOutcome,
    ReasonCode,
    RetryAdvice,
    TransactionEvent,
    TransactionRequest,
    json_schemas,
)
from payments_core.contract.money import CURRENCY_EXPONENT, from_minor_units, to_minor_units
from payments_core.contract.topics import TOPICS, TopicSpec

__all__ = [
    "CONTEXT_FIELDS",
    "CONTEXT_HEADER",
    "CURRENCY_EXPONENT",
    "DEFAULT_MAX_EVENT_SKEW_SECONDS",
    "SCHEMA_VERSION",
    "TOPICS",
    "DeadLetter",
    "DecisionEvent",
    "DecisionOutcome",
    "EventClock",
    "Reason",
    "ReasonCode",
    "RetryAdvice",
    "TopicSpec",
    "TransactionEvent",
    "TransactionRequest",
    "check_decision_record",
    "configure_max_event_skew",
    "from_minor_units",
    "json_schemas",
    "to_minor_units",
]
