"""Parse and validate raw ``payments.transactions`` records against THE contract.

Validation is the contract's own pydantic model (``TransactionEvent``), run in the Python worker on
each record's raw bytes: the very rules ``POST /score`` applies (required fields, enums, patterns,
bounds, unknown fields forbidden, strict JSON types), with no second copy of the constraints.
The valid rows come back as one Arrow table typed from the same model, ready for the decision core's
batch API; every invalid record becomes a ``DeadLetter`` whose reasons name the offending fields.

Cost: one ``model_validate_json`` per record (pydantic-core, ~10 µs) plus ~4 µs to copy the valid
rows into columns. ``parse_array`` (large batches) first validates the whole batch column-wise
(``columnar``: Arrow's JSON reader and compute, constraints derived from the contract's JSON
Schema, ~4 µs per record) and runs pydantic only on the records that path does not accept.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import pyarrow as pa
from pydantic import ValidationError
from pyspark.sql.pandas.types import to_arrow_schema

from payments_core.contract.clock import EventClock
from payments_core.contract.dead_letters import (  # noqa: F401 - the stream's dead letters, re-exported
    EMPTY_VALUE,
    DeadLetter,
    Reason,
    dead_letter,
    dead_letter_key,
    reasons_of,
)
from payments_core.contract.events import TransactionEvent
from services.stream_processor.columnar import ColumnarValidator
from spark.common.schema import struct_type_for

TX_FIELDS: tuple[str, ...] = tuple(TransactionEvent.model_fields)
_validate_json = TransactionEvent.model_validate_json


def _arrow_schema() -> pa.Schema:
    # The Arrow types of the contract, derived from the model through the project's Spark mapping.
    schema = to_arrow_schema(struct_type_for(TransactionEvent), timezone="UTC")
    return schema


TX_ARROW_SCHEMA: pa.Schema = _arrow_schema()
COLUMNAR = ColumnarValidator.from_json_schema(TransactionEvent.model_json_schema(), TX_ARROW_SCHEMA)


@dataclass
class Parsed:
    """The outcome of parsing a batch of raw values (row numbers refer to the input order)."""

    valid_rows: list[int] = field(default_factory=list)
    table: pa.Table | None = None  # the valid rows, TX_ARROW_SCHEMA, in ``valid_rows`` order
    models: list[TransactionEvent] = field(default_factory=list)  # the valid rows as contract models
    invalid: dict[int, list[Reason]] = field(default_factory=dict)


def parse_values(values: Sequence[bytes | None], *, table: bool = True, clock: EventClock | None = None) -> Parsed:
    """Validate every raw value with the contract model; valid rows as models and (``table``) as
    one typed Arrow table (``models_table``). Event times are judged against ``clock`` (default: one
    reading of the server clock with the process's allowed skew, for the whole batch)."""
    parsed = Parsed()
    models: list[TransactionEvent] = []
    context = (clock or EventClock.current()).context()
    for i, raw in enumerate(values):
        if raw is None:
            parsed.invalid[i] = EMPTY_VALUE
            continue
        try:
            models.append(_validate_json(raw, context=context))
        except ValidationError as exc:
            parsed.invalid[i] = reasons_of(exc)
            continue
        parsed.valid_rows.append(i)
    parsed.models = models
    if table:
        parsed.table = models_table(models)
    return parsed


def parse_array(values: pa.Array, *, clock: EventClock | None = None) -> Parsed:
    """``parse_values`` of a whole Arrow array of raw values (same verdicts, reasons and table), the
    records the columnar path accepts without a pydantic model each (``Parsed.models`` stays empty)."""
    clock = clock or EventClock.current()
    table, accepted, others = COLUMNAR.validate(values, latest={"event_timestamp": clock.latest})
    if not len(others):
        return Parsed(valid_rows=accepted.tolist(), table=table)
    slow = parse_values(values.take(pa.array(others)).to_pylist(), clock=clock)
    valid_slow = others[slow.valid_rows] if slow.valid_rows else np.zeros(0, dtype=np.int64)
    rows = np.concatenate([accepted, valid_slow])
    order = np.argsort(rows, kind="stable")
    merged = pa.concat_tables([table, slow.table]).take(pa.array(order))
    return Parsed(
        valid_rows=rows[order].tolist(),
        table=merged,
        invalid={int(others[j]): reasons for j, reasons in slow.invalid.items()},
    )


def models_table(models: Sequence[TransactionEvent]) -> pa.Table:
    dicts = [m.__dict__ for m in models]
    arrays = [pa.array([d[f.name] for d in dicts], type=f.type) for f in TX_ARROW_SCHEMA]
    return pa.Table.from_arrays(arrays, schema=TX_ARROW_SCHEMA)
