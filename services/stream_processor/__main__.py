"""``python -m services.stream_processor run``: the long-running stream processor.

Stops cleanly on SIGINT/SIGTERM (queries stopped, checkpoints consistent); exits non-zero when a
query fails so the supervisor restarts it, and the restart continues from the checkpoints.
"""

from __future__ import annotations

import contextlib
import ctypes
import logging
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Annotated, Any

import typer

from services.stream_processor import pipeline
from services.stream_processor.settings import StreamProcessorSettings, Trigger

app = typer.Typer(add_completion=False, no_args_is_help=True, help=__doc__)
log = logging.getLogger("services.stream_processor")


@app.callback()
def main() -> None:
    """Spark Structured Streaming: Kafka transactions -> decision core -> Kafka decisions + Delta log."""


@app.command()
def run(
    trigger: Annotated[Trigger | None, typer.Option(help="microbatch | realtime")] = None,
    interval: Annotated[
        str | None,
        typer.Option(help="microbatch: processingTime ('0 seconds' = as fast as possible); realtime: batch duration"),
    ] = None,
    checkpoint_dir: Annotated[Path | None, typer.Option(help="Checkpoint root (versioned)")] = None,
    max_offsets_per_trigger: Annotated[int | None, typer.Option(help="Records per micro-batch cap")] = None,
    available_now: Annotated[
        bool, typer.Option(help="Process what is in the topic, then exit (scoring, then decision log)")
    ] = False,
    scorer: Annotated[str, typer.Option(help="arrow_udf | map_in_arrow")] = "arrow_udf",
    decision_log: Annotated[
        bool | None,
        typer.Option("--decision-log/--no-decision-log", help="Run the Delta decision-log query"),
    ] = None,
    only: Annotated[
        str | None,
        typer.Option(
            help="decision_log: run only the decision-log query (the processor starts itself this way as a "
            "child process, see PA_STREAM_LOG_PROCESS)"
        ),
    ] = None,
) -> None:
    """Run the processor until interrupted (or, with --available-now, until caught up)."""
    overrides: dict[str, Any] = {
        k: v
        for k, v in {
            "stream_trigger": trigger,
            "stream_interval": interval,
            "stream_checkpoint_dir": checkpoint_dir,
            "stream_max_offsets_per_trigger": max_offsets_per_trigger,
            "stream_decision_log": decision_log,
        }.items()
        if v is not None
    }
    settings = StreamProcessorSettings(**overrides)
    logging.basicConfig(
        level=os.environ.get("PA_LOG_LEVEL", "INFO"),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stdout,
    )
    if only not in (None, "decision_log"):
        raise typer.BadParameter(f"--only: expected decision_log, got {only!r}")
    if not available_now:
        _stop_on_signals()
    if only == "decision_log":
        _run_decision_log_only(settings)
        return
    log_child = None
    if settings.stream_decision_log and settings.stream_log_process and not available_now:
        log_child = _spawn_decision_log(settings)
        settings = settings.model_copy(update={"stream_decision_log": False})
    try:
        _run(settings, available_now=available_now, scorer=scorer, log_child=log_child)
    finally:
        if log_child is not None:
            _stop_child(log_child)


def _run(
    settings: StreamProcessorSettings, *, available_now: bool, scorer: str, log_child: subprocess.Popen | None
) -> None:
    if settings.stream_trigger == "realtime":
        # Real-time mode runs every source partition as a long-running task at the same time:
        # give local Spark enough task slots (threads, not cores).
        os.environ.setdefault("PA_SPARK_MASTER", "local[12]")
    else:
        # Micro-batch: one Python scoring task per core, and twice as many task slots as cores, so
        # a scoring batch never waits for a slot held by the decision log's Delta tasks
        # (the OS shares the cores; the scheduler no longer queues the hot path behind the log).
        cores = os.cpu_count() or 2
        os.environ.setdefault("PA_SPARK_MASTER", f"local[{2 * cores}]")
        if settings.stream_python_workers is None:
            settings = settings.model_copy(update={"stream_python_workers": cores})

    spark = pipeline.get_session(settings)
    log.info("topics %s; checkpoints %s; warehouse %s", settings.topics, settings.checkpoint_root, settings.warehouse)
    if available_now:
        pipeline.run_available_now(spark, settings, form=scorer)  # type: ignore[arg-type]
        spark.stop()
        return
    running = pipeline.start(spark, settings, form=scorer)  # type: ignore[arg-type]
    _supervise(running, spark, settings, log_child)


# Set by SIGINT/SIGTERM. The handlers are installed before the session and the tables are set up, so
# a stop that arrives during start-up waits for it to finish (an interrupted Delta table creation
# left a table that could neither be read nor created again) and then stops the queries at once.
_STOP = threading.Event()


