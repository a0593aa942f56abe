"""The Databricks backend: the control plane running as a Databricks App (or anywhere that reaches a
workspace) drives what the bundle deployed, through databricks-sdk.

* Steps: the etl step starts an update of the Lakeflow pipeline (``PA_DATABRICKS_PIPELINE_ID``,
  ``full_refresh`` from its parameter); every other step is ``run-now`` of its job
  (``PA_DATABRICKS_JOB_IDS``, step=job id) with the step's typed parameters as job parameters (text:
  ``true``/``false``, numbers as written). A thread per run polls the run (or update) every
  ``PA_DATABRICKS_POLL_SECONDS``, maps its state to the control plane's statuses, and writes state
  changes, the pipeline's events and, at the end, each task's output (logs, error, error trace) to the
  run's log file, which the page tails exactly as it tails a local step's output. Cancel is cancel-run
  or a pipeline stop; a control plane that restarts follows its remote runs again instead of
  abandoning them.
* A step that writes a result (the backtest's ``--result-json``): its job writes the file to
  ``<rules volume>/backtests/<job run id>.json`` (the bundle passes ``{{job.run_id}}``), read back when
  the run succeeded; the backtest's candidate rule set is a file uploaded under
  ``PA_RULES_VOLUME_PATH/candidates/``, passed as the ``candidate_rules`` job parameter.
* Services: the simulator and the stream processor are jobs too: start = run-now (unless a run is
  active), stop = cancel all runs of the job.
* Models: MLflow with ``databricks`` tracking and the ``databricks-uc`` registry (Unity Catalog names
  ``<catalog>.<schema>.<model>``); the same client the scoring services load models with.
* Decisions: the stream processor's decision log table through the SQL warehouse (``warehouse.py``).
* Rules: the live set is uploaded to the Unity Catalog volume folder ``PA_RULES_VOLUME_PATH`` with the
  Files API: first ``versions/<label>-<hash>.json``, then ``ruleset.json``, the file the stream job and
  the scoring path read (``payments_core.rules.ruleset_path``).

Authentication is databricks-sdk's default chain (``DATABRICKS_HOST`` + ``DATABRICKS_TOKEN``, the
service principal a Databricks App injects as ``DATABRICKS_CLIENT_ID`` / ``DATABRICKS_CLIENT_SECRET``,
a configuration profile...); the control plane never builds a token itself.
"""

from __future__ import annotations

import contextlib
import io
import itertools
import json
import logging
import threading
import uuid
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

from databricks.sdk import WorkspaceClient
from databricks.sdk.config import Config
from databricks.sdk.errors import DatabricksError, NotFound
from databricks.sdk.service.jobs import BaseRun, Run, RunState, RunStatus
from databricks.sdk.service.pipelines import PipelineEvent, StartUpdateCause
from sqlalchemy import select
from sqlalchemy.orm import sessionmaker

from payments_core.rules.model import RULESET_NAME, RuleSet
from services.control_plane.backends import (
    BackendError,
    BackendUnavailable,
    NotConfigured,
    ServicesState,
)
from services.control_plane.backends.warehouse import WarehouseDecisions
from services.control_plane.db import ACTIVE_STATUSES, JobRun, utcnow
from services.control_plane.model_registry import ModelRegistry
from services.control_plane.runner import StepRunner
from services.control_plane.settings import DATABRICKS_JOB_STEPS, ControlPlaneSettings
from services.control_plane.steps import Step
from services.control_plane.supervision import MANAGED

log = logging.getLogger("control_plane.databricks")

PIPELINE_STEP = "etl"  # the step that is a pipeline update, not a job run
RETRY_TIMEOUT_S = 60  # the SDK retries transient failures this long (its default, 5 minutes, would hang a page)
HTTP_TIMEOUT_S = 30
MAX_EVENTS_PER_POLL = 1000
# A step's result file (the backtest's --result-json): the bundle's job writes it to
# <rules volume>/backtests/{{job.run_id}}.json, read back here once the run succeeded.
RESULT_DIR = "backtests"
CANDIDATE_DIR = "candidates"
VERSIONS_DIR = "versions"
JOB_IDS_HELP = "PA_DATABRICKS_JOB_IDS (step=job id pairs; the bundle sets them from ${resources.jobs.<key>.id})"

