"""Setup & Run: steps run as real subprocesses (one active run per step, enforced by the database),
cancel, live logs over SSE, reconciliation after a crash, the first-run sequence, supervised services
and the scenario switch, against real SQLite / PostgreSQL, Kafka and supervisord."""

from __future__ import annotations

import json
import subprocess
import sys
import time
import uuid

import pytest
import sqlalchemy as sa
from confluent_kafka import Consumer, TopicPartition
from sqlalchemy.exc import IntegrityError

from payments_core.contract.topics import SIMULATOR_CONTROL, prefixed
from services.control_plane.db import JobRun, make_engine, make_sessionmaker, migrate
from services.control_plane.runner import StepRunner
from services.control_plane.steps import STEPS, Param, Step

QUICK = "tests.services.control_plane.quick_step"
QUICK_STEPS = (
    Step(
        "hello",
        "Say hello",
        QUICK,
        (),
        "prints lines",
        params=(
            Param("lines", "Lines", "int", 3, "--lines", minimum=1, maximum=1000),
            Param("pause", "Pause", "float", 0.05, "--pause", minimum=0),
        ),
        first_run=True,
    ),
    Step("boom", "Fails", QUICK, ("--exit-code", "3"), "exits non-zero"),
    Step("report", "Reports", QUICK, (), "writes a result", result_flag="--result-json", first_run=True),
    Step("absent", "Not in this build", "no_such_module_xyz"),
)


@pytest.fixture(params=["sqlite", "postgres"])
def client(request, make_client):
    url = "" if request.param == "sqlite" else request.getfixturevalue("postgres_url")
    c = make_client(steps=QUICK_STEPS, control_plane_database_url=url)
    c.db_kind = request.param
    return c


def wait_done(client, run_id: int, timeout: float = 30.0) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        run = client.get(f"/api/runs/{run_id}").json()
        if run["status"] not in ("queued", "running"):
            return run
        time.sleep(0.1)
    raise AssertionError(f"run {run_id} did not finish")


def test_run_step_with_parameters_records_status_duration_logs_and_audit(client):
    expected_db = "sqlite" if client.db_kind == "sqlite" else "postgresql+psycopg"
    assert client.get("/health").json()["database"] == expected_db
    started = client.post("/api/steps/hello/run", json={"params": {"lines": 4}})
    assert started.status_code == 202, started.text
    assert started.json()["params"] == {"lines": 4, "pause": 0.05}
    run = wait_done(client, started.json()["id"])
    assert run["status"] == "succeeded" and run["exit_code"] == 0 and run["started_by"] == "admin"
    assert run["duration_s"] is not None and run["duration_s"] >= 0
    assert [line for line in run["log"] if line.startswith("quick step")] == [
        f"quick step line {i} of 4" for i in range(1, 5)
    ]
    steps = {s["id"]: s for s in client.get("/api/steps").json()}
    assert steps["hello"]["last_run"]["id"] == run["id"]
    assert steps["hello"]["params"][0]["name"] == "lines"
    assert client.get("/api/runs?step=hello").json()[0]["id"] == run["id"]
    audit = client.get("/api/audit?action=step.run").json()
    assert audit[0]["target"] == "hello" and audit[0]["after"]["run_id"] == run["id"]


def test_failed_step_result_json_and_refusals(client):
    run = wait_done(client, client.post("/api/steps/boom/run").json()["id"])
    assert run["status"] == "failed" and run["exit_code"] == 3
    run = wait_done(client, client.post("/api/steps/report/run").json()["id"])
    assert run["status"] == "succeeded" and run["result"] == {"lines": 3}
    resp = client.post("/api/steps/nope/run")
    assert resp.status_code == 404 and "unknown step 'nope'" in resp.json()["detail"]
    resp = client.post("/api/steps/absent/run")
    assert resp.status_code == 409 and "not available" in resp.json()["detail"]
    resp = client.post("/api/steps/hello/run", json={"params": {"lines": 0}})
    assert resp.status_code == 422 and "'lines'" in resp.json()["detail"] and "minimum" in resp.json()["detail"]
    resp = client.post("/api/steps/hello/run", json={"params": {"colour": "red"}})
    assert resp.status_code == 422 and "colour" in resp.json()["detail"]
    assert client.get("/api/runs/999999").status_code == 404


def test_one_active_run_per_step_and_cancel(client):
    first = client.post("/api/steps/hello/run", json={"params": {"lines": 1000, "pause": 0.05}}).json()
    second = client.post("/api/steps/hello/run")
    assert second.status_code == 409 and f"run {first['id']}" in second.json()["detail"]
    cancel = client.post(f"/api/runs/{first['id']}/cancel")
    assert cancel.status_code == 200
    run = wait_done(client, first["id"])
    assert run["status"] == "cancelled" and run["exit_code"] != 0
    assert client.post(f"/api/runs/{first['id']}/cancel").status_code == 409
    # the step can run again once the first run ended
    again = client.post("/api/steps/hello/run", json={"params": {"lines": 1}})
    assert again.status_code == 202
    wait_done(client, again.json()["id"])


