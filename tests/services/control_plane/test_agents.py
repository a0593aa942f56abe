"""/agents and /api/agents: runs on the real dashboard lakehouse (a copy of the session's), recommendations
with their evidence stored in ``approval_recommendations``, accept into the draft rule set in shadow,
dismiss with a reason, Admin + CSRF on every mutation, the audit trail, the backtest step started with
the live set plus the candidate, the LLM endpoint when configured."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
from deltalake import DeltaTable
from fastapi.testclient import TestClient

from payments_core.rules.model import RuleSet
from services.control_plane.db import make_engine, make_sessionmaker, migrate
from services.control_plane.routers.agents import AgentRun
from tests.agents.conftest import copy_lake
from tests.agents.llm_stub import chat_stub, tool_call
from tests.services.control_plane.conftest import login

LLM_KEY = "sk-agents-api-test"


@pytest.fixture
def lake(dashboard_lake, tmp_path):
    """A fresh copy per test: runs write approval_recommendations into it."""
    return copy_lake(dashboard_lake, tmp_path / "lake")


@pytest.fixture
def agents_client(make_client, lake):
    def make(**overrides) -> TestClient:
        return make_client(warehouse_dir=lake.root, catalog=lake.catalog, lakehouse_schema=lake.schema, **overrides)

    return make


def run_and_wait(client: TestClient, body: dict, timeout: float = 60) -> dict:
    resp = client.post("/api/agents/runs", json=body)
    assert resp.status_code == 202, resp.text
    run = resp.json()
    assert run["status"] == "running"
    client.app.state.agents.wait(run["id"], timeout)
    done = client.get(f"/api/agents/runs/{run['id']}").json()
    assert done["status"] == "succeeded", done
    return done


def table_rows(lake) -> dict[str, dict]:
    rows = DeltaTable(str(lake.folder / "approval_recommendations")).to_pyarrow_table().to_pylist()
    return {r["recommendation_id"]: r for r in rows}


def test_run_a_specialist_see_the_evidence_and_accept_a_rule_into_the_draft_in_shadow(agents_client, lake):
    client = agents_client()
    info = client.get("/api/agents").json()
    assert [s["name"] for s in info["specialists"]] == [
        "smart_routing",
        "smart_retry",
        "decline_analyst",
        "risk_assessor",
        "performance_recommender",
    ]
    assert info["llm"] is None and info["data"]["refreshed"] and info["backtest"]["available"]

    run = run_and_wait(client, {"agent": "smart_retry", "backtest": False})
    assert run["planner"] == "rules" and run["agents"] == ["smart_retry"]
    assert run["answer"].startswith("Smart retry analysis.")
    recs = {r["scope"]: r for r in run["recommendations"]}
    assert set(run["recommendation_ids"]) == {r["recommendation_id"] for r in recs.values()}
    rule_rec = next(r for r in recs.values() if r["evidence"]["action"]["kind"] == "rule")
    evidence = rule_rec["evidence"]
    assert evidence["run_id"] == run["id"] and evidence["agent"] == "smart_retry"
    (query,) = evidence["queries"]
    assert query["table"] == "dash_retry_performance" and query["sql"].startswith("SELECT decline_reason")
    assert isinstance(evidence["figures"]["recovered_value_usd"], str)
    assert evidence["lift"]["method"] == "gold_estimate" and evidence["lift"]["value_usd"]
    assert [e["event"] for e in run["transcript"]][-1] == "done"

    # the lakehouse table holds it, as the app shows it
    stored = table_rows(lake)[rule_rec["recommendation_id"]]
    assert (stored["status"], stored["source"]) == ("proposed", "agent:smart_retry")
    assert json.loads(stored["evidence"]) == evidence

    accepted = client.post(
        f"/api/agents/recommendations/{rule_rec['recommendation_id']}/accept", json={"comment": "worth a try"}
    )
    assert accepted.status_code == 200, accepted.text
    body = accepted.json()
    rule = body["draft_rule"]
    action = evidence["action"]
    assert rule["id"] == action["rule_id"] and rule["shadow"] is True and rule["active"] is True
    assert (rule["condition"], rule["action"], rule["type"]) == (action["condition"], action["action"], "retry")
    assert body["recommendation"]["status"] == "accepted"
    assert body["recommendation"]["feedback"][0]["draft_rule_id"] == rule["id"]

    draft = client.get("/api/rules").json()
    (in_draft,) = [r for r in draft["draft"] if r["id"] == rule["id"]]
    assert in_draft["status"] == "added" and in_draft["shadow"] is True
    assert table_rows(lake)[rule_rec["recommendation_id"]]["status"] == "accepted"

    again = client.post(f"/api/agents/recommendations/{rule_rec['recommendation_id']}/accept", json={})
    assert again.status_code == 409 and "is accepted, not proposed" in again.json()["detail"]

    events = client.get("/api/audit").json()
    actions = [e["action"] for e in events]
    assert {"agents.run", "agents.accept", "rule.create"} <= set(actions)
    accept_event = next(e for e in events if e["action"] == "agents.accept")
    assert accept_event["target"] == rule_rec["recommendation_id"]
    assert accept_event["after"]["draft_rule"] == rule["id"] and accept_event["after"]["comment"] == "worth a try"


def test_dismiss_keeps_the_reason_and_a_later_run_does_not_revive_it(agents_client, lake):
    client = agents_client()
    first = run_and_wait(client, {"agent": "risk_assessor", "backtest": False})
    target = first["recommendations"][0]["recommendation_id"]
    missing = client.post(f"/api/agents/recommendations/{target}/dismiss", json={})
    assert missing.status_code == 422  # a reason is required
    resp = client.post(f"/api/agents/recommendations/{target}/dismiss", json={"reason": "seasonal, expected"})
    assert resp.status_code == 200 and resp.json()["status"] == "dismissed"

    second = run_and_wait(client, {"agent": "risk_assessor", "backtest": False})
    assert target in second["recommendation_ids"]
    again = next(r for r in second["recommendations"] if r["recommendation_id"] == target)
    assert again["status"] == "dismissed" and again["evidence"]["run_id"] == first["id"]
    assert again["feedback"] == [
        {
            "verdict": "dismissed",
            "reason": "seasonal, expected",
            "actor": "admin",
            "at": again["feedback"][0]["at"],
            "draft_rule_id": None,
            "config_change": None,
        }
    ]
    listed = client.get("/api/agents/recommendations", params={"status": "dismissed"}).json()["recommendations"]
    assert [r["recommendation_id"] for r in listed] == [target]
    assert client.post(f"/api/agents/recommendations/{target}/accept").status_code == 409
    dismissal = next(e for e in client.get("/api/audit").json() if e["action"] == "agents.dismiss")
    assert dismissal["after"] == {"status": "dismissed", "reason": "seasonal, expected"}


def test_accepting_a_configuration_change_records_it_and_touches_no_rule(agents_client):
    client = agents_client()
    run = run_and_wait(client, {"question": "Should we retry DO_NOT_HONOR sooner?", "backtest": False})
    assert run["kind"] == "question" and run["agents"] == ["smart_retry"]
    config = next(r for r in run["recommendations"] if r["evidence"]["action"]["kind"] == "config")
    before = client.get("/api/rules").json()["draft"]
    body = client.post(f"/api/agents/recommendations/{config['recommendation_id']}/accept", json={}).json()
    assert body["draft_rule"] is None
    assert body["config_change"]["key"] == config["evidence"]["action"]["key"]
    assert body["recommendation"]["feedback"][0]["config_change"] == body["config_change"]
    assert client.get("/api/rules").json()["draft"] == before


def test_requests_are_checked_and_mutations_need_an_admin_with_the_csrf_token(agents_client):
    client = agents_client()
    for bad, why in (
        ({}, "exactly one of"),
        ({"agent": "smart_retry", "question": "why?"}, "exactly one of"),
        ({"agent": "fortune_teller"}, "unknown agent"),
        ({"agent": "smart_routing", "arguments": {"card_network": "diners"}}, "not one of"),
        ({"question": "   "}, "exactly one of"),
    ):
        resp = client.post("/api/agents/runs", json=bad)
        assert resp.status_code == 422 and why in json.dumps(resp.json()), (bad, resp.text)
    assert client.post("/api/agents/runs", json={"agent": "smart_retry", "extra": 1}).status_code == 422

    token = client.headers.pop("X-CSRF-Token")
    assert client.post("/api/agents/runs", json={"agent": "smart_retry"}).status_code == 403
    client.headers["X-CSRF-Token"] = token
    assert client.post(
        "/api/users", json={"username": "vera", "password": "viewer-password-1", "role": "viewer"}
    ).status_code in (200, 201)
    viewer = TestClient(client.app)
    login(viewer, "vera", "viewer-password-1")
    assert viewer.get("/agents").status_code == 200
    assert viewer.get("/api/agents/recommendations").status_code == 200
    assert viewer.post("/api/agents/runs", json={"agent": "smart_retry"}).status_code == 403
    assert viewer.post("/api/agents/recommendations/agent:x:y/dismiss", json={"reason": "no"}).status_code == 403
    anonymous = TestClient(client.app)
    assert anonymous.get("/api/agents/runs").status_code == 401


def test_the_page_lists_the_specialists_and_the_nav_entry_is_live(agents_client):
    client = agents_client()
    page = client.get("/agents")
    assert page.status_code == 200
    for title in ("Smart routing", "Smart retry", "Decline analyst", "Risk assessor", "Performance recommender"):
        assert title in page.text
    assert 'href="/agents" class="active" aria-current="page"' in page.text
    assert "/static/agents.js" in page.text and "No LLM" in page.text
    assert client.get("/static/agents.js").status_code == 200


def test_a_candidate_rule_is_backtested_through_the_backtest_step(agents_client, tmp_path):
    """The real backtest step (spark.jobs.backtest as a child process) gets the live set plus the candidate;
    the run waits PA_AGENTS_BACKTEST_TIMEOUT_S, then cancels it and says so (a full replay is a Spark job of a
    minute or more: the lift of a finished one is checked in tests/agents/test_backtest.py)."""
    client = agents_client(agents_backtest_timeout_s=2.0)
    run = run_and_wait(
        client, {"agent": "risk_assessor", "arguments": {"merchant_segment": "Travel"}, "backtest": True}, timeout=90
    )
    (rec,) = run["recommendations"]
    lift = rec["evidence"]["lift"]
    assert (lift["method"], lift["status"]) == ("backtest", "failed")
    assert "did not finish within 2 s (cancelled)" in lift["summary"]
    steps = [e for e in run["transcript"] if e["event"] == "backtest"]
    assert [e["status"] for e in steps] == ["started", "failed"]

    job = client.get("/api/steps").json()
    backtest = next(s for s in job if s["id"] == "backtest")["last_run"]
    rule_id = rec["evidence"]["action"]["rule_id"]
    assert backtest["status"] == "cancelled" and backtest["note"].startswith(f"agents {rule_id} vs v1")
    candidate = RuleSet.from_json(Path(backtest["params"]["candidate_rules"]).read_text())
    live_ids = {r["id"] for r in client.get("/api/rules").json()["draft"]}
    (added,) = [r for r in candidate.rules if r.id not in live_ids]
    assert added.id == rec["evidence"]["action"]["rule_id"] and not added.shadow and added.active
    assert added.condition == "risk_tier = 'medium' AND merchant_segment = 'Travel'"


def test_with_an_llm_endpoint_the_model_plans_and_the_key_stays_secret(agents_client):
    def reply(request: dict):
        if not any(m["role"] == "tool" for m in request["messages"]):
            return {"tool_calls": [tool_call("analyze_decline_analyst", {"merchant_segment": "Travel", "limit": 1})]}
        return {"content": "Travel loses most to one reason; see the recommendation."}

    with chat_stub(reply) as stub:
        client = agents_client(llm_endpoint=stub.base_url, llm_model="stub-model", llm_api_key=LLM_KEY)
        info = client.get("/api/agents").json()
        assert info["llm"]["model"] == "stub-model" and info["llm"]["url"].endswith("/v1/chat/completions")
        run = run_and_wait(client, {"question": "Why are Travel payments declined?", "backtest": False})
    assert run["planner"] == "llm" and run["model"] == "stub-model"
    assert run["answer"] == "Travel loses most to one reason; see the recommendation."
    assert len(run["recommendations"]) == 1 and run["recommendations"][0]["agent"] == "decline_analyst"
    assert stub.headers[0]["authorization"] == f"Bearer {LLM_KEY}"
    for path in ("/api/agents", f"/api/agents/runs/{run['id']}", "/api/agents/runs", "/agents"):
        assert LLM_KEY not in client.get(path).text


def test_runs_cut_short_by_a_restart_are_marked_interrupted(agents_client, tmp_path):
    sessions = make_sessionmaker(engine := make_engine(f"sqlite:///{tmp_path / 'control_plane.db'}"))
    migrate(engine)
    with sessions() as db:
        db.add(AgentRun(kind="scheduled", status="running", started_by="scheduler"))
        db.commit()
    engine.dispose()
    client = agents_client()
    (run,) = client.get("/api/agents/runs").json()
    assert run["status"] == "interrupted" and "stopped during the run" in run["error"]
    assert client.app.state.agents._scheduler is None  # no scheduler without PA_AGENTS_SCHEDULE_MINUTES


def test_the_scheduler_runs_every_specialist(agents_client):
    client = agents_client(agents_schedule_minutes=0.01, agents_max_backtests=0)  # every 0.6 s, no Spark job
    deadline = time.monotonic() + 45
    done = []
    while time.monotonic() < deadline and not done:
        time.sleep(0.3)
        runs = client.get("/api/agents/runs").json()
        done = [r for r in runs if r["kind"] == "scheduled" and r["status"] == "succeeded"]
    assert done, runs
    run = client.get(f"/api/agents/runs/{done[-1]['id']}").json()
    assert run["started_by"] == "scheduler" and len(run["agents"]) == 5
    assert {r["agent"] for r in run["recommendations"]} == set(run["agents"])
    risk = [r for r in run["recommendations"] if r["agent"] == "risk_assessor"]
    assert risk and all("PA_AGENTS_MAX_BACKTESTS=0" in r["evidence"]["lift"]["summary"] for r in risk)


def test_a_refused_rule_leaves_the_recommendation_proposed(agents_client, lake):
    client = agents_client()
    run = run_and_wait(client, {"agent": "smart_routing", "backtest": False})
    rec = run["recommendations"][0]
    action = rec["evidence"]["action"]
    taken = {k: action[k] for k in ("name", "type", "condition", "action", "priority")}
    assert client.post("/api/rules", json={"id": action["rule_id"], **taken}).status_code == 201
    resp = client.post(f"/api/agents/recommendations/{rec['recommendation_id']}/accept", json={})
    assert resp.status_code == 409 and "already in the draft" in resp.json()["detail"]
    assert table_rows(lake)[rec["recommendation_id"]]["status"] == "proposed"
    assert not any(e["action"] == "agents.accept" for e in client.get("/api/audit").json())
