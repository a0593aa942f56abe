"""The control plane's Databricks backend (``PA_BACKEND=databricks``) end to end through its HTTP API,
against ``tests/databricks_stub.py``: a real HTTP server answering the REST paths databricks-sdk and
MLflow's Unity Catalog client call, with bodies shaped like the real API's and runs that move on as
they are polled. What is tested is the control plane's side of the contract (requests sent, responses
read, states mapped, logs shown, audit kept); the workspace itself is stood in for.

Signed in through the real login form (admin, CSRF header) unless a test uses the script bearer token.
"""

from __future__ import annotations

import json
import random
import time
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from databricks.sdk.service.jobs import RunState, RunStatus
from databricks.sdk.service.pipelines import UpdateInfoState
from fastapi.testclient import TestClient
from pydantic import ValidationError

from payments_core.contract import DecisionEvent, TransactionEvent
from payments_core.engine import DecisionEngine
from payments_core.models import FEATURES_SHA256
from payments_core.rules import RuleSet, starter_rule_set
from payments_core.rules import model as rule_model
from payments_core.rules.model import RuleSource, ruleset_path, write_ruleset
from payments_core.samples import sample_request
from services.control_plane.app import create_app
from services.control_plane.backends.databricks import job_run_status, param_text, update_status
from services.control_plane.settings import DATABRICKS_JOB_STEPS, ControlPlaneSettings, parse_job_ids
from services.scoring_api.app import build_engine
from services.scoring_api.settings import Settings as ScoringSettings
from services.stream_processor.pipeline import scoring_config
from services.stream_processor.settings import StreamProcessorSettings
from tests.databricks_stub import CLIENT_ID, CLIENT_SECRET, PAT, WAREHOUSE_ID, DatabricksStub, StubJob

VOLUME_ROOT = "/Volumes/main/payment_analysis/control"
VOLUME = f"{VOLUME_ROOT}/rules"
WAIT_S = 30.0
SCRIPT_TOKEN = "databricks-backend-script-token-0123"
ENGINE = DecisionEngine(starter_rule_set())
STARTER = starter_rule_set()
NEW_RULE = {
    "id": "R900",
    "name": "Gaming at night",
    "type": "risk",
    "condition": "merchant_segment = 'Gaming' AND is_night",
    "action": "review",
    "priority": 80,
    "active": True,
    "shadow": False,
    "description": "",
}
DATABRICKS_ENV = (
    "DATABRICKS_HOST",
    "DATABRICKS_TOKEN",
    "DATABRICKS_CLIENT_ID",
    "DATABRICKS_CLIENT_SECRET",
    "DATABRICKS_CONFIG_PROFILE",
    "DATABRICKS_AUTH_TYPE",
    "DATABRICKS_ACCOUNT_ID",
    "DATABRICKS_WORKSPACE_ID",
    "DATABRICKS_WAREHOUSE_ID",
    "DATABRICKS_CLUSTER_ID",
)


# ----------------------------------------------------------------------------------------- fixtures
@pytest.fixture
def no_workspace(monkeypatch, tmp_path) -> None:
    """No Databricks credentials from this machine (variables, ~/.databrickscfg) leak into a test."""
    for name in DATABRICKS_ENV:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("DATABRICKS_CONFIG_FILE", str(tmp_path / "no-databrickscfg"))


@pytest.fixture
def stub(no_workspace, monkeypatch) -> Iterator[DatabricksStub]:
    """The stand-in workspace, and databricks-sdk's default chain pointed at it (host + token)."""
    with DatabricksStub().running() as workspace:
        monkeypatch.setenv("DATABRICKS_HOST", workspace.base_url)
        monkeypatch.setenv("DATABRICKS_TOKEN", PAT)
        yield workspace


@pytest.fixture
def jobs(stub) -> dict[str, StubJob]:
    """One job per step and service, as the bundle deploys them (the services run until cancelled)."""
    return {name: stub.add_job(name, hold=name in ("simulator", "stream_processor")) for name in DATABRICKS_JOB_STEPS}


def databricks_settings(stub: DatabricksStub, jobs: dict[str, StubJob], **overrides: Any) -> dict[str, Any]:
    settings = dict(
        backend="databricks",
        databricks_job_ids=",".join(f"{name}={job.job_id}" for name, job in jobs.items()),
        databricks_pipeline_id=stub.pipeline_id,
        databricks_warehouse_id=WAREHOUSE_ID,
        rules_volume_path=VOLUME,
        databricks_poll_seconds=0.05,
        catalog="main",
        lakehouse_schema="payment_analysis",
    )
    settings.update(overrides)
    return settings


@pytest.fixture
def dbx(stub, jobs, make_client) -> Callable[..., TestClient]:
    """``dbx(**overrides)``: a signed-in admin's client of a control plane on the Databricks backend.
    (The stub is set up before the apps and so stops after them.)"""

    def make(**overrides: Any) -> TestClient:
        signed_in = overrides.pop("signed_in", True)
        return make_client(signed_in=signed_in, **databricks_settings(stub, jobs, **overrides))

    return make


