"""Rules page and API: draft editing validated by the real parser (errors at their position), diff against
the live set, activation that publishes the file /score and the stream read, history, rollback, audit,
roles and CSRF, and backtests of the draft (a stub step for the plumbing, the real Spark job once).
State in SQLite and in PostgreSQL."""

from __future__ import annotations

import time
import uuid
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from payments_core.rules.model import RuleSet, RuleSource, ruleset_path, starter_rule_set, write_ruleset
from services.control_plane.steps import Param, Step
from tests.services.control_plane.conftest import login

STARTER = starter_rule_set()
NEW_RULE = {
    "id": "R100",
    "name": "Gaming at night",
    "type": "risk",
    "condition": "merchant_segment = 'Gaming' AND is_night",
    "action": "review",
    "priority": 80,
    "active": True,
    "shadow": True,
    "description": "candidate",
}
STUB_BACKTEST = Step(
    "backtest",
    "Backtest (stub)",
    "tests.services.control_plane.rules_backtest_stub",
    (),
    params=(
        Param("days", "Days", "int", 7, "--days", minimum=1, maximum=365),
        Param("max_rows", "Rows", "int", 1000, "--max-rows", minimum=0),
        Param("candidate_rules", "Candidate", "text", None, "--candidate-rules", hidden=True),
    ),
    result_flag="--result-json",
)


@pytest.fixture(params=["sqlite", "postgres"])
def db_url(request) -> str:
    """'' (SQLite in the data folder) or a fresh PostgreSQL database on the session's server."""
    if request.param == "sqlite":
        return ""
    server = make_url(request.getfixturevalue("postgres_url"))
    name = f"rules_{uuid.uuid4().hex[:10]}"
    engine = create_engine(server, isolation_level="AUTOCOMMIT")
    with engine.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    engine.dispose()
    return server.set(database=name).render_as_string(hide_password=False)


@pytest.fixture
def client(make_client, db_url) -> TestClient:
    return make_client(control_plane_database_url=db_url)


def _data_dir(client: TestClient) -> Path:
    return Path(client.app.state.settings.data_dir)


def _audit(client: TestClient, prefix: str) -> list[dict]:
    return client.get(f"/api/audit?action={prefix}").json()


# ------------------------------------------------------------------------------------------ validation
def test_invalid_rule_is_refused_with_the_parsers_position(client):
    condition = "fraud_score >= 0.9 AND\n  merchant_segment = 'Gamin'"
    resp = client.post("/api/rules", json={**NEW_RULE, "condition": condition})
    assert resp.status_code == 422
    detail = resp.json()["detail"]
    err = detail["errors"][0]
    assert err["field"] == "condition" and (err["line"], err["column"]) == (2, 22)
    assert condition[err["pos"] :].startswith("'Gamin'")  # the offset a textarea's cursor takes
    assert "did you mean 'Gaming'" in err["message"] and err["source_line"] == "  merchant_segment = 'Gamin'"
    assert "line 2, column 22" in detail["message"]

    # the same answer while typing, without saving; a valid condition reports the fields it uses
    checked = client.post("/api/rules/validate", json={"condition": condition}).json()
    assert not checked["valid"] and checked["errors"][0]["pos"] == err["pos"]
    syntax = client.post("/api/rules/validate", json={"condition": "amount_major > "}).json()["errors"][0]
    assert syntax["pos"] == len("amount_major > ") and "unexpected end" in syntax["message"]
    ok = client.post("/api/rules/validate", json={"condition": "amount_major > 100 AND is_night"}).json()
    assert ok == {"valid": True, "errors": [], "fields_used": ["amount_major", "is_night"]}

    # an action that does not fit the type is refused on the action field
    resp = client.post("/api/rules", json={**NEW_RULE, "action": "route:network_token"})
    assert resp.status_code == 422 and resp.json()["detail"]["errors"][0]["field"] == "action"
    ids = {r["id"] for r in client.get("/api/rules").json()["draft"]}
    assert "R100" not in ids and ids == {r.id for r in STARTER.rules}
    assert _audit(client, "rule.create") == []


