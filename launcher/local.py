"""Throwaway local servers for tests and benchmarks: the same commands as `make up`, run in a
temporary folder on free ports, stopped on exit."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from launcher import infra
from launcher.topics import wait_for_broker


@dataclass
class Running:
    name: str
    host: str
    port: int
    proc: subprocess.Popen
    log: Path


@contextlib.contextmanager
def run_server(
    spec: infra.ServerSpec, log: Path, host: str = "127.0.0.1", timeout: float = 90, stop_signal: int = signal.SIGTERM
) -> Iterator[Running]:
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("ab") as out:
        proc = subprocess.Popen(spec.argv(), stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        try:
            infra.wait_for_port(host, spec.port, timeout=timeout, proc=proc)
        except Exception as exc:
            raise RuntimeError(f"{spec.name} did not start: {exc}\n--- {log} ---\n{log.read_text()[-3000:]}") from exc
        yield Running(spec.name, host, spec.port, proc, log)
    finally:
        stop_process(proc, stop_signal)


def stop_process(proc: subprocess.Popen, sig: int = signal.SIGTERM, timeout: float = 30) -> None:
    """Signal a child, wait up to ``timeout`` seconds, then kill it.

    A child started in its own session (``start_new_session=True``) is signalled with its whole process
    group: a wrapper such as ``runuser`` (PostgreSQL as the postgres user) ignores SIGINT and would
    otherwise be killed after the timeout with the server left running."""

    def send(signum: int) -> None:
        with contextlib.suppress(ProcessLookupError):
            if os.getpgid(proc.pid) == proc.pid:
                os.killpg(proc.pid, signum)
            else:
                proc.send_signal(signum)

    if proc.poll() is not None:
        return
    send(sig)
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        send(signal.SIGKILL)
        proc.wait()


@contextlib.contextmanager
def kafka(workdir: Path, heap: str = "512m") -> Iterator[str]:
    """A single-node KRaft broker; yields its bootstrap address."""
    host, port, cport = "127.0.0.1", infra.free_port(), infra.free_port()
    spec = infra.kafka_server(workdir / "kafka", host, port, cport, heap)
    with run_server(spec, workdir / "logs" / "kafka.log", host):
        bootstrap = f"{host}:{port}"
        wait_for_broker(bootstrap, timeout=60)
        yield bootstrap


@contextlib.contextmanager
def redis(workdir: Path) -> Iterator[str]:
    host, port = "127.0.0.1", infra.free_port()
    spec = infra.redis_server(workdir / "redis", host, port, persist=False)
    with run_server(spec, workdir / "logs" / "redis.log", host):
        yield f"redis://{host}:{port}/0"


@contextlib.contextmanager
def postgres(workdir: Path, database: str = "payment_analysis") -> Iterator[str]:
    host, port = "127.0.0.1", infra.free_port()
    spec = infra.postgres_server(workdir / "postgres", host, port)
    with run_server(spec, workdir / "logs" / "postgres.log", host, stop_signal=signal.SIGINT):
        deadline = time.monotonic() + 30
        while True:
            try:
                infra.postgres_ensure_database(host, port, database)
                break
            except Exception:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.3)
        yield f"postgresql+psycopg://postgres@{host}:{port}/{database}"