def _stop_on_signals() -> None:
    def on_signal(signum, _frame):
        log.info("signal %s: stopping queries", signal.Signals(signum).name)
        _STOP.set()

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)


def _supervise(running, spark, settings: StreamProcessorSettings, log_child: subprocess.Popen | None = None) -> None:
    """Until SIGINT/SIGTERM, a query stops or the decision-log child exits: log progress, then stop
    the queries and the session (exit status 1 on a failure)."""
    stop = _STOP
    failed = None
    last_report = time.monotonic()
    while not stop.is_set():
        for q in running.queries:
            if not q.isActive:
                failed = q.exception() or RuntimeError(f"query {q.name} stopped")
                stop.set()
                break
        if log_child is not None and log_child.poll() is not None:
            failed = RuntimeError(f"the decision-log process exited with {log_child.returncode}")
            stop.set()
        if time.monotonic() - last_report >= settings.stream_progress_log_seconds:
            last_report = time.monotonic()
            for q in running.queries:
                _log_progress(q)
        stop.wait(1.0)
    running.stop()
    spark.stop()
    if failed is not None:
        log.error("query failed: %s", failed)
        raise typer.Exit(1)
    log.info("stopped")


def _spawn_decision_log(settings: StreamProcessorSettings) -> subprocess.Popen:
    """The decision-log query as a child process (same arguments, ``--only decision_log``) at a lower
    CPU priority (``spawn_low_priority``)."""
    env = dict(os.environ)
    # its own local Spark, with task slots for half the cores (stream_log_task_slots): the log's
    # batches then leave the scoring query a core, instead of landing on every core at once
    env.setdefault("PA_SPARK_MASTER", f"local[{settings.log_task_slots()}]")
    argv = [sys.executable, "-m", "services.stream_processor", *sys.argv[1:], "--only", "decision_log"]
    child = spawn_low_priority(argv, settings.stream_log_nice, env)
    log.info("decision-log process started (pid %d, nice +%d)", child.pid, settings.stream_log_nice)
    return child


def spawn_low_priority(argv: list[str], nice: int, env: dict[str, str] | None = None) -> subprocess.Popen:
    """Start ``argv`` at CPU priority ``nice``, killed if this process dies (even by SIGKILL).

    The child gets its own session, and that session's scheduler autogroup gets the nice value too:
    with autogroups on (the Linux default of many kernels; ``/proc/sys/kernel/sched_autogroup_enabled``)
    the CPU is first shared fairly between sessions, and ``nice`` only ranks threads within one. A
    nice-19 child in the processor's own session kept that whole session busy next to Redis and the
    broker, and the scoring path's tail grew with every decision-log batch."""

    def before_exec() -> None:  # in the child, after setsid, before exec
        try:
            with open("/proc/self/autogroup", "w") as autogroup:
                autogroup.write(str(nice))
        except OSError:  # no autogroups (or not Linux): plain nice below
            pass
        os.nice(nice)
        # PR_SET_PDEATHSIG: in its own session the child no longer shares the fate of the
        # processor's process group, so it dies with the processor (a PySpark JVM exits when its
        # Python driver does); the decision log is idempotent, a hard stop loses nothing
        with contextlib.suppress(OSError):
            ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)

    return subprocess.Popen(argv, env=env, preexec_fn=before_exec, start_new_session=True)


def _stop_child(child: subprocess.Popen) -> None:
    if child.poll() is None:
        child.send_signal(signal.SIGINT)
        try:
            child.wait(90)
        except subprocess.TimeoutExpired:
            child.kill()
            child.wait()


def _run_decision_log_only(settings: StreamProcessorSettings) -> None:
    spark = pipeline.get_session(settings, app_name="stream-processor-decision-log")
    query = pipeline.start_decision_log(spark, settings)
    _supervise(pipeline.Running(None, query, spark), spark, settings)  # type: ignore[arg-type]


def _log_progress(query) -> None:
    """One line per query: rows and rates of the recent batches, and where the time went."""
    recent = [p for p in query.recentProgress if p.get("numInputRows")]
    if not recent:
        return
    rows = sum(p["numInputRows"] for p in recent)
    took = sorted(p["durationMs"].get("triggerExecution", 0) for p in recent)
    slowest = max(recent, key=lambda p: p["durationMs"].get("triggerExecution", 0))
    log.info(
        "%s: %d batches, %d rows, %.0f rows/s busy, batch ms p50 %d max %d; slowest %s (%d rows)",
        query.name,
        len(recent),
        rows,
        rows / (sum(took) / 1000.0) if sum(took) else 0.0,
        took[len(took) // 2],
        took[-1],
        {k: v for k, v in slowest["durationMs"].items() if v},
        slowest["numInputRows"],
    )


if __name__ == "__main__":
    app()