def test_the_database_refuses_a_second_active_run(make_client, postgres_url, tmp_path):
    """Not a check-then-insert: two inserts racing for the same step, the unique index keeps one."""
    for url in (f"sqlite:///{tmp_path / 'race.db'}", postgres_url):
        engine = make_engine(url)
        migrate(engine)
        sessions = make_sessionmaker(engine)
        step = f"race-{uuid.uuid4().hex[:6]}"
        with sessions() as a, sessions() as b:
            a.add(JobRun(step=step, status="running"))
            a.commit()
            b.add(JobRun(step=step, status="queued"))
            with pytest.raises(IntegrityError):
                b.commit()
            b.rollback()
            b.add(JobRun(step=step, status="succeeded"))  # finished runs do not count
            b.commit()
        engine.dispose()


def test_log_follows_over_server_sent_events(client):
    run = client.post("/api/steps/hello/run", json={"params": {"lines": 5, "pause": 0.2}}).json()
    lines, end = [], None
    with client.stream("GET", f"/api/runs/{run['id']}/log") as stream:
        assert stream.headers["content-type"].startswith("text/event-stream")
        event = None
        for raw in stream.iter_lines():
            if raw.startswith("event:"):
                event = raw.split(":", 1)[1].strip()
            elif raw.startswith("data:"):
                data = json.loads(raw.split(":", 1)[1])
                if event == "line":
                    lines.append(data)
                elif event == "end":
                    end = data
                    break
    assert [line for line in lines if line.startswith("quick step")] == [
        f"quick step line {i} of 5" for i in range(1, 6)
    ]
    assert end["status"] == "succeeded"


def test_runs_left_running_by_a_crash_are_reconciled_at_start(tmp_path):
    engine = make_engine(f"sqlite:///{tmp_path / 'cp.db'}")
    migrate(engine)
    sessions = make_sessionmaker(engine)
    orphan = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"], start_new_session=True)
    with sessions() as db:
        db.add(JobRun(step="etl", status="running", pid=orphan.pid, log_path=str(tmp_path / "x.log")))
        db.add(JobRun(step="train", status="queued"))
        db.commit()
    fixed = StepRunner(sessions, tmp_path / "logs").reconcile()
    assert len(fixed) == 2
    with sessions() as db:
        runs = db.scalars(sa.select(JobRun)).all()
    assert {r.status for r in runs} == {"interrupted"} and all(r.finished_at for r in runs)
    # a live pid that is not one of our steps (it does not hold the run's log) is left alone
    assert orphan.poll() is None
    orphan.kill()


def test_first_run_sequence_runs_in_order_on_a_fresh_data_folder(make_client):
    client = make_client(steps=QUICK_STEPS, first_run=True)
    deadline = time.monotonic() + 30
    state = client.get("/api/first-run").json()
    while state["status"] == "running" and time.monotonic() < deadline:
        time.sleep(0.2)
        state = client.get("/api/first-run").json()
    assert state["status"] == "succeeded"
    assert [s["step"] for s in state["steps"]] == ["hello", "report"]
    assert all(s["status"] == "succeeded" for s in state["steps"])
    runs = client.get("/api/runs").json()
    assert [r["step"] for r in reversed(runs)] == ["hello", "report"]
    assert all(r["started_by"] == "first-run" for r in runs)


def test_a_database_from_before_migrations_is_upgraded(tmp_path):
    url = f"sqlite:///{tmp_path / 'old.db'}"
    old = sa.create_engine(url)
    with old.begin() as conn:
        conn.execute(
            sa.text(
                "CREATE TABLE job_runs (id INTEGER PRIMARY KEY AUTOINCREMENT, step VARCHAR(64), "
                "status VARCHAR(16), params TEXT, started_at DATETIME, finished_at DATETIME, "
                "exit_code INTEGER, log_path VARCHAR(512))"
            )
        )
        conn.execute(
            sa.text(
                "INSERT INTO job_runs (step, status, params, started_at, log_path) "
                "VALUES ('etl', 'running', '{}', '2026-11-01 10:00:00', '')"
            )
        )
    engine = make_engine(url)
    migrate(engine)
    with make_sessionmaker(engine)() as db:
        run = db.scalars(sa.select(JobRun)).one()
    assert run.status == "interrupted" and run.started_by == "system"


