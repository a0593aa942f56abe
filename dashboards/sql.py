"""The little SQL the dashboards need, written once for three engines.

* :func:`select_columns`: the output columns of a dataset query, read from its outermost SELECT list
  (every item is a bare column or ends with ``AS name``; ``*`` is refused), so a widget field can be
  checked against the dataset without running it. The Spark tests check the parse against the real
  schema.
* :class:`Expr`: a widget field's expression (a column, or an aggregate of columns), rendered with
  the engine's identifier quoting: backticks for Spark and Lakeview, double quotes for DataFusion
  (delta-rs, the control plane). Ratios cast to DOUBLE and divide by ``NULLIF(.., 0)`` so that
  integer division (DataFusion) and ANSI division by zero (Spark 4) never bite.
* :func:`widget_query`: the GROUP BY query a widget runs over its dataset (Lakeview runs the same
  aggregation from the widget's fields).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Literal

Quote = Callable[[str], str]
Aggregate = Literal["sum", "avg", "min", "max", "count", "ratio", "wavg"]
IDENTIFIER = re.compile(r"^[a-z_][a-z0-9_]*$")
_PLACEHOLDER = re.compile(r"\{([a-z_][a-z0-9_]*)\}")


def backticks(name: str) -> str:
    return f"`{name}`"


def double_quotes(name: str) -> str:
    return f'"{name}"'


# ------------------------------------------------------------------------------------- parsing
def _top_level_tokens(sql: str) -> Iterable[tuple[int, int, str]]:
    """(depth, position, word) of every word outside quotes, with its parenthesis depth."""
    depth, i, n = 0, 0, len(sql)
    while i < n:
        c = sql[i]
        if c in "'\"`":
            end = sql.find(c, i + 1)
            i = n if end < 0 else end + 1
            continue
        if c == "-" and sql.startswith("--", i):
            end = sql.find("\n", i)
            i = n if end < 0 else end + 1
            continue
        if c == "(":
            depth += 1
        elif c == ")":
            depth -= 1
        elif c.isalpha() or c == "_":
            j = i
            while j < n and (sql[j].isalnum() or sql[j] == "_"):
                j += 1
            yield depth, i, sql[i:j]
            i = j
            continue
        elif c == ",":
            yield depth, i, ","
        i += 1


def _split_top_level(text: str) -> list[str]:
    items, depth, start, i = [], 0, 0, 0
    while i < len(text):
        c = text[i]
        if c in "'\"`":
            end = text.find(c, i + 1)
            i = len(text) if end < 0 else end + 1
            continue
        if c == "(":
            depth += 1
        elif c == ")":
            depth -= 1
        elif c == "," and depth == 0:
            items.append(text[start:i])
            start = i + 1
        i += 1
    items.append(text[start:])
    return [s.strip() for s in items if s.strip()]


def select_columns(sql: str) -> tuple[str, ...]:
    """Output column names of the outermost SELECT of ``sql`` (CTE bodies are in parentheses, so the
    first SELECT at depth 0 is the main one; for a UNION its first branch names the columns)."""
    start = end = None
    for depth, pos, word in _top_level_tokens(sql):
        if depth != 0:
            continue
        upper = word.upper()
        if start is None and upper == "SELECT":
            start = pos + len(word)
            continue
        if start is not None and upper in ("FROM", "UNION", "WHERE", "GROUP", "ORDER", "LIMIT"):
            end = pos
            break
    if start is None:
        raise ValueError("no top-level SELECT")
    select_list = sql[start:end]
    if select_list.lstrip().upper().startswith("DISTINCT "):
        select_list = select_list.lstrip()[len("DISTINCT ") :]
    names = []
    for item in _split_top_level(select_list):
        m = re.search(r"\bAS\s+`?([A-Za-z_][A-Za-z0-9_]*)`?\s*$", item, re.IGNORECASE)
        if m:
            names.append(m.group(1))
            continue
        m = re.fullmatch(r"(?:[A-Za-z_][A-Za-z0-9_]*\.)?`?([A-Za-z_][A-Za-z0-9_]*)`?", item)
        if not m or item.endswith("*"):
            raise ValueError(f"select item {item!r} needs an alias (`AS name`)")
        names.append(m.group(1))
    if len(set(names)) != len(names):
        raise ValueError(f"duplicate output columns in {names}")
    return tuple(names)


def placeholders(sql: str) -> tuple[str, ...]:
    """The gold datasets a query reads, written ``{name}``, in order of first use."""
    return tuple(dict.fromkeys(_PLACEHOLDER.findall(sql)))


def render(sql: str, resolve: Callable[[str], str] = lambda name: name) -> str:
    return _PLACEHOLDER.sub(lambda m: resolve(m.group(1)), sql)


# ----------------------------------------------------------------------------------- expressions
@dataclass(frozen=True)
class Expr:
    """A widget field: a dataset column as is (``agg`` None) or an aggregate over the rows of a group.

    ``ratio``: SUM(column) / SUM(by); ``wavg``: the mean of ``column`` weighted by ``by`` over the rows
    where it is known; ``count``: COUNT(*) (``column`` None)."""

    column: str | None
    agg: Aggregate | None = None
    by: str | None = None

    def __post_init__(self) -> None:
        for name in (self.column, self.by):
            if name is not None and not IDENTIFIER.match(name):
                raise ValueError(f"not a plain column name: {name!r}")
        if (self.agg in ("ratio", "wavg")) != (self.by is not None):
            raise ValueError(f"{self.agg or 'a column'}: `by` is for ratio and wavg only")
        if (self.column is None) != (self.agg == "count"):
            raise ValueError("count counts rows (no column); every other field names a column")

    @property
    def name(self) -> str:
        """The field's name in a widget query: the column, or Lakeview's style ``sum(amount)``."""
        if self.agg is None:
            return str(self.column)
        if self.agg == "count":
            return "count(*)"
        return f"{self.agg}({', '.join(self.columns)})"

    @property
    def aggregated(self) -> bool:
        return self.agg is not None

    @property
    def columns(self) -> tuple[str, ...]:
        return tuple(c for c in (self.column, self.by) if c is not None)

    def sql(self, quote: Quote) -> str:
        c = quote(self.column) if self.column else ""
        by = quote(self.by) if self.by else ""
        match self.agg:
            case None:
                return c
            case "count":
                return "COUNT(*)"
            case "ratio":
                return f"CAST(SUM({c}) AS DOUBLE) / NULLIF(SUM({by}), 0)"
            case "wavg":
                return f"CAST(SUM({c} * {by}) AS DOUBLE) / NULLIF(SUM(CASE WHEN {c} IS NOT NULL THEN {by} END), 0)"
            case _:
                return f"{self.agg.upper()}({c})"


def column(name: str) -> Expr:
    return Expr(name)


def total(name: str) -> Expr:
    return Expr(name, "sum")


def average(name: str) -> Expr:
    return Expr(name, "avg")


def maximum(name: str) -> Expr:
    return Expr(name, "max")


def minimum(name: str) -> Expr:
    return Expr(name, "min")


def count() -> Expr:
    return Expr(None, "count")


def ratio(numerator: str, denominator: str) -> Expr:
    return Expr(numerator, "ratio", denominator)


def weighted(name: str, weight: str) -> Expr:
    return Expr(name, "wavg", weight)


# --------------------------------------------------------------------------------------- queries
def sql_string(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


@dataclass(frozen=True)
class Condition:
    """A filter on a dataset column: values IN a list, or a closed date range (ISO dates)."""

    column: str
    values: tuple[str, ...] | None = None
    date_from: str | None = None
    date_to: str | None = None

    def sql(self, quote: Quote) -> str:
        c = quote(self.column)
        parts = []
        if self.values is not None:
            parts.append(f"{c} IN ({', '.join(sql_string(v) for v in self.values)})" if self.values else "FALSE")
        if self.date_from:
            parts.append(f"{c} >= DATE {sql_string(self.date_from)}")
        if self.date_to:
            parts.append(f"{c} <= DATE {sql_string(self.date_to)}")
        return " AND ".join(parts) or "TRUE"


def widget_query(
    source: str,
    fields: Iterable[tuple[str, Expr]],
    quote: Quote,
    where: Iterable[Condition] = (),
    order: Iterable[tuple[str, bool]] = (),
    limit: int | None = None,
) -> str:
    """``SELECT`` the named fields of one widget from ``source`` (a table name or a parenthesised
    query): the plain columns are the GROUP BY keys when any field aggregates. ``order``: (field name,
    descending)."""
    fields = list(fields)
    select = ", ".join(f"{e.sql(quote)} AS {quote(name)}" for name, e in fields)
    keys = [e.sql(quote) for _, e in fields if not e.aggregated]
    grouped = any(e.aggregated for _, e in fields)
    sql = f"SELECT {select} FROM {source}"
    conditions = [c.sql(quote) for c in where]
    if conditions:
        sql += " WHERE " + " AND ".join(conditions)
    if grouped and keys:
        sql += " GROUP BY " + ", ".join(keys)
    order_sql = [f"{quote(name)} {'DESC' if desc else 'ASC'} NULLS LAST" for name, desc in order]
    if order_sql:
        sql += " ORDER BY " + ", ".join(order_sql)
    if limit is not None:
        sql += f" LIMIT {int(limit)}"
    return sql
