"""What a dashboard is made of: datasets (named queries over the gold layer), widgets on Lakeview's
6-column grid, and filters. Plain frozen dataclasses; :meth:`Dashboard.problems` checks a definition
on its own (no Spark, no registry), the tests check it against the gold registry and real data.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace
from functools import cached_property
from typing import Literal

from dashboards.sql import Expr, placeholders, render, select_columns

GRID_COLUMNS = 6  # Lakeview's canvas
TABLE_PREFIX = "dash_"  # dataset `x` is materialised as the Delta table `dash_x`

# How a value is shown: int, pct (a fraction shown as %), change (a relative change, signed %), pp (a
# difference of fractions shown as percentage points), usd, ms, seconds, score (0..1 to 3 places), num,
# text, date, datetime.
Format = Literal["int", "pct", "change", "pp", "usd", "ms", "seconds", "score", "num", "text", "date", "datetime"]
WidgetKind = Literal["counter", "line", "area", "bar", "histogram", "table", "map"]
FilterKind = Literal["date_range", "multi_select"]

# roles each kind of widget needs / may have (a table has any number of "column")
REQUIRED_ROLES: dict[str, tuple[str, ...]] = {
    "counter": ("value",),
    "line": ("x", "y"),
    "area": ("x", "y"),
    "bar": ("x", "y"),
    "histogram": ("x", "y"),
    "map": ("region", "value"),
    "table": (),
}
OPTIONAL_ROLES: dict[str, tuple[str, ...]] = {
    "counter": (),
    "line": ("color",),
    "area": ("color",),
    "bar": ("color",),
    "histogram": (),
    "map": ("label",),
    "table": ("column",),
}


@dataclass(frozen=True)
class Dataset:
    """A named Spark SQL query over gold datasets written ``{name}`` (resolved to plain names: the
    catalog and schema come from the session locally and from the bundle's ``dataset_catalog`` /
    ``dataset_schema`` on Databricks)."""

    name: str
    title: str
    sql: str

    @cached_property
    def columns(self) -> tuple[str, ...]:
        return select_columns(self.sql)

    @property
    def sources(self) -> tuple[str, ...]:
        return placeholders(self.sql)

    @property
    def table(self) -> str:
        return TABLE_PREFIX + self.name

    def render(self, resolve=lambda name: name) -> str:
        return render(self.sql, resolve).strip()


@dataclass(frozen=True)
class Field:
    title: str
    expr: Expr
    format: Format = "num"

    @property
    def name(self) -> str:
        return self.expr.name

    @property
    def scale(self) -> Literal["temporal", "categorical", "quantitative"]:
        if self.format in ("date", "datetime"):
            return "temporal"
        return "categorical" if self.format == "text" else "quantitative"


@dataclass(frozen=True)
class Position:
    x: int
    y: int
    width: int
    height: int

    def cells(self) -> set[tuple[int, int]]:
        return {(x, y) for x in range(self.x, self.x + self.width) for y in range(self.y, self.y + self.height)}


@dataclass(frozen=True)
class Widget:
    name: str
    kind: WidgetKind
    title: str
    dataset: str
    fields: tuple[tuple[str, Field], ...]  # (role, field)
    width: int = 3
    height: int = 4
    description: str = ""
    horizontal: bool = False  # bar: categories along the vertical axis
    order: tuple[tuple[str, bool], ...] | None = None  # (field name, descending); None: the kind's default
    limit: int | None = None
    position: Position | None = None

    def field(self, role: str) -> Field | None:
        return next((f for r, f in self.fields if r == role), None)

    @property
    def query_fields(self) -> list[Field]:
        """Each distinct field once, in role order."""
        seen: dict[str, Field] = {}
        for _, f in self.fields:
            seen.setdefault(f.name, f)
        return list(seen.values())

    @property
    def aggregated(self) -> bool:
        return any(f.expr.aggregated for f in self.query_fields)

    @property
    def sort(self) -> tuple[tuple[str, bool], ...]:
        """Row order: given, else time / buckets ascending, bars by value descending."""
        if self.order is not None:
            return self.order
        x, y, color = self.field("x"), self.field("y"), self.field("color")
        if self.kind in ("line", "area", "histogram") and x:
            keys = [(x.name, False)]
        elif self.kind == "bar" and x and y:
            keys = [(x.name, False)] if x.scale == "temporal" or color else [(y.name, True), (x.name, False)]
        elif self.kind == "map" and (value := self.field("value")):
            keys = [(value.name, True)]
        else:
            keys = []
        if color:
            keys.append((color.name, False))
        return tuple(keys)


@dataclass(frozen=True)
class Filter:
    """A dashboard filter and the dataset columns it applies to (a widget whose dataset is not among
    the targets is not filtered by it)."""

    name: str
    title: str
    kind: FilterKind
    targets: tuple[tuple[str, str], ...]  # (dataset, column)

    def column_for(self, dataset: str) -> str | None:
        return next((c for d, c in self.targets if d == dataset), None)


@dataclass(frozen=True)
class Dashboard:
    number: int
    id: str
    title: str
    description: str
    datasets: tuple[Dataset, ...]
    widgets: tuple[Widget, ...]
    filters: tuple[Filter, ...] = ()
    notes: tuple[str, ...] = field(default=())

    @property
    def file_name(self) -> str:
        return f"{self.number:02d}_{self.id}.lvdash.json"

    def dataset(self, name: str) -> Dataset:
        for d in self.datasets:
            if d.name == name:
                return d
        raise KeyError(f"dashboard {self.id}: no dataset {name!r}")

    def filters_for(self, dataset: str) -> list[tuple[Filter, str]]:
        return [(f, c) for f in self.filters if (c := f.column_for(dataset))]

    def problems(self) -> list[str]:
        """Everything wrong with the definition, checked without Spark."""
        datasets = {d.name: d for d in self.datasets}
        out = ["two datasets share a name"] if len(datasets) != len(self.datasets) else []
        columns: dict[str, set[str]] = {}
        for d in self.datasets:
            try:
                columns[d.name] = set(d.columns)
            except ValueError as exc:
                out.append(f"dataset {d.name}: {exc}")
            if not d.sources:
                out.append(f"dataset {d.name}: reads no gold dataset ({{name}})")
        names = [w.name for w in self.widgets]
        if len(set(names)) != len(names):
            out.append("two widgets share a name")
        for w in self.widgets:
            out += _widget_problems(w, columns)
        out += _layout_problems(self.widgets)
        for f in self.filters:
            if not f.targets:
                out.append(f"filter {f.name}: applies to no dataset")
            out += [
                f"filter {f.name}: {dataset}.{column} does not exist"
                for dataset, column in f.targets
                if column not in columns.get(dataset, ())
            ]
        return out


def _widget_problems(w: Widget, columns: dict[str, set[str]]) -> list[str]:
    where = f"widget {w.name}"
    out = []
    roles = [r for r, _ in w.fields]
    out += [f"{where}: a {w.kind} needs a {role!r} field" for role in REQUIRED_ROLES[w.kind] if role not in roles]
    unknown = set(roles) - set(REQUIRED_ROLES[w.kind]) - set(OPTIONAL_ROLES[w.kind])
    if unknown:
        out.append(f"{where}: roles {sorted(unknown)} are not for a {w.kind}")
    if w.kind == "table" and not roles:
        out.append(f"{where}: a table needs columns")
    if w.dataset not in columns:
        out.append(f"{where}: unknown (or unparsable) dataset {w.dataset!r}")
    else:
        for _, f in w.fields:
            missing = [c for c in f.expr.columns if c not in columns[w.dataset]]
            if missing:
                out.append(f"{where}: {f.name} uses {missing}, not columns of {w.dataset}")
    field_names = {f.name for f in w.query_fields}
    out += [f"{where}: sorts by {name!r}, not one of its fields" for name, _ in w.sort if name not in field_names]
    return out


def _layout_problems(widgets: Iterable[Widget]) -> list[str]:
    out = []
    taken: dict[tuple[int, int], str] = {}
    for w in widgets:
        p = w.position
        if p is None:
            out.append(f"widget {w.name}: not placed")
            continue
        if p.x < 0 or p.y < 0 or p.width < 1 or p.height < 1 or p.x + p.width > GRID_COLUMNS:
            out.append(f"widget {w.name}: {p} is off the {GRID_COLUMNS}-column grid")
        for cell in sorted(p.cells()):
            if cell in taken:
                out.append(f"widget {w.name}: overlaps {taken[cell]} at {cell}")
                break
            taken[cell] = w.name
    return out


# ------------------------------------------------------------------------------------- builders
def layout(rows: Sequence[Sequence[Widget]]) -> tuple[Widget, ...]:
    """Place rows of widgets left to right, each row below the tallest widget of the previous one."""
    placed: list[Widget] = []
    y = 0
    for row in rows:
        x = 0
        for w in row:
            placed.append(replace(w, position=Position(x, y, w.width, w.height)))
            x += w.width
        y += max((w.height for w in row), default=0)
    return tuple(placed)


def targets(column: str, datasets: Iterable[Dataset]) -> tuple[tuple[str, str], ...]:
    """Every dataset having ``column``."""
    return tuple((d.name, column) for d in datasets if column in d.columns)