def test_real_steps_keep_the_seed_order_and_map_parameters_to_flags():
    assert [s.id for s in STEPS][:5] == ["backfill", "etl", "gold_views", "bootstrap", "train"]
    backfill = {s.id: s for s in STEPS}["backfill"]
    params = backfill.resolve({"days": "2", "scenario": "fraud_ring"})
    assert backfill.argv(params)[1:] == [
        "-m",
        "services.simulator",
        "backfill",
        "--days",
        "2.0",
        "--events-per-day",
        "30000",
        "--scenario",
        "fraud_ring",
    ]
    with pytest.raises(ValueError, match="scenario"):
        backfill.resolve({"scenario": "meteor"})
    etl = {s.id: s for s in STEPS}["etl"]
    assert "--full-refresh" in etl.argv(etl.resolve({"full_refresh": True}))
    assert all(s.available for s in STEPS)


def test_platform_and_scenario_switch_with_real_kafka(make_client, kafka_bootstrap, kafka_topics):
    client = make_client(kafka_bootstrap=kafka_bootstrap, topic_prefix=kafka_topics)
    kafka = client.get("/api/platform").json()["kafka"]
    assert kafka["status"] == "up" and all(t["exists"] for t in kafka["topics"])
    resp = client.post("/api/simulator/scenario", json={"scenario": "issuer_outage", "issuer": "iss_br_02"})
    assert resp.status_code == 200, resp.text
    assert client.post("/api/simulator/scenario", json={"scenario": "meteor"}).status_code == 422
    topic = prefixed(SIMULATOR_CONTROL, kafka_topics)
    consumer = Consumer(
        {"bootstrap.servers": kafka_bootstrap, "group.id": f"t-{uuid.uuid4().hex}", "enable.auto.commit": False}
    )
    consumer.assign([TopicPartition(topic, 0, 0)])
    values = []
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline and not values:
        msg = consumer.poll(0.5)
        if msg is not None and not msg.error():
            values.append(json.loads(msg.value()))
    consumer.close()
    assert values[-1]["scenario"] == "issuer_outage" and values[-1]["issuer"] == "iss_br_02"
    audit = client.get("/api/audit?action=simulator.").json()
    assert audit[0]["target"] == "issuer_outage"


def test_services_are_started_and_stopped_through_supervisord(make_client, tmp_path):
    sock = tmp_path / "supervisor.sock"
    conf = tmp_path / "supervisord.conf"
    conf.write_text(
        "\n".join(
            [
                "[supervisord]",
                "nodaemon=true",
                f"logfile={tmp_path / 'supervisord.log'}",
                f"pidfile={tmp_path / 'supervisord.pid'}",
                "",
                "[unix_http_server]",
                f"file={sock}",
                "",
                "[rpcinterface:supervisor]",
                "supervisor.rpcinterface_factory = supervisor.rpcinterface:make_main_rpcinterface",
                "",
                *[
                    line
                    for name in ("simulator", "stream_processor")
                    for line in (
                        f"[program:{name}]",
                        f'command={sys.executable} -c "import time; time.sleep(600)"',
                        "autostart=false",
                        "startsecs=1",
                        "stopasgroup=true",
                        "killasgroup=true",
                        "",
                    )
                ],
                "[group:services]",
                "programs=simulator,stream_processor",
                "",
            ]
        )
    )
    supervisord = subprocess.Popen([sys.executable, "-m", "supervisor.supervisord", "-c", str(conf)])
    try:
        deadline = time.monotonic() + 20
        while not sock.exists() and time.monotonic() < deadline:
            time.sleep(0.1)
        client = make_client(supervisor_url=f"unix://{sock}")
        body = client.get("/api/services").json()
        assert body["managed"] is True
        states = {s["name"]: s["state"] for s in body["services"]}
        assert states == {"simulator": "STOPPED", "stream_processor": "STOPPED"}
        started = client.post("/api/services/simulator/start")
        assert started.status_code == 200 and started.json()["state"] == "RUNNING"
        states = {s["name"]: s["state"] for s in client.get("/api/services").json()["services"]}
        assert states["simulator"] == "RUNNING" and states["stream_processor"] == "STOPPED"
        assert client.post("/api/services/simulator/stop").json()["state"] == "STOPPED"
        assert client.post("/api/services/nope/start").status_code == 404
        assert [e["action"] for e in client.get("/api/audit?action=service.").json()] == [
            "service.stop",
            "service.start",
        ]
    finally:
        supervisord.terminate()
        supervisord.wait(30)


def test_services_say_when_nothing_supervises_them(make_client):
    client = make_client()
    body = client.get("/api/services").json()
    assert body["managed"] is False and "make up" in body["error"]
    assert client.post("/api/services/simulator/start").status_code == 503