# ------------------------------------------------------------------------------------------ draft -> live
def test_create_shows_in_draft_and_diff_and_activation_publishes_the_file(client):
    first = client.get("/api/rules").json()
    assert first["live"]["label"] == "v1" and first["live"]["full_version"] == STARTER.full_version
    assert first["live"]["created_by"] == "system" and first["diff"]["identical"]

    assert client.post("/api/rules", json=NEW_RULE).status_code == 201
    assert client.post("/api/rules", json=NEW_RULE).status_code == 409  # the id exists
    r001 = next(r for r in STARTER.rules if r.id == "R001")
    edited = {
        **r001.model_dump(include={"name", "type", "condition", "action", "active", "shadow", "description"}),
        "priority": 5,
    }
    assert client.put("/api/rules/R001", json=edited).json()["priority"] == 5
    assert client.put("/api/rules/R001", json={**edited, "id": "R999"}).status_code == 422
    assert client.put("/api/rules/NOPE", json=edited).status_code == 404

    view = client.get("/api/rules").json()
    status = {r["id"]: r["status"] for r in view["draft"]}
    assert status["R100"] == "added" and status["R001"] == "changed" and status["R002"] == "unchanged"
    assert [r["id"] for r in view["diff"]["added"]] == ["R100"]
    assert view["diff"]["changed"] == [
        {"id": "R001", "name": r001.name, "fields": [{"field": "priority", "before": 10, "after": 5}]}
    ]

    stale = client.post("/api/rules/activate", json={"comment": "x", "base_version_id": 999})
    assert stale.status_code == 409 and "moved" in stale.json()["detail"]
    resp = client.post(
        "/api/rules/activate", json={"comment": "gaming review in shadow", "base_version_id": view["live"]["id"]}
    )
    assert resp.status_code == 201, resp.text
    published = resp.json()
    assert published["label"] == "v2" and published["full_version"].startswith("v2+")

    # what /score and the stream read
    source = RuleSource(ruleset_path(_data_dir(client)))
    live = source.current()
    assert live.full_version == published["full_version"] and source.last_error is None
    rules = {r.id: r for r in live.rules}
    assert rules["R100"].shadow and rules["R100"].condition == NEW_RULE["condition"]
    assert (rules["R001"].priority, rules["R001"].version) == (5, 2) and rules["R002"].version == 1

    after = client.get("/api/rules").json()
    assert after["live"]["label"] == "v2" and after["live"]["file_in_sync"] and after["diff"]["identical"]
    again = client.post("/api/rules/activate", json={"comment": "again"})
    assert again.status_code == 409 and "nothing to activate" in again.json()["detail"]


def test_history_diffs_and_rollback_restore_earlier_content(client):
    client.post("/api/rules", json=NEW_RULE)
    v2 = client.post("/api/rules/activate", json={"comment": "add R100"}).json()
    assert client.delete("/api/rules/R002").json() == {"deleted": "R002"}
    assert client.delete("/api/rules/R002").status_code == 404
    assert "R002" not in {r["id"] for r in client.get("/api/rules").json()["draft"]}
    v3 = client.post("/api/rules/activate", json={"comment": "drop R002"}).json()

    versions = client.get("/api/rules/versions").json()
    assert [v["label"] for v in versions] == ["v3", "v2", "v1"]
    assert [v["live"] for v in versions] == [True, False, False]
    assert versions[0]["created_by"] == "admin" and versions[0]["comment"] == "drop R002"
    assert versions[0]["created_at"] and versions[0]["full_version"] == v3["full_version"]
    assert [r["id"] for r in versions[0]["diff"]["removed"]] == ["R002"] and versions[0]["previous_label"] == "v2"
    assert [r["id"] for r in versions[1]["diff"]["added"]] == ["R100"]
    assert versions[0]["rules"] == versions[2]["rules"] == len(STARTER.rules)
    assert client.get(f"/api/rules/versions/{versions[1]['id']}").json()["content"]["version"] == "v2"

    v1_id = versions[2]["id"]
    rolled = client.post(f"/api/rules/versions/{v1_id}/rollback", json={"comment": "too many reviews"})
    assert rolled.status_code == 201, rolled.text
    v4 = rolled.json()
    assert v4["label"] == "v4" and v4["rolled_back_from"] == v1_id
    assert v4["comment"] == "rollback to v1: too many reviews"
    live = RuleSource(ruleset_path(_data_dir(client))).current()
    assert live.full_version == v4["full_version"]
    assert live.content_hash() == STARTER.content_hash()  # the earlier content, byte for byte in the hash
    assert {r.id for r in live.rules} == {r.id for r in STARTER.rules}

    view = client.get("/api/rules").json()
    assert view["live"]["label"] == "v4" and view["diff"]["identical"]  # the draft was reset to it
    assert {r["id"] for r in view["draft"]} == {r.id for r in STARTER.rules}
    history = client.get("/api/rules/versions").json()
    assert history[0]["rolled_back_from_label"] == "v1"
    assert [r["id"] for r in history[0]["diff"]["added"]] == ["R002"]
    assert [r["id"] for r in history[0]["diff"]["removed"]] == ["R100"]

    assert client.post(f"/api/rules/versions/{history[0]['id']}/rollback").status_code == 409  # live already
    assert client.post(f"/api/rules/versions/{v1_id}/rollback").status_code == 409  # same content as live
    assert client.post("/api/rules/versions/99999/rollback").status_code == 404
    assert v2["label"] == "v2"


