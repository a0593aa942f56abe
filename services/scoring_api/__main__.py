"""CLI: ``python -m services.scoring_api serve --port N [--workers K]`` and ``consume``.

``serve`` runs uvicorn (uvloop + httptools) with K worker processes and, unless ``--no-consumer``,
one sibling process running the faust agent (``consume``), restarted with backoff if it dies and
stopped with the server.
"""

from __future__ import annotations

import contextlib
import ctypes
import logging
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time

import typer
import uvicorn

from services.scoring_api.settings import Settings

cli = typer.Typer(add_completion=False, no_args_is_help=True, help=__doc__)
log = logging.getLogger("scoring_api")


def _die_with_parent() -> None:
    """Linux: the consumer gets SIGTERM if ``serve`` dies without cleaning up (e.g. SIGKILL)."""
    # not Linux: the supervisor's stop() is the only cleanup
    with contextlib.suppress(Exception):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


def _graceful_exit(signum: int, frame: object) -> None:
    # uvicorn re-raises the signal that stopped it; exit through Python so `finally` stops the consumer
    raise SystemExit(0)


class ConsumerSupervisor:
    """Keeps one ``consume`` process alive next to the server."""

    def __init__(self) -> None:
        self.proc: subprocess.Popen | None = None
        self.stopping = threading.Event()
        self.thread = threading.Thread(target=self._loop, name="consumer-supervisor", daemon=True)

    def start(self) -> None:
        self.thread.start()

    def _loop(self) -> None:
        backoff = 1.0
        while not self.stopping.is_set():
            started = time.monotonic()
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "services.scoring_api", "consume"], preexec_fn=_die_with_parent
            )
            code = self.proc.wait()
            if self.stopping.is_set():
                return
            backoff = 1.0 if time.monotonic() - started > 60 else min(backoff * 2, 30.0)
            log.error("decision consumer exited with %s; restarting in %.0fs", code, backoff)
            self.stopping.wait(backoff)

    def stop(self) -> None:
        self.stopping.set()
        proc = self.proc
        if proc is not None and proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


@cli.command()
def serve(
    host: str = typer.Option("127.0.0.1", help="Bind address"),
    port: int = typer.Option(8001, help="Port"),
    workers: int = typer.Option(1, min=1, help="uvicorn worker processes"),
    consumer: bool = typer.Option(True, help="Run the faust decision consumer next to the server"),
    log_level: str = typer.Option("info"),
) -> None:
    """Serve the API (and the decision consumer)."""

    logging.basicConfig(level=log_level.upper(), format="%(asctime)s %(levelname)s %(name)s %(message)s")
    Settings().check()  # refuses a bad configuration; creates (and prints once) the local API key if none
    if consumer:  # the workers' /ready then requires the consumer's status
        os.environ["PA_DECISIONS_CONSUMER"] = "true"
    prom_dir = None
    if workers > 1 and not os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        prom_dir = tempfile.mkdtemp(prefix="pa-scoring-prom-")
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = prom_dir
    supervisor = ConsumerSupervisor() if consumer else None
    signal.signal(signal.SIGTERM, _graceful_exit)
    signal.signal(signal.SIGINT, _graceful_exit)
    if supervisor:
        supervisor.start()
    try:
        uvicorn.run(
            "services.scoring_api.app:app_factory",
            factory=True,
            host=host,
            port=port,
            workers=workers,
            loop="uvloop",
            http="httptools",
            access_log=False,
            log_level=log_level,
            timeout_graceful_shutdown=10,
        )
    finally:
        if supervisor:
            supervisor.stop()
        if prom_dir:
            shutil.rmtree(prom_dir, ignore_errors=True)


@cli.command()
def consume() -> None:
    """Consume payments.decisions into Redis (faust agent; blocking)."""
    # only this process loads faust and its worker (the server never does)
    from services.scoring_api.consumer import run  # noqa: PLC0415

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    sys.argv = [sys.argv[0]]  # faust's worker reads argv
    run(Settings())


if __name__ == "__main__":
    cli()
