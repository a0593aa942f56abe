"""A stand-in Databricks workspace for tests: a real HTTP server on loopback that answers the REST paths
databricks-sdk (and MLflow's Unity Catalog registry client) call, with bodies shaped like the real API's
(field names from the SDK's ``service/*.py`` dataclasses and MLflow's UC registry protos), and state:

* Jobs API 2.2: ``run-now`` creates a run that moves PENDING -> RUNNING -> TERMINATED one step per
  ``runs/get`` (a job may ``hold`` its runs RUNNING until cancelled, like a continuous job), with one task
  whose ``runs/get-output`` has logs (and error, error trace when the job fails); ``runs/cancel`` and
  ``runs/cancel-all`` end runs TERMINATED / CANCELED; ``runs/list`` lists them.
* Pipelines API: ``updates`` starts an update that moves QUEUED -> INITIALIZING -> RUNNING -> COMPLETED
  (or FAILED) one step per ``updates/{id}`` read, emitting events ``events`` lists newest first, with
  pages; ``stop`` cancels the active update.
* Statement Execution API: ``sql/statements`` runs the control plane's constant decision-log SELECT over
  the rows a test put in the table: parameters decide the filters (an unbound ``:marker`` fails like the
  real warehouse), ORDER BY and LIMIT are applied, results come back as JSON_ARRAY text cells with a
  manifest; optionally PENDING first, answered by ``GET sql/statements/{id}``.
* Files API: PUT/GET/HEAD/DELETE ``fs/files/...`` in an in-memory file store, and ``create-download-url``
  with a presigned URL the stub also serves (the SDK's download path).
* MLflow Unity Catalog registry (``mlflow/unity-catalog/registered-models|model-versions``, aliases) and
  ``mlflow/runs/get`` for the versions' metrics.
* Genie spaces (``genie/spaces``: list with pages, create, get with ``include_serialized_space``, update
  with an etag that must match, trash): ``serialized_space`` is checked as the API checks a version-2
  space (ids 32 lowercase hex and unique, lists sorted, fully qualified tables, a known warehouse).
* ``preview/scim/v2/Me``, host metadata
  (``/.well-known/databricks-config``) and OAuth machine-to-machine (``/oidc/...``: client id and secret
  for a bearer token, as a Databricks App's service principal signs in).

Every ``/api`` call needs a bearer token the stub knows (``PAT``, or one it issued); everything received
is recorded in ``requests`` for assertions.
"""

from __future__ import annotations

import base64
import json
import re
import secrets
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

PAT = "dapi-stub-personal-access-token"
CLIENT_ID = "stub-app-service-principal"
CLIENT_SECRET = "stub-app-secret"
WORKSPACE_ID = "1234567890123456"
WAREHOUSE_ID = "stub-warehouse-1"

# The decision log's columns and their SQL types (the stream processor's stream_decision_log)
DECISION_LOG_TYPES = {
    "transaction_id": "STRING",
    "event_timestamp": "TIMESTAMP",
    "decided_at": "TIMESTAMP",
    "published_at": "TIMESTAMP",
    "logged_at": "TIMESTAMP",
    "outcome": "STRING",
    "schema_version": "INT",
    "decision_id": "STRING",
    "approval_probability": "DOUBLE",
    "risk_score": "DOUBLE",
    "recommended_route": "STRING",
    "retry": "STRUCT",
    "reason_codes": "ARRAY",
    "shadow_reason_codes": "ARRAY",
    "challenger_outcome": "STRING",
    "rule_set_version": "STRING",
    "model_versions": "MAP",
    "latency_ms": "DOUBLE",
    "source": "STRING",
    "merchant_id": "STRING",
    "merchant_segment": "STRING",
    "amount_minor": "LONG",
    "currency": "STRING",
    "card_network": "STRING",
    "payment_solution": "STRING",
    "geo_country": "STRING",
    "is_approved": "BOOLEAN",
    "fraud_score": "DOUBLE",
    "processing_time_ms": "DOUBLE",
}


def _ms() -> int:
    return int(time.time() * 1000)


