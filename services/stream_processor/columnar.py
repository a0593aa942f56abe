"""Column-wise contract validation of a whole Arrow batch of raw records: the fast path of ``parse``.

Validating each record with the contract's pydantic model costs ~10 µs per record plus ~4 µs to
turn the models into Arrow columns: a tenth of a transaction's CPU budget at saturation. Here a
batch is read by Arrow's JSON reader (C++, ~3.5 µs per 1 KB record) straight into the contract's
Arrow types, and the constraints are checked with Arrow compute, one kernel per field.

The constraints are not a second copy: they are derived from the contract's JSON Schema (which
pydantic derives from the model), and a keyword this module does not know stops the import.

The fast path only ever ACCEPTS. A record it does not accept -- the batch read fails on it
(syntax, unknown or duplicate field, a JSON type Arrow will not convert, such as ``1000.0`` for an
integer), a value breaks a constraint, a non-nullable field is null (a missing field with a default
is filled with it: Arrow reads both as null, so the raw record is searched for an explicit null),
the record does not start
with ``{``, the timestamp is not in the plain RFC 3339 form, or it is later than a bound the caller
passes (``validate(latest=...)``: the event-time bound, which moves with the clock) -- is handed back to
the caller, who validates it with the pydantic model: the contract decides it, with its reasons.
So a record is valid here only if the model accepts it, with the same values
(``tests/services/stream_processor/test_columnar.py`` checks both on every kind of deviation).
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.json as pj

# JSON Schema keywords and what the fast path does with them; anything else stops the import
_IGNORED = {"title", "description", "examples", "default", "type", "format"}
_CHECKED = {
    "enum",
    "const",
    "pattern",
    "minLength",
    "maxLength",
    "minimum",
    "maximum",
    "exclusiveMinimum",
    "exclusiveMaximum",
    "anyOf",
}
# RFC 3339 with 'T', at most microseconds, 'Z' or a numeric offset, every part in range: the form
# both pydantic and Arrow's cast read the same way (other forms pydantic accepts go to pydantic)
_TIMESTAMP = (
    r"^[1-9][0-9]{3}-(0[1-9]|1[0-2])-(0[1-9]|[12][0-9]|3[01])T([01][0-9]|2[0-3]):[0-5][0-9]:[0-5][0-9]"
    r"(\.[0-9]{1,6})?(Z|[+-]([01][0-9]|2[0-3]):[0-5][0-9])$"
)
# a record that starts an object reads as at least one row (or fails the read): if the rows of a
# batch are as many as its records, each record is exactly one row, in order
_RECORD = r"^[ \t]*\{"

Check = Callable[[pa.Array], pa.Array]
# a read that fails is halved down to this many records (fewer: to pydantic)
SMALLEST_READ = 32


def _compare(op: Callable[[Any, Any], Any], bound: Any, col: pa.Array) -> pa.Array:
    return op(col, bound)


def _field_checks(name: str, prop: dict[str, Any]) -> tuple[list[Check], bool]:
    """The checks of one property (each: column -> boolean mask, null = fails) and whether it may be null."""
    unknown = set(prop) - _IGNORED - _CHECKED
    if unknown:
        raise ValueError(f"columnar validation does not know the JSON Schema keywords {sorted(unknown)} of {name!r}")
    nullable = False
    if "anyOf" in prop:
        options = [o for o in prop["anyOf"] if o.get("type") != "null"]
        if len(options) != 1 or len(options) == len(prop["anyOf"]):
            raise ValueError(f"columnar validation only knows 'X or null' for {name!r}")
        nullable = True
        option_checks, _ = _field_checks(name, options[0])
        return option_checks, nullable
    checks: list[Check] = []
    if "enum" in prop:
        allowed = pa.array(prop["enum"])
        checks.append(lambda col: pc.is_in(col, value_set=allowed))
    if "const" in prop:
        const = prop["const"]
        checks.append(lambda col: pc.equal(col, const))
    if "pattern" in prop:
        pattern = prop["pattern"]
        checks.append(lambda col: pc.match_substring_regex(col, pattern))
    if "minLength" in prop:
        low = prop["minLength"]
        checks.append(lambda col: pc.greater_equal(pc.utf8_length(col), low))
    if "maxLength" in prop:
        high = prop["maxLength"]
        checks.append(lambda col: pc.less_equal(pc.utf8_length(col), high))
    for keyword, op in (
        ("minimum", pc.greater_equal),
        ("maximum", pc.less_equal),
        ("exclusiveMinimum", pc.greater),
        ("exclusiveMaximum", pc.less),
    ):
        if keyword in prop:
            checks.append(functools.partial(_compare, op, prop[keyword]))
    return checks, nullable


@dataclass(frozen=True)
class ColumnarValidator:
    """Built once from the contract's JSON Schema and its Arrow schema (same field names and order)."""

    schema: pa.Schema  # the contract's Arrow types (what valid rows come back as)
    read_schema: pa.Schema  # the same, all nullable, timestamps as text (checked, then cast)
    checks: dict[str, list[Check]]
    required_non_null: tuple[str, ...]  # null in these = the record goes to pydantic
    timestamps: tuple[str, ...]
    defaults: dict[str, Any]  # the non-nullable fields with a default (what a missing field is)

    @classmethod
    def from_json_schema(cls, json_schema: dict[str, Any], schema: pa.Schema) -> ColumnarValidator:
        props = json_schema["properties"]
        if list(props) != schema.names:
            raise ValueError("the Arrow schema must have the JSON Schema's properties, in order")
        if json_schema.get("additionalProperties") is not False:
            raise ValueError("columnar validation assumes unknown fields are refused")
        checks: dict[str, list[Check]] = {}
        non_null: list[str] = []
        timestamps: list[str] = []
        defaults: dict[str, Any] = {}
        read_fields = []
        for f in schema:
            field_checks, nullable = _field_checks(f.name, props[f.name])
            if pa.types.is_timestamp(f.type):
                field_checks = [lambda col: pc.match_substring_regex(col, _TIMESTAMP), *field_checks]
                timestamps.append(f.name)
                read_fields.append(pa.field(f.name, pa.string()))
            else:
                read_fields.append(pa.field(f.name, f.type))
            checks[f.name] = field_checks
            if not nullable:
                non_null.append(f.name)
                if "default" in props[f.name]:
                    defaults[f.name] = props[f.name]["default"]
        return cls(schema, pa.schema(read_fields), checks, tuple(non_null), tuple(timestamps), defaults)

    def _read(self, values: pa.Array) -> pa.Table:
        """One Arrow JSON read of ``values`` (one record per line); raises if any record is unreadable."""
        one_list = pa.ListArray.from_arrays(pa.array([0, len(values)], pa.int32()), values.cast(pa.binary()))
        joined = pc.binary_join(one_list, b"\n")[0].as_buffer()
        options = pj.ParseOptions(
            explicit_schema=self.read_schema, unexpected_field_behavior="error", newlines_in_values=False
        )
        table = pj.read_json(
            pa.BufferReader(joined),
            parse_options=options,
            read_options=pj.ReadOptions(use_threads=False, block_size=max(1 << 20, joined.size + 1)),
        )
        if table.num_rows != len(values):
            raise ValueError("records and rows do not line up")
        return table.combine_chunks()

    def _read_rows(
        self, values: pa.Array, rows: np.ndarray
    ) -> tuple[list[pa.Table], list[np.ndarray], list[np.ndarray]]:
        """Read ``values[rows]``; on a failure, halves (k bad records cost ~k log n small reads) down to
        ``SMALLEST_READ`` rows, which go to pydantic whole (a stream of mostly bad records costs about
        what pydantic alone would, not n log n reads). Returns the tables read, the rows each holds,
        and the rows left for pydantic."""
        try:
            subset = values if len(rows) == len(values) else values.take(pa.array(rows))
            return [self._read(subset)], [rows], []
        except (pa.ArrowInvalid, ValueError, UnicodeDecodeError):
            if len(rows) <= SMALLEST_READ:
                return [], [], [rows]
            mid = len(rows) // 2
            a = self._read_rows(values, rows[:mid])
            b = self._read_rows(values, rows[mid:])
            return a[0] + b[0], a[1] + b[1], a[2] + b[2]

    def validate(
        self, values: pa.Array, latest: Mapping[str, datetime] | None = None
    ) -> tuple[pa.Table, np.ndarray, np.ndarray]:
        """``(table, accepted, other)``: the accepted records as a table in the contract's Arrow types,
        their row numbers (ascending), and the row numbers of every other record (for pydantic).

        ``latest``: upper bounds of timestamp fields that are not in the JSON Schema because they move
        with the clock (the contract's ``event_timestamp`` bound, ``payments_core.contract.clock``): a
        later value goes to pydantic, which refuses it with the contract's reason."""
        n = len(values)
        screened = pc.match_substring_regex(values, _RECORD)
        screened = screened.fill_null(False).to_numpy(zero_copy_only=False)
        rows = np.flatnonzero(screened)
        others = [np.flatnonzero(~screened)]
        tables, held, unread = self._read_rows(values, rows) if len(rows) else ([], [], [])
        others += unread
        accepted_tables, accepted_rows = [], []
        for table, table_rows in zip(tables, held, strict=True):
            ok = np.ones(table.num_rows, dtype=bool)
            columns = []
            for name in self.schema.names:
                col = table.column(name)
                if name in self.defaults and col.null_count:
                    # null: the field is missing (its default) or an explicit null (refused by the
                    # contract). Arrow cannot tell; the raw record can (with an escape in it: pydantic)
                    nulls = np.flatnonzero(pc.is_null(col).to_numpy(zero_copy_only=False))
                    raw = values.take(pa.array(table_rows[nulls]))
                    explicit = pc.or_(
                        pc.match_substring_regex(raw, f'"{name}"[ \\t\\n\\r]*:[ \\t\\n\\r]*null'),
                        pc.match_substring(raw, "\\"),
                    )
                    ok[nulls[explicit.to_numpy(zero_copy_only=False)]] = False
                    col = pc.fill_null(col, self.defaults[name])
                columns.append(col)
                mask = pc.is_valid(col) if name in self.required_non_null else None
                for check in self.checks[name]:
                    mask = check(col) if mask is None else pc.and_(mask, check(col))
                if mask is None:
                    continue
                # a null value: fine where the contract allows null, refused where it does not
                mask = pc.if_else(pc.is_null(col), name not in self.required_non_null, mask)
                ok &= mask.to_numpy(zero_copy_only=False)
            table = pa.Table.from_arrays(columns, schema=self.read_schema)
            good = table.filter(pa.array(ok))
            try:
                good = self._typed(good)
            except (pa.ArrowInvalid, ValueError):  # e.g. 2026-02-30: pydantic says why
                others.append(table_rows)
                continue
            if latest:
                late = np.zeros(good.num_rows, dtype=bool)
                for name, bound in latest.items():
                    col = good.column(name)
                    later = pc.greater(col, pa.scalar(bound, type=col.type)).fill_null(False)
                    late |= later.to_numpy(zero_copy_only=False)
                if late.any():  # to pydantic (below, with the other refused rows)
                    good = good.filter(pa.array(~late))
                    ok[np.flatnonzero(ok)[late]] = False
            accepted_tables.append(good)
            accepted_rows.append(table_rows[ok])
            others.append(table_rows[~ok])
        accepted = np.concatenate(accepted_rows) if accepted_rows else np.zeros(0, dtype=np.int64)
        other = np.sort(np.concatenate(others)) if others else np.zeros(0, dtype=np.int64)
        if accepted_tables:
            table = pa.concat_tables(accepted_tables)
            order = np.argsort(accepted, kind="stable")
            if len(accepted_tables) > 1:
                table, accepted = table.take(pa.array(order)), accepted[order]
        else:
            table = self.schema.empty_table()
        assert len(accepted) + len(other) == n
        return table, accepted, other

    def _typed(self, table: pa.Table) -> pa.Table:
        arrays = []
        for f in self.schema:
            col = table.column(f.name)
            arrays.append(col.cast(f.type) if f.name in self.timestamps else col)
        return pa.Table.from_arrays(arrays, schema=self.schema)