# ----------------------------------------------------------------------------------------- helpers
def wait_for(check: Callable[[], Any], what: str, timeout: float = WAIT_S) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def run_of(client: TestClient, run_id: int) -> dict:
    resp = client.get(f"/api/runs/{run_id}?tail=1000")
    assert resp.status_code == 200, resp.text
    return resp.json()


def wait_status(client: TestClient, run_id: int, *statuses: str) -> dict:
    return wait_for(lambda: (r := run_of(client, run_id))["status"] in statuses and r, f"run {run_id} {statuses}")


def wait_done(client: TestClient, run_id: int) -> dict:
    return wait_status(client, run_id, "succeeded", "failed", "cancelled", "interrupted")


def positions(lines: list[str], *needles: str) -> list[int]:
    """Index of the first line containing each needle (in order), -1 when absent."""
    return [next((i for i, line in enumerate(lines) if needle in line), -1) for needle in needles]


def sse_events(lines: Iterator[str]) -> Iterator[tuple[str, Any]]:
    event, data = "message", []
    for line in lines:
        if line == "":
            if data:
                yield event, json.loads("\n".join(data))
            event, data = "message", []
        elif line.startswith("event:"):
            event = line[6:].strip()
        elif line.startswith("data:"):
            data.append(line[5:].strip())


def audit(client: TestClient, action: str) -> list[dict]:
    return client.get(f"/api/audit?action={action}").json()


def decision_row(
    outcome: str | None = None, merchant: str | None = None, logged_at: datetime | None = None, **facts: Any
) -> dict[str, Any]:
    """A row of the decision log as the stream processor writes it: the decision, the transaction facts
    it keeps (amount in minor units) and the times."""
    request = sample_request(
        random.Random(uuid.uuid4().int),
        merchant_id=merchant or f"mer_{uuid.uuid4().hex[:8]}",
        transaction_id=f"txn_{uuid.uuid4().hex[:16]}",
        **facts,
    )
    tx = TransactionEvent.model_validate({**request, "is_approved": True, "processing_time_ms": 120.0})
    decision = ENGINE.decide(
        tx.model_dump(exclude={"is_approved", "decline_reason", "decline_code_raw", "processing_time_ms", "is_fraud"}),
        source="stream",
    )
    if outcome:
        decision = decision.model_copy(update={"outcome": outcome})
    logged = logged_at or datetime.now(UTC)
    body = decision.model_dump(mode="json")
    return {
        **body,
        "event_timestamp": tx.event_timestamp.isoformat().replace("+00:00", "Z"),
        "published_at": logged.isoformat().replace("+00:00", "Z"),
        "logged_at": logged.isoformat().replace("+00:00", "Z"),
        "merchant_id": tx.merchant_id,
        "merchant_segment": tx.merchant_segment,
        "amount_minor": tx.amount_minor,
        "currency": tx.currency,
        "card_network": tx.card_network,
        "payment_solution": tx.payment_solution,
        "geo_country": tx.geo_country,
        "is_approved": True,
        "fraud_score": tx.fraud_score,
        "processing_time_ms": 120.0,
    }


# ----------------------------------------------------------------------------------------- state mapping
@pytest.mark.parametrize(
    ("state", "status", "expected"),
    [
        ({"life_cycle_state": "PENDING"}, None, "queued"),
        ({"life_cycle_state": "QUEUED"}, None, "queued"),
        ({"life_cycle_state": "RUNNING"}, None, "running"),
        ({"life_cycle_state": "TERMINATING"}, None, "running"),
        ({"life_cycle_state": "TERMINATED", "result_state": "SUCCESS"}, None, "succeeded"),
        ({"life_cycle_state": "TERMINATED", "result_state": "FAILED"}, None, "failed"),
        ({"life_cycle_state": "TERMINATED", "result_state": "TIMEDOUT"}, None, "failed"),
        ({"life_cycle_state": "TERMINATED", "result_state": "CANCELED"}, None, "cancelled"),
        ({"life_cycle_state": "INTERNAL_ERROR", "result_state": "FAILED"}, None, "failed"),
        ({"life_cycle_state": "SKIPPED"}, None, "failed"),
        # the 2.2 status object decides when both are there
        (
            {"life_cycle_state": "RUNNING"},
            {"state": "TERMINATED", "termination_details": {"code": "SUCCESS"}},
            "succeeded",
        ),
        (None, {"state": "TERMINATED", "termination_details": {"code": "USER_CANCELED"}}, "cancelled"),
        (None, {"state": "TERMINATED", "termination_details": {"code": "DRIVER_ERROR"}}, "failed"),
        (None, {"state": "BLOCKED"}, "queued"),
        (None, {"state": "WAITING"}, "queued"),
    ],
)
def test_job_run_states_map_to_the_control_plane_statuses(state, status, expected):
    assert (
        job_run_status(RunState.from_dict(state) if state else None, RunStatus.from_dict(status) if status else None)
        == expected
    )