def _iso(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


class ApiError(Exception):
    def __init__(self, status: int, error_code: str, message: str):
        super().__init__(message)
        self.status, self.error_code, self.message = status, error_code, message


@dataclass
class Recorded:
    method: str
    path: str
    query: dict[str, list[str]]
    body: Any


@dataclass
class StubJob:
    job_id: int
    name: str
    fail: bool = False  # runs end FAILED with an error and a trace
    hold: bool = False  # runs stay RUNNING until cancelled (continuous jobs: simulator, stream processor)
    logs: str = "hello from the job\nall done\n"
    result: dict | None = None  # written to <result_dir>/<run id>.json when the run succeeds
    result_dir: str | None = None  # (the bundle's backtest job: --result-json .../backtests/{{job.run_id}}.json)


@dataclass
class StubRun:
    run_id: int
    job: StubJob
    number: int
    parameters: dict[str, str]
    task_run_id: int
    start_time: int = field(default_factory=_ms)
    end_time: int = 0
    step: int = 0  # index into PROGRESSION
    cancelled: bool = False

    PROGRESSION = ("PENDING", "RUNNING", "RUNNING", "TERMINATED")

    @property
    def life(self) -> str:
        if self.cancelled:
            return "TERMINATED"
        return self.PROGRESSION[self.step]

    @property
    def result(self) -> str | None:
        if self.life != "TERMINATED":
            return None
        if self.cancelled:
            return "CANCELED"
        return "FAILED" if self.job.fail else "SUCCESS"


@dataclass
class StubUpdate:
    update_id: str
    full_refresh: bool
    cause: str
    creation_time: int = field(default_factory=_ms)
    step: int = 0
    cancelled: bool = False

    PROGRESSION = ("QUEUED", "INITIALIZING", "SETTING_UP_TABLES", "RUNNING", "COMPLETED")


@dataclass
class StubModelVersion:
    version: int
    run_id: str
    tags: dict[str, str]
    status: str = "READY"
    created: int = field(default_factory=_ms)


class DatabricksStub:
    """The workspace's state; ``base_url`` once started (``with stub.running():``)."""

    def __init__(self) -> None:
        self.lock = threading.RLock()
        self.requests: list[Recorded] = []
        self.tokens = {PAT}
        self.jobs: dict[int, StubJob] = {}
        self.runs: dict[int, StubRun] = {}
        self._ids = iter(range(1000, 10**9))
        self.pipeline_id = "stub-pipeline-" + uuid.uuid4().hex[:8]
        self.pipeline_fail = False  # updates end FAILED with an error event
        self.pipeline_hold = False  # updates stay RUNNING until stopped
        self.updates: dict[str, StubUpdate] = {}
        self.events: list[dict[str, Any]] = []  # oldest first
        self.files: dict[str, tuple[bytes, int]] = {}  # path -> (content, mtime ms)
        self.uploads: list[str] = []  # paths in the order they were written
        self._presigned: dict[str, str] = {}
        self.warehouses = {WAREHOUSE_ID}
        self.decision_log = "main.payment_analysis.stream_decision_log"
        self.decision_rows: list[dict[str, Any]] = []
        self.statements: list[dict[str, Any]] = []
        self.statement_pending_polls = 0  # answer PENDING this many times before SUCCEEDED
        self._pending: dict[str, tuple[int, dict[str, Any]]] = {}
        self.models: dict[str, dict[str, Any]] = {}  # name -> {"versions": {n: StubModelVersion}, "aliases": {}}
        self.mlflow_runs: dict[str, dict[str, Any]] = {}
        self.genie_spaces: dict[str, dict[str, Any]] = {}  # space id -> the space as the API returns it
        self.genie_page_size = 100  # the most spaces one list page holds
        self.server: ThreadingHTTPServer | None = None

    # ------------------------------------------------------------------------------------ setup
    @property
    def base_url(self) -> str:
        assert self.server is not None, "start the stub first"
        return f"http://127.0.0.1:{self.server.server_port}"

    @contextmanager
    def running(self) -> Iterator[DatabricksStub]:
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(self))
        self.server.daemon_threads = True
        thread = threading.Thread(target=self.server.serve_forever, daemon=True, name="databricks-stub")
        thread.start()
        try:
            yield self
        finally:
            self.server.shutdown()
            self.server.server_close()

    def add_job(self, name: str, **options: Any) -> StubJob:
        with self.lock:
            job = StubJob(next(self._ids), name, **options)
            self.jobs[job.job_id] = job
            return job

    def add_model_version(self, name: str, run_id: str, tags: dict[str, str], metrics: dict[str, float]) -> int:
        with self.lock:
            model = self.models.setdefault(name, {"versions": {}, "aliases": {}, "created": _ms()})
            version = len(model["versions"]) + 1
            model["versions"][version] = StubModelVersion(version, run_id, dict(tags))
            self.mlflow_runs[run_id] = {"metrics": dict(metrics), "params": {}}
            return version

    def advance(self, job: StubJob) -> None:
        """One step of time for the job's runs (as a ``runs/get`` would)."""
        with self.lock:
            for run in self.runs.values():
                if run.job is job:
                    self._advance(run)

    def calls(self, method: str, prefix: str) -> list[Recorded]:
        with self.lock:
            return [r for r in self.requests if r.method == method and r.path.startswith(prefix)]

    # ------------------------------------------------------------------------------------ jobs
    def _run_json(self, run: StubRun, base: str) -> dict[str, Any]:
        life, result = run.life, run.result
        message = {
            "PENDING": "Waiting for cluster",
            "RUNNING": "In run",
            "TERMINATED": "Run cancelled." if run.cancelled else ("Task failed" if run.job.fail else ""),
        }[life]
        state = {"life_cycle_state": life, "state_message": message, "user_cancelled_or_timedout": run.cancelled}
        status: dict[str, Any] = {"state": life}
        if result is not None:
            state["result_state"] = result
            code = {"SUCCESS": "SUCCESS", "FAILED": "RUN_EXECUTION_ERROR", "CANCELED": "USER_CANCELED"}[result]
            kind = {"SUCCESS": "SUCCESS", "FAILED": "CLIENT_ERROR", "CANCELED": "SUCCESS"}[result]
            status["termination_details"] = {"code": code, "type": kind, "message": message}
        page = f"{base}/jobs/{run.job.job_id}/runs/{run.run_id}"
        task = {
            "task_key": "main",
            "run_id": run.task_run_id,
            "state": dict(state),
            "status": dict(status),
            "start_time": run.start_time,
            "end_time": run.end_time,
            "attempt_number": 0,
            "run_page_url": f"{base}/jobs/{run.job.job_id}/runs/{run.task_run_id}",
            "spark_python_task": {"python_file": f"{run.job.name}.py", "parameters": []},
        }
        return {
            "job_id": run.job.job_id,
            "run_id": run.run_id,
            "number_in_job": run.number,
            "run_name": run.job.name,
            "run_page_url": page,
            "run_type": "JOB_RUN",
            "creator_user_name": CLIENT_ID,
            "start_time": run.start_time,
            "end_time": run.end_time,
            "state": state,
            "status": status,
            "job_parameters": [{"name": k, "value": v, "default": ""} for k, v in sorted(run.parameters.items())],
            "tasks": [task],
            "trigger": "ONE_TIME",
        }

    def _advance(self, run: StubRun) -> None:
        if run.cancelled or run.life == "TERMINATED":
            return
        if run.job.hold and run.life == "RUNNING":
            return
        run.step = min(run.step + 1, len(run.PROGRESSION) - 1)
        if run.life == "TERMINATED":
            run.end_time = _ms()
            if run.result == "SUCCESS" and run.job.result is not None and run.job.result_dir:
                self._store(f"{run.job.result_dir}/{run.run_id}.json", json.dumps(run.job.result).encode())

    def _cancel(self, run: StubRun) -> None:
        if run.life != "TERMINATED":
            run.cancelled = True
            run.end_time = _ms()

    def jobs_api(self, method: str, path: str, q: dict[str, str], body: dict[str, Any], base: str) -> Any:
        if path == "/api/2.2/jobs/run-now" and method == "POST":
            job = self.jobs.get(int(body.get("job_id", 0)))
            if job is None:
                raise ApiError(400, "INVALID_PARAMETER_VALUE", f"Job {body.get('job_id')} does not exist.")
            params = body.get("job_parameters") or {}
            if not all(isinstance(v, str) for v in params.values()):
                raise ApiError(400, "INVALID_PARAMETER_VALUE", "job_parameters values must be strings")
            number = sum(1 for r in self.runs.values() if r.job is job) + 1
            run = StubRun(next(self._ids), job, number, dict(params), next(self._ids))
            self.runs[run.run_id] = run
            return {"run_id": run.run_id, "number_in_job": number}
        if path == "/api/2.2/jobs/runs/get" and method == "GET":
            run = self._run(q.get("run_id"))
            out = self._run_json(run, base)
            self._advance(run)  # the next read sees the next state
            return out
        if path == "/api/2.2/jobs/runs/get-output" and method == "GET":
            wanted = int(q.get("run_id", "0"))
            if wanted in self.runs:
                raise ApiError(
                    400,
                    "INVALID_PARAMETER_VALUE",
                    "Retrieving the output of runs with multiple tasks is not supported. "
                    "Please retrieve the output of each individual task run instead.",
                )
            run = next((r for r in self.runs.values() if r.task_run_id == wanted), None)
            if run is None:
                raise ApiError(404, "RESOURCE_DOES_NOT_EXIST", f"Run {wanted} does not exist.")
            out: dict[str, Any] = {"metadata": self._run_json(run, base)["tasks"][0], "logs_truncated": False}
            if run.life == "TERMINATED":
                out["logs"] = run.job.logs
                if run.result == "FAILED":
                    out["error"] = "ValueError: the stub job failed on purpose"
                    out["error_trace"] = (
                        "Traceback (most recent call last):\n"
                        f'  File "{run.job.name}.py", line 1, in <module>\n'
                        "ValueError: the stub job failed on purpose"
                    )
            return out
        if path == "/api/2.2/jobs/runs/cancel" and method == "POST":
            self._cancel(self._run(body.get("run_id")))
            return {}
        if path == "/api/2.2/jobs/runs/cancel-all" and method == "POST":
            job_id = int(body.get("job_id", 0))
            for run in self.runs.values():
                if run.job.job_id == job_id:
                    self._cancel(run)
            return {}
        if path == "/api/2.2/jobs/runs/list" and method == "GET":
            job_id = int(q.get("job_id", "0"))
            active = q.get("active_only") in ("true", "True", "1")
            runs = [
                r
                for r in sorted(self.runs.values(), key=lambda r: -r.run_id)
                if (not job_id or r.job.job_id == job_id) and (not active or r.life != "TERMINATED")
            ]
            limit = int(q.get("limit", "25"))
            listed = [{k: v for k, v in self._run_json(r, base).items() if k != "tasks"} for r in runs[:limit]]
            return {"runs": listed, "has_more": len(runs) > limit} if listed else {"has_more": False}
        raise ApiError(404, "ENDPOINT_NOT_FOUND", f"no {method} {path}")

    def _run(self, run_id: Any) -> StubRun:
        run = self.runs.get(int(run_id or 0))
        if run is None:
            raise ApiError(404, "RESOURCE_DOES_NOT_EXIST", f"Run {run_id} does not exist.")
        return run

    # ------------------------------------------------------------------------------------ pipelines
    def _event(self, update: StubUpdate, level: str, kind: str, message: str, error: dict | None = None) -> None:
        event: dict[str, Any] = {
            "id": uuid.uuid4().hex,
            "sequence": {"control_plane_seq_no": len(self.events) + 1},
            "origin": {"pipeline_id": self.pipeline_id, "pipeline_name": "payment_etl", "update_id": update.update_id},
            "timestamp": _iso(_ms()),
            "message": message,
            "level": level,
            "event_type": kind,
            "maturity_level": "STABLE",
        }
        if error is not None:
            event["error"] = error
        self.events.append(event)

    def _update_state(self, update: StubUpdate) -> str:
        if update.cancelled:
            return "CANCELED"
        state = update.PROGRESSION[update.step]
        if state == "COMPLETED" and self.pipeline_fail:
            return "FAILED"
        return state

    def _advance_update(self, update: StubUpdate) -> None:
        before = self._update_state(update)
        if before in ("COMPLETED", "FAILED", "CANCELED") or (self.pipeline_hold and before == "RUNNING"):
            return
        update.step = min(update.step + 1, len(update.PROGRESSION) - 1)
        state = self._update_state(update)
        self._event(update, "INFO", "update_progress", f"Update {update.update_id[:6]} is {state}.")
        if state == "RUNNING":
            for table in ("bronze_transactions", "silver_transactions", "gold_approval_kpis"):
                self._event(update, "INFO", "flow_progress", f"Flow '{table}' is RUNNING.")
        if state == "FAILED":
            error = {
                "exceptions": [{"class_name": "AnalysisException", "message": "silver_transactions: column missing"}],
                "fatal": True,
            }
            self._event(update, "ERROR", "flow_progress", "Flow 'silver_transactions' has FAILED.", error)

    def pipelines_api(self, method: str, path: str, q: dict[str, str], body: dict[str, Any]) -> Any:
        m = re.fullmatch(r"/api/2\.0/pipelines/([^/]+)(/.*)?", path)
        if m is None or m.group(1) != self.pipeline_id:
            raise ApiError(404, "RESOURCE_DOES_NOT_EXIST", f"Pipeline {m.group(1) if m else path} not found.")
        rest = m.group(2) or ""
        if rest == "/updates" and method == "POST":
            if any(self._update_state(u) not in ("COMPLETED", "FAILED", "CANCELED") for u in self.updates.values()):
                raise ApiError(409, "RESOURCE_CONFLICT", "An active update already exists for this pipeline.")
            update = StubUpdate(str(uuid.uuid4()), bool(body.get("full_refresh")), body.get("cause", "API_CALL"))
            self.updates[update.update_id] = update
            self._event(update, "INFO", "create_update", f"Update {update.update_id[:6]} started by API_CALL.")
            return {"update_id": update.update_id}
        um = re.fullmatch(r"/updates/([^/]+)", rest)
        if um and method == "GET":
            update = self.updates.get(um.group(1))
            if update is None:
                raise ApiError(404, "RESOURCE_DOES_NOT_EXIST", f"Update {um.group(1)} not found.")
            out = {
                "update": {
                    "pipeline_id": self.pipeline_id,
                    "update_id": update.update_id,
                    "state": self._update_state(update),
                    "creation_time": update.creation_time,
                    "full_refresh": update.full_refresh,
                    "cause": update.cause,
                    "cluster_id": "stub-cluster",
                }
            }
            self._advance_update(update)  # the next read sees the next state
            return out
        if rest == "/events" and method == "GET":
            newest_first = list(reversed(self.events))
            if "timestamp asc" in q.get("order_by", ""):
                newest_first.reverse()
            start = int(q.get("page_token") or 0)
            size = int(q.get("max_results") or 25)
            page = newest_first[start : start + size]
            out: dict[str, Any] = {"events": page}
            if start + size < len(newest_first):
                out["next_page_token"] = str(start + size)
            return out
        if rest == "/stop" and method == "POST":
            for update in self.updates.values():
                if self._update_state(update) not in ("COMPLETED", "FAILED", "CANCELED"):
                    update.cancelled = True
                    self._event(update, "INFO", "update_progress", f"Update {update.update_id[:6]} is CANCELED.")
            return {}
        raise ApiError(404, "ENDPOINT_NOT_FOUND", f"no {method} {path}")

    # ------------------------------------------------------------------------------------ files
    def _store(self, path: str, content: bytes) -> None:
        self.files[path] = (content, _ms())
        self.uploads.append(path)

    def files_api(self, method: str, path: str, q: dict[str, str], raw: bytes, base: str) -> tuple[int, Any]:
        if path == "/api/2.0/fs/create-download-url" and method == "POST":
            target = q.get("path", "")
            if target not in self.files:
                raise ApiError(404, "NOT_FOUND", f"The file {target} does not exist.")
            token = secrets.token_urlsafe(12)
            self._presigned[token] = target
            return 200, {"url": f"{base}/presigned/{token}", "headers": []}
        if path == "/api/2.0/fs/endpoints":
            raise ApiError(404, "ENDPOINT_NOT_FOUND", "not served for this workspace")
        file_path = unquote(path.removeprefix("/api/2.0/fs/files"))
        if not file_path.startswith("/Volumes/"):
            raise ApiError(400, "INVALID_PARAMETER_VALUE", f"{file_path} is not a Unity Catalog volume path")
        if method == "PUT":
            if file_path in self.files and q.get("overwrite") not in ("true", "True"):
                raise ApiError(409, "ALREADY_EXISTS", f"The file {file_path} already exists.")
            self._store(file_path, raw)
            return 204, None
        if method in ("GET", "HEAD"):
            if file_path not in self.files:
                raise ApiError(404, "NOT_FOUND", f"The file {file_path} does not exist.")
            return 200, self.files[file_path]
        if method == "DELETE":
            if self.files.pop(file_path, None) is None:
                raise ApiError(404, "NOT_FOUND", f"The file {file_path} does not exist.")
            return 204, None
        raise ApiError(405, "BAD_REQUEST", f"{method} on a file")

    # ------------------------------------------------------------------------------------ SQL
    def execute(self, body: dict[str, Any]) -> dict[str, Any]:
        if body.get("warehouse_id") not in self.warehouses:
            raise ApiError(404, "RESOURCE_DOES_NOT_EXIST", f"Warehouse {body.get('warehouse_id')} does not exist.")
        statement_id = str(uuid.uuid4())
        record = {"statement_id": statement_id, **body}
        self.statements.append(record)
        if self.statement_pending_polls:
            self._pending[statement_id] = (self.statement_pending_polls, record)
            return {"statement_id": statement_id, "status": {"state": "PENDING"}}
        return self._run_statement(statement_id, record)

    def get_statement(self, statement_id: str) -> dict[str, Any]:
        if statement_id not in self._pending:
            raise ApiError(404, "RESOURCE_DOES_NOT_EXIST", f"Statement {statement_id} not found.")
        left, record = self._pending[statement_id]
        if left > 1:
            self._pending[statement_id] = (left - 1, record)
            return {"statement_id": statement_id, "status": {"state": "RUNNING"}}
        del self._pending[statement_id]
        return self._run_statement(statement_id, record)

    def _failed(self, statement_id: str, code: str, message: str) -> dict[str, Any]:
        return {
            "statement_id": statement_id,
            "status": {"state": "FAILED", "error": {"error_code": code, "message": message}, "sql_state": "42P01"},
        }

    def _run_statement(self, statement_id: str, record: dict[str, Any]) -> dict[str, Any]:
        sql = record["statement"]
        params = {p["name"]: p for p in record.get("parameters") or []}
        unbound = sorted(set(re.findall(r"(?<![:\w]):([A-Za-z_]\w*)", sql)) - set(params))
        if unbound:
            return self._failed(
                statement_id, "BAD_REQUEST", f"[UNBOUND_SQL_PARAMETER] Found the unbound parameter: {unbound[0]}."
            )
        table = (params.get("table") or {}).get("value", "")
        if "IDENTIFIER(:table)" not in sql or table.replace("`", "") != self.decision_log:
            return self._failed(
                statement_id,
                "BAD_REQUEST",
                f"[TABLE_OR_VIEW_NOT_FOUND] The table or view {table} cannot be found.",
            )
        value = {name: p.get("value") for name, p in params.items()}
        rows = list(self.decision_rows)
        if value.get("outcome"):
            rows = [r for r in rows if r["outcome"] == value["outcome"]]
        if value.get("source"):
            rows = [r for r in rows if r["source"] == value["source"]]
        if value.get("merchant"):
            rows = [r for r in rows if value["merchant"] in (r.get("merchant_id") or "").lower()]
        if value.get("reason_code"):
            rows = [r for r in rows if value["reason_code"] in " ".join(c["code"].lower() for c in r["reason_codes"])]
        if value.get("transaction_id"):
            rows = [r for r in rows if r["transaction_id"] == value["transaction_id"]]
        if "since" in value:
            since, after = _parse_ts(value["since"]), value.get("after_id") or ""
            rows = [
                r
                for r in rows
                if _parse_ts(r["logged_at"]) > since
                or (_parse_ts(r["logged_at"]) == since and r["transaction_id"] > after)
            ]
        order = re.search(r"ORDER BY (.+?)(?: LIMIT|$)", sql)
        for term in reversed(order.group(1).split(",") if order else []):
            column, _, direction = term.strip().partition(" ")
            rows.sort(key=lambda r, c=column: _parse_ts(r[c]) if DECISION_LOG_TYPES[c] == "TIMESTAMP" else r[c])
            if direction.strip().upper() == "DESC":
                rows.reverse()
        limits = [int(value["row_limit"])] if value.get("row_limit") else []
        if record.get("row_limit"):
            limits.append(int(record["row_limit"]))
        rows = rows[: min(limits)] if limits else rows
        columns = _select_list(sql)
        data = [[_cell(row.get(source), kind) for _name, source, kind in columns] for row in rows]
        return {
            "statement_id": statement_id,
            "status": {"state": "SUCCEEDED"},
            "manifest": {
                "format": "JSON_ARRAY",
                "schema": {
                    "column_count": len(columns),
                    "columns": [
                        {"name": name, "type_name": kind, "type_text": kind, "position": i}
                        for i, (name, _source, kind) in enumerate(columns)
                    ],
                },
                "total_row_count": len(data),
                "total_chunk_count": 1,
                "chunks": [{"chunk_index": 0, "row_offset": 0, "row_count": len(data)}],
                "truncated": False,
            },
            "result": {"chunk_index": 0, "row_offset": 0, "row_count": len(data), "data_array": data},
        }

    # ------------------------------------------------------------------------------------ models
    def _model_version_json(self, name: str, mv: StubModelVersion) -> dict[str, Any]:
        aliases = [{"alias": a, "version": str(v)} for a, v in self.models[name]["aliases"].items() if v == mv.version]
        return {
            "name": name,
            "version": str(mv.version),
            "creation_timestamp": mv.created,
            "last_updated_timestamp": mv.created,
            "user_id": CLIENT_ID,
            "description": "",
            "source": f"dbfs:/databricks/mlflow-tracking/1/{mv.run_id}/artifacts/model",
            "run_id": mv.run_id,
            "status": mv.status,
            "storage_location": f"s3://stub/models/{name}/{mv.version}",
            "aliases": aliases,
            "tags": [{"key": k, "value": v} for k, v in mv.tags.items()],
        }

    def _model(self, name: str | None) -> dict[str, Any]:
        model = self.models.get(name or "")
        if model is None:
            raise ApiError(404, "RESOURCE_DOES_NOT_EXIST", f"Registered model '{name}' does not exist.")
        return model

    def mlflow_api(self, method: str, path: str, q: dict[str, str], body: dict[str, Any]) -> Any:
        args = {**q, **body}
        uc = "/api/2.0/mlflow/unity-catalog"
        if path == f"{uc}/registered-models/get" and method == "GET":
            name = args.get("name")
            model = self._model(name)
            return {
                "registered_model": {
                    "name": name,
                    "creation_timestamp": model["created"],
                    "last_updated_timestamp": model["created"],
                    "user_id": CLIENT_ID,
                    "description": "",
                    "aliases": [{"alias": a, "version": str(v)} for a, v in model["aliases"].items()],
                    "tags": [],
                }
            }
        if path == f"{uc}/model-versions/search" and method == "GET":
            found = re.fullmatch(r"name\s*=\s*'([^']+)'", args.get("filter", ""))
            name = found.group(1) if found else ""
            versions = self.models.get(name, {}).get("versions", {})
            return {"model_versions": [self._model_version_json(name, mv) for mv in versions.values()]}
        if path == f"{uc}/model-versions/get" and method == "GET":
            name = args.get("name")
            mv = self._model(name)["versions"].get(int(args.get("version", 0)))
            if mv is None:
                raise ApiError(404, "RESOURCE_DOES_NOT_EXIST", f"Model version {name}/{args.get('version')} not found")
            return {"model_version": self._model_version_json(name or "", mv)}
        if path == f"{uc}/registered-models/alias":
            name = args.get("name")
            model = self._model(name)
            if method == "POST":
                version = int(args["version"])
                if version not in model["versions"]:
                    raise ApiError(404, "RESOURCE_DOES_NOT_EXIST", f"Model version {name}/{version} not found")
                model["aliases"][args["alias"]] = version
                return {}
            if method == "DELETE":
                model["aliases"].pop(args.get("alias"), None)
                return {}
        if path == "/api/2.0/mlflow/runs/get" and method == "GET":
            run_id = args.get("run_id", "")
            data = self.mlflow_runs.get(run_id)
            if data is None:
                raise ApiError(404, "RESOURCE_DOES_NOT_EXIST", f"Run '{run_id}' not found.")
            return {
                "run": {
                    "info": {
                        "run_id": run_id,
                        "run_uuid": run_id,
                        "experiment_id": "1",
                        "status": "FINISHED",
                        "start_time": 1,
                        "end_time": 2,
                        "lifecycle_stage": "active",
                        "artifact_uri": f"dbfs:/databricks/mlflow-tracking/1/{run_id}/artifacts",
                    },
                    "data": {
                        "metrics": [
                            {"key": k, "value": v, "timestamp": 1, "step": 0} for k, v in data["metrics"].items()
                        ],
                        "params": [{"key": k, "value": v} for k, v in data["params"].items()],
                        "tags": [],
                    },
                }
            }
        raise ApiError(404, "ENDPOINT_NOT_FOUND", f"no {method} {path}")

    # ------------------------------------------------------------------------------------ genie
    def add_genie_space(self, title: str, serialized: dict[str, Any] | None = None) -> str:
        """A space made elsewhere (by hand in the workspace); returns its id."""
        with self.lock:
            return self._new_space({"title": title, "warehouse_id": WAREHOUSE_ID}, serialized or _EMPTY_SPACE)

    def _new_space(self, body: dict[str, Any], serialized: dict[str, Any]) -> str:
        space_id = uuid.uuid4().hex
        now = _iso(_ms())
        self.genie_spaces[space_id] = {
            "space_id": space_id,
            "title": body.get("title") or "New space",
            "description": body.get("description"),
            "warehouse_id": body["warehouse_id"],
            "parent_path": body.get("parent_path") or "/Workspace/Users/stub",
            "serialized_space": json.dumps(serialized),
            "etag": uuid.uuid4().hex[:12],
            "create_time": now,
            "update_time": now,
        }
        return space_id

    def _check_space(self, text: Any) -> dict[str, Any]:
        try:
            space = json.loads(text)
        except (TypeError, ValueError):
            raise ApiError(400, "INVALID_PARAMETER_VALUE", "serialized_space is not valid JSON") from None
        if not isinstance(space, dict) or space.get("version") != 2:
            raise ApiError(400, "INVALID_PARAMETER_VALUE", "serialized_space: version must be 2")
        ids: list[str] = []

        def listed(*keys: str) -> list[dict[str, Any]]:
            node: Any = space
            for k in keys:
                node = node.get(k, {}) if isinstance(node, dict) else {}
            return node if isinstance(node, list) else []

        for keys, sort_key in (
            (("config", "sample_questions"), "id"),
            (("instructions", "text_instructions"), "id"),
            (("instructions", "example_question_sqls"), "id"),
            (("data_sources", "tables"), "identifier"),
        ):
            items = listed(*keys)
            order = [i.get(sort_key) for i in items]
            if order != sorted(order):
                raise ApiError(400, "INVALID_PARAMETER_VALUE", f"{'.'.join(keys)} must be sorted by {sort_key}")
            if sort_key == "id":
                ids += order
        for item_id in ids:
            if not isinstance(item_id, str) or not re.fullmatch(r"[0-9a-f]{32}", item_id):
                raise ApiError(400, "INVALID_PARAMETER_VALUE", f"id {item_id!r} is not 32 lowercase hex characters")
        if len(set(ids)) != len(ids):
            raise ApiError(400, "INVALID_PARAMETER_VALUE", "ids must be unique")
        for q in listed("config", "sample_questions") + listed("instructions", "example_question_sqls"):
            if not (isinstance(q.get("question"), list) and all(isinstance(x, str) for x in q["question"])):
                raise ApiError(400, "INVALID_PARAMETER_VALUE", "question must be a list of strings")
        for table in listed("data_sources", "tables"):
            if len(str(table.get("identifier", "")).split(".")) != 3:
                raise ApiError(
                    400, "INVALID_PARAMETER_VALUE", f"table {table.get('identifier')!r} is not catalog.schema.table"
                )
        if len(listed("data_sources", "tables")) > 30:
            raise ApiError(400, "INVALID_PARAMETER_VALUE", "a space holds at most 30 tables")
        return space

    def genie_api(self, method: str, path: str, q: dict[str, str], body: dict[str, Any]) -> Any:
        base = "/api/2.0/genie/spaces"
        if path == base and method == "GET":
            spaces = sorted(self.genie_spaces.values(), key=lambda s: s["create_time"])
            size = min(int(q.get("page_size") or self.genie_page_size), self.genie_page_size)
            start = int(q.get("page_token") or 0)
            page = [{k: v for k, v in s.items() if k != "serialized_space"} for s in spaces[start : start + size]]
            out: dict[str, Any] = {"spaces": page} if page else {}
            if start + size < len(spaces):
                out["next_page_token"] = str(start + size)
            return out
        if path == base and method == "POST":
            if body.get("warehouse_id") not in self.warehouses:
                raise ApiError(400, "INVALID_PARAMETER_VALUE", f"warehouse {body.get('warehouse_id')!r} not found")
            space_id = self._new_space(body, self._check_space(body.get("serialized_space")))
            return {k: v for k, v in self.genie_spaces[space_id].items() if k != "serialized_space"}
        space_id = path.removeprefix(base + "/")
        space = self.genie_spaces.get(space_id)
        if "/" in space_id or space is None:
            raise ApiError(404, "RESOURCE_DOES_NOT_EXIST", f"Genie space {space_id} does not exist.")
        if method == "GET":
            full = q.get("include_serialized_space") in ("true", "True")
            return {k: v for k, v in space.items() if full or k != "serialized_space"}
        if method == "PATCH":
            if body.get("etag") and body["etag"] != space["etag"]:
                raise ApiError(409, "ABORTED", "The space was modified since it was read (etag mismatch).")
            if "serialized_space" in body:
                space["serialized_space"] = json.dumps(self._check_space(body["serialized_space"]))
            if "warehouse_id" in body and body["warehouse_id"] not in self.warehouses:
                raise ApiError(400, "INVALID_PARAMETER_VALUE", f"warehouse {body['warehouse_id']!r} not found")
            for key in ("title", "description", "warehouse_id", "parent_path"):
                if key in body:
                    space[key] = body[key]
            space["etag"] = uuid.uuid4().hex[:12]
            space["update_time"] = _iso(_ms())
            return {k: v for k, v in space.items() if k != "serialized_space"}
        if method == "DELETE":
            del self.genie_spaces[space_id]
            return {}
        raise ApiError(404, "ENDPOINT_NOT_FOUND", f"no {method} {path}")

    # ------------------------------------------------------------------------------------ routing
    def handle(self, method: str, url: str, headers: dict[str, str], raw: bytes) -> tuple[int, Any, str]:
        """(status, body, content type) for one request; bytes bodies are sent as they are."""
        parts = urlsplit(url)
        path = parts.path
        q = {k: v[-1] for k, v in parse_qs(parts.query, keep_blank_values=True).items()}
        qs = parse_qs(parts.query, keep_blank_values=True)
        if path == "/.well-known/databricks-config":
            return 200, {"oidc_endpoint": f"{self.base_url}/oidc", "workspace_id": WORKSPACE_ID, "cloud": "aws"}, ""
        if path == "/oidc/.well-known/oauth-authorization-server":
            return (
                200,
                {
                    "authorization_endpoint": f"{self.base_url}/oidc/v1/authorize",
                    "token_endpoint": f"{self.base_url}/oidc/v1/token",
                },
                "",
            )
        if path == "/oidc/v1/token" and method == "POST":
            return self._token(headers, raw)
        if path.startswith("/presigned/"):
            target = self._presigned.get(path.removeprefix("/presigned/"))
            if target is None or target not in self.files:
                return 403, {"error_code": "PERMISSION_DENIED", "message": "expired"}, ""
            return 200, self.files[target], ""
        body: Any = {}
        is_file = path.startswith("/api/2.0/fs/files")
        if raw and not is_file:
            try:
                body = json.loads(raw)
            except ValueError:
                body = {}
        with self.lock:
            self.requests.append(Recorded(method, path, qs, raw if is_file else body))
        auth = headers.get("authorization", "")
        if not auth.startswith("Bearer ") or auth.removeprefix("Bearer ") not in self.tokens:
            return 401, {"error_code": "UNAUTHENTICATED", "message": "Invalid access token."}, ""
        try:
            with self.lock:
                return self._route(method, path, q, body, raw)
        except ApiError as exc:
            return exc.status, {"error_code": exc.error_code, "message": exc.message}, ""

    def _route(self, method: str, path: str, q: dict[str, str], body: Any, raw: bytes) -> tuple[int, Any, str]:
        base = self.base_url
        if path.startswith("/api/2.2/jobs/"):
            return 200, self.jobs_api(method, path, q, body, base), ""
        if path.startswith("/api/2.0/pipelines/"):
            return 200, self.pipelines_api(method, path, q, body), ""
        if path.startswith("/api/2.0/fs/"):
            status, out = self.files_api(method, path, q, raw, base)
            return status, out, ""
        if path == "/api/2.0/sql/statements" and method == "POST":
            return 200, self.execute(body), ""
        if path.startswith("/api/2.0/sql/statements/") and method == "GET":
            return 200, self.get_statement(path.rsplit("/", 1)[1]), ""
        if path.startswith("/api/2.0/sql/statements/") and path.endswith("/cancel"):
            self._pending.pop(path.split("/")[-2], None)
            return 200, {}, ""
        if path.startswith("/api/2.0/mlflow/"):
            return 200, self.mlflow_api(method, path, q, body), ""
        if path.startswith("/api/2.0/genie/spaces"):
            return 200, self.genie_api(method, path, q, body), ""
        if path == "/api/2.0/preview/scim/v2/Me" and method == "GET":
            return (
                200,
                {
                    "id": "7000001",
                    "userName": CLIENT_ID,
                    "displayName": "payment-analysis app",
                    "active": True,
                    "schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"],
                },
                "",
            )
        raise ApiError(404, "ENDPOINT_NOT_FOUND", f"no {method} {path} in the stub")

    def _token(self, headers: dict[str, str], raw: bytes) -> tuple[int, Any, str]:
        form = {k: v[-1] for k, v in parse_qs(raw.decode()).items()}
        client_id, secret = form.get("client_id"), form.get("client_secret")
        auth = headers.get("authorization", "")
        if auth.startswith("Basic "):
            client_id, _, secret = base64.b64decode(auth.removeprefix("Basic ")).decode().partition(":")
        if form.get("grant_type") != "client_credentials" or (client_id, secret) != (CLIENT_ID, CLIENT_SECRET):
            return 401, {"error": "invalid_client", "error_description": "unknown client"}, ""
        token = "stub-oauth-" + secrets.token_hex(8)
        with self.lock:
            self.tokens.add(token)
        return 200, {"access_token": token, "token_type": "Bearer", "expires_in": 3600, "scope": "all-apis"}, ""