# Jobs API life-cycle states -> the control plane's statuses (terminal ones decided by the result state)
_QUEUED = {"PENDING", "QUEUED", "BLOCKED", "WAITING_FOR_RETRY", "WAITING"}
_RUNNING = {"RUNNING", "TERMINATING"}
_CANCELLED_RESULTS = {"CANCELED", "UPSTREAM_CANCELED", "USER_CANCELED"}
# Pipeline update states
_UPDATE_STATUS = {
    "QUEUED": "queued",
    "CREATED": "queued",
    "WAITING_FOR_RESOURCES": "queued",
    "INITIALIZING": "running",
    "RESETTING": "running",
    "SETTING_UP_TABLES": "running",
    "RUNNING": "running",
    "STOPPING": "running",
    "COMPLETED": "succeeded",
    "FAILED": "failed",
    "CANCELED": "cancelled",
}
TERMINAL = ("succeeded", "failed", "cancelled")
EXIT_CODES = {"succeeded": 0, "failed": 1}


def _value(enum_or_none: Any) -> str | None:
    return None if enum_or_none is None else str(getattr(enum_or_none, "value", enum_or_none))


def job_run_status(state: RunState | None, status: RunStatus | None = None) -> str:
    """A job run's (or task's) state as queued | running | succeeded | failed | cancelled. The
    ``status`` object (Jobs API 2.2) decides when present, else the older ``state``."""
    if status is not None and status.state is not None:
        life = _value(status.state)
        if life == "TERMINATED":
            code = _value(status.termination_details.code) if status.termination_details else None
            if code in ("SUCCESS",):
                return "succeeded"
            return "cancelled" if code in _CANCELLED_RESULTS else "failed"
        return "running" if life in _RUNNING else "queued"
    life = _value(state.life_cycle_state) if state else None
    if life in _QUEUED or life is None:
        return "queued"
    if life in _RUNNING:
        return "running"
    if life == "TERMINATED":
        result = _value(state.result_state) if state else None
        if result == "SUCCESS":
            return "succeeded"
        return "cancelled" if result in _CANCELLED_RESULTS else "failed"
    return "failed"  # SKIPPED, INTERNAL_ERROR


def update_status(state: Any) -> str:
    return _UPDATE_STATUS.get(_value(state) or "", "queued")


def param_text(value: Any) -> str:
    """A typed parameter as a job parameter (job parameters are text)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _stamp() -> str:
    return datetime.now(UTC).strftime("%H:%M:%S")


def _state_text(state: RunState | None, status: RunStatus | None) -> str:
    if status is not None and status.state is not None:
        text = _value(status.state) or ""
        details = status.termination_details
        if details is not None and details.code is not None:
            text += f" {_value(details.code)}"
        if details is not None and details.message:
            text += f": {details.message}"
        return text
    if state is None:
        return "UNKNOWN"
    text = _value(state.life_cycle_state) or "UNKNOWN"
    if state.result_state is not None:
        text += f" {_value(state.result_state)}"
    if state.state_message:
        text += f": {state.state_message}"
    return text


class Workspace:
    """One ``WorkspaceClient``, created on first use from databricks-sdk's default configuration chain."""

    def __init__(self) -> None:
        self._client: WorkspaceClient | None = None
        self._lock = threading.Lock()

    def client(self) -> WorkspaceClient:
        with self._lock:
            if self._client is None:
                try:
                    config = Config(
                        retry_timeout_seconds=RETRY_TIMEOUT_S,
                        http_timeout_seconds=HTTP_TIMEOUT_S,
                        product="payment-analysis-control-plane",
                        product_version="0.2.0",
                    )
                    self._client = WorkspaceClient(config=config)
                except (ValueError, DatabricksError) as exc:
                    raise BackendUnavailable(
                        "no Databricks workspace to talk to: set DATABRICKS_HOST and DATABRICKS_TOKEN, or run as a "
                        f"Databricks App (its service principal's DATABRICKS_CLIENT_ID / _SECRET) ({exc})"
                    ) from None
            return self._client

    @property
    def host(self) -> str:
        return (self.client().config.host or "").rstrip("/")

    @contextlib.contextmanager
    def errors(self, what: str) -> Iterator[None]:
        """Workspace failures as BackendUnavailable naming what was being done."""
        try:
            yield
        except BackendError:
            raise
        except DatabricksError as exc:
            raise BackendUnavailable(f"Databricks refused or failed {what}: {exc}") from exc
        except (OSError, ValueError) as exc:  # connection errors surface as requests' OSErrors
            raise BackendUnavailable(f"Databricks unreachable while {what}: {type(exc).__name__}: {exc}") from exc


