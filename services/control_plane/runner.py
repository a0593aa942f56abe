"""Runs steps as subprocesses, recording status, duration, exit code and logs."""
from __future__ import annotations

import json
import os
import subprocess
import threading
from datetime import UTC, datetime
from pathlib import Path

from sqlalchemy.orm import sessionmaker

from services.control_plane.db import JobRun
from services.control_plane.steps import Step


class StepRunner:
    def __init__(self, sessions: sessionmaker, log_dir: Path, env: dict[str, str] | None = None) -> None:
        self.sessions = sessions
        self.log_dir = log_dir
        self.env = env or {}
        self._threads: dict[int, threading.Thread] = {}

    def start(self, step: Step, params: dict | None = None) -> JobRun:
        self.log_dir.mkdir(parents=True, exist_ok=True)
        with self.sessions() as db:
            run = JobRun(step=step.id, status="running", params=json.dumps(params or {}))
            db.add(run)
            db.commit()
            run.log_path = str(self.log_dir / f"{run.id:06d}-{step.id}.log")
            db.commit()
        thread = threading.Thread(target=self._run, args=(run.id, step, Path(run.log_path)), daemon=True)
        self._threads[run.id] = thread
        thread.start()
        return run

    def _run(self, run_id: int, step: Step, log_path: Path) -> None:
        with log_path.open("wb") as log:
            try:
                code = subprocess.run(step.argv(), stdout=log, stderr=subprocess.STDOUT,
                                      env={**os.environ, **self.env}).returncode
            except OSError as exc:
                log.write(f"could not start: {exc}\n".encode())
                code = -1
        with self.sessions() as db:
            run = db.get(JobRun, run_id)
            run.exit_code = code
            run.status = "succeeded" if code == 0 else "failed"
            run.finished_at = datetime.now(UTC)
            db.commit()

    def wait(self, run_id: int, timeout: float | None = None) -> None:
        thread = self._threads.get(run_id)
        if thread:
            thread.join(timeout)
