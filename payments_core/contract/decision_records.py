"""A record of ``payments.decisions`` as its consumers must check it.

The value is a ``DecisionEvent`` (JSON). The stream processor also attaches a header
``pa.context`` (``CONTEXT_HEADER``) with a few facts of the transaction the decision log and the
one-minute metrics need (``CONTEXT_FIELDS``, typed and constrained exactly like the same fields of
``TransactionEvent``, plus the event time and the source offset): ``DecisionContext``. Every field of it
is optional (a producer that does not know one leaves it out), a field it does not know is ignored, but
a field that is there must be valid: an amount that is not an integer of minor units, for one, is
refused.

``check_decision_record`` is what both consumers (the decision log, the scoring API's Redis agent) run
on every record: a ``DecisionEvent`` or the reasons to dead-letter it (``payments.decisions.dlq``), never
a forged or broken decision written first-wins into Redis or into the log.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Annotated, Any, Final

from pydantic import BaseModel, ConfigDict, Field, ValidationError, create_model

from payments_core.contract.dead_letters import EMPTY_VALUE, Reason, reasons_of
from payments_core.contract.events import DecisionEvent, TransactionEvent

CONTEXT_HEADER: Final = "pa.context"
# Transaction facts carried next to each decision (header ``pa.context``). Never the hidden
# ``is_fraud`` label.
CONTEXT_FIELDS: tuple[str, ...] = (
    "merchant_id",
    "merchant_segment",
    "amount_minor",
    "currency",
    "card_network",
    "payment_solution",
    "geo_country",
    "is_approved",
    "fraud_score",
    "processing_time_ms",
)


def _optional(name: str) -> tuple[Any, Any]:
    # the field of TransactionEvent with its constraints on the value, None allowed besides
    info = TransactionEvent.model_fields[name]
    inner: Any = Annotated[(info.annotation, *info.metadata)] if info.metadata else info.annotation
    return (inner | None, Field(None, description=info.description))


_OFFSET: Any = Annotated[int, Field(ge=0)]
_CONTEXT_FIELDS: dict[str, Any] = {
    **{name: _optional(name) for name in CONTEXT_FIELDS},
    "event_timestamp_ms": (_OFFSET | None, Field(None, description="Event time, epoch milliseconds")),
    "source_partition": (_OFFSET | None, Field(None, description="Partition of the transaction record")),
    "source_offset": (_OFFSET | None, Field(None, description="Offset of the transaction record")),
}
DecisionContext: type[BaseModel] = create_model(
    "DecisionContext",
    __config__=ConfigDict(extra="ignore", frozen=True, strict=True),
    __doc__="The ``pa.context`` header of a decision record (see the module docstring).",
    **_CONTEXT_FIELDS,
)

_validate_decision = DecisionEvent.model_validate_json
_validate_context = DecisionContext.model_validate_json


def context_header(headers: Iterable[tuple[str, bytes | None]] | Mapping[str, bytes | None] | None) -> bytes | None:
    """The ``pa.context`` header's value among Kafka record headers (pairs or a mapping), else None."""
    if not headers:
        return None
    pairs = headers.items() if isinstance(headers, Mapping) else headers
    for key, value in pairs:
        if (key.decode() if isinstance(key, bytes) else key) == CONTEXT_HEADER:
            return value if value is not None else b""
    return None


def check_decision_record(value: bytes | None, context: bytes | None = None) -> DecisionEvent | list[Reason]:
    """The record's ``DecisionEvent``, or why it is not a valid decision record (its value, then its
    ``pa.context`` header when it has one: reasons of the header name ``pa.context.<field>``)."""
    if value is None:
        return EMPTY_VALUE
    try:
        event = _validate_decision(value)
    except ValidationError as exc:
        return reasons_of(exc)
    if context is not None:
        try:
            _validate_context(context)
        except ValidationError as exc:
            return reasons_of(exc, prefix=f"{CONTEXT_HEADER}.")
    return event
