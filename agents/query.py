"""How the agents read the gold layer: the dashboards' dataset tables through a reader the host passes in.

``spark.jobs.dashboard_tables`` materialises every dashboard dataset (named SQL over the gold views) as a
small Delta table ``dash_<dataset>``; the control plane reads those without a JVM
(``services.control_plane.lakehouse.DeltaReader``, DataFusion over delta-rs). The agents read the same
tables through the same reader, so an agent's figure and the dashboard's widget come from one query
layer. This package never imports the control plane: the reader is anything with
``query(sql, *tables) -> pyarrow.Table | None`` (None: a table is not there yet).

DataFusion here takes no bind parameters, so a query is a fixed SQL template whose parameters are
checked against a JSON schema (enumerations from the rule language's vocabularies, bounded integers)
and rendered as SQL literals by :func:`literal`; the evidence keeps the template's parameters and the
SQL exactly as it ran.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from datetime import date, datetime
from decimal import Decimal
from typing import Any, Protocol, runtime_checkable

import pyarrow as pa


class QueryRunner(Protocol):
    """What the host gives the agents to read tables with (``DeltaReader`` satisfies it)."""

    def query(self, sql: str, *names: str) -> pa.Table | None: ...


@runtime_checkable
class TableInfoSource(Protocol):
    """Optional: a reader that also says which version of a table it read (``DeltaReader.info``)."""

    def info(self, name: str) -> Any: ...


class MissingTable(Exception):
    """A table a query needs is not there yet; the message says which step writes it."""


def literal(value: Any) -> str:
    """A checked parameter as a SQL literal (strings quoted with ``'`` doubled; numbers as they are)."""
    if value is None:
        return "NULL"
    if isinstance(value, bool):
        return "TRUE" if value else "FALSE"
    if isinstance(value, int | Decimal):
        return str(value)
    if isinstance(value, float):
        return repr(value)
    if isinstance(value, str):
        return "'" + value.replace("'", "''") + "'"
    raise TypeError(f"no SQL literal for {type(value).__name__}")


def plain(value: Any) -> Any:
    """A value read from a table as JSON-able evidence: money (DECIMAL) and dates as strings, never floats."""
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, datetime | date):
        return value.isoformat()
    return value


@dataclass
class QueryRecord:
    """One query an agent ran: what a recommendation's evidence lists."""

    tool: str
    table: str
    sql: str
    parameters: dict[str, Any]
    rows: int = 0
    table_version: int | None = None
    table_updated_at: str | None = None
    duration_ms: float = 0.0

    def as_dict(self) -> dict[str, Any]:
        return {
            "tool": self.tool,
            "table": self.table,
            "sql": self.sql,
            "parameters": self.parameters,
            "rows": self.rows,
            "table_version": self.table_version,
            "table_updated_at": self.table_updated_at,
            "duration_ms": round(self.duration_ms, 2),
        }


@dataclass
class QueryResult:
    record: QueryRecord
    rows: list[dict[str, Any]] = field(default_factory=list)  # values as read (Decimal kept)


NOT_REFRESHED = "run the Gold views step on Setup & Run (it writes the dashboard tables the agents read)"


def run_query(runner: QueryRunner, tool: str, table: str, sql: str, parameters: dict[str, Any]) -> QueryResult:
    """Run ``sql`` over ``table`` and record it; MissingTable when the table is not there yet."""
    started = time.perf_counter()
    result = runner.query(sql, table)
    if result is None:
        raise MissingTable(f"{table} is not there yet: {NOT_REFRESHED}")
    record = QueryRecord(tool, table, sql, parameters, rows=result.num_rows)
    record.duration_ms = (time.perf_counter() - started) * 1000
    if isinstance(runner, TableInfoSource):
        info = runner.info(table)
        record.table_version = getattr(info, "version", None)
        updated = getattr(info, "updated_at", None)
        record.table_updated_at = updated.isoformat() if isinstance(updated, datetime) else None
    return QueryResult(record, result.to_pylist())
