"""Control plane API: steps run as real subprocesses; state in SQLite or PostgreSQL."""
from __future__ import annotations

import sys
import time

import pytest
from fastapi.testclient import TestClient

from services.control_plane.app import create_app
from services.control_plane.settings import ControlPlaneSettings
from services.control_plane.steps import STEPS, Step

QUICK_STEPS = (
    Step("hello", "Say hello", "json.tool", ("--help",), "exits 0 after printing usage"),
    Step("boom", "Fails", "py_compile", ("/nonexistent/file.py",), "exits non-zero"),
    Step("absent", "Not in this build", "no_such_module_xyz"),
)


def _wait_done(client: TestClient, run_id: int) -> dict:
    for _ in range(100):
        run = client.get(f"/api/runs/{run_id}").json()
        if run["status"] != "running":
            return run
        time.sleep(0.1)
    raise AssertionError("run did not finish")


@pytest.fixture(params=["sqlite", "postgres"])
def client(request, tmp_path):
    url = "" if request.param == "sqlite" else request.getfixturevalue("postgres_url")
    settings = ControlPlaneSettings(data_dir=tmp_path, control_plane_database_url=url,
                                    kafka_bootstrap="127.0.0.1:1")
    with TestClient(create_app(settings, steps=QUICK_STEPS)) as c:
        c.db_kind = request.param
        yield c


def test_run_step_records_status_duration_and_logs(client):
    assert client.get("/health").json()["database"] == ("sqlite" if client.db_kind == "sqlite" else "postgresql+psycopg")
    started = client.post("/api/steps/hello/run")
    assert started.status_code == 202
    run = _wait_done(client, started.json()["id"])
    assert run["status"] == "succeeded" and run["exit_code"] == 0
    assert run["duration_s"] is not None and run["duration_s"] >= 0
    assert any("usage" in line for line in run["log"])
    steps = {s["id"]: s for s in client.get("/api/steps").json()}
    assert steps["hello"]["last_run"]["id"] == run["id"]


def test_failed_step_is_reported(client):
    run = _wait_done(client, client.post("/api/steps/boom/run").json()["id"])
    assert run["status"] == "failed" and run["exit_code"] != 0


def test_unknown_and_unavailable_steps_are_refused_clearly(client):
    resp = client.post("/api/steps/nope/run")
    assert resp.status_code == 404 and "unknown step 'nope'" in resp.json()["detail"]
    resp = client.post("/api/steps/absent/run")
    assert resp.status_code == 409 and "not available" in resp.json()["detail"]
    assert client.get("/api/runs/999999").status_code == 404


def test_platform_reports_a_down_broker_instead_of_failing(client):
    body = client.get("/api/platform").json()
    assert body["kafka"]["status"] == "down"
    assert body["scoring_api"]["status"] == "down"


def test_index_page_renders(client):
    page = client.get("/")
    assert page.status_code == 200 and "Setup &amp; Run" in page.text


def test_platform_shows_topic_sizes(tmp_path, kafka_bootstrap, kafka_topics):
    settings = ControlPlaneSettings(data_dir=tmp_path, kafka_bootstrap=kafka_bootstrap, topic_prefix=kafka_topics)
    with TestClient(create_app(settings)) as c:
        kafka = c.get("/api/platform").json()["kafka"]
    assert kafka["status"] == "up"
    assert {t["topic"] for t in kafka["topics"]} >= {f"{kafka_topics}payments.transactions"}
    assert all(t["exists"] for t in kafka["topics"])


def test_steps_follow_the_seed_order():
    assert [s.id for s in STEPS][:4] == ["backfill", "etl", "gold_views", "bootstrap"]
    assert all(s.argv()[0] == sys.executable for s in STEPS)