# ------------------------------------------------------------------------------------------ volume files
def check_volume_dir(path: str | None, what: str) -> str:
    """``PA_RULES_VOLUME_PATH`` without a trailing slash, or NotConfigured saying what needs it."""
    if not path:
        raise NotConfigured(
            f"{what} needs a Unity Catalog volume folder: set PA_RULES_VOLUME_PATH to "
            "/Volumes/<catalog>/<schema>/<volume>/rules"
        )
    parts = path.strip("/").split("/")
    if parts[0] != "Volumes" or len(parts) < 4:
        raise NotConfigured(
            f"PA_RULES_VOLUME_PATH must be a folder of a Unity Catalog volume, "
            f"/Volumes/<catalog>/<schema>/<volume>/..., not {path!r}"
        )
    return "/" + "/".join(parts)


class VolumeRulePublisher:
    """The live rule set in a Unity Catalog volume folder, written with the Files API: the versioned
    copy first, then ``ruleset.json`` (one PUT that replaces the object: readers see the old or the new
    set, never half of one)."""

    def __init__(self, workspace: Workspace, rules_dir: str | None):
        self.workspace = workspace
        self.rules_dir = rules_dir
        self.location = f"{rules_dir.rstrip('/')}/{RULESET_NAME}" if rules_dir else "(PA_RULES_VOLUME_PATH not set)"

    def _dir(self) -> str:
        return check_volume_dir(self.rules_dir, "publishing a rule set on Databricks")

    def _upload(self, path: str, body: bytes) -> None:
        with self.workspace.errors(f"uploading {path}"):
            self.workspace.client().files.upload(path, io.BytesIO(body), overwrite=True)

    def read(self) -> bytes | None:
        path = f"{self._dir()}/{RULESET_NAME}"
        with self.workspace.errors(f"reading {path}"):
            try:
                response = self.workspace.client().files.download(path)
            except NotFound:
                return None
            if response.contents is None:
                return b""
            return response.contents.read()

    def publish(self, rule_set: RuleSet) -> None:
        folder = self._dir()
        body = rule_set.model_dump_json(indent=2).encode()
        self._upload(f"{folder}/{VERSIONS_DIR}/{rule_set.version}-{rule_set.content_hash()}.json", body)
        self._upload(f"{folder}/{RULESET_NAME}", body)

    def write_candidate(self, rule_set: RuleSet) -> str:
        path = f"{check_volume_dir(self.rules_dir, 'a backtest on Databricks')}/{CANDIDATE_DIR}/{uuid.uuid4().hex}.json"
        self._upload(path, rule_set.model_dump_json(indent=2).encode())
        return path

    def discard_candidate(self, ref: str) -> None:
        with contextlib.suppress(NotFound, BackendError), self.workspace.errors(f"deleting {ref}"):
            self.workspace.client().files.delete(ref)


# ------------------------------------------------------------------------------------------ steps
@dataclass(frozen=True)
class Target:
    """What a step runs on the workspace: a job or the pipeline."""

    kind: Literal["job", "pipeline"]
    id: str

    def describe(self) -> str:
        return f"Databricks job {self.id} (run now)" if self.kind == "job" else f"Lakeflow pipeline {self.id} (update)"