def test_pipeline_update_states_and_job_parameter_text():
    expected = {
        "QUEUED": "queued",
        "WAITING_FOR_RESOURCES": "queued",
        "INITIALIZING": "running",
        "RUNNING": "running",
        "STOPPING": "running",
        "COMPLETED": "succeeded",
        "FAILED": "failed",
        "CANCELED": "cancelled",
    }
    assert {name: update_status(UpdateInfoState(name)) for name in expected} == expected
    assert [param_text(v) for v in (True, False, 7.0, 30_000, "fraud_ring")] == [
        "true",
        "false",
        "7.0",
        "30000",
        "fraud_ring",
    ]


def test_job_ids_are_parsed_and_a_malformed_list_is_refused_at_start():
    assert parse_job_ids(" backfill=12, train = 34 ,") == {"backfill": 12, "train": 34}
    for text, needle in (
        ("train", "is not step=job_id"),
        ("etl=5", "PA_DATABRICKS_PIPELINE_ID"),
        ("nope=5", "unknown step 'nope'"),
        ("train=abc", "must be a number"),
        ("train=1,train=2", "given twice"),
    ):
        with pytest.raises(ValidationError, match=needle):
            ControlPlaneSettings(databricks_job_ids=text)


# ----------------------------------------------------------------------------------------- steps
def test_a_step_is_a_job_run_with_typed_parameters_status_transitions_and_logs(dbx, stub, jobs):
    client = dbx()
    assert client.get("/health").json()["backend"] == "databricks"
    steps = {s["id"]: s for s in client.get("/api/steps").json()}
    assert (
        steps["backfill"]["available"]
        and steps["backfill"]["command"] == f"Databricks job {jobs['backfill'].job_id} (run now)"
    )
    assert steps["etl"]["command"] == f"Lakeflow pipeline {stub.pipeline_id} (update)"

    jobs["backfill"].hold = True  # stays RUNNING until released, so each status can be seen
    started = client.post("/api/steps/backfill/run", json={"params": {"days": 2, "scenario": "fraud_ring"}})
    assert started.status_code == 202, started.text
    run = started.json()
    assert run["status"] == "queued" and run["backend"] == "databricks"
    remote = stub.runs[int(run["remote_id"])]
    assert remote.job is jobs["backfill"]
    # the typed parameters as job parameters (text), exactly what run-now received
    (call,) = stub.calls("POST", "/api/2.2/jobs/run-now")
    assert call.body == {
        "job_id": jobs["backfill"].job_id,
        "job_parameters": {"days": "2.0", "events_per_day": "30000", "scenario": "fraud_ring"},
    }
    running = wait_status(client, run["id"], "running")
    assert running["remote_url"] == f"{stub.base_url}/jobs/{jobs['backfill'].job_id}/runs/{remote.run_id}"
    assert client.post("/api/steps/backfill/run", json={}).status_code == 409  # one active run per step

    jobs["backfill"].hold = False
    done = wait_done(client, run["id"])
    assert done["status"] == "succeeded" and done["exit_code"] == 0 and done["finished_at"]
    lines = done["log"]
    order = positions(
        lines, "$ jobs run-now", ": PENDING", ": RUNNING", ": TERMINATED SUCCESS", "--- main", "hello from the job"
    )
    assert -1 not in order and order == sorted(order), lines
    assert any("task main: RUNNING" in line for line in lines)

    # the same lines through the live log view (server-sent events), then the final status
    with client.stream("GET", f"/api/runs/{run['id']}/log?tail=1000") as resp:
        events = list(sse_events(resp.iter_lines()))
    assert [data for kind, data in events if kind == "line"] == lines
    assert events[-1][0] == "end" and events[-1][1]["status"] == "succeeded"
    assert audit(client, "step.run")[0]["after"]["run_id"] == run["id"]
    assert client.get("/api/steps").json()[0]["last_run"]["remote_id"] == run["remote_id"]


def test_a_failed_job_shows_its_error_and_trace(dbx, jobs):
    client = dbx()
    jobs["gold_views"].fail = True
    run = client.post("/api/steps/gold_views/run", json={}).json()
    done = wait_done(client, run["id"])
    assert done["status"] == "failed" and done["exit_code"] == 1
    assert any("TERMINATED RUN_EXECUTION_ERROR: Task failed" in line for line in done["log"])
    assert "error: ValueError: the stub job failed on purpose" in done["log"]
    assert any(line.startswith("Traceback (most recent call last)") for line in done["log"])


def test_etl_is_a_pipeline_update_with_full_refresh_and_its_events(dbx, stub):
    client = dbx()
    run = client.post("/api/steps/etl/run", json={"params": {"full_refresh": True}}).json()
    (call,) = stub.calls("POST", f"/api/2.0/pipelines/{stub.pipeline_id}/updates")
    assert call.body == {"full_refresh": True, "cause": "API_CALL"}
    assert run["remote_id"] in stub.updates and stub.updates[run["remote_id"]].full_refresh
    done = wait_done(client, run["id"])
    assert done["status"] == "succeeded" and done["remote_url"].endswith(
        f"/pipelines/{stub.pipeline_id}/updates/{run['remote_id']}"
    )
    lines = done["log"]
    order = positions(
        lines, "$ pipelines start-update", "started by API_CALL", "Flow 'silver_transactions' is RUNNING", ": COMPLETED"
    )
    assert -1 not in order and order == sorted(order), lines

    stub.pipeline_fail = True
    failed = wait_done(client, client.post("/api/steps/etl/run", json={}).json()["id"])
    assert failed["status"] == "failed"
    assert any("AnalysisException: silver_transactions: column missing" in line for line in failed["log"])
    assert not any(run["remote_id"] in line for line in failed["log"] if "Flow" in line)  # only its own events