def test_every_change_is_audited_with_before_and_after(client):
    client.post("/api/rules", json=NEW_RULE)
    client.put("/api/rules/R100", json={**NEW_RULE, "shadow": False, "action": "decline"})
    client.delete("/api/rules/R010")
    client.post("/api/rules/activate", json={"comment": "go"})
    v1 = client.get("/api/rules/versions").json()[-1]["id"]
    client.post(f"/api/rules/versions/{v1}/rollback")

    created = _audit(client, "rule.create")[0]
    assert (created["actor"], created["target"], created["after"]["condition"]) == (
        "admin",
        "R100",
        NEW_RULE["condition"],
    )
    updated = _audit(client, "rule.update")[0]
    assert updated["before"]["shadow"] is True and updated["after"]["shadow"] is False
    assert updated["after"]["action"] == "decline"
    deleted = _audit(client, "rule.delete")[0]
    assert deleted["target"] == "R010" and deleted["before"]["action"] == "retry:30" and deleted["after"] is None
    activated = _audit(client, "ruleset.activate")[0]
    assert activated["before"]["label"] == "v1" and activated["after"]["label"] == "v2"
    assert [r["id"] for r in activated["after"]["diff"]["added"]] == ["R100"]
    assert [r["id"] for r in activated["after"]["diff"]["removed"]] == ["R010"]
    rolled = _audit(client, "ruleset.rollback")[0]
    assert (rolled["before"]["label"], rolled["after"]["label"]) == ("v2", "v3")
    assert rolled["after"]["rolled_back_to"] == "v1"


# ------------------------------------------------------------------------------------------ who may change
def test_a_viewer_reads_but_cannot_change_rules(make_client):
    admin = make_client()
    assert (
        admin.post(
            "/api/users", json={"username": "vera", "password": "viewer-password-1", "role": "viewer"}
        ).status_code
        == 201
    )
    viewer = TestClient(admin.app)  # same app and database, its own cookie jar
    login(viewer, "vera", "viewer-password-1")
    assert viewer.get("/rules").status_code == 200
    assert viewer.get("/api/rules").json()["live"]["label"] == "v1"
    assert viewer.post("/api/rules/validate", json={"condition": "is_night"}).json()["valid"]
    refused = [
        viewer.post("/api/rules", json=NEW_RULE),
        viewer.put("/api/rules/R001", json=NEW_RULE),
        viewer.delete("/api/rules/R001"),
        viewer.post("/api/rules/activate", json={}),
        viewer.post("/api/rules/versions/1/rollback"),
        viewer.post("/api/rules/backtest", json={}),
        viewer.post("/api/rules/draft/discard"),
    ]
    assert [r.status_code for r in refused] == [403] * len(refused)
    assert "R100" not in {r["id"] for r in admin.get("/api/rules").json()["draft"]}
    assert not [e for e in _audit(admin, "rule") if e["actor"] == "vera"]


def test_mutations_need_a_session_and_the_csrf_token(make_client):
    admin = make_client()
    token = admin.headers.pop("X-CSRF-Token")
    resp = admin.post("/api/rules", json=NEW_RULE)
    assert resp.status_code == 403
    assert admin.post("/api/rules/activate", json={}).status_code == 403
    admin.headers["X-CSRF-Token"] = token
    assert admin.post("/api/rules", json=NEW_RULE).status_code == 201

    anonymous = TestClient(admin.app)
    assert anonymous.post("/api/rules", json=NEW_RULE).status_code == 401
    assert anonymous.get("/api/rules").status_code == 401
    page = anonymous.get("/rules", follow_redirects=False)
    assert page.status_code == 303 and page.headers["location"].startswith("/login")


# ------------------------------------------------------------------------------------------ live set origin
def test_the_first_live_version_is_the_published_file_when_valid(make_client, tmp_path):
    custom = RuleSet(version="ops-7", rules=[r for r in STARTER.rules if r.type == "risk"])
    write_ruleset(custom, ruleset_path(tmp_path))
    client = make_client()
    live = client.get("/api/rules").json()["live"]
    assert (live["label"], live["full_version"], live["rules"]) == ("v1", custom.full_version, len(custom.rules))
    assert live["comment"] == "initial: the published ruleset.json" and live["file_in_sync"]


def test_an_invalid_published_file_falls_back_to_the_starter_set(make_client, tmp_path):
    ruleset_path(tmp_path).parent.mkdir(parents=True)
    ruleset_path(tmp_path).write_text('{"version": "broken", "rules": [{"id": "X"}]}')
    view = make_client().get("/api/rules").json()
    assert view["live"]["full_version"] == STARTER.full_version and view["file"]["error"]
    assert not view["live"]["file_in_sync"]


