"""Gold views job: create (or refresh) every ``view`` dataset of the gold registry.

    python -m spark.jobs.gold_views --catalog main --schema payment_analysis
    python -m spark.jobs.gold_views --print-sql > gold_views.sql     # the SQL the Databricks job runs

The registry (``spark.etl.gold``) holds each gold dataset once. Datasets of kind ``materialized`` are
built by the ETL pipeline; this job handles the ``view`` ones (wall-clock views such as the last hour
and active alerts, and cheap derivations such as day-over-day trends and recommendations).

* Databricks: ``CREATE OR REPLACE VIEW catalog.schema.<name> AS <sql>`` with every table reference
  qualified; idempotent by construction.
* Local: the in-memory catalog forgets views when a session ends, so views are registered live in
  every session by ``Lakehouse.register`` (the same SQL). This job checks that each view compiles and
  runs against the current tables and writes a snapshot of it as a Delta table ``<name>`` in the
  schema folder (for readers without Spark); a snapshot is only rewritten when its content changed.
  Views whose inputs do not exist yet are skipped and reported.

Then, in the same session, the dashboard tables (``spark.jobs.dashboard_tables``: each dashboard
dataset's result as ``dash_<dataset>``, what the control plane's /dashboards read) are refreshed,
unless ``--no-dashboards``.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from dataclasses import dataclass

from spark.common.cli import add_lakehouse_args, lakehouse_from_args, setup_logging
from spark.common.session import get_spark
from spark.common.tables import Lakehouse
from spark.etl.gold import GOLD_BY_NAME, MATERIALIZED, VIEWS, in_dependency_order
from spark.jobs import dashboard_tables

log = logging.getLogger("spark.jobs.gold_views")


def _sql_string(text: str) -> str:
    return "'" + text.replace("\\", "\\\\").replace("'", "\\'") + "'"


def view_statements(lakehouse: Lakehouse) -> list[str]:
    """One ``CREATE OR REPLACE VIEW`` per view, table references qualified, in dependency order."""

    def qualify(name: str) -> str:
        return f"`{lakehouse.catalog}`.`{lakehouse.schema}`.`{name}`"

    return [
        f"CREATE OR REPLACE VIEW {qualify(d.name)}\nCOMMENT {_sql_string(d.description)}\nAS{d.render(qualify)}"
        for d in in_dependency_order(VIEWS)
    ]


def render_view_sql(lakehouse: Lakehouse) -> str:
    """The SQL script creating every view (what runs on Databricks)."""
    header = f"-- gold views of {lakehouse.catalog}.{lakehouse.schema}, generated from spark/etl/gold.py\n\n"
    return header + ";\n\n".join(view_statements(lakehouse)) + ";\n"


@dataclass(frozen=True)
class GoldViewsReport:
    created: list[str]
    unchanged: list[str]
    skipped: dict[str, list[str]]  # view -> missing inputs


def _same_content(spark, lakehouse: Lakehouse, name: str, df) -> bool:
    if not lakehouse.exists(spark, name):
        return False
    old = lakehouse.read(spark, name)
    if [f.simpleString() for f in old.schema.fields] != [f.simpleString() for f in df.schema.fields]:
        return False
    return old.exceptAll(df).isEmpty() and df.exceptAll(old).isEmpty()


def run(spark, lakehouse: Lakehouse) -> GoldViewsReport:
    created, unchanged, skipped = [], [], {}
    if lakehouse.databricks:
        for statement in view_statements(lakehouse):
            spark.sql(statement)
        missing = [d.name for d in MATERIALIZED if not lakehouse.exists(spark, d.name)]
        if missing:
            log.warning("materialized gold datasets not built yet (run the ETL pipeline): %s", ", ".join(missing))
        return GoldViewsReport([d.name for d in VIEWS], [], {})
    available = set(lakehouse.register(spark, views=False))
    for d in in_dependency_order(VIEWS):
        missing = [s for s in d.sources if s not in available]
        if missing:
            skipped[d.name] = missing
            continue
        df = spark.sql(d.render())
        df.createOrReplaceTempView(d.name)
        available.add(d.name)
        # views are small; collecting once pins wall-clock functions (current_timestamp) to one value
        snapshot = spark.createDataFrame(df.collect(), df.schema)
        if _same_content(spark, lakehouse, d.name, snapshot):
            unchanged.append(d.name)
            continue
        lakehouse.write(snapshot, d.name)
        created.append(d.name)
    for name, missing in skipped.items():
        log.warning("view %s skipped: missing %s (run the ETL pipeline first)", name, ", ".join(missing))
    return GoldViewsReport(created, unchanged, skipped)


def refresh_dashboards(spark, lakehouse: Lakehouse, report: GoldViewsReport) -> dashboard_tables.DashboardTablesReport:
    """The dashboard tables, in the session ``run`` just used: its views feed the dashboards' datasets
    (the old snapshot folder of a view skipped this time must not stand in for it)."""
    views = {d.name for d in VIEWS}
    done = report.created + report.unchanged
    if not lakehouse.databricks:
        # the snapshots just written hold the views' rows of this run: reading them spares computing
        # each view again for every dataset that uses it (the datasets' SQL is the same)
        for name in done:
            lakehouse.read(spark, name).createOrReplaceTempView(name)
    available = {t for t in lakehouse.local_tables() if t not in views} | set(done)
    return dashboard_tables.run(spark, lakehouse, available=available)


def main(argv: list[str] | None = None) -> int:
    setup_logging()
    p = argparse.ArgumentParser(
        prog="python -m spark.jobs.gold_views",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_lakehouse_args(p)
    p.add_argument("--print-sql", action="store_true", help="print the Databricks SQL and exit (no Spark)")
    p.add_argument("--list", action="store_true", help="list every gold dataset and exit")
    p.add_argument(
        "--json",
        action="store_true",
        help="with --list: the registry as JSON (name, kind, description, dashboards, sources)",
    )
    p.add_argument(
        "--no-dashboards",
        action="store_true",
        help="do not refresh the dashboard tables (dash_*, spark.jobs.dashboard_tables) after the views",
    )
    args = p.parse_args(argv)
    lakehouse = lakehouse_from_args(args)
    if args.print_sql:
        sys.stdout.write(render_view_sql(lakehouse))
        return 0
    if args.list and args.json:
        print(
            json.dumps(
                [
                    {
                        "name": d.name,
                        "kind": d.kind,
                        "description": d.description,
                        "dashboards": list(d.dashboards),
                        "sources": list(d.sources),
                    }
                    for d in GOLD_BY_NAME.values()
                ],
                indent=2,
            )
        )
        return 0
    if args.list:
        for d in GOLD_BY_NAME.values():
            print(f"{d.name:34} {d.kind:12} dashboards={','.join(map(str, d.dashboards)) or '-':8} {d.description}")
        return 0

    spark = get_spark("gold-views", warehouse_dir=lakehouse.warehouse_dir)
    report = run(spark, lakehouse)
    log.info(
        "gold views: %d written, %d unchanged, %d skipped",
        len(report.created),
        len(report.unchanged),
        len(report.skipped),
    )
    if not args.no_dashboards:
        refresh_dashboards(spark, lakehouse, report)
    return 0


if __name__ == "__main__":
    sys.exit(main())