def test_cancel_a_job_run_and_a_pipeline_update(dbx, stub, jobs):
    client = dbx()
    jobs["train"].hold = True
    run = client.post("/api/steps/train/run", json={"params": {"max_train_rows": 5000}}).json()
    wait_status(client, run["id"], "running")
    resp = client.post(f"/api/runs/{run['id']}/cancel")
    assert resp.status_code == 200 and resp.json()["status"] == "cancelling"
    assert [c.body for c in stub.calls("POST", "/api/2.2/jobs/runs/cancel")] == [{"run_id": int(run["remote_id"])}]
    done = wait_done(client, run["id"])
    assert done["status"] == "cancelled" and done["exit_code"] is None
    assert any("TERMINATED USER_CANCELED" in line for line in done["log"])
    assert audit(client, "step.cancel")[0]["after"] == {"run_id": run["id"]}
    assert client.post(f"/api/runs/{run['id']}/cancel").status_code == 409  # over

    stub.pipeline_hold = True
    update = client.post("/api/steps/etl/run", json={}).json()
    wait_status(client, update["id"], "running")
    assert client.post(f"/api/runs/{update['id']}/cancel").status_code == 200
    assert len(stub.calls("POST", f"/api/2.0/pipelines/{stub.pipeline_id}/stop")) == 1
    assert wait_done(client, update["id"])["status"] == "cancelled"


def test_the_first_run_sequence_drives_jobs_and_the_pipeline_in_order(dbx, stub, jobs):
    client = dbx(first_run_backfill_days=0.5, first_run_events_per_day=1000)
    assert client.post("/api/first-run").status_code == 202
    state = wait_for(
        lambda: (s := client.get("/api/first-run").json())["status"] in ("succeeded", "failed") and s, "the sequence"
    )
    assert state["status"] == "succeeded", state
    assert [s["step"] for s in state["steps"]] == ["backfill", "etl", "gold_views", "bootstrap", "train"]
    assert all(s["status"] == "succeeded" for s in state["steps"])
    started = [c.body["job_id"] for c in stub.calls("POST", "/api/2.2/jobs/run-now")]
    assert started == [jobs[n].job_id for n in ("backfill", "gold_views", "bootstrap", "train")]
    assert stub.calls("POST", "/api/2.2/jobs/run-now")[0].body["job_parameters"]["days"] == "0.5"
    # the pipeline update came after the backfill's run had ended and before the gold views started
    backfill_run = stub.runs[min(stub.runs)]
    assert backfill_run.end_time <= stub.updates[next(iter(stub.updates))].creation_time

    jobs["bootstrap"].fail = True
    assert client.post("/api/first-run").status_code == 202
    state = wait_for(
        lambda: (s := client.get("/api/first-run").json())["status"] == "failed" and s, "a failed sequence"
    )
    assert [s["status"] for s in state["steps"]] == ["succeeded", "succeeded", "succeeded", "failed", "pending"]


def test_a_restarted_control_plane_follows_its_remote_runs_again(stub, jobs, tmp_path):
    settings = ControlPlaneSettings(
        data_dir=tmp_path,
        kafka_bootstrap="127.0.0.1:1",
        first_run=False,
        decision_feed=False,
        control_plane_token=SCRIPT_TOKEN,
        **databricks_settings(stub, jobs),
    )
    auth = {"Authorization": f"Bearer {SCRIPT_TOKEN}"}  # the script credential: no session, no CSRF
    jobs["backfill"].hold = True
    with TestClient(create_app(settings), headers=auth) as first:
        assert first.post("/api/first-run").status_code == 202
        # read right after the 202: the sequence is already recorded as running, its steps pending
        started = first.get("/api/first-run").json()
        assert started["status"] == "running" and started["steps"][0]["step"] == "backfill"
        again = first.post("/api/first-run")  # one sequence at a time
        assert again.status_code == 409 and "already running" in again.json()["detail"]
        run_id = wait_for(lambda: first.get("/api/first-run").json()["steps"][0]["run_id"], "the backfill run")
        wait_status(first, run_id, "running")
    jobs["backfill"].hold = False  # it finishes on the workspace while no control plane watches
    with TestClient(create_app(settings), headers=auth) as second:
        done = wait_done(second, run_id)
        assert done["status"] == "succeeded"
        assert any("the control plane restarted: following the run again" in line for line in done["log"])
        assert any("hello from the job" in line for line in done["log"])
        # the sequence's thread did not survive the restart: said so, and it can be started again
        state = second.get("/api/first-run").json()
        assert state["status"] == "failed" and "restarted" in state["error"]
        assert state["steps"][0]["status"] == "interrupted"
        assert second.post("/api/first-run").status_code == 202