class DatabricksStepRunner(StepRunner):
    """The runner's rows, logs, one-active-run rule and sequences, over Jobs and Pipelines API runs."""

    backend = "databricks"

    def __init__(
        self,
        sessions: sessionmaker,
        log_dir: Path,
        workspace: Workspace,
        settings: ControlPlaneSettings,
        steps: Sequence[Step] = (),
    ) -> None:
        super().__init__(sessions, log_dir)
        self.steps = tuple(steps)  # to follow the runs of these steps again after a restart
        self.workspace = workspace
        self.settings = settings
        self.poll_s = settings.databricks_poll_seconds
        self._closing = threading.Event()

    # ------------------------------------------------------------------------------ configuration
    def target(self, step: Step) -> Target:
        """The step's job or pipeline; NotConfigured naming the step and the variable to set."""
        if step.id == PIPELINE_STEP:
            if not self.settings.databricks_pipeline_id:
                raise NotConfigured(
                    f"step {step.id!r} updates the Lakeflow ETL pipeline on Databricks: set PA_DATABRICKS_PIPELINE_ID "
                    "(the bundle sets it from ${resources.pipelines.<key>.id})"
                )
            return Target("pipeline", self.settings.databricks_pipeline_id)
        if step.id not in DATABRICKS_JOB_STEPS:
            raise NotConfigured(f"step {step.id!r} has no Databricks job: it runs on the local backend only")
        job = self.settings.job_ids.get(step.id)
        if job is None:
            raise NotConfigured(f"step {step.id!r} has no Databricks job: set {JOB_IDS_HELP}, e.g. {step.id}=<job id>")
        if step.result_flag:
            check_volume_dir(self.settings.rules_volume_path, f"step {step.id!r} (its result file)")
        return Target("job", str(job))

    def unavailable(self, step: Step) -> str | None:
        try:
            self.target(step)
        except NotConfigured as exc:
            return str(exc)
        return None

    def describe(self, step: Step) -> dict[str, Any]:
        try:
            target: Target | None = self.target(step)
            reason = None
        except NotConfigured as exc:
            target, reason = None, str(exc)
        return {
            **step.as_dict(),
            "available": target is not None,
            "command": target.describe() if target else f"not configured: {reason}",
            "unavailable_reason": reason,
        }

    def result_path(self, step: Step, remote_run_id: str) -> str | None:
        """Where the job of a step that reports a result wrote it: ``backtests/<job run id>.json`` at the
        root of the rules volume (the bundle passes ``--result-json`` with ``{{job.run_id}}``)."""
        if not step.result_flag:
            return None
        folder = check_volume_dir(self.settings.rules_volume_path, f"step {step.id!r} (its result file)")
        volume_root = "/".join(folder.split("/")[:5])  # /Volumes/<catalog>/<schema>/<volume>
        return f"{volume_root}/{RESULT_DIR}/{remote_run_id}.json"

    # ------------------------------------------------------------------------------ start
    def start(
        self,
        step: Step,
        params: dict[str, Any] | None = None,
        started_by: str = "system",
        note: str = "",
        on_done: Callable[[JobRun], None] | None = None,
    ) -> JobRun:
        """Start the step's job run or pipeline update. NotConfigured before anything is recorded when
        the step has no job; AlreadyRunning when it has an active run; a run that the workspace refused
        to start is recorded ``failed`` with the reason in its log."""
        params = dict(params or {})
        target = self.target(step)
        run = self._insert(step, params, started_by, note, "queued")
        try:
            remote_id, url = self._launch(step, target, params, run)
        except Exception as exc:  # recorded failed whatever went wrong: never an active row nothing follows
            if not isinstance(exc, BackendError):
                log.exception("starting %s failed", step.id)
            self._append(run.log_path, f"could not start: {exc}")
            self._finish_remote(run.id, "failed", None)
            return self.get(run.id)
        with self.sessions() as db:
            row = db.get(JobRun, run.id)
            row.remote_id, row.remote_url = remote_id, url
            db.commit()
        self._follow_in_thread(run.id, step, on_done)
        return self.get(run.id)

    def _launch(self, step: Step, target: Target, params: dict[str, Any], run: JobRun) -> tuple[str, str | None]:
        with self.workspace.errors(f"starting {target.describe()}"):
            client = self.workspace.client()
            host = self.workspace.host
            if target.kind == "pipeline":
                full_refresh = bool(params.get("full_refresh", False))
                self._append(
                    run.log_path, f"$ pipelines start-update {target.id} full_refresh={param_text(full_refresh)}"
                )
                started = client.pipelines.start_update(
                    target.id, full_refresh=full_refresh, cause=StartUpdateCause.API_CALL
                )
                if not started.update_id:
                    raise BackendUnavailable(f"the pipeline {target.id} started no update")
                url = f"{host}/pipelines/{target.id}/updates/{started.update_id}"
                self._append(run.log_path, f"[{_stamp()}] update {started.update_id} created: {url}")
                return started.update_id, url
            job_parameters = {name: param_text(value) for name, value in params.items()}
            self._append(run.log_path, f"$ jobs run-now {target.id} {json.dumps(job_parameters, sort_keys=True)}")
            waiter = client.jobs.run_now(int(target.id), job_parameters=job_parameters)
            run_id = waiter.response.run_id if waiter.response is not None else None
            if run_id is None:
                raise BackendUnavailable(f"job {target.id} started no run")
            self._append(run.log_path, f"[{_stamp()}] run {run_id} of job {target.id} created")
            return str(run_id), None

    # ------------------------------------------------------------------------------ following a run
    def _follow_in_thread(self, run_id: int, step: Step, on_done: Callable[[JobRun], None] | None) -> None:
        thread = threading.Thread(
            target=self._follow, args=(run_id, step, on_done), daemon=True, name=f"databricks-run-{run_id}"
        )
        self._threads[run_id] = thread
        thread.start()

    def _follow(self, run_id: int, step: Step, on_done: Callable[[JobRun], None] | None) -> None:
        row = self.get(run_id)
        remote_id, path = row.remote_id or "", row.log_path
        pipeline = step.id == PIPELINE_STEP
        seen: dict[str, Any] = {"status": None, "text": None, "tasks": {}, "events": set()}
        failures = 0
        while True:
            try:
                if pipeline:
                    status = self._poll_update(run_id, remote_id, path, seen)
                else:
                    status = self._poll_job_run(run_id, int(remote_id), path, seen)
                failures = 0
            except Exception as exc:  # the workspace away, an odd answer: said in the log, retried, never fatal
                failures += 1
                if failures == 1 or failures % 20 == 0:  # say it, without a line per poll
                    self._append(path, f"[{_stamp()}] status not available ({failures}x): {exc}")
                status = None
            if status in TERMINAL:
                break
            if self._closing.wait(min(self.poll_s * (1 + min(failures, 10)), 60.0)):
                return  # the app stops: the next start follows this run again (reconcile)
        assert status is not None
        result = None
        try:
            if pipeline:
                self._poll_update(run_id, remote_id, path, seen)  # the last events
            else:
                self._write_outputs(int(remote_id), path)
            if status == "succeeded":
                result = self._read_result(step, remote_id, path)
        except Exception as exc:  # the run's end is recorded even when its output cannot be read
            self._append(path, f"[{_stamp()}] output not available: {exc}")
        self._finish_remote(run_id, status, result)
        with self._lock:
            self._cancelled.discard(run_id)
        if on_done is not None:
            on_done(self.get(run_id))

    def _set_status(self, run_id: int, status: str, url: str | None = None) -> None:
        with self.sessions() as db:
            row = db.get(JobRun, run_id)
            if row.status in ACTIVE_STATUSES and status in ACTIVE_STATUSES:
                row.status = status
            if url and not row.remote_url:
                row.remote_url = url
            db.commit()

    def _poll_job_run(self, run_id: int, remote_id: int, path: str, seen: dict[str, Any]) -> str:
        with self.workspace.errors(f"reading run {remote_id}"):
            run: Run = self.workspace.client().jobs.get_run(remote_id)
        status = job_run_status(run.state, run.status)
        text = _state_text(run.state, run.status)
        if text != seen["text"]:
            page = f" {run.run_page_url}" if run.run_page_url and seen["text"] is None else ""
            self._append(path, f"[{_stamp()}] run {remote_id}: {text}{page}")
            seen["text"] = text
        for task in run.tasks or []:
            task_text = _state_text(task.state, task.status)
            if seen["tasks"].get(task.task_key) != task_text:
                self._append(path, f"[{_stamp()}]   task {task.task_key}: {task_text}")
                seen["tasks"][task.task_key] = task_text
        if status != seen["status"] and status not in TERMINAL:
            self._set_status(run_id, status, run.run_page_url)
        seen["status"] = status
        return status

    def _write_outputs(self, remote_id: int, path: str) -> None:
        """Each task's output at the end: logs (stdout/stderr of Python and JAR tasks), error, trace."""
        with self.workspace.errors(f"reading the output of run {remote_id}"):
            client = self.workspace.client()
            run = client.jobs.get_run(remote_id)
            tasks = [(t.task_key or "task", t.run_id) for t in run.tasks or [] if t.run_id is not None]
            for key, task_run in tasks or [("run", remote_id)]:
                try:
                    output = client.jobs.get_run_output(task_run)
                except DatabricksError as exc:
                    self._append(path, f"--- {key} (run {task_run}): output not available: {exc}")
                    continue
                header = f"--- {key} (run {task_run})" + (" [logs truncated]" if output.logs_truncated else "")
                self._append(path, header)
                if output.logs:
                    self._append(path, output.logs.rstrip("\n"))
                if output.error:
                    self._append(path, f"error: {output.error}")
                if output.error_trace:
                    self._append(path, output.error_trace.rstrip("\n"))

    def _poll_update(self, run_id: int, update_id: str, path: str, seen: dict[str, Any]) -> str:
        pipeline_id = self.settings.databricks_pipeline_id
        with self.workspace.errors(f"reading update {update_id} of pipeline {pipeline_id}"):
            client = self.workspace.client()
            update = client.pipelines.get_update(pipeline_id, update_id).update
            events = self._new_events(client, pipeline_id, update_id, update.creation_time if update else None, seen)
        for event in events:
            self._append(path, _event_line(event))
        state = update.state if update else None
        status = update_status(state)
        text = _value(state) or "UNKNOWN"
        if text != seen["text"]:
            self._append(path, f"[{_stamp()}] update {update_id}: {text}")
            seen["text"] = text
        if status != seen["status"] and status not in TERMINAL:
            self._set_status(run_id, status)
        seen["status"] = status
        return status

    @staticmethod
    def _new_events(
        client: WorkspaceClient, pipeline_id: str, update_id: str, created_ms: int | None, seen: dict[str, Any]
    ) -> list[PipelineEvent]:
        """This update's events not written yet, oldest first (the API lists newest first)."""
        fresh: list[PipelineEvent] = []
        listed = client.pipelines.list_pipeline_events(pipeline_id, order_by=["timestamp desc"], max_results=100)
        for event in itertools.islice(listed, MAX_EVENTS_PER_POLL):
            if event.id in seen["events"]:
                break
            if created_ms and event.timestamp and _epoch_ms(event.timestamp) < created_ms - 60_000:
                break  # older than the update: an earlier update's history
            if event.origin is not None and event.origin.update_id == update_id:
                fresh.append(event)
        for event in fresh:
            seen["events"].add(event.id)
        return list(reversed(fresh))

    def _read_result(self, step: Step, remote_id: str, path: str) -> str | None:
        result_path = self.result_path(step, remote_id)
        if result_path is None:
            return None
        with self.workspace.errors(f"reading {result_path}"):
            try:
                body = self.workspace.client().files.download(result_path).contents
            except NotFound:
                self._append(path, f"no result file at {result_path}")
                return None
            text = body.read().decode() if body is not None else ""
        json.loads(text)  # a result is JSON (ValueError otherwise, reported in the log)
        return text

    def _finish_remote(self, run_id: int, status: str, result: str | None) -> None:
        with self.sessions() as db:
            row = db.get(JobRun, run_id)
            # the log's last line first: whoever sees the final status then reads the whole log
            self._append(row.log_path, f"[{_stamp()}] {status}")
            row.status = status
            row.exit_code = EXIT_CODES.get(status)
            row.finished_at = utcnow()
            if result is not None:
                row.result = result
            db.commit()

    @staticmethod
    def _append(path: str, text: str) -> None:
        with Path(path).open("a", encoding="utf-8") as fh:
            fh.write(text + "\n")

    # ------------------------------------------------------------------------------ control
    def cancel(self, run_id: int) -> bool:
        """Ask the workspace to cancel the run (cancel-run) or stop the pipeline; the run's status follows
        from the polled state. False when the run is not a Databricks run being followed."""
        row = self.get(run_id)
        if row is None or not row.active or row.backend != self.backend or not row.remote_id:
            return False
        if row.step == PIPELINE_STEP:
            pipeline_id = self.settings.databricks_pipeline_id
            with self.workspace.errors(f"stopping pipeline {pipeline_id}"):
                self.workspace.client().pipelines.stop(pipeline_id)
            self._append(row.log_path, f"[{_stamp()}] stop of pipeline {pipeline_id} requested")
        else:
            with self.workspace.errors(f"cancelling run {row.remote_id}"):
                self.workspace.client().jobs.cancel_run(int(row.remote_id))
            self._append(row.log_path, f"[{_stamp()}] cancel of run {row.remote_id} requested")
        with self._lock:
            self._cancelled.add(run_id)
        return True

    def reconcile(self) -> list[int]:
        """At start: Databricks runs still active are followed again (they kept running while the control
        plane was away); runs of another backend are marked interrupted as the local runner does."""
        followed, interrupted = [], []
        with self.sessions() as db:
            for row in db.scalars(select(JobRun).where(JobRun.status.in_(ACTIVE_STATUSES))):
                if row.backend == self.backend and row.remote_id:
                    followed.append((row.id, row.step))
                    continue
                row.status = "interrupted"
                row.finished_at = utcnow()
                row.note = (row.note + " " if row.note else "") + "the control plane stopped while this step ran"
                interrupted.append(row.id)
            db.commit()
        steps = {s.id: s for s in self.steps}
        for run_id, step_id in followed:
            step = steps.get(step_id) or Step(step_id, step_id, "")
            self._append(
                self.get(run_id).log_path, f"[{_stamp()}] the control plane restarted: following the run again"
            )
            self._follow_in_thread(run_id, step, None)
        if interrupted:
            log.warning("marked runs %s interrupted (left running by a previous control plane)", interrupted)
        return interrupted

    def close(self) -> None:
        self._closing.set()


