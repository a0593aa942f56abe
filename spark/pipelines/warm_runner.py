"""Repeated pipeline updates in ONE Spark Connect session (local continuous mode).

The OSS ``spark-pipelines run`` performs one triggered update and exits; every update then pays for two
JVM starts, a cold JIT and the code generation of the validation expressions (most of an update's time
when few events are new). This runner is started exactly like the CLI (``spark-class
org.apache.spark.deploy.SparkPipelines <this file> ...``, so it gets the same local Connect server and
configuration) and performs the CLI's own steps (``pyspark.pipelines.cli``: load the spec, create the
dataflow graph, register the definition files, start the run, print its events) once per update, in a
loop, in the same session.

Updates are triggered either every ``--every`` seconds, or by command files (``--control-dir``; used by
benchmarks, since ``spark-submit``'s Python runner does not pass stdin through): a file ``cmd-<n>``
holding ``update``, ``update streaming`` (streaming tables only), ``update full`` (full refresh) or
``quit``, answered by ``done-<n>`` holding ``<status> <seconds> <phases as JSON>``. After each update it
also prints ``PA-PHASES`` (seconds since the update's start at which the definitions were registered,
the graph was resolved and its tables materialized (``queued``), and each flow completed) and
``PA-UPDATE <n> <status> <seconds>``. ``--gold-every N`` appends to the gold partial aggregates
(``gold_partials``, over which every gold dataset is a view) on every N-th timed update only
(bronze, silver and quarantine on every one).
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import sys
import threading
import time
import traceback
from datetime import UTC
from pathlib import Path

from pyspark.pipelines.cli import load_pipeline_spec, register_definitions
from pyspark.pipelines.logging_utils import log_with_provided_timestamp
from pyspark.pipelines.spark_connect_graph_element_registry import SparkConnectGraphElementRegistry
from pyspark.pipelines.spark_connect_pipeline import create_dataflow_graph, start_run
from pyspark.sql import SparkSession
from pyspark.sql.connect.client import core

STREAMING_TABLES = ["bronze_transactions", "bronze_dead_letters", "silver_transactions", "silver_quarantine"]


def _register(spark, spec_path: Path, spec) -> str:
    graph_id = create_dataflow_graph(
        spark, default_catalog=spec.catalog, default_database=spec.database, sql_conf=spec.configuration
    )
    register_definitions(spec_path, SparkConnectGraphElementRegistry(spark, graph_id), spec, spark, graph_id)
    return graph_id


def _run(spark, graph_id: str, spec, *, full_refresh_all: bool = False, refresh: list[str] | None = None) -> dict:
    """One run of a registered graph; prints its events; returns phase times (seconds since the start of
    the run): ``queued`` (graph resolved and tables materialized), ``<table>`` (flow completed)."""
    started = time.monotonic()
    phases: dict[str, float] = {}
    for result in start_run(
        spark,
        graph_id,
        full_refresh=[],
        full_refresh_all=full_refresh_all,
        refresh=refresh or [],
        dry=False,
        storage=spec.storage,
    ):
        if "pipeline_event_result" not in result:
            continue
        event = result["pipeline_event_result"].event
        message = event.message
        log_with_provided_timestamp(message, event.timestamp.ToDatetime().replace(tzinfo=UTC))
        now = round(time.monotonic() - started, 2)
        if " is QUEUED" in message:
            phases.setdefault("queued", now)
        elif " has COMPLETED" in message and message.startswith("Flow "):
            phases[message.split()[1].rsplit(".", 1)[-1]] = now
    return phases


def _update(spark, spec_path: Path, spec, *, full_refresh_all: bool = False, refresh: list[str] | None = None) -> dict:
    """One update: a new graph (a graph runs once), its definitions registered, then run. Returns the
    phase times in seconds since the start of the update (``register``: definitions sent; ``queued``:
    graph resolved and tables materialized; one entry per completed flow)."""
    t0 = time.monotonic()
    graph_id = _register(spark, spec_path, spec)
    registered = time.monotonic() - t0
    phases = _run(spark, graph_id, spec, full_refresh_all=full_refresh_all, refresh=refresh)
    return {"register": round(registered, 2), **{k: round(v + registered, 2) for k, v in phases.items()}}


def _use_free_connect_port() -> int:
    """Serve Spark Connect on a free port instead of the fixed 15002 (a one-shot ``spark-pipelines``
    run or anything else may hold it) and point the local client at it."""

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    core.DefaultChannelBuilder.default_port = staticmethod(lambda: port)
    return port


def _watch_owner(pid: int) -> None:
    """Exit (and so stop the local Connect server) when the process that started us is gone."""

    def watch() -> None:
        while True:
            try:
                os.kill(pid, 0)
            except ProcessLookupError:
                os._exit(3)
            time.sleep(2)

    threading.Thread(target=watch, daemon=True, name="owner-watch").start()


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--pipeline-spec", required=True)
    p.add_argument("--every", type=float, default=30.0, help="seconds between update starts")
    p.add_argument(
        "--gold-every", type=int, default=1, help="refresh gold (partials, materialized views) every N updates"
    )
    p.add_argument("--control-dir", default=None, help="run one update per command file cmd-<n> in this folder")
    p.add_argument("--max-updates", type=int, default=0)
    p.add_argument("--owner-pid", type=int, default=0, help="exit when this process is gone")
    args = p.parse_args(argv)
    if args.owner_pid:
        _watch_owner(args.owner_pid)
    port = _use_free_connect_port()

    spec_path = Path(args.pipeline_spec).resolve()
    spec = load_pipeline_spec(spec_path)
    builder = SparkSession.builder.config("spark.sql.connect.serverStacktrace.enabled", "false").config(
        "spark.connect.grpc.binding.port", str(port)
    )
    for key, value in spec.configuration.items():
        builder = builder.config(key, value)
    spark = builder.getOrCreate()
    stop = {"now": False}

    def handle(signum, frame):
        stop["now"] = True

    signal.signal(signal.SIGTERM, handle)
    signal.signal(signal.SIGINT, handle)
    n = 0
    failures = 0
    try:
        while not stop["now"]:
            if args.control_dir:
                command = Path(args.control_dir) / f"cmd-{n + 1}"
                while not stop["now"] and not command.exists():
                    time.sleep(0.1)
                if stop["now"]:
                    break
                words = command.read_text().split()
                if not words or words[0] == "quit":
                    break
                full = "full" in words
                refresh = STREAMING_TABLES if "streaming" in words else None
            else:
                full = False
                refresh = None if (n % max(args.gold_every, 1) == 0) else STREAMING_TABLES
            n += 1
            started = time.monotonic()
            status = "COMPLETED"
            phases: dict = {}
            try:
                phases = _update(spark, spec_path, spec, full_refresh_all=full, refresh=refresh)
                print("PA-PHASES " + " ".join(f"{k}={v}" for k, v in phases.items()), flush=True)
            except Exception:
                status = "FAILED"
                failures += 1
                traceback.print_exc()
            seconds = time.monotonic() - started
            print(f"PA-UPDATE {n} {status} {seconds:.3f}", flush=True)
            if args.control_dir:
                done = Path(args.control_dir) / f"done-{n}"
                done.with_suffix(".tmp").write_text(f"{status} {seconds:.3f} {json.dumps(phases)}")
                done.with_suffix(".tmp").rename(done)
            if args.max_updates and n >= args.max_updates:
                break
            if not args.control_dir:
                while not stop["now"] and time.monotonic() - started < args.every:
                    time.sleep(0.5)
    finally:
        spark.stop()
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