def test_discarding_the_draft_and_an_emptied_draft_stays_empty(make_client):
    client = make_client()
    client.post("/api/rules", json=NEW_RULE)
    assert client.post("/api/rules/draft/discard").json() == {"reset_to": "v1"}
    assert client.get("/api/rules").json()["diff"]["identical"]
    for rule in STARTER.rules:
        assert client.delete(f"/api/rules/{rule.id}").status_code == 200
    view = client.get("/api/rules").json()
    assert view["draft"] == [] and len(view["diff"]["removed"]) == len(STARTER.rules)


# ------------------------------------------------------------------------------------------ page
def test_rules_page_has_the_editor_the_backtest_and_the_history(make_client):
    client = make_client()
    page = client.get("/rules")
    assert page.status_code == 200
    for marker in (
        'id="rule-form"',
        'name="condition"',
        'id="condition-error"',
        'id="rule-save"',
        'id="backtest-draft"',
        'id="backtest-result"',
        'id="activate"',
        'id="live-version"',
        'id="history-table"',
        'data-insert="fraud_score"',
        "route:&lt;solution&gt;",
        '<script src="/static/rules.js">',
    ):
        assert marker in page.text, marker
    assert "data-rollback" in client.get("/static/rules.js").text
    meta = client.get("/api/rules/meta").json()
    assert {"merchant_segment", "risk_score", "amount_major"} <= {f["name"] for f in meta["fields"]}
    assert meta["types"] == ["authentication", "risk", "retry", "routing"]


# ------------------------------------------------------------------------------------------ backtest
def _wait_backtest(client: TestClient, run_id: int, timeout: float = 60) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        bt = client.get(f"/api/rules/backtests/{run_id}").json()
        if bt["status"] not in ("queued", "running"):
            return bt
        time.sleep(0.2)
    raise AssertionError(f"backtest {run_id} did not finish")


def test_backtest_of_the_draft_runs_the_step_with_the_draft_as_candidate(make_client, db_url, tmp_path, monkeypatch):
    gate = tmp_path / "gate"
    monkeypatch.setenv("RULES_STUB_GATE", str(gate))  # the step's process inherits the environment
    client = make_client(steps=(STUB_BACKTEST,), control_plane_database_url=db_url)
    client.post("/api/rules", json=NEW_RULE)
    draft_version = client.get("/api/rules").json()["draft_full_version"]

    assert client.post("/api/rules/backtest", json={"candidate_rules": "/etc/passwd"}).status_code == 422
    assert client.post("/api/rules/backtest", json={"days": 0}).status_code == 422
    started = client.post("/api/rules/backtest", json={"days": 3})
    assert started.status_code == 202, started.text
    run = started.json()
    assert run["status"] == "running" and run["candidate_full_version"] == draft_version
    busy = client.post("/api/rules/backtest", json={})
    assert busy.status_code == 409 and "already running" in busy.json()["detail"]
    gate.touch()
    bt = _wait_backtest(client, run["id"])

    assert bt["status"] == "succeeded" and bt["has_result"] and bt["rows"] == 100
    assert bt["live_full_version"] == STARTER.full_version and bt["live_matches"] is True
    metrics = {m["metric"]: m for m in bt["metrics"]}
    assert metrics["approval_rate"]["delta"] == pytest.approx(-0.05) and metrics["approval_rate"]["verdict"] == "worse"
    assert metrics["fraud_caught"]["verdict"] == "better" and metrics["false_decline_value_usd"]["verdict"] == "worse"
    assert metrics["transactions"]["verdict"] == "same"
    assert any("replaying 3 days" in line for line in bt["log_tail"])

    # the step read the draft the control plane wrote (hidden parameter, under the data folder)
    raw = client.get(f"/api/runs/{run['id']}").json()
    candidate = Path(raw["params"]["candidate_rules"])
    assert candidate.parent == _data_dir(client) / "rules" / "candidates" and raw["params"]["days"] == 3
    assert raw["result"]["candidate_rule_set_version"] == draft_version
    assert "R100" in raw["result"]["candidate_rule_ids"]
    assert RuleSet.from_json(candidate.read_text()).full_version == draft_version

    listed = client.get("/api/rules/backtests").json()
    assert [b["id"] for b in listed] == [run["id"]] and listed[0]["live_label"] == "v1"
    event = _audit(client, "rule.backtest")[0]
    assert event["after"]["run_id"] == run["id"] and event["after"]["changes"] == {
        "added": 1,
        "removed": 0,
        "changed": 0,
    }
    assert client.get("/api/rules/backtests/999999").status_code == 404