# ----------------------------------------------------------------------------------------- misconfiguration
def test_a_misconfigured_backend_names_the_step_and_the_variable_never_a_500(stub, jobs, make_client):
    partial = {name: job for name, job in jobs.items() if name not in ("train", "simulator")}
    client = make_client(
        **databricks_settings(
            stub, partial, databricks_pipeline_id="", databricks_warehouse_id="", rules_volume_path=None
        )
    )
    train = client.post("/api/steps/train/run", json={})
    assert train.status_code == 409
    assert "'train'" in train.json()["detail"] and "PA_DATABRICKS_JOB_IDS" in train.json()["detail"]
    etl = client.post("/api/steps/etl/run", json={})
    assert etl.status_code == 409 and "PA_DATABRICKS_PIPELINE_ID" in etl.json()["detail"]
    backtest = client.post("/api/steps/backtest/run", json={})
    assert backtest.status_code == 409 and "PA_RULES_VOLUME_PATH" in backtest.json()["detail"]
    steps = {s["id"]: s for s in client.get("/api/steps").json()}
    assert steps["train"]["available"] is False and "PA_DATABRICKS_JOB_IDS" in steps["train"]["command"]
    assert steps["backfill"]["available"] is True
    assert client.get("/api/runs").json() == []  # nothing recorded, nothing started
    assert stub.calls("POST", "/api/2.2/jobs/run-now") == []

    decisions = client.get("/api/decisions")
    assert decisions.status_code == 409 and "PA_DATABRICKS_WAREHOUSE_ID" in decisions.json()["detail"]
    assert client.post("/api/rules", json=NEW_RULE).status_code == 201
    activation = client.post("/api/rules/activate", json={})
    assert activation.status_code == 409 and "PA_RULES_VOLUME_PATH" in activation.json()["detail"]
    assert client.get("/api/rules/versions").json()[0]["label"] == "v1"  # nothing published, nothing recorded
    assert client.post("/api/rules/backtest", json={}).status_code == 409

    services = {s["name"]: s for s in client.get("/api/services").json()["services"]}
    assert services["simulator"]["state"] == "UNCONFIGURED" and services["stream_processor"]["state"] == "STOPPED"
    start = client.post("/api/services/simulator/start")
    assert start.status_code == 409 and "'simulator'" in start.json()["detail"]
    info = client.get("/api/backend").json()
    assert set(info["unconfigured"]) == {"train", "etl", "backtest"}

    assert client.post("/api/first-run").status_code == 202
    state = wait_for(
        lambda: (s := client.get("/api/first-run").json())["status"] == "failed" and s, "a failed sequence"
    )
    assert "PA_DATABRICKS_PIPELINE_ID" in state["error"]  # backfill ran, the pipeline step said what is missing
    assert [s["status"] for s in state["steps"]][:2] == ["succeeded", "failed"]


def test_no_workspace_credentials_are_reported_not_a_500(no_workspace, make_client, tmp_path):
    client = make_client(
        backend="databricks",
        databricks_job_ids="backfill=1,simulator=2",
        databricks_poll_seconds=0.05,
        data_dir=tmp_path / "x",
    )
    info = client.get("/api/backend?check=true").json()
    assert info["identity"] is None and "DATABRICKS_HOST" in info["error"]
    run = client.post("/api/steps/backfill/run", json={})
    assert run.status_code == 202 and run.json()["status"] == "failed"
    assert any("DATABRICKS_HOST" in line for line in run_of(client, run.json()["id"])["log"])
    services = client.get("/api/services").json()
    assert services["managed"] is False and "DATABRICKS_HOST" in services["error"]


def test_the_apps_service_principal_signs_in_through_oauth(stub, jobs, make_client, monkeypatch):
    monkeypatch.delenv("DATABRICKS_TOKEN")
    monkeypatch.setenv("DATABRICKS_CLIENT_ID", CLIENT_ID)
    monkeypatch.setenv("DATABRICKS_CLIENT_SECRET", CLIENT_SECRET)
    client = make_client(**databricks_settings(stub, jobs))
    info = client.get("/api/backend?check=true").json()
    assert info["identity"] == CLIENT_ID and info["error"] is None
    assert any(t.startswith("stub-oauth-") for t in stub.tokens)  # a token the workspace issued, none built here