# ------------------------------------------------------------------------------------------ services
class JobServices:
    """The simulator and the stream processor as Databricks jobs: running = an active run of the job."""

    kind = "databricks"

    def __init__(self, workspace: Workspace, settings: ControlPlaneSettings):
        self.workspace = workspace
        self.settings = settings

    def _job(self, name: str) -> int:
        job = self.settings.job_ids.get(name)
        if job is None:
            raise NotConfigured(f"service {name!r} has no Databricks job: set {JOB_IDS_HELP}, e.g. {name}=<job id>")
        return job

    def _active(self, job: int) -> list[BaseRun]:
        with self.workspace.errors(f"listing the active runs of job {job}"):
            runs = self.workspace.client().jobs.list_runs(job_id=job, active_only=True, limit=5)
            return list(itertools.islice(runs, 5))

    def info(self, name: str) -> dict[str, Any]:
        job = self._job(name)
        active = self._active(job)
        if not active:
            return {"state": "STOPPED", "description": f"job {job}: no active run", "job_id": job}
        run = active[0]
        status = job_run_status(run.state, run.status)
        if run.status is not None and run.status.state is not None:
            life = _value(run.status.state)
        else:
            life = _value(run.state.life_cycle_state) if run.state else None
        state = "STOPPING" if life == "TERMINATING" else "RUNNING" if status == "running" else "STARTING"
        started = datetime.fromtimestamp(run.start_time / 1000, UTC).isoformat() if run.start_time else None
        return {
            "state": state,
            "description": f"job {job}: run {run.run_id}" + (f" {run.run_page_url}" if run.run_page_url else ""),
            "job_id": job,
            "run_id": run.run_id,
            "started_at": started,
        }

    def status(self) -> ServicesState:
        infos: dict[str, dict[str, Any]] = {}
        try:
            for name in MANAGED:
                try:
                    infos[name] = self.info(name)
                except NotConfigured as exc:
                    infos[name] = {"state": "UNCONFIGURED", "description": str(exc)}
        except BackendError as exc:
            return ServicesState(False, str(exc), {})
        return ServicesState(True, None, infos)

    def control(self, name: str, action: Literal["start", "stop"]) -> dict[str, Any]:
        job = self._job(name)
        client = self.workspace.client()
        if action == "start":
            if not self._active(job):
                with self.workspace.errors(f"starting job {job}"):
                    client.jobs.run_now(job)
        else:
            with self.workspace.errors(f"cancelling the runs of job {job}"):
                client.jobs.cancel_all_runs(job_id=job)
        return self.info(name)