_EMPTY_SPACE: dict[str, Any] = {"version": 2, "config": {"sample_questions": []}, "data_sources": {"tables": []}}


def _parse_ts(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def _select_list(sql: str) -> list[tuple[str, str, str]]:
    """(output name, source column, type) of each item of the SELECT list."""
    inner = sql[len("SELECT ") : sql.index(" FROM ")]
    items, depth, current = [], 0, ""
    for ch in inner:
        depth += ch == "("
        depth -= ch == ")"
        if ch == "," and depth == 0:
            items.append(current.strip())
            current = ""
        else:
            current += ch
    items.append(current.strip())
    out = []
    for item in items:
        expr, _, alias = item.partition(" AS ")
        fn = re.fullmatch(r"to_json\((\w+)\)", expr.strip())  # complex columns come back as JSON text
        source = fn.group(1) if fn else expr.strip()
        out.append((alias.strip() or source, source, "STRING" if fn else DECISION_LOG_TYPES[source]))
    return out


def _cell(value: Any, kind: str) -> str | None:
    """A value as a JSON_ARRAY cell: text, or null."""
    if value is None:
        return None
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, dict | list):
        return json.dumps(value)
    return str(value)


def _handler(stub: DatabricksStub) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def _serve(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            raw = self.rfile.read(length) if length else b""
            headers = {k.lower(): v for k, v in self.headers.items()}
            status, body, _ = stub.handle(self.command, self.path, headers, raw)
            if isinstance(body, tuple):  # a file: (content, mtime ms)
                content, mtime = body
                self.send_response(status)
                self.send_header("Content-Type", "application/octet-stream")
                self.send_header("Content-Length", str(len(content)))
                self.send_header(
                    "Last-Modified", datetime.fromtimestamp(mtime / 1000, UTC).strftime("%a, %d %b %Y %H:%M:%S GMT")
                )
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(content)
                return
            data = b"" if body is None else json.dumps(body).encode()
            self.send_response(status)
            if data:
                self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(data)

        do_GET = do_POST = do_PUT = do_DELETE = do_HEAD = do_PATCH = _serve

        def log_message(self, format: str, *args: Any) -> None:  # quiet
            pass

    return Handler
