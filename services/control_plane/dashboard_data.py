"""The numbers of the 12 dashboards, read without a JVM from the dashboard tables.

``spark.jobs.dashboard_tables`` (run by the Gold views step) writes each dashboard dataset's result to
``dash_<dataset>`` and a log of the run to ``dash_refreshes``. Here every widget becomes one small
DataFusion query over its dataset's table (``dashboards.sql.widget_query``: the widget's fields,
grouped by its plain columns, with the selected filters as WHERE conditions): the same aggregation a
Lakeview widget runs over the same dataset on Databricks. Results are cached per table version
(``lakehouse.DeltaReader``), so repeated views cost nothing until the next refresh.

Filters are checked before they reach SQL: a multi-select keeps only values present in the data, a
date range must be ISO dates.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any

from dashboards import BY_ID, DASHBOARDS
from dashboards.geo import ISO_NUMERIC
from dashboards.model import TABLE_PREFIX, Dashboard, Filter, Widget
from dashboards.sql import Condition, double_quotes, widget_query
from services.control_plane.lakehouse import DeltaReader, iso

REFRESHES = TABLE_PREFIX + "refreshes"
TABLES: dict[str, str] = {d.name: d.table for dash in DASHBOARDS for d in dash.datasets}  # dataset -> table
ETL_OUTPUT = "gold_partials"  # written by every ETL update that brings new silver rows
NOT_REFRESHED = (
    "no dashboard data yet: run the Gold views step on Setup & Run (it refreshes the dashboard tables after the ETL)"
)


def json_value(value: Any) -> Any:
    if isinstance(value, Decimal):
        return float(value)
    if isinstance(value, datetime):
        return iso(value)
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


@dataclass
class Selection:
    """Filter values chosen on a dashboard: multi-selects by filter name, date ranges as ISO dates."""

    values: dict[str, list[str]] = field(default_factory=dict)
    dates: dict[str, tuple[str | None, str | None]] = field(default_factory=dict)

    @classmethod
    def from_params(cls, dashboard: Dashboard, params) -> Selection:
        """From query parameters: ``<filter>=v`` (repeatable) for a multi-select, ``<filter>_from`` /
        ``<filter>_to`` for a date range. ValueError on a date that is not ``YYYY-MM-DD``."""
        out = cls()
        for f in dashboard.filters:
            if f.kind == "multi_select":
                chosen = [v for raw in params.getlist(f.name) for v in raw.split(",") if v]
                if chosen:
                    out.values[f.name] = chosen
            else:
                bounds = []
                for suffix in ("from", "to"):
                    raw = (params.get(f"{f.name}_{suffix}") or "").strip()
                    if raw:
                        try:
                            raw = date.fromisoformat(raw).isoformat()
                        except ValueError:
                            raise ValueError(f"{f.title}: {raw!r} is not a date (YYYY-MM-DD)") from None
                    bounds.append(raw or None)
                if any(bounds):
                    out.dates[f.name] = (bounds[0], bounds[1])
        return out


def refreshes(reader: DeltaReader) -> dict[str, dict] | None:
    """The last run of the dashboard tables job, per dataset (None: it never ran)."""
    table = reader.query(
        f"SELECT dataset, status, row_count, refreshed_at, error FROM {REFRESHES}",
        REFRESHES,
    )
    return None if table is None else {r["dataset"]: r for r in table.to_pylist()}


def freshness(reader: DeltaReader, runs: dict[str, dict] | None, dashboard: Dashboard | None = None) -> dict:
    """When the dashboard tables were refreshed and whether the ETL has written since."""
    names = [d.name for d in dashboard.datasets] if dashboard else None
    times = [r["refreshed_at"] for n, r in (runs or {}).items() if names is None or n in names]
    refreshed = max(times) if times else None
    etl = reader.info(ETL_OUTPUT)
    stale = bool(refreshed and etl.updated_at and etl.updated_at > refreshed)
    return {
        "refreshed_at": iso(refreshed),
        "etl_updated_at": iso(etl.updated_at),
        "stale": stale,
        "message": (
            NOT_REFRESHED
            if refreshed is None
            else "the ETL has written new data since: run Gold views to refresh the dashboards"
            if stale
            else None
        ),
    }


def filter_options(reader: DeltaReader, f: Filter) -> dict[str, Any]:
    """The values a multi-select offers, or the date bounds of a date range, over its targets."""
    values: set = set()
    for dataset, column in f.targets:
        table = TABLES.get(dataset)
        if table is None:
            continue
        q = double_quotes(column)
        result = reader.query(f"SELECT DISTINCT {q} AS v FROM {table} WHERE {q} IS NOT NULL", table)
        if result is not None:
            values.update(result.column("v").to_pylist())
    if f.kind == "date_range":
        days = sorted(v if isinstance(v, date) else v.date() for v in values)
        return {"min": days[0].isoformat() if days else None, "max": days[-1].isoformat() if days else None}
    return {"options": sorted(str(v) for v in values)}


def conditions(
    dashboard: Dashboard, widget: Widget, selection: Selection, options: dict[str, dict]
) -> tuple[list[Condition], list[str]]:
    """WHERE conditions of a widget (from the filters that target its dataset) and their titles."""
    out, titles = [], []
    for f, column in dashboard.filters_for(widget.dataset):
        if f.kind == "multi_select" and f.name in selection.values:
            allowed = set(options[f.name].get("options", []))
            chosen = tuple(v for v in selection.values[f.name] if v in allowed)
            out.append(Condition(column, values=chosen))
            titles.append(f.title)
        elif f.kind == "date_range" and f.name in selection.dates:
            start, end = selection.dates[f.name]
            out.append(Condition(column, date_from=start, date_to=end))
            titles.append(f.title)
    return out, titles


def widget_data(
    reader: DeltaReader, dashboard: Dashboard, widget: Widget, selection: Selection, options: dict[str, dict]
) -> dict[str, Any]:
    dataset = dashboard.dataset(widget.dataset)
    assert widget.position is not None
    where, filtered_by = conditions(dashboard, widget, selection, options)
    body: dict[str, Any] = {
        "name": widget.name,
        "kind": widget.kind,
        "title": widget.title,
        "description": widget.description,
        "dataset": dataset.name,
        "position": vars(widget.position),
        "horizontal": widget.horizontal,
        "fields": [{"role": r, "name": f.name, "title": f.title, "format": f.format} for r, f in widget.fields],
        "filtered_by": filtered_by,
        "rows": [],
        "message": None,
    }
    sql = widget_query(
        dataset.table,
        [(f.name, f.expr) for f in widget.query_fields],
        double_quotes,
        where,
        widget.sort,
        widget.limit,
    )
    table = reader.query(sql, dataset.table)
    if table is None:
        body["message"] = f"no data: {dataset.table} has not been written yet"
        return body
    rows = [{k: json_value(v) for k, v in r.items()} for r in table.to_pylist()]
    if widget.kind == "map" and (region := widget.field("region")):
        for r in rows:
            r["iso_n3"] = ISO_NUMERIC.get(str(r.get(region.name)))
    body["rows"] = rows
    if not rows:
        body["message"] = "no rows" + (" for the selected filters" if filtered_by else "")
    return body


def dashboard_data(reader: DeltaReader, dashboard: Dashboard, selection: Selection | None = None) -> dict[str, Any]:
    """Everything one dashboard page shows: freshness, filters with their options, each widget's rows."""
    selection = selection or Selection()
    runs = refreshes(reader)
    options = {f.name: filter_options(reader, f) for f in dashboard.filters}
    failed = {name: r["error"] for name, r in (runs or {}).items() if r["status"] == "failed" and name in TABLES}
    filters = []
    for f in dashboard.filters:
        item: dict[str, Any] = {
            "name": f.name,
            "title": f.title,
            "kind": f.kind,
            "applies_to": [dashboard.dataset(d).title for d, _ in f.targets],
            **options[f.name],
        }
        if f.kind == "multi_select":
            item["selected"] = [v for v in selection.values.get(f.name, []) if v in options[f.name]["options"]]
        else:
            item["from"], item["to"] = selection.dates.get(f.name, (None, None))
        filters.append(item)
    widgets = [widget_data(reader, dashboard, w, selection, options) for w in dashboard.widgets]
    for w in widgets:
        if w["dataset"] in failed:
            w["message"] = f"not refreshed: {failed[w['dataset']]}"
    return {
        "id": dashboard.id,
        "number": dashboard.number,
        "title": dashboard.title,
        "description": dashboard.description,
        "notes": list(dashboard.notes),
        "lakeview_file": dashboard.file_name,
        **freshness(reader, runs, dashboard),
        "filters": filters,
        "widgets": widgets,
        "generated_at": iso(datetime.now(UTC)),
    }


def overview(reader: DeltaReader) -> dict[str, Any]:
    """The 12 dashboards with when their data was refreshed and what is missing."""
    runs = refreshes(reader)
    items = []
    for d in DASHBOARDS:
        statuses = [runs.get(ds.name) for ds in d.datasets] if runs else []
        items.append(
            {
                "id": d.id,
                "number": d.number,
                "title": d.title,
                "description": d.description,
                "widgets": len(d.widgets),
                "filters": [f.title for f in d.filters],
                "lakeview_file": d.file_name,
                "refreshed_at": iso(max((s["refreshed_at"] for s in statuses if s), default=None)),
                "datasets_missing": [
                    ds.name for ds, s in zip(d.datasets, statuses, strict=False) if not s or s["status"] == "failed"
                ]
                if runs
                else [ds.name for ds in d.datasets],
            }
        )
    return {**freshness(reader, runs), "dashboards": items}


def get(dashboard_id: str) -> Dashboard | None:
    return BY_ID.get(dashboard_id)
