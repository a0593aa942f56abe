"""Dead letters: a record a consumer refused, with the reasons, the raw bytes and where it came from.

One shape for every dead-letter topic: ``payments.transactions.dlq`` (records of
``payments.transactions`` that are not a valid ``TransactionEvent``, refused by the stream processor)
and ``payments.decisions.dlq`` (records of ``payments.decisions`` that are not a valid decision,
refused by the decision log and by the scoring API's decisions consumer). The key of a dead letter is
``<topic>/<partition>/<offset>`` of the refused record (``dead_letter_key``), so a record refused twice
(a consumer replaying after a crash, or two consumers) is recognisable as the same one.
"""

from __future__ import annotations

import base64
from datetime import UTC, datetime

from pydantic import BaseModel, ConfigDict, Field, ValidationError


class Reason(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    field: str = Field(description="Dotted path of the offending field; '$' for the whole record")
    type: str = Field(description="pydantic error type, e.g. missing, literal_error, json_invalid")
    message: str


class DeadLetter(BaseModel):
    """A refused record: the value exactly as received (base64, and as text when it is UTF-8), where it
    came from, and why it was refused."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    schema_version: int = 1
    error: str = Field(description="First reason, '<field>: <message>'")
    reasons: list[Reason]
    source_topic: str
    source_partition: int
    source_offset: int
    source_timestamp: datetime | None = None
    source_key_base64: str | None = None
    raw_base64: str | None = Field(description="The record value exactly as received")
    raw_text: str | None = Field(None, description="The value as UTF-8 text when it decodes")
    dead_lettered_at: datetime
    refused_by: str | None = Field(
        None, description="The consumer that refused it (decisions: decision_log or scoring_api.consumer)"
    )


def reasons_of(exc: ValidationError, prefix: str = "") -> list[Reason]:
    """The reasons of a pydantic error, one per error, ``prefix`` before each field path."""
    out = []
    for err in exc.errors(include_url=False, include_context=False, include_input=False):
        path = ".".join(str(p) for p in err.get("loc", ()))
        field = f"{prefix}{path}" if path else (prefix.rstrip(".") or "$")
        out.append(Reason(field=field, type=err["type"], message=err["msg"]))
    return out


EMPTY_VALUE = [Reason(field="$", type="missing_value", message="the Kafka record has no value (null)")]


def dead_letter(
    reasons: list[Reason],
    *,
    raw: bytes | None,
    topic: str,
    partition: int,
    offset: int,
    timestamp: datetime | None,
    key: bytes | None,
    now: datetime | None = None,
    refused_by: str | None = None,
) -> DeadLetter:
    text: str | None = None
    if raw is not None:
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError:
            text = None
    first = reasons[0]
    return DeadLetter(
        error=f"{first.field}: {first.message}",
        reasons=reasons,
        source_topic=topic,
        source_partition=partition,
        source_offset=offset,
        source_timestamp=timestamp,
        source_key_base64=None if key is None else base64.b64encode(key).decode(),
        raw_base64=None if raw is None else base64.b64encode(raw).decode(),
        raw_text=text,
        dead_lettered_at=now or datetime.now(UTC),
        refused_by=refused_by,
    )


def dead_letter_key(topic: str, partition: int, offset: int) -> bytes:
    return f"{topic}/{partition}/{offset}".encode()
