"""Contract validation as Spark Column expressions, derived from the pydantic models.

The checks are read from ``TransactionEvent``'s fields (required or defaulted, Literal enums,
patterns, min/max lengths, ge/le bounds), so a change of the contract changes silver validation with
no edit here. Each failing check yields an error code ``<check>:<field>``; silver keeps rows without
errors and sends the others to quarantine with the first code as ``quarantine_reason``.

Cost: two JSON scans per valid row (the typed ``from_json`` and ``json_object_keys``); a third, every
field read as text, only for rows whose typed parse failed somewhere.

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
from pyspark.sql import types as T

from payments_core.contract.events import SCHEMA_VERSION, TransactionEvent
from spark.common.schema import struct_type_for

FUTURE_TOLERANCE = "1 day"


def _unwrap(annotation: Any) -> tuple[Any, bool]:
    if get_origin(annotation) in (Union, types.UnionType):
        args = [a for a in get_args(annotation) if a is not type(None)]
        if len(args) == 1:
            return args[0], True
    return annotation, False


CORRUPT = "_corrupt_record"


Check = tuple[Column, Column]  # (fails, error code)


def field_checks(
    model: type[BaseModel] = TransactionEvent,
    *,
    parsed: str = "tx",
    raw: str = "record_value",
    keys: str = "_json_keys",
) -> list[Check]:
    """One ``(fails, code)`` pair per check: a boolean Column (NULL counts as passing) and the error
    code (string Column).

    ``parsed`` is the struct of ``from_json(raw, struct_type_for(model) + _corrupt_record)`` and
    ``keys`` the top-level keys of ``raw`` (``json_object_keys``), both computed once per row. Only rows
    whose typed parse recorded a corrupt record are parsed a second time (every field as a string) to
    tell a value of the wrong type from a missing one, so valid rows cost two JSON scans.
    """
    checks: list[Check] = []

    def add(fails: Column, code: Column | str) -> None:
        checks.append((fails, F.lit(code) if isinstance(code, str) else code))

    key_list = F.col(keys)
    corrupt = F.col(parsed)[CORRUPT].isNotNull()
    as_text = F.from_json(F.col(raw), _string_schema(model))
    allowed = F.array(*[F.lit(n) for n in model.model_fields])
    add(key_list.isNull(), "malformed_json")
    # unknown fields (the contract forbids extra fields): first unknown key
    unknown = F.array_except(F.coalesce(key_list, F.array().cast("array<string>")), allowed)
    add(F.size(unknown) > 0, F.concat(F.lit("unknown_field:"), unknown[0]))
    for name, info in model.model_fields.items():
        value = F.col(parsed)[name]
        annotation, optional = _unwrap(info.annotation)
        # present with a value of the wrong type (e.g. "abc" for an int): only on corrupt rows
        wrong_type = corrupt & value.isNull() & F.when(corrupt, as_text[name]).isNotNull()
        add(key_list.isNotNull() & wrong_type, f"invalid_type:{name}")
        if info.is_required() and not optional:
            add(key_list.isNotNull() & value.isNull() & ~wrong_type, f"missing:{name}")
        if get_origin(annotation) is Literal:
            values = list(get_args(annotation))
            code = "unsupported_schema_version" if name == "schema_version" else f"invalid_enum:{name}"
            add(value.isNotNull() & ~value.isin(values), code)
        for meta in info.metadata:
            pattern = getattr(meta, "pattern", None)
            if pattern:
                add(value.isNotNull() & ~value.rlike(_java_regex(pattern)), f"invalid_pattern:{name}")
            if isinstance(meta, MinLen):
                add(F.length(value) < meta.min_length, f"too_short:{name}")
            if isinstance(meta, MaxLen):
                add(F.length(value) > meta.max_length, f"too_long:{name}")
            if isinstance(meta, Ge):
                add(value < F.lit(meta.ge), f"below_min:{name}")
            if isinstance(meta, Le):
                add(value > F.lit(meta.le), f"above_max:{name}")
    return checks


def _string_schema(model: type[BaseModel]) -> T.StructType:
    return T.StructType([T.StructField(n, T.StringType()) for n in model.model_fields])


def parse_schema(model: type[BaseModel] = TransactionEvent) -> T.StructType:
    """The contract's StructType plus the corrupt-record column used by the checks."""
    return T.StructType([*struct_type_for(model).fields, T.StructField(CORRUPT, T.StringType())])


def semantic_checks(parsed: str = "tx") -> list[Check]:
    """Consistency of the processor outcome and the clock."""
    tx = F.col(parsed)
    return [
        (tx["is_approved"] & tx["decline_reason"].isNotNull(), F.lit("approved_with_decline")),
        (
            ~tx["is_approved"] & tx["decline_reason"].isNull() & tx["decline_code_raw"].isNull(),
            F.lit("declined_without_reason"),
        ),
        (
            tx["event_timestamp"] > F.current_timestamp() + F.expr(f"INTERVAL {FUTURE_TOLERANCE}"),
            F.lit("event_in_future"),
        ),
    ]


def _java_regex(pattern: str) -> str:
    # Python and Java agree on the patterns the contract uses (anchors, classes, counts); guard others.
    if re.search(r"\(\?P<|\\Z", pattern):
        raise ValueError(f"pattern not portable to Spark: {pattern}")
    return pattern


def parse_and_check(
    df,
    raw: str = "record_value",
    model: type[BaseModel] = TransactionEvent,
    parsed: str = "tx",
    errors: str = "validation_errors",
):
    """``df`` plus the parsed struct ``parsed`` and the array of error codes ``errors`` (empty = valid)."""
    with_tx = df.withColumns(
        {
            parsed: F.from_json(
                F.col(raw), parse_schema(model), {"mode": "PERMISSIVE", "columnNameOfCorruptRecord": CORRUPT}
            ),
            "_json_keys": F.json_object_keys(F.col(raw)),
        }
    )
    checks = [*field_checks(model, parsed=parsed, raw=raw), *semantic_checks(parsed)]
    # valid rows (nearly all) only evaluate one boolean expression; the list of error codes (an
    # interpreted higher-order function) is built for failing rows only
    fails = _any([F.coalesce(c, F.lit(False)) for c, _ in checks])
    codes = F.filter(F.array(*[F.when(c, code) for c, code in checks]), lambda c: c.isNotNull())
    empty = F.array().cast("array<string>")
    return with_tx.withColumn(errors, F.when(fails, codes).otherwise(empty)).drop("_json_keys")


def _any(conditions: list[Column]) -> Column:
    """OR of the conditions as a balanced tree (Spark Connect refuses very deep expression trees)."""
    while len(conditions) > 1:
        conditions = [
            conditions[i] | conditions[i + 1] if i + 1 < len(conditions) else conditions[i]
            for i in range(0, len(conditions), 2)
        ]
    return conditions[0]


def contract_defaults(model: type[BaseModel] = TransactionEvent) -> dict[str, Any]:
    """Defaults of the optional-with-default contract fields (absent in JSON -> default in silver)."""
    return {n: f.default for n, f in model.model_fields.items() if not f.is_required() and f.default is not None}


assert contract_defaults().get("schema_version") == SCHEMA_VERSION
