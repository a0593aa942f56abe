"""A small lakehouse with data for the dashboards' tests: about four days of simulated transactions
through what the ETL writes, the gold views job, then the dashboard tables. Built once per session
(``dashboard_lake`` in tests/conftest.py) and shared by the Spark and the browser tests."""

from __future__ import annotations

import fcntl
import pickle
import shutil
from datetime import UTC, datetime
from pathlib import Path

from services.simulator.generator import GeneratorConfig, TransactionGenerator
from spark.common.tables import Lakehouse
from spark.etl import gold_partials, silver
from spark.jobs import dashboard_tables, gold_views
from tests.spark.factories import bronze_frame

CATALOG, SCHEMA = "c", "dash"
START = datetime(2026, 11, 2, tzinfo=UTC)
EVENTS = 4_000  # about four days at 0.012 events per simulated second
# no alert fires on calm history; recommendations need enough traffic per route
MAY_BE_EMPTY = {"active_alerts", "recommendations"}


def simulated_events() -> list[str]:
    config = GeneratorConfig(seed=7, start=START, events_per_second=0.012, n_merchants=150, n_cardholders=3_000)
    values: list[str] = []
    for batch in TransactionGenerator(config).iter_batches(EVENTS, EVENTS):
        values += [v.decode() for v in batch.json_values()]
    return values


def build_lake(spark, root: Path) -> tuple[Lakehouse, dashboard_tables.DashboardTablesReport]:
    """A lakehouse with what the ETL writes (bronze with a duplicate and a bad record, silver,
    quarantine, dead letters, gold partials), the gold views job run, then the dashboard tables."""
    lh = Lakehouse(catalog=CATALOG, schema=SCHEMA, warehouse_dir=root)
    events = simulated_events()
    # ingested 90 s apart: about four days of ingestion hours too (dashboard 11 filters on them)
    bronze = bronze_frame(spark, [*events, events[0], "not json"], step_s=90)
    lh.write(bronze, "bronze_transactions")
    lh.write(silver.silver_transactions(bronze), "silver_transactions")
    lh.write(silver.silver_quarantine(bronze), "silver_quarantine")
    lh.write(bronze_frame(spark, ["refused"], topic="payments.transactions.dlq"), "bronze_dead_letters")
    lh.write(gold_partials.partial_aggregates(lh.read(spark, "silver_transactions")), gold_partials.PARTIALS)
    views = gold_views.run(spark, lh)
    assert not views.skipped
    return lh, gold_views.refresh_dashboards(spark, lh, views)


def build_once(spark, shared: Path, own: Path) -> tuple[Lakehouse, dashboard_tables.DashboardTablesReport]:
    """Under xdist: the first worker to ask builds the lake in ``shared`` (a folder of the whole run),
    the others wait for it; every worker then works on its own copy at ``own`` (some tests write to the
    lake). The lake is deterministic, so a copy is what the worker would have built."""
    shared.mkdir(parents=True, exist_ok=True)
    built = shared / "report.pickle"
    with (shared / "build.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # released when the file closes
        if not built.exists():
            _, report = build_lake(spark, shared / "wh")
            built.write_bytes(pickle.dumps(report))
    report = pickle.loads(built.read_bytes())
    shutil.copytree(shared / "wh", own)
    return Lakehouse(catalog=CATALOG, schema=SCHEMA, warehouse_dir=own), report
