"""Contract validation as Spark Column expressions, derived from the pydantic models.

The checks are read from ``TransactionEvent``'s fields (required or defaulted, Literal enums,
patterns, min/max lengths, ge/le bounds), so a change of the contract changes silver validation with
no edit here. Each failing check yields an error code ``<check>:<field>``; silver keeps rows without
errors and sends the others to quarantine with the first code as ``quarantine_reason``.

Check codes: ``malformed_json``, ``unknown_field:<f>``, ``missing:<f>``, ``invalid_type:<f>``,
``invalid_enum:<f>``, ``invalid_pattern:<f>``, ``too_short:<f>``, ``too_long:<f>``, ``below_min:<f>``,
``above_max:<f>``, ``unsupported_schema_version`` and the semantic checks ``approved_with_decline``,
``declined_without_reason`` and ``event_in_future``.
"""
from __future__ import annotations

import re
import types
from typing import Any, Literal, Union, get_args, get_origin

from annotated_types import Ge, Le, MaxLen, MinLen
from pydantic import BaseModel
from pyspark.sql import Column
from pyspark.sql import functions as F

from payments_core.contract.events import SCHEMA_VERSION, TransactionEvent
from spark.common.schema import struct_type_for

FUTURE_TOLERANCE = "1 day"


def _unwrap(annotation: Any) -> tuple[Any, bool]:
    if get_origin(annotation) in (Union, types.UnionType):
        args = [a for a in get_args(annotation) if a is not type(None)]
        if len(args) == 1:
            return args[0], True
    return annotation, False


def field_checks(model: type[BaseModel] = TransactionEvent, *, parsed: str = "tx", raw: str = "record_value") -> list[Column]:
    """One Column per check, each the error code (string) when the check fails, else NULL.

    ``parsed`` is the struct column of ``from_json(raw, struct_type_for(model))``.
    """
    checks: list[Column] = []
    keys = F.json_object_keys(F.col(raw))
    allowed = F.array(*[F.lit(n) for n in model.model_fields])
    checks.append(F.when(keys.isNull(), F.lit("malformed_json")))
    # unknown fields (the contract forbids extra fields): first unknown key
    unknown = F.array_except(F.coalesce(keys, F.array().cast("array<string>")), allowed)
    checks.append(F.when(F.size(unknown) > 0, F.concat(F.lit("unknown_field:"), unknown[0])))
    for name, info in model.model_fields.items():
        value = F.col(parsed)[name]
        present = F.get_json_object(F.col(raw), f"$.{name}").isNotNull()
        annotation, optional = _unwrap(info.annotation)
        if info.is_required() and not optional:
            checks.append(F.when(~present, F.lit(f"missing:{name}")))
        # present in the JSON but not parsed: wrong type (e.g. "abc" for an int)
        checks.append(F.when(present & value.isNull(), F.lit(f"invalid_type:{name}")))
        if get_origin(annotation) is Literal:
            values = list(get_args(annotation))
            if name == "schema_version":
                checks.append(F.when(value.isNotNull() & ~value.isin(values), F.lit("unsupported_schema_version")))
            else:
                checks.append(F.when(value.isNotNull() & ~value.isin(values), F.lit(f"invalid_enum:{name}")))
        for meta in info.metadata:
            pattern = getattr(meta, "pattern", None)
            if pattern:
                checks.append(F.when(value.isNotNull() & ~value.rlike(_java_regex(pattern)),
                                     F.lit(f"invalid_pattern:{name}")))
            if isinstance(meta, MinLen):
                checks.append(F.when(F.length(value) < meta.min_length, F.lit(f"too_short:{name}")))
            if isinstance(meta, MaxLen):
                checks.append(F.when(F.length(value) > meta.max_length, F.lit(f"too_long:{name}")))
            if isinstance(meta, Ge):
                checks.append(F.when(value < F.lit(meta.ge), F.lit(f"below_min:{name}")))
            if isinstance(meta, Le):
                checks.append(F.when(value > F.lit(meta.le), F.lit(f"above_max:{name}")))
    return checks


def semantic_checks(parsed: str = "tx") -> list[Column]:
    """Consistency of the processor outcome and the clock."""
    tx = F.col(parsed)
    return [
        F.when(tx["is_approved"] & tx["decline_reason"].isNotNull(), F.lit("approved_with_decline")),
        F.when(~tx["is_approved"] & tx["decline_reason"].isNull() & tx["decline_code_raw"].isNull(),
               F.lit("declined_without_reason")),
        F.when(tx["event_timestamp"] > F.current_timestamp() + F.expr(f"INTERVAL {FUTURE_TOLERANCE}"),
               F.lit("event_in_future")),
    ]


def _java_regex(pattern: str) -> str:
    # Python and Java agree on the patterns the contract uses (anchors, classes, counts); guard others.
    if re.search(r"\(\?P<|\\Z", pattern):
        raise ValueError(f"pattern not portable to Spark: {pattern}")
    return pattern


def parse_and_check(df, raw: str = "record_value", model: type[BaseModel] = TransactionEvent,
                    parsed: str = "tx", errors: str = "validation_errors"):
    """``df`` plus the parsed struct ``parsed`` and the array of error codes ``errors`` (empty = valid)."""
    schema = struct_type_for(model)
    with_tx = df.withColumn(parsed, F.from_json(F.col(raw), schema, {"mode": "PERMISSIVE"}))
    codes = F.array(*field_checks(model, parsed=parsed, raw=raw), *semantic_checks(parsed))
    return with_tx.withColumn(errors, F.filter(codes, lambda c: c.isNotNull()))


def contract_defaults(model: type[BaseModel] = TransactionEvent) -> dict[str, Any]:
    """Defaults of the optional-with-default contract fields (absent in JSON -> default in silver)."""
    return {n: f.default for n, f in model.model_fields.items()
            if not f.is_required() and f.default is not None}


assert contract_defaults().get("schema_version") == SCHEMA_VERSION
