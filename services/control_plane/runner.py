"""Runs steps as subprocesses: one active run per step (a unique index decides, not a check), status,
duration, exit code, a log file per run, cancel, and reconciliation of runs a crash left "running".

Each run gets its own process group, so cancelling stops the Spark JVM a job started too.
"""

from __future__ import annotations

import contextlib
import functools
import json
import logging
import os
import signal
import subprocess
import threading
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import sessionmaker

from services.control_plane.backends import BackendError
from services.control_plane.db import ACTIVE_STATUSES, AppState, JobRun, utcnow
from services.control_plane.steps import Step

log = logging.getLogger("control_plane.runner")
CANCEL_GRACE_S = 15.0


class AlreadyRunning(Exception):
    def __init__(self, step: str, run_id: int | None):
        super().__init__(f"step {step!r} is already running (run {run_id})")
        self.step, self.run_id = step, run_id


class SequenceRunning(Exception):
    def __init__(self, state_key: str):
        super().__init__(f"the {state_key.replace('_', '-')} sequence is already running")


class StepRunner:
    """The local backend's runner; ``backends.databricks.DatabricksStepRunner`` keeps the same rows, logs
    and sequence and replaces the child process by a job run or a pipeline update."""

    backend = "local"

    def __init__(self, sessions: sessionmaker, log_dir: Path, env: dict[str, str] | None = None) -> None:
        self.sessions = sessions
        self.log_dir = log_dir
        self.env = env or {}
        self._threads: dict[int, threading.Thread] = {}
        self._procs: dict[int, subprocess.Popen] = {}
        self._cancelled: set[int] = set()
        self._lock = threading.Lock()

    # ---------------------------------------------------------------------------------- what runs where
    def unavailable(self, step: Step) -> str | None:
        """Why ``step`` cannot run here (None: it can)."""
        return None if step.available else f"step {step.id!r} is not available in this build ({step.module} missing)"

    def describe(self, step: Step) -> dict[str, Any]:
        """The step as the page lists it: what runs and whether it can."""
        return {**step.as_dict(), "unavailable_reason": self.unavailable(step)}

    def close(self) -> None:
        """The app stops: nothing to release for child processes (they finish or are reconciled)."""

    # ---------------------------------------------------------------------------------- start
    def _insert(self, step: Step, params: dict[str, Any], started_by: str, note: str, status: str) -> JobRun:
        """The run's row (its log path set); AlreadyRunning when the step has an active run."""
        self.log_dir.mkdir(parents=True, exist_ok=True)
        with self.sessions() as db:
            run = JobRun(
                step=step.id,
                status=status,
                params=json.dumps(params),
                started_by=started_by,
                note=note,
                backend=self.backend,
            )
            db.add(run)
            try:
                db.commit()
            except IntegrityError:
                db.rollback()
                active = db.scalar(select(JobRun.id).where(JobRun.step == step.id, JobRun.status.in_(ACTIVE_STATUSES)))
                raise AlreadyRunning(step.id, active) from None
            run.log_path = str(self.log_dir / f"{run.id:06d}-{step.id}.log")
            db.commit()
        return run

    def start(
        self,
        step: Step,
        params: dict[str, Any] | None = None,
        started_by: str = "system",
        note: str = "",
        on_done: Callable[[JobRun], None] | None = None,
    ) -> JobRun:
        """Start ``step`` (params already resolved). Raises AlreadyRunning when a run is active."""
        params = dict(params or {})
        run = self._insert(step, params, started_by, note, "running")
        argv = step.argv(params)
        result_path = None
        if step.result_flag:
            result_path = self.log_dir / f"{run.id:06d}-{step.id}.result.json"
            argv += [step.result_flag, str(result_path)]
        # the step writes to its own copy of the log's file descriptor; ours is closed once it started
        with Path(run.log_path).open("wb") as log_file:
            log_file.write(f"$ {' '.join(argv[1:])}\n".encode())
            log_file.flush()
            try:
                proc = subprocess.Popen(
                    argv,
                    stdout=log_file,
                    stderr=subprocess.STDOUT,
                    stdin=subprocess.DEVNULL,
                    env={**os.environ, **self.env},
                    start_new_session=True,
                )
            except OSError as exc:
                log_file.write(f"could not start: {exc}\n".encode())
                proc = None
        if proc is None:
            self._finish(run.id, -1, None)
            return self.get(run.id)
        with self._lock:
            self._procs[run.id] = proc
        with self.sessions() as db:
            db.get(JobRun, run.id).pid = proc.pid
            db.commit()
        thread = threading.Thread(
            target=self._wait, args=(run.id, proc, result_path, on_done), daemon=True, name=f"run-{run.id}"
        )
        self._threads[run.id] = thread
        thread.start()
        return self.get(run.id)

    def _wait(
        self,
        run_id: int,
        proc: subprocess.Popen,
        result_path: Path | None,
        on_done: Callable[[JobRun], None] | None,
    ) -> None:
        code = proc.wait()
        self._finish(run_id, code, result_path)
        with self._lock:
            self._procs.pop(run_id, None)
        if on_done is not None:
            on_done(self.get(run_id))

    def _finish(self, run_id: int, code: int, result_path: Path | None) -> None:
        with self.sessions() as db:
            run = db.get(JobRun, run_id)
            run.exit_code = code
            run.status = "cancelled" if run_id in self._cancelled else ("succeeded" if code == 0 else "failed")
            run.finished_at = utcnow()
            if result_path is not None and result_path.exists():
                run.result = result_path.read_text()
            db.commit()

    # ---------------------------------------------------------------------------------- control
    def cancel(self, run_id: int) -> bool:
        """SIGTERM to the run's process group, SIGKILL after a grace period. False when not running here."""
        with self._lock:
            proc = self._procs.get(run_id)
        if proc is None or proc.poll() is not None:
            return False
        self._cancelled.add(run_id)
        _signal_group(proc.pid, signal.SIGTERM)

        def escalate() -> None:
            try:
                proc.wait(CANCEL_GRACE_S)
            except subprocess.TimeoutExpired:
                _signal_group(proc.pid, signal.SIGKILL)

        threading.Thread(target=escalate, daemon=True).start()
        return True

    def reconcile(self) -> list[int]:
        """At start: runs still marked active belong to a previous control plane that stopped; their
        processes (if any survive) are stopped and the runs marked ``interrupted``."""
        fixed = []
        with self.sessions() as db:
            for run in db.scalars(select(JobRun).where(JobRun.status.in_(ACTIVE_STATUSES))):
                if run.pid and _is_our_step(run.pid, run.log_path):
                    _signal_group(run.pid, signal.SIGTERM)
                run.status = "interrupted"
                run.finished_at = utcnow()
                run.note = (run.note + " " if run.note else "") + "the control plane stopped while this step ran"
                fixed.append(run.id)
            db.commit()
        if fixed:
            log.warning("marked runs %s interrupted (left running by a previous control plane)", fixed)
        return fixed

    def run_sequence(self, steps: Sequence[tuple[Step, dict[str, Any]]], state_key: str, started_by: str) -> None:
        """Run steps one after another in the background, progress kept in ``app_state[state_key]``;
        stops at the first failure. The pending state is stored before this returns, so a reader right
        after the call sees the sequence running, never the previous state; ``SequenceRunning`` if it
        already runs (checked and stored under the lock: two concurrent starts never both run)."""
        progress: dict[str, Any] = {
            "status": "running",
            "started_at": utcnow().isoformat(),
            "steps": [{"step": s.id, "title": s.title, "status": "pending", "run_id": None} for s, _ in steps],
        }
        with self._lock:
            current = self.get_state(state_key)
            if current and current.get("status") == "running":
                raise SequenceRunning(state_key)
            self.set_state(state_key, progress)

        def go() -> None:
            for i, (step, params) in enumerate(steps):
                done = threading.Event()
                try:
                    run = self.start(step, params, started_by, note="first run", on_done=functools.partial(_set, done))
                except AlreadyRunning as exc:
                    progress["steps"][i].update(status="skipped", run_id=exc.run_id)
                    self.set_state(state_key, progress)
                    continue
                except BackendError as exc:  # e.g. no job configured for the step: said, not swallowed
                    progress["steps"][i].update(status="failed", error=str(exc))
                    progress.update(status="failed", error=str(exc))
                    self.set_state(state_key, progress)
                    return
                progress["steps"][i].update(status="running", run_id=run.id)
                self.set_state(state_key, progress)
                if run.active:
                    done.wait()
                final = self.get(run.id).status
                progress["steps"][i]["status"] = final
                if final != "succeeded":
                    progress["status"] = "failed"
                    self.set_state(state_key, progress)
                    return
                self.set_state(state_key, progress)
            progress.update(status="succeeded", finished_at=utcnow().isoformat())
            self.set_state(state_key, progress)

        threading.Thread(target=go, daemon=True, name=f"sequence-{state_key}").start()

    # ---------------------------------------------------------------------------------- reads
    def get(self, run_id: int) -> JobRun:
        with self.sessions() as db:
            return db.get(JobRun, run_id)

    def wait(self, run_id: int, timeout: float | None = None) -> None:
        thread = self._threads.get(run_id)
        if thread:
            thread.join(timeout)

    def get_state(self, key: str) -> Any:
        with self.sessions() as db:
            row = db.get(AppState, key)
            return json.loads(row.value) if row else None

    def set_state(self, key: str, value: Any) -> None:
        with self.sessions() as db:
            row = db.get(AppState, key)
            if row is None:
                db.add(AppState(key=key, value=json.dumps(value), updated_at=utcnow()))
            else:
                row.value = json.dumps(value)
                row.updated_at = utcnow()
            db.commit()


def _set(event: threading.Event, _run: JobRun) -> None:
    event.set()


def _signal_group(pid: int, sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, sig)


def _is_our_step(pid: int, log_path: str) -> bool:
    """The pid is alive and still holds the run's log open (pids get reused)."""
    fd_dir = Path(f"/proc/{pid}/fd")
    try:
        return any(os.readlink(fd) == log_path for fd in fd_dir.iterdir())
    except OSError:
        return False
