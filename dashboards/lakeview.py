"""A dashboard definition as a Lakeview dashboard (``.lvdash.json``).

No official schema is published; the shape follows workspace exports and the typed model of
databrickslabs/lsql: top-level ``datasets`` (name, displayName, queryLines), ``pages`` (a canvas whose
``layout`` holds widgets at ``position`` x/y/width/height on a 6-column grid) and ``uiSettings``.
Widget specs: counter v2 (``encodings.value``), bar / line / area v3 (``encodings.x``/``y``/``color``
with ``scale.type``), table v2 (``encodings.columns``), choropleth-map v1 (country names,
``mapbox-v4-admin``), filter-multi-select / filter-date-range-picker v2 (one query per dataset the
filter applies to, ``encodings.fields[].queryName``), a text header (``multilineTextboxSpec``).

Catalog and schema are never written: dataset queries name gold views unqualified and the bundle's
dashboard resource sets ``dataset_catalog`` / ``dataset_schema`` per target.
"""

from __future__ import annotations

import json
from typing import Any

from dashboards.model import Dashboard, Field, Filter, Widget
from dashboards.sql import backticks

CHART_KINDS = {"line": "line", "area": "area", "bar": "bar", "histogram": "bar"}


def query_lines(sql: str) -> list[str]:
    """The query as Lakeview stores it: lines that concatenate back to the query."""
    return sql.splitlines(keepends=True)


def _encoding(f: Field, *, axis: bool = True, sort: str | None = None) -> dict[str, Any]:
    scale: dict[str, Any] = {"type": f.scale}
    if sort:
        scale["sort"] = {"by": sort}
    out: dict[str, Any] = {"fieldName": f.name, "scale": scale, "displayName": f.title}
    if axis:
        out["axis"] = {"title": f.title}
    return out


def _frame(w: Widget) -> dict[str, Any]:
    frame: dict[str, Any] = {"showTitle": True, "title": w.title}
    if w.description:
        frame |= {"showDescription": True, "description": w.description}
    return frame


def _expression(f: Field) -> str:
    # Lakeview writes a row count as COUNT(`*`)
    return "COUNT(`*`)" if f.expr.agg == "count" else f.expr.sql(backticks)


def _main_query(w: Widget) -> dict[str, Any]:
    return {
        "name": "main_query",
        "query": {
            "datasetName": w.dataset,
            "fields": [{"name": f.name, "expression": _expression(f)} for f in w.query_fields],
            "disaggregated": not w.aggregated,
        },
    }


def _chart_spec(w: Widget) -> dict[str, Any]:
    x, y, color = w.field("x"), w.field("y"), w.field("color")
    assert x is not None and y is not None
    sort = None
    if x.scale == "categorical":
        if w.kind == "histogram" or w.order is not None or color:
            sort = "natural-order"  # bucket labels and stage names are written to sort naturally
        else:  # largest value first
            sort = "x-reversed" if w.horizontal else "y-reversed"
    category, value = _encoding(x, sort=sort), _encoding(y)
    encodings: dict[str, Any] = {"x": value, "y": category} if w.horizontal else {"x": category, "y": value}
    if color:
        encodings["color"] = _encoding(color, axis=False)
    return {"version": 3, "widgetType": CHART_KINDS[w.kind], "encodings": encodings}


def _spec(w: Widget) -> dict[str, Any]:
    if w.kind == "counter":
        value = w.field("value")
        assert value is not None
        spec: dict[str, Any] = {
            "version": 2,
            "widgetType": "counter",
            "encodings": {"value": {"fieldName": value.name, "displayName": value.title}},
        }
    elif w.kind == "table":
        spec = {
            "version": 2,
            "widgetType": "table",
            "encodings": {"columns": [{"fieldName": f.name, "displayName": f.title} for _, f in w.fields]},
        }
    elif w.kind == "map":
        value, label = w.field("value"), w.field("label")
        assert value is not None and label is not None, "a Lakeview map needs the country names (label)"
        spec = {
            "version": 1,
            "widgetType": "choropleth-map",
            "encodings": {
                "region": {
                    "regionType": "mapbox-v4-admin",
                    "admin0": {"type": "field", "fieldName": label.name, "geographicRole": "admin0-name"},
                },
                "color": {"fieldName": value.name, "scale": {"type": "quantitative"}, "displayName": value.title},
            },
        }
    else:
        spec = _chart_spec(w)
    spec["frame"] = _frame(w)
    return spec


def _widget(w: Widget, y_offset: int) -> dict[str, Any]:
    assert w.position is not None
    p = w.position
    return {
        "widget": {"name": w.name, "queries": [_main_query(w)], "spec": _spec(w)},
        "position": {"x": p.x, "y": p.y + y_offset, "width": p.width, "height": p.height},
    }


def _filter_widget(dashboard: Dashboard, f: Filter, x: int, y: int, width: int) -> dict[str, Any]:
    queries, fields = [], []
    for dataset, column in f.targets:
        name = f"filter_{f.name}_{dataset}"
        queries.append(
            {
                "name": name,
                "query": {
                    "datasetName": dataset,
                    "fields": [
                        {"name": column, "expression": backticks(column)},
                        {
                            "name": f"{column}_associativity",
                            "expression": "COUNT_IF(`associative_filter_predicate_group`)",
                        },
                    ],
                    "disaggregated": False,
                },
            }
        )
        fields.append({"fieldName": column, "displayName": f.title, "queryName": name})
    widget_type = "filter-date-range-picker" if f.kind == "date_range" else "filter-multi-select"
    return {
        "widget": {
            "name": f"filter_{f.name}",
            "queries": queries,
            "spec": {
                "version": 2,
                "widgetType": widget_type,
                "encodings": {"fields": fields},
                "frame": {"showTitle": True, "title": f.title},
            },
        },
        "position": {"x": x, "y": y, "width": width, "height": 1},
    }


def _header(dashboard: Dashboard) -> dict[str, Any]:
    lines = [f"## {dashboard.number}. {dashboard.title}\n", "\n", dashboard.description]
    for note in dashboard.notes:
        lines += ["\n", "\n", f"_{note}_"]
    return {
        "widget": {"name": "header", "multilineTextboxSpec": {"lines": lines}},
        "position": {"x": 0, "y": 0, "width": 6, "height": 2 if dashboard.notes else 1},
    }


def to_lakeview(dashboard: Dashboard) -> dict[str, Any]:
    """The Lakeview document of one dashboard: a header, the filters in rows of three, then the widgets."""
    header = _header(dashboard)
    layout: list[dict[str, Any]] = [header]
    y = header["position"]["height"]
    per_row, width = 3, 2
    for i, f in enumerate(dashboard.filters):
        layout.append(_filter_widget(dashboard, f, (i % per_row) * width, y + i // per_row, width))
    y += -(-len(dashboard.filters) // per_row)
    layout += [_widget(w, y) for w in dashboard.widgets]
    return {
        "datasets": [
            {"name": d.name, "displayName": d.title, "queryLines": query_lines(d.render())} for d in dashboard.datasets
        ],
        "pages": [
            {
                "name": f"page_{dashboard.id}",
                "displayName": dashboard.title,
                "pageType": "PAGE_TYPE_CANVAS",
                "layout": layout,
            }
        ],
        "uiSettings": {"theme": {"widgetHeaderAlignment": "ALIGNMENT_UNSPECIFIED"}, "applyModeEnabled": False},
    }


def dumps(document: dict[str, Any]) -> str:
    """Stable text (the committed files are compared byte for byte)."""
    return json.dumps(document, indent=2, ensure_ascii=False) + "\n"
