"""The dashboard tables over a real gold layer (Spark + Delta): every dashboard dataset runs on
simulated history and returns the columns its widgets use; what is materialised equals the dataset's
query over the live gold views; and every widget's numbers as the control plane computes them
(DataFusion over the ``dash_`` tables, no JVM) equal Spark's aggregation of the same tables,
unfiltered and filtered. Together: the control plane shows the gold views' numbers.
"""

from __future__ import annotations

import math
from datetime import UTC, datetime

import pyarrow as pa
import pytest
from deltalake import DeltaTable

from dashboards import DASHBOARDS, all_datasets
from dashboards.sql import backticks, widget_query
from services.control_plane import dashboard_data
from services.control_plane.lakehouse import DeltaReader
from spark.common.tables import Lakehouse
from spark.jobs import dashboard_tables
from tests.spark.dashboard_lake import EVENTS, MAY_BE_EMPTY


def normal(value):
    if isinstance(value, datetime) and value.tzinfo is None:
        value = value.astimezone(UTC)  # PySpark collects timestamps as naive local times
    value = dashboard_data.json_value(value)
    if isinstance(value, float):
        return float(f"{value:.9g}")
    return value


def normal_rows(rows: list[dict]) -> list[tuple]:
    return sorted((tuple((k, normal(v)) for k, v in r.items() if k != "iso_n3") for r in rows), key=repr)


def stored(lh: Lakehouse, dataset) -> pa.Table:
    """A dashboard table as the control plane reads it (delta-rs)."""
    return DeltaTable(str(lh.path(dataset.table))).to_pyarrow_table()


def spark_widget_rows(spark, lh: Lakehouse, dataset, widget, where) -> list[dict]:
    """The widget's query run by Spark over the dataset's table (which equals the dataset's query over
    the live gold views: ``test_materialised_tables_equal_the_gold_views``)."""
    sql = widget_query(
        f"delta.`{lh.path(dataset.table)}`",
        [(f.name, f.expr) for f in widget.query_fields],
        backticks,
        where,
        widget.sort,
        widget.limit,
    )
    return [r.asDict() for r in spark.sql(sql).collect()]


def test_every_dataset_is_materialised_with_its_columns(spark, dashboard_lake):
    lh, report = dashboard_lake
    datasets = all_datasets()
    assert report.failed == {}
    assert set(report.written) == set(datasets)
    for name, dataset in datasets.items():
        table = stored(lh, dataset)
        assert tuple(table.column_names) == dataset.columns, name  # the parse of the query is the real schema
        if name not in MAY_BE_EMPTY:
            assert table.num_rows > 0, f"{name} has no rows on four days of history"
    log = {r.dataset: r for r in lh.read(spark, dashboard_tables.REFRESHES).collect()}
    assert set(log) == set(datasets) and {r.status for r in log.values()} == {"written"}
    assert all(r.row_count is not None and r.content_hash for r in log.values())
    # date-range filters work on DATE columns
    for d in DASHBOARDS:
        for f in d.filters:
            if f.kind == "date_range":
                for dataset, column in f.targets:
                    column_type = stored(lh, d.dataset(dataset)).schema.field(column).type
                    assert column_type == pa.date32(), (d.id, dataset, column)


def test_materialised_tables_equal_the_gold_views(spark, dashboard_lake):
    lh, _ = dashboard_lake
    lh.register(spark)
    for name, dataset in all_datasets().items():
        if name == "last_hour":  # wall clock: its window moves between the refresh and now
            continue
        live = [r.asDict() for r in spark.sql(dataset.render()).collect()]
        assert normal_rows(stored(lh, dataset).to_pylist()) == normal_rows(live), name
    # the executive overview's volume is silver's row count
    silver_rows = lh.read(spark, "silver_transactions").count()
    assert silver_rows == EVENTS
    reader = DeltaReader(lh.warehouse_dir, lh.catalog, lh.schema)
    body = dashboard_data.dashboard_data(reader, next(d for d in DASHBOARDS if d.id == "executive_overview"))
    volume = next(w for w in body["widgets"] if w["name"] == "volume")
    assert volume["rows"] == [{"sum(transactions)": silver_rows}]


@pytest.mark.parametrize("dashboard", DASHBOARDS, ids=lambda d: d.id)
def test_control_plane_numbers_equal_spark_over_the_same_tables(spark, dashboard_lake, dashboard):
    lh, _ = dashboard_lake
    reader = DeltaReader(lh.warehouse_dir, lh.catalog, lh.schema)
    options = {f.name: dashboard_data.filter_options(reader, f) for f in dashboard.filters}
    unfiltered = dashboard_data.Selection()
    # one value of every multi-select, the first day of every date range
    filtered = dashboard_data.Selection(
        values={n: o["options"][:1] for n, o in options.items() if o.get("options")},
        dates={n: (o["min"], o["min"]) for n, o in options.items() if o.get("min")},
    )
    for f in dashboard.filters:
        assert options[f.name].get("options") or options[f.name].get("min"), f"{dashboard.id}.{f.name}: no values"
    for selection in (unfiltered, filtered):
        for widget in dashboard.widgets:
            if widget.dataset == "last_hour":
                continue
            ours = dashboard_data.widget_data(reader, dashboard, widget, selection, options)
            assert ours["message"] is None or ours["message"].startswith("no rows"), (widget.name, ours["message"])
            where, _ = dashboard_data.conditions(dashboard, widget, selection, options)
            theirs = spark_widget_rows(spark, lh, dashboard.dataset(widget.dataset), widget, where)
            assert normal_rows(ours["rows"]) == normal_rows(theirs), (dashboard.id, widget.name, selection)
            if selection is unfiltered and widget.dataset not in MAY_BE_EMPTY:
                assert ours["rows"], (dashboard.id, widget.name)
                for row in ours["rows"]:
                    values = [v for v in row.values() if isinstance(v, float)]
                    assert all(math.isfinite(v) for v in values)


def test_a_second_refresh_rewrites_only_what_changed(spark, dashboard_lake):
    lh, _ = dashboard_lake
    reader = DeltaReader(lh.warehouse_dir, lh.catalog, lh.schema)
    versions = {n: reader.info(d.table).version for n, d in all_datasets().items()}
    again = dashboard_tables.run(spark, lh)
    assert again.failed == {}
    assert set(again.written) <= {"last_hour"}, again.written  # its window is the wall clock
    for name in again.unchanged:
        assert reader.info(all_datasets()[name].table).version == versions[name], name
    log = {r.dataset: r.status for r in lh.read(spark, dashboard_tables.REFRESHES).collect()}
    assert {n for n, s in log.items() if s == "unchanged"} == set(again.unchanged)
    # jobs never register the dashboards' tables (they are the control plane's)
    assert not [n for n in lh.register(spark) if n.startswith("dash_")]