# ----------------------------------------------------------------------------------------- services
def test_services_are_jobs_started_with_run_now_and_stopped_by_cancelling_their_runs(dbx, stub, jobs):
    client = dbx()
    body = client.get("/api/services").json()
    assert body["managed"] is True and body["controlled_by"] == "databricks"
    assert {s["name"]: s["state"] for s in body["services"]} == {"simulator": "STOPPED", "stream_processor": "STOPPED"}

    started = client.post("/api/services/simulator/start")
    assert started.status_code == 200 and started.json()["state"] == "STARTING"
    stub.advance(jobs["simulator"])
    states = {s["name"]: s for s in client.get("/api/services").json()["services"]}
    assert states["simulator"]["state"] == "RUNNING" and states["stream_processor"]["state"] == "STOPPED"
    assert str(started.json()["run_id"]) in states["simulator"]["description"]
    assert client.post("/api/services/simulator/start").json()["state"] == "RUNNING"  # already running: no 2nd run
    assert len(stub.calls("POST", "/api/2.2/jobs/run-now")) == 1

    stopped = client.post("/api/services/simulator/stop")
    assert stopped.json()["state"] == "STOPPED"
    assert [c.body for c in stub.calls("POST", "/api/2.2/jobs/runs/cancel-all")] == [
        {"job_id": jobs["simulator"].job_id}
    ]
    events = audit(client, "service.")
    assert [(e["action"], e["after"]["by"]) for e in events] == [
        ("service.stop", "databricks"),
        ("service.start", "databricks"),
        ("service.start", "databricks"),
    ]


# ----------------------------------------------------------------------------------------- models
def test_models_come_from_unity_catalog_and_promotion_moves_the_alias_audited(dbx, stub):
    name = "main.payment_analysis.payment_analysis_approval"
    good = {"pa.features_sha256": FEATURES_SHA256, "pa.threshold": "0.42"}
    stub.add_model_version(name, "run-a", good, {"approval.auc": 0.91, "approval.brier": 0.1})
    stub.add_model_version(name, "run-b", good, {"approval.auc": 0.93})
    stub.add_model_version(name, "run-c", {"pa.features_sha256": "another-feature-list"}, {"approval.auc": 0.99})
    stub.models[name]["aliases"]["champion"] = 1
    client = dbx()

    listing = client.get("/api/models").json()
    approval = next(m for m in listing["models"] if m["kind"] == "approval")
    assert approval["name"] == name and approval["registered"] and approval["champion"] == "1"
    assert [v["version"] for v in approval["versions"]] == ["3", "2", "1"]
    v1 = approval["versions"][-1]
    assert v1["headline_metrics"]["auc"] == pytest.approx(0.91) and v1["threshold"] == pytest.approx(0.42)
    assert v1["features_match"] is True and v1["aliases"] == ["champion"]
    assert approval["versions"][0]["features_match"] is False
    assert all(not m["registered"] for m in listing["models"] if m["kind"] != "approval")

    promoted = client.post("/api/models/approval/aliases/champion", json={"version": 2})
    assert promoted.status_code == 200 and promoted.json()["before"] == "1" and promoted.json()["version"] == "2"
    assert stub.models[name]["aliases"] == {"champion": 2}
    (call,) = stub.calls("POST", "/api/2.0/mlflow/unity-catalog/registered-models/alias")
    assert call.body == {"name": name, "alias": "champion", "version": "2"}
    event = audit(client, "model.promote")[0]
    assert event["target"] == name and event["before"]["version"] == "1" and event["after"]["version"] == "2"

    refused = client.post("/api/models/approval/aliases/champion", json={"version": 3})
    assert refused.status_code == 422 and "feature list" in refused.json()["detail"]
    back = client.post("/api/models/approval/rollback", json={})
    assert back.status_code == 200 and back.json()["version"] == "1" and stub.models[name]["aliases"]["champion"] == 1
    assert client.post("/api/models/approval/aliases/challenger", json={"version": 2}).status_code == 200
    assert client.delete("/api/models/approval/aliases/challenger").json()["before"] == "2"
    assert "challenger" not in stub.models[name]["aliases"]