# ------------------------------------------------------------------------------------------ the backend
class DatabricksBackend:
    name = "databricks"

    def __init__(self, settings: ControlPlaneSettings, sessions: sessionmaker, steps: Sequence[Step]):
        self.settings = settings
        self.workspace = Workspace()
        self.runner = DatabricksStepRunner(sessions, settings.job_log_dir, self.workspace, settings, steps)
        self.services = JobServices(self.workspace, settings)
        self.model_catalog = settings.uc_catalog or settings.catalog
        self.model_schema = settings.uc_schema or settings.lakehouse_schema
        self.registry = ModelRegistry("databricks", self.model_catalog, self.model_schema, registry_uri="databricks-uc")
        self.decisions = WarehouseDecisions(self.workspace, settings)
        self.rules = VolumeRulePublisher(self.workspace, settings.rules_volume_path)

    def start(self) -> None:
        self.runner.reconcile()
        if self.settings.decision_feed:
            self.decisions.start()

    def stop(self) -> None:
        self.decisions.stop()
        self.runner.close()

    def first_run_due(self) -> bool:
        """Never by itself on Databricks: the bundle's ``first_run`` job runs the sequence after a deploy
        (``make deploy RUN=first_run``), and a second one started here would backfill twice; an admin
        can still start it with ``POST /api/first-run``."""
        return False

    def info(self, check: bool = False) -> dict[str, Any]:
        out: dict[str, Any] = {
            "backend": self.name,
            "pipeline_id": self.settings.databricks_pipeline_id or None,
            "job_ids": self.settings.job_ids,
            "warehouse_id": self.settings.databricks_warehouse_id or None,
            "decision_log": self.decisions.table,
            "models": f"{self.model_catalog}.{self.model_schema} (Unity Catalog)",
            "rules": self.rules.location,
            "unconfigured": {
                s.id: reason for s in self.runner.steps if (reason := self.runner.unavailable(s)) is not None
            },
        }
        if check:
            try:
                with self.workspace.errors("reading the current user"):
                    me = self.workspace.client().current_user.me()
                out.update(host=self.workspace.host, identity=me.user_name or me.display_name, error=None)
            except BackendError as exc:
                out.update(host=None, identity=None, error=str(exc))
        return out


def _epoch_ms(timestamp: str) -> int:
    try:
        return int(datetime.fromisoformat(timestamp.replace("Z", "+00:00")).timestamp() * 1000)
    except ValueError:
        return 0


def _event_line(event: PipelineEvent) -> str:
    when = event.timestamp or ""
    level = _value(event.level) or "INFO"
    line = f"[{when}] {level} {event.event_type or 'event'}: {event.message or ''}"
    if event.error is not None:
        for exc in event.error.exceptions or []:
            line += f"\n    {exc.class_name or 'error'}: {exc.message or ''}"
    return line
