"""Dashboard tables: every dataset of the 12 dashboards materialised as a small Delta table.

    python -m spark.jobs.dashboard_tables                  # after the ETL and the gold views
    python -m spark.jobs.gold_views                        # runs this too, in the same Spark session

Gold datasets are views computed on read (seconds each over a week of history), so a page view must
not query them. This job runs each dashboard dataset's query (``dashboards.definitions``, the very
SQL the Lakeview files hold) once over the gold layer and writes its result, a few to a few thousand
rows, to ``dash_<dataset>``; the control plane reads those without a JVM (delta-rs) and applies the
filters and the widgets' aggregations on them. ``dash_refreshes`` records each run: per dataset when
it was refreshed, its row count, a hash of its content and, when it could not be computed, why.

* A table is rewritten only when its content (or its query) changed; ``dash_refreshes`` is always
  rewritten, so "last refreshed" is the time of the last run.
* Locally the tables are written with delta-rs from the collected Arrow data (a Spark write costs
  about a second per table, delta-rs milliseconds); on Databricks through Spark into the schema.
* Wall-clock datasets (the last hour, the active alerts) are as of the refresh.
"""

from __future__ import annotations

import argparse
import hashlib
import logging
import sys
from dataclasses import dataclass, field
from datetime import UTC, datetime

import pyarrow as pa
from deltalake import write_deltalake
from pyspark.sql import types as T

from dashboards import all_datasets, dashboards_using
from dashboards.model import TABLE_PREFIX, Dataset
from spark.common.cli import add_lakehouse_args, lakehouse_from_args, setup_logging
from spark.common.session import get_spark
from spark.common.tables import Lakehouse

log = logging.getLogger("spark.jobs.dashboard_tables")

REFRESHES = TABLE_PREFIX + "refreshes"
REFRESH_SCHEMA = T.StructType(
    [
        T.StructField("dataset", T.StringType(), False),
        T.StructField("table_name", T.StringType(), False),
        T.StructField("dashboards", T.StringType(), False),  # comma-separated dashboard numbers
        T.StructField("refreshed_at", T.TimestampType(), False),
        T.StructField("status", T.StringType(), False),  # written | unchanged | failed
        T.StructField("row_count", T.LongType(), True),
        T.StructField("content_hash", T.StringType(), True),
        T.StructField("error", T.StringType(), True),
    ]
)


@dataclass
class DashboardTablesReport:
    refreshed_at: datetime
    written: list[str] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)  # dataset -> why


def content_hash(dataset: Dataset, schema: T.StructType, rows: list[dict]) -> str:
    """Hash of the query, the column names and types (not their nullability, which differs between a
    view and its snapshot) and the rows (in a stable order)."""
    h = hashlib.sha256(dataset.render().encode())
    h.update(schema.simpleString().encode())
    for line in sorted(repr(tuple(r.values())) for r in rows):
        h.update(line.encode())
    return h.hexdigest()


def refresh_table(entries: list[dict]) -> pa.Table:
    return pa.Table.from_pylist(
        entries,
        pa.schema(
            [
                pa.field("dataset", pa.string(), False),
                pa.field("table_name", pa.string(), False),
                pa.field("dashboards", pa.string(), False),
                pa.field("refreshed_at", pa.timestamp("us", tz="UTC"), False),
                pa.field("status", pa.string(), False),
                pa.field("row_count", pa.int64()),
                pa.field("content_hash", pa.string()),
                pa.field("error", pa.string()),
            ]
        ),
    )


def _previous_hashes(spark, lakehouse: Lakehouse) -> dict[str, str]:
    if not lakehouse.exists(spark, REFRESHES):
        return {}
    return {
        r.dataset: r.content_hash
        for r in lakehouse.read(spark, REFRESHES).select("dataset", "content_hash").collect()
        if r.content_hash
    }