# ----------------------------------------------------------------------------------------- decisions
def test_decisions_are_read_through_the_warehouse_with_parameters(dbx, stub):
    now = datetime.now(UTC)
    rows = [
        decision_row("decline", "MER_alpha_1", now - timedelta(seconds=30), currency="BRL", amount_minor=5400),
        decision_row("approve", "MER_alpha_2", now - timedelta(seconds=20)),
        decision_row("decline", "mer_beta_1", now - timedelta(seconds=10)),
    ]
    stub.decision_rows = rows
    stub.statement_pending_polls = 2  # the warehouse answers PENDING first: the backend polls the statement
    client = dbx()

    listed = client.get("/api/decisions?outcome=decline&merchant=Alpha")
    assert listed.status_code == 200, listed.text
    (entry,) = listed.json()
    assert entry["transaction_id"] == rows[0]["transaction_id"] and entry["outcome"] == "decline"
    facts = entry["transaction"]
    assert facts["merchant_id"] == "MER_alpha_1" and facts["amount"] == "54.00" and facts["currency"] == "BRL"
    assert entry["reason_codes"] == rows[0]["reason_codes"] and entry["model_versions"] == rows[0]["model_versions"]
    DecisionEvent.model_validate({k: v for k, v in entry.items() if k in DecisionEvent.model_fields})

    statement = stub.statements[-1]
    params = {p["name"]: p for p in statement["parameters"]}
    assert params["outcome"] == {"name": "outcome", "value": "decline", "type": "STRING"}
    assert (
        params["merchant"]["value"] == "alpha"
        and params["table"]["value"] == "`main`.`payment_analysis`.`stream_decision_log`"
    )
    assert params["row_limit"] == {"name": "row_limit", "value": "100", "type": "INT"}
    assert statement["warehouse_id"] == WAREHOUSE_ID and statement["format"] == "JSON_ARRAY"
    assert ":outcome" in statement["statement"] and "IDENTIFIER(:table)" in statement["statement"]
    assert "decline" not in statement["statement"] and "alpha" not in statement["statement"].lower()
    assert stub.calls("GET", f"/api/2.0/sql/statements/{statement['statement_id']}")  # polled while PENDING

    hostile = "x') OR 1=1 --"
    assert client.get("/api/decisions", params={"merchant": hostile}).json() == []
    last = stub.statements[-1]
    assert (
        hostile.lower() not in last["statement"]
        and {p["name"]: p["value"] for p in last["parameters"]}["merchant"] == hostile.lower()
    )

    newest_first = [d["transaction_id"] for d in client.get("/api/decisions?limit=2").json()]
    assert newest_first == [rows[2]["transaction_id"], rows[1]["transaction_id"]]
    reason = rows[1]["reason_codes"][0]["code"]
    assert rows[1]["transaction_id"] in [
        d["transaction_id"] for d in client.get(f"/api/decisions?reason_code={reason}").json()
    ]
    detail = client.get(f"/api/decisions/{rows[1]['transaction_id']}")
    assert detail.status_code == 200 and detail.json()["transaction"]["merchant_id"] == "MER_alpha_2"
    assert client.get("/api/decisions/txn_0000000000000000").status_code == 404
    status = client.get("/api/decisions/feed").json()
    assert status["source"] == "sql_warehouse" and status["connected"] is True and status["consumed"]["decisions"] >= 5


def test_the_decision_stream_pushes_rows_logged_after_it_opened(dbx, stub):
    old = decision_row("approve", "MER_stream", datetime.now(UTC) - timedelta(minutes=1))
    stub.decision_rows = [old]
    client = dbx(decision_feed=True)
    with client.stream("GET", "/api/decisions/stream?backlog=5") as resp:
        assert resp.status_code == 200
        events = sse_events(resp.iter_lines())
        kind, status = next(events)
        assert kind == "status" and status["source"] == "sql_warehouse"
        kind, first = next(events)
        assert kind == "decision" and first["transaction_id"] == old["transaction_id"]
        # once the poller has placed its cursor on the newest row, a new row is pushed
        wait_for(lambda: any("logged_at DESC" in s["statement"] for s in stub.statements), "the stream's cursor")
        new = decision_row("review", "MER_stream", datetime.now(UTC) + timedelta(seconds=1))
        with stub.lock:
            stub.decision_rows.append(new)
        pushed = next(data for kind, data in events if kind == "decision")
        assert pushed["transaction_id"] == new["transaction_id"] and pushed["outcome"] == "review"
    polls = [s for s in stub.statements if "logged_at > :since" in s["statement"]]
    assert polls and {p["name"] for p in polls[-1]["parameters"]} >= {"since", "after_id", "table", "row_limit"}


# ----------------------------------------------------------------------------------------- rules
def test_an_activated_rule_set_is_uploaded_to_the_volume_versioned_then_live(dbx, stub):
    client = dbx()
    view = client.get("/api/rules").json()
    assert view["file"]["path"] == f"{VOLUME}/ruleset.json" and view["file"]["exists"] is False
    assert view["live"]["label"] == "v1"

    assert client.post("/api/rules", json=NEW_RULE).status_code == 201
    activated = client.post("/api/rules/activate", json={"comment": "night gaming review"})
    assert activated.status_code == 201, activated.text
    version = activated.json()
    live_file = f"{VOLUME}/ruleset.json"
    versioned = f"{VOLUME}/versions/{version['label']}-{version['full_version'].split('+')[1]}.json"
    assert stub.uploads == [versioned, live_file]  # the versioned copy first, then what readers follow
    published = RuleSet.from_json(stub.files[live_file][0])
    assert published.full_version == version["full_version"] and "R900" in [r.id for r in published.rules]
    assert stub.files[versioned][0] == stub.files[live_file][0]
    view = client.get("/api/rules").json()
    assert view["file"]["full_version"] == version["full_version"] and view["live"]["file_in_sync"] is True
    assert audit(client, "ruleset.activate")[0]["after"]["full_version"] == version["full_version"]

    first = client.get("/api/rules/versions").json()[-1]
    rolled = client.post(f"/api/rules/versions/{first['id']}/rollback", json={})
    assert rolled.status_code == 201
    assert "R900" not in [r.id for r in RuleSet.from_json(stub.files[live_file][0]).rules]
    assert stub.uploads[-1] == live_file and audit(client, "ruleset.rollback")


def test_a_rule_set_already_on_the_volume_is_the_first_live_version(dbx, stub):
    custom = RuleSet(version="v7", rules=starter_rule_set().rules[:2])
    stub.files[f"{VOLUME}/ruleset.json"] = (custom.model_dump_json().encode(), 0)
    live = dbx().get("/api/rules").json()["live"]
    assert live["full_version"] == custom.full_version and live["rules"] == 2


