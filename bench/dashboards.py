"""Dashboards benchmark: ``make bench-dashboards`` (``python -m bench.dashboards``).

How fast the 12 dashboards render over a week of history, with no JVM on the page path: the control
plane (``python -m services.control_plane serve``, its own process on a free port) reads the
``dash_`` tables with delta-rs. Goals: both figures <= 1,000 ms.

* ``p95_ms``: server-side first render, all 12: ``GET /dashboards/<id>`` (the HTML with every widget's
  numbers embedded, what the browser paints without a second request), timed by the client on
  loopback, ``--rounds`` rounds of the 12 pages; the first round runs on a fresh server (nothing cached:
  ``cold_p95_ms`` / ``cold_max_ms``). ``filtered_api_p95_ms``: ``/api/dashboards/<id>`` with a filter of
  each dashboard set (what a filter change costs).
* ``browser_p95_ms``: Debian's chromium (Playwright, headless): navigation start to every widget drawn
  (the page sets ``data-ready`` once its counters, tables, ECharts charts and the world map are drawn),
  ``--browser-rounds`` rounds of the 12 pages.

The history: by default the local lakehouse that ``make up`` fills (its first run backfills 7 days,
runs the ETL and the gold views, which refresh the dashboard tables); ``--refresh`` runs
``spark.jobs.dashboard_tables`` on it first and reports how long that took. When it holds no silver
history (or with ``--generate-days N``), a throwaway lakehouse is built from N days (default 7) of
simulated transactions at the first run's rate (30,000 a day): simulator -> bronze-shaped records ->
silver, quarantine, gold partials (the ETL's own functions, without Kafka), the gold views job and the
dashboard tables, all with Spark; ``refresh_s`` is then the gold views + dashboard tables time.

    make bench-dashboards
    make bench-dashboards BENCH_ARGS="--generate-days 7 --workdir /tmp/dash-bench"
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pyarrow as pa
from deltalake import DeltaTable

from bench.common import exit_on_sigterm, print_table, write_results
from dashboards import DASHBOARDS
from launcher.infra import free_port, wait_for_port
from launcher.local import stop_process
from spark.common.tables import Lakehouse

PASSWORD = "bench-dashboards-password"
CHROMIUM = "/usr/bin/chromium"
EVENTS_PER_DAY = 30_000  # the first run's backfill rate (services/control_plane/settings.py)
GOAL_MS = 1_000


def pct(values: list[float], q: float) -> float:
    return float(np.percentile(values, q)) if values else float("nan")


def silver_rows(lakehouse: Lakehouse) -> int | None:
    path = lakehouse.path("silver_transactions")
    if not (path / "_delta_log").is_dir():
        return None
    actions = pa.table(DeltaTable(str(path)).get_add_actions(flatten=True))  # an arro3 table: via the Arrow C interface
    return sum(n or 0 for n in actions.column("num_records").to_pylist())


def history_days(lakehouse: Lakehouse) -> int | None:
    path = lakehouse.path("dash_daily_kpis")
    if not (path / "_delta_log").is_dir():
        return None
    return DeltaTable(str(path)).to_pyarrow_dataset().count_rows()


# ------------------------------------------------------------------------------------- history
def generate(lakehouse: Lakehouse, days: float) -> float:
    """A lakehouse with ``days`` of simulated history; returns the gold views + dashboard tables time."""
    from pyspark.sql import functions as F  # noqa: PLC0415 - Spark only when a history is generated

    from services.simulator.generator import GeneratorConfig, TransactionGenerator  # noqa: PLC0415
    from spark.common.session import get_spark  # noqa: PLC0415
    from spark.etl import gold_partials, silver  # noqa: PLC0415
    from spark.jobs import gold_views  # noqa: PLC0415

    events = int(days * EVENTS_PER_DAY)
    start = datetime.now(UTC) - timedelta(days=days)
    config = GeneratorConfig(seed=11, start=start, events_per_second=EVENTS_PER_DAY / 86_400)
    values: list[str] = []
    for batch in TransactionGenerator(config).iter_batches(events, 50_000):
        values += [v.decode() for v in batch.json_values()]
    print(f"generated {len(values):,} events over {days:g} days")
    spark = get_spark("bench-dashboards", warehouse_dir=lakehouse.warehouse_dir)
    now = datetime.now(UTC)
    schema = (
        "record_key string, record_value string, topic string, kafka_partition int, kafka_offset long, "
        "kafka_timestamp timestamp, kafka_headers map<string,string>, ingested_at timestamp"
    )
    rows = [(None, v, "payments.transactions", 0, i, now, None, now) for i, v in enumerate(values)]
    bronze = spark.createDataFrame(rows, schema).withColumn("ingested_at", F.current_timestamp())
    lakehouse.write(bronze, "bronze_transactions")
    bronze = lakehouse.read(spark, "bronze_transactions")
    lakehouse.write(silver.silver_transactions(bronze), "silver_transactions")
    lakehouse.write(silver.silver_quarantine(bronze), "silver_quarantine")
    lakehouse.write(spark.createDataFrame([], schema), "bronze_dead_letters")
    silver_df = lakehouse.read(spark, "silver_transactions")
    lakehouse.write(gold_partials.partial_aggregates(silver_df), gold_partials.PARTIALS)
    t0 = time.perf_counter()
    report = gold_views.run(spark, lakehouse)
    gold_views.refresh_dashboards(spark, lakehouse, report)
    took = time.perf_counter() - t0
    spark.stop()
    return took


def refresh(lakehouse: Lakehouse) -> float:
    t0 = time.perf_counter()
    subprocess.run(
        [
            sys.executable,
            "-m",
            "spark.jobs.dashboard_tables",
            "--catalog",
            lakehouse.catalog,
            "--schema",
            lakehouse.schema,
            "--warehouse-dir",
            str(lakehouse.warehouse_dir),
        ],
        check=True,
    )
    return time.perf_counter() - t0


# --------------------------------------------------------------------------------- measurements
def start_control_plane(lakehouse: Lakehouse, work: Path) -> tuple[subprocess.Popen, int]:
    port = free_port()
    env = {
        **os.environ,
        "PA_DATA_DIR": str(work / "control-plane"),
        "PA_WAREHOUSE_DIR": str(lakehouse.warehouse_dir),
        "PA_CATALOG": lakehouse.catalog,
        "PA_SCHEMA": lakehouse.schema,
        "PA_FIRST_RUN": "false",
        "PA_DECISION_FEED": "false",
        "PA_ADMIN_PASSWORD": PASSWORD,
        "PA_KAFKA_BOOTSTRAP": "127.0.0.1:1",
        "PA_LOG_LEVEL": "WARNING",
    }
    (work / "control-plane").mkdir(parents=True, exist_ok=True)
    log = (work / "control-plane.log").open("wb")
    proc = subprocess.Popen(
        [sys.executable, "-m", "services.control_plane", "serve", "--port", str(port)],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    wait_for_port("127.0.0.1", port, timeout=90, proc=proc)
    return proc, port


def signed_in(base: str) -> httpx.Client:
    client = httpx.Client(base_url=base, timeout=30)
    page = client.get("/login")
    token = page.text.split('name="csrf_token" value="', 1)[1].split('"', 1)[0]
    resp = client.post("/login", data={"username": "admin", "password": PASSWORD, "csrf_token": token})
    if resp.status_code not in (200, 303) or "pa_session" not in client.cookies:
        raise RuntimeError(f"sign-in failed: {resp.status_code}")
    return client


def server_renders(client: httpx.Client, rounds: int) -> dict[str, Any]:
    cold: list[float] = []
    all_ms: list[float] = []
    per_dashboard: dict[str, list[float]] = {d.id: [] for d in DASHBOARDS}
    for r in range(rounds):
        for d in DASHBOARDS:
            t0 = time.perf_counter()
            resp = client.get(f"/dashboards/{d.id}")
            ms = (time.perf_counter() - t0) * 1000
            resp.raise_for_status()
            all_ms.append(ms)
            per_dashboard[d.id].append(ms)
            if r == 0:
                cold.append(ms)
    filtered: list[float] = []
    for d in DASHBOARDS:
        body = client.get(f"/api/dashboards/{d.id}").json()
        params: dict[str, str] = {}
        for f in body["filters"]:
            if f["kind"] == "multi_select" and f.get("options"):
                params[f["name"]] = f["options"][0]
            elif f["kind"] == "date_range" and f.get("max"):
                params[f["name"] + "_from"] = f["max"]
        for _ in range(rounds):
            t0 = time.perf_counter()
            client.get(f"/api/dashboards/{d.id}", params=params).raise_for_status()
            filtered.append((time.perf_counter() - t0) * 1000)
    return {
        "p95_ms": pct(all_ms, 95),
        "p50_ms": pct(all_ms, 50),
        "cold_p95_ms": pct(cold, 95),
        "cold_max_ms": max(cold),
        "filtered_api_p95_ms": pct(filtered, 95),
        "per_dashboard_p50_ms": {k: pct(v, 50) for k, v in per_dashboard.items()},
        "renders": len(all_ms),
    }


def browser_renders(base: str, rounds: int, screenshots: Path | None = None) -> dict[str, Any]:
    from playwright.sync_api import sync_playwright  # noqa: PLC0415 - only for this measurement

    times: list[float] = []
    per_dashboard: dict[str, list[float]] = {d.id: [] for d in DASHBOARDS}
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        page = browser.new_context(viewport={"width": 1400, "height": 1000}).new_page()
        page.goto(base + "/login")
        page.fill("input[name=username]", "admin")
        page.fill("input[name=password]", PASSWORD)
        page.click("button[type=submit]")
        page.wait_for_load_state()
        for r in range(rounds):
            for d in DASHBOARDS:
                page.goto(f"{base}/dashboards/{d.id}")
                page.wait_for_selector("#dash-grid[data-ready='1']", timeout=30_000)
                ms = page.evaluate("performance.now()")  # since this document's navigation started
                times.append(ms)
                per_dashboard[d.id].append(ms)
                if screenshots and r == rounds - 1:  # after the timing: what the user saw, page by page
                    page.screenshot(path=str(screenshots / f"{d.number:02d}_{d.id}.png"), full_page=True)
        browser.close()
    return {
        "browser_p95_ms": pct(times, 95),
        "browser_p50_ms": pct(times, 50),
        "browser_per_dashboard_p50_ms": {k: pct(v, 50) for k, v in per_dashboard.items()},
        "browser_renders": len(times),
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--generate-days", type=float, default=None, help="build a throwaway lakehouse with N days")
    p.add_argument("--refresh", action="store_true", help="refresh the dashboard tables of the local lakehouse first")
    p.add_argument("--rounds", type=int, default=20, help="server-side rounds of the 12 pages")
    p.add_argument("--browser-rounds", type=int, default=5, help="browser rounds of the 12 pages")
    p.add_argument("--workdir", default=None, help="keep the generated lakehouse and logs here")
    p.add_argument(
        "--screenshots",
        default="bench/results/dashboards",
        help="full-page screenshot of each dashboard from the last browser round (git-ignored folder)",
    )
    args = p.parse_args(argv)

    work = Path(args.workdir or tempfile.mkdtemp(prefix="bench-dashboards-"))
    work.mkdir(parents=True, exist_ok=True)
    local = Lakehouse.from_env()
    refresh_s = None
    if args.generate_days is None and silver_rows(local):
        lakehouse, source = local, f"local lakehouse {local.schema_dir}"
        if args.refresh or history_days(local) is None:
            refresh_s = refresh(local)
    else:
        days = args.generate_days or 7.0
        lakehouse = Lakehouse(local.catalog, local.schema, work / "warehouse")
        source = f"{days:g} days simulated into {lakehouse.schema_dir}"
        if silver_rows(lakehouse) and history_days(lakehouse):
            print(f"reusing {lakehouse.schema_dir}")
        else:
            refresh_s = generate(lakehouse, days)
    figures: dict[str, Any] = {
        "history": source,
        "silver_transactions": silver_rows(lakehouse),
        "days_with_data": history_days(lakehouse),
        "refresh_s": refresh_s,
        "goal_ms": GOAL_MS,
    }
    proc, port = start_control_plane(lakehouse, work)
    base = f"http://127.0.0.1:{port}"
    try:
        client = signed_in(base)  # already used: httpx refuses `with` on an opened client
        try:
            figures |= server_renders(client, args.rounds)
        finally:
            client.close()
        shots = Path(args.screenshots) if args.screenshots else None
        if shots:
            shots.mkdir(parents=True, exist_ok=True)
        figures |= browser_renders(base, args.browser_rounds, shots)
    finally:
        stop_process(proc)
    figures["meets_goal"] = figures["p95_ms"] <= GOAL_MS and figures["browser_p95_ms"] <= GOAL_MS
    path = write_results("dashboards", figures)
    print_table(
        "dashboards (ms)",
        [
            ("silver transactions", figures["silver_transactions"] or 0),
            ("days with data", figures["days_with_data"] or 0),
            ("server p95 (first render, all 12)", figures["p95_ms"]),
            ("server cold p95 (fresh process)", figures["cold_p95_ms"]),
            ("filtered API p95", figures["filtered_api_p95_ms"]),
            ("browser p95 (navigation to drawn)", figures["browser_p95_ms"]),
        ],
    )
    print(f"results: {path}")
    return 0 if figures["meets_goal"] else 1


if __name__ == "__main__":
    exit_on_sigterm()
    sys.exit(main())