def utc_timestamps(table: pa.Table) -> pa.Table:
    """Timestamps as UTC instants (Delta ``timestamp``, what Spark wrote), never zone-less
    (``timestamp_ntz``): the session computes in UTC."""
    fields = [
        f.with_type(pa.timestamp("us", tz="UTC")) if pa.types.is_timestamp(f.type) and f.type.tz is None else f
        for f in table.schema
    ]
    return table.cast(pa.schema(fields)) if fields != list(table.schema) else table


def _write(spark, lakehouse: Lakehouse, table: pa.Table, schema: T.StructType, name: str) -> None:
    if lakehouse.databricks:
        lakehouse.write(spark.createDataFrame(table.to_pylist(), schema), name)
        return
    # local: the result is tiny and already on the driver; delta-rs writes it without a Spark job
    write_deltalake(str(lakehouse.path(name)), utc_timestamps(table), mode="overwrite", schema_mode="overwrite")


def run(
    spark,
    lakehouse: Lakehouse,
    available: set[str] | None = None,
    datasets: dict[str, Dataset] | None = None,
    now: datetime | None = None,
) -> DashboardTablesReport:
    """Materialise every dataset whose gold inputs exist. ``available``: names the session already
    resolves (the gold views job passes its own); by default the lakehouse is registered here."""
    datasets = datasets if datasets is not None else all_datasets()
    report = DashboardTablesReport(now or datetime.now(UTC))
    if available is None:
        available = set(lakehouse.register(spark))
    previous = _previous_hashes(spark, lakehouse)
    entries = []
    for d in datasets.values():
        entry = dict(
            dataset=d.name,
            table_name=d.table,
            dashboards=",".join(map(str, dashboards_using(d.name))),
            refreshed_at=report.refreshed_at,
            row_count=None,
            content_hash=None,
            error=None,
        )
        missing = [] if lakehouse.databricks else [s for s in d.sources if s not in available]
        try:
            if missing:
                raise LookupError(f"missing inputs: {', '.join(missing)} (run the ETL pipeline first)")
            df = spark.sql(d.render())
            result = df.toArrow()  # the query runs once
            rows = result.to_pylist()
        except Exception as exc:  # one dataset failing must not hide the others
            why = str(exc).strip().splitlines()[0][:500]
            report.failed[d.name] = why
            entries.append({**entry, "status": "failed", "error": why})
            continue
        digest = content_hash(d, df.schema, rows)
        status = "unchanged"
        if previous.get(d.name) != digest or not lakehouse.exists(spark, d.table):
            _write(spark, lakehouse, result, df.schema, d.table)
            status = "written"
        (report.written if status == "written" else report.unchanged).append(d.name)
        entries.append({**entry, "status": status, "row_count": len(rows), "content_hash": digest})
    _write(spark, lakehouse, refresh_table(entries), REFRESH_SCHEMA, REFRESHES)
    for name, why in report.failed.items():
        log.warning("dashboard dataset %s not refreshed: %s", name, why)
    log.info(
        "dashboard tables: %d written, %d unchanged, %d failed",
        len(report.written),
        len(report.unchanged),
        len(report.failed),
    )
    return report


def main(argv: list[str] | None = None) -> int:
    setup_logging()
    p = argparse.ArgumentParser(
        prog="python -m spark.jobs.dashboard_tables",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_lakehouse_args(p)
    p.add_argument("--list", action="store_true", help="list the datasets and their tables, then exit (no Spark)")
    args = p.parse_args(argv)
    if args.list:
        for d in all_datasets().values():
            used = ",".join(map(str, dashboards_using(d.name)))
            print(f"{d.table:28} dashboards={used:8} reads {', '.join(d.sources)}")
        return 0
    lakehouse = lakehouse_from_args(args)
    spark = get_spark("dashboard-tables", warehouse_dir=lakehouse.warehouse_dir)
    report = run(spark, lakehouse)
    return 1 if report.failed and not (report.written or report.unchanged) else 0


if __name__ == "__main__":
    sys.exit(main())