def test_a_backtest_on_databricks_hands_the_draft_over_through_the_volume(dbx, stub, jobs):
    jobs["backtest"].result_dir = f"{VOLUME_ROOT}/backtests"  # as the bundle's job writes it
    jobs["backtest"].result = {
        "rows": 250,
        "live_rule_set_version": starter_rule_set().full_version,
        "metrics": [{"metric": "approval_rate", "live": 0.9, "candidate": 0.88, "delta": -0.02}],
    }
    client = dbx()
    client.post("/api/rules", json=NEW_RULE)
    draft_version = client.get("/api/rules").json()["draft_full_version"]
    started = client.post("/api/rules/backtest", json={"days": 3})
    assert started.status_code == 202, started.text
    run = started.json()
    (call,) = stub.calls("POST", "/api/2.2/jobs/run-now")
    params = call.body["job_parameters"]
    assert call.body["job_id"] == jobs["backtest"].job_id and params["days"] == "3" and params["max_rows"] == "100000"
    assert params["candidate_rules"].startswith(f"{VOLUME}/candidates/")
    assert set(params) == {"days", "max_rows", "candidate_rules"}  # the parameters the bundle's job declares
    assert RuleSet.from_json(stub.files[params["candidate_rules"]][0]).full_version == draft_version

    done = wait_for(
        lambda: (b := client.get(f"/api/rules/backtests/{run['id']}").json())["status"] == "succeeded" and b,
        "the backtest",
    )
    assert done["has_result"] and done["rows"] == 250 and done["live_matches"] is True
    assert done["metrics"][0]["metric"] == "approval_rate" and done["metrics"][0]["verdict"] == "worse"
    # read back from where the job wrote it: <rules volume>/backtests/<job run id>.json
    assert f"{VOLUME_ROOT}/backtests/{done['remote_id']}.json" in stub.files


# ----------------------------------------------------------------------------------------- readers
def test_the_stream_processor_and_the_scoring_api_read_the_rules_from_the_configured_folder(tmp_path, monkeypatch):
    """The volume folder as a cluster sees it (a /Volumes path is a mounted folder there): the readers
    follow ``PA_RULES_VOLUME_PATH`` when it is set, ``<data_dir>/rules`` otherwise."""

    volume = tmp_path / "Volumes" / "main" / "pa" / "control" / "rules"
    custom = RuleSet(version="v9", rules=starter_rule_set().rules[:3])
    write_ruleset(custom, volume / "ruleset.json")
    data = tmp_path / "data"

    assert ruleset_path(data) == data / "rules" / "ruleset.json"
    assert ruleset_path(data, volume) == volume / "ruleset.json"
    stream = scoring_config(StreamProcessorSettings(data_dir=data, rules_volume_path=str(volume)))
    assert stream.rules_path == str(volume / "ruleset.json")
    assert RuleSource(stream.rules_path).current().full_version == custom.full_version
    assert scoring_config(StreamProcessorSettings(data_dir=data)).rules_path == str(data / "rules" / "ruleset.json")
    engine = build_engine(ScoringSettings(data_dir=data, rules_volume_path=str(volume)))
    assert engine.rule_source is not None and engine.rule_source.current().full_version == custom.full_version

    # the batch jobs (the backtest's live set) read it from their environment
    monkeypatch.delenv("PA_DATA_DIR", raising=False)
    monkeypatch.setenv("PA_RULES_VOLUME_PATH", str(volume))
    assert RuleSource.from_env().current().full_version == custom.full_version
    assert Path(str(ruleset_path())) == volume / "ruleset.json"


def test_an_activated_rule_set_reaches_a_scoring_api_without_the_volume_mount(dbx, stub, monkeypatch, tmp_path):
    """A Databricks App has no /Volumes mount: the scoring API follows the published file through the
    Files API (last modified and length), and keeps the set in force when the workspace does not answer."""
    monkeypatch.setattr(rule_model, "VOLUMES", tmp_path / "not-mounted")
    scoring = build_engine(ScoringSettings(data_dir=tmp_path / "api", rules_volume_path=VOLUME))
    assert scoring.rule_source is not None and scoring.rule_source.current().full_version == STARTER.full_version

    client = dbx()
    client.post("/api/rules", json=NEW_RULE)
    first = client.post("/api/rules/activate", json={}).json()
    assert scoring.rule_source.current().full_version == first["full_version"]
    assert stub.calls("HEAD", f"/api/2.0/fs/files{VOLUME}/ruleset.json")  # checked by metadata, not re-read

    client.delete(f"/api/rules/{NEW_RULE['id']}")
    second = client.post("/api/rules/activate", json={}).json()
    assert scoring.rule_source.current().full_version == second["full_version"] != first["full_version"]

    stub.tokens.clear()  # the workspace refuses: the rule set in force stays
    assert scoring.rule_source.current().full_version == second["full_version"]
    assert scoring.rule_source.last_error and "ruleset.json" in scoring.rule_source.last_error
