"""/models: a real sqlite MLflow registry with two versions of each model; aliases really move."""

from __future__ import annotations

from pathlib import Path

import pytest

from payments_core.models import MODEL_KINDS, ModelSource, registered_name
from tests.payments_core.helpers import mlflow_uri, register_all, train_models
from tests.services.control_plane.conftest import login


@pytest.fixture(scope="module")
def registry(tmp_path_factory) -> str:
    """v1 of each model is champion, v2 challenger."""
    folder: Path = tmp_path_factory.mktemp("registry")
    uri = mlflow_uri(folder)
    trained = train_models(n=600)
    assert set(register_all(uri, folder / "artifacts", trained, aliases=("champion",)).values()) == {"1"}
    assert set(
        register_all(uri, folder / "artifacts", trained, aliases=("challenger",), thresholds={"risk": 0.65}).values()
    ) == {"2"}
    return uri


@pytest.fixture
def client(make_client, registry):
    return make_client(mlflow_tracking_uri=registry)


def aliases(uri: str) -> dict[tuple[str, str], str | None]:
    return ModelSource(uri).alias_versions()


def audit_events(client, action: str) -> list[dict]:
    return client.get(f"/api/audit?action={action}").json()


def test_lists_the_four_models_with_versions_metrics_and_aliases(client, registry):
    body = client.get("/api/models").json()
    assert [m["kind"] for m in body["models"]] == list(MODEL_KINDS)
    assert body["message"] is None and "refresh interval" in body["note"]
    current = aliases(registry)
    for model in body["models"]:
        kind = model["kind"]
        assert model["name"] == registered_name(kind) and model["registered"]
        assert [v["version"] for v in model["versions"]] == ["2", "1"]
        assert (model["champion"], model["challenger"]) == (current[(kind, "champion")], current[(kind, "challenger")])
        v2, v1 = model["versions"]
        assert v1["aliases"] == ["champion"] and v2["aliases"] == ["challenger"]
        assert v1["metrics"]["auc"] == 0.5 and v1["headline_metrics"] == {"auc": 0.5}
        assert v1["status"] == "READY" and v1["run_id"] and v1["created_at"] and v1["features_match"]
        assert v1["tags"]["pa.kind"] == kind and v1["fast_path"] == "linear"
        assert v1["threshold"] == 0.8
        assert v2["threshold"] == (0.65 if kind == "risk" else 0.8)
        assert model["previous_champion"] is None  # nothing changed here yet


def test_promote_rollback_and_clear_move_the_aliases_and_are_audited(client, registry):
    resp = client.post("/api/models/risk/aliases/champion", json={"version": 2})
    assert resp.status_code == 200, resp.text
    assert resp.json() == {
        "kind": "risk",
        "name": "payment_analysis_risk",
        "alias": "champion",
        "before": "1",
        "version": "2",
        "changed": True,
    }
    assert aliases(registry)[("risk", "champion")] == "2"
    assert aliases(registry)[("approval", "champion")] == "1"  # other models untouched
    promoted = audit_events(client, "model.promote")[0]
    assert (promoted["actor"], promoted["target"]) == ("admin", "payment_analysis_risk")
    assert promoted["before"] == {"alias": "champion", "version": "1"}
    assert promoted["after"] == {"alias": "champion", "version": "2"}
    listed = {m["kind"]: m for m in client.get("/api/models").json()["models"]}
    assert listed["risk"]["champion"] == "2" and listed["risk"]["previous_champion"] == "1"

    # the same promotion again changes nothing and records nothing
    again = client.post("/api/models/risk/aliases/champion", json={"version": "2"}).json()
    assert again["changed"] is False and len(audit_events(client, "model.promote")) == 1

    # roll back without a version: to the champion before the last change, from the audit trail
    back = client.post("/api/models/risk/rollback")
    assert back.status_code == 200, back.text
    assert (back.json()["before"], back.json()["version"]) == ("2", "1")
    assert aliases(registry)[("risk", "champion")] == "1"
    rolled = audit_events(client, "model.rollback")[0]
    assert rolled["before"] == {"alias": "champion", "version": "2"} and rolled["after"]["version"] == "1"

    # roll back to a chosen version
    chosen = client.post("/api/models/risk/rollback", json={"version": 2}).json()
    assert chosen["version"] == "2" and aliases(registry)[("risk", "champion")] == "2"
    client.post("/api/models/risk/rollback", json={"version": 1})

    # challenger: move, then clear
    assert client.post("/api/models/retry/aliases/challenger", json={"version": 1}).json()["before"] == "2"
    assert aliases(registry)[("retry", "challenger")] == "1"
    cleared = client.delete("/api/models/retry/aliases/challenger")
    assert cleared.status_code == 200 and cleared.json()["before"] == "1"
    assert aliases(registry)[("retry", "challenger")] is None
    event = audit_events(client, "model.challenger_clear")[0]
    assert event["target"] == "payment_analysis_retry" and event["before"] == {"alias": "challenger", "version": "1"}
    assert client.delete("/api/models/retry/aliases/challenger").json()["changed"] is False
    client.post("/api/models/retry/aliases/challenger", json={"version": 2})
    assert aliases(registry)[("retry", "challenger")] == "2"


def test_rollback_without_a_recorded_change_asks_for_a_version(client):
    # routing's champion was set by training (register_all), not here: its predecessor is unknown
    resp = client.post("/api/models/routing/rollback")
    assert resp.status_code == 409 and "choose the version" in resp.json()["detail"]


def test_unknown_model_version_or_alias_is_refused_clearly(client, registry):
    resp = client.post("/api/models/fraud/aliases/champion", json={"version": 1})
    assert resp.status_code == 404 and "unknown model 'fraud'" in resp.json()["detail"]
    resp = client.post("/api/models/risk/aliases/champion", json={"version": 9})
    assert resp.status_code == 422 and "has no version 9 (registered versions: 1, 2)" in resp.json()["detail"]
    assert client.post("/api/models/risk/aliases/shadow", json={"version": 1}).status_code == 422
    assert client.post("/api/models/risk/aliases/champion", json={"version": "x"}).status_code == 422
    assert client.post("/api/models/risk/rollback", json={"version": 9}).status_code == 422
    assert client.delete("/api/models/fraud/aliases/challenger").status_code == 404
    assert aliases(registry)[("risk", "champion")] == "1"


def test_viewers_read_but_cannot_move_aliases(client, registry):
    assert (
        client.post("/api/users", json={"username": "viv", "password": "viewer-password", "role": "viewer"}).status_code
        == 201
    )
    client.post("/logout", data={"csrf_token": client.headers["X-CSRF-Token"]})
    login(client, "viv", "viewer-password")
    assert client.get("/api/models").status_code == 200
    resp = client.post("/api/models/risk/aliases/champion", json={"version": 2})
    assert resp.status_code == 403 and "viewer" in resp.json()["detail"]
    assert client.post("/api/models/risk/rollback", json={"version": 2}).status_code == 403
    assert client.delete("/api/models/risk/aliases/challenger").status_code == 403
    assert aliases(registry)[("risk", "champion")] == "1" and aliases(registry)[("risk", "challenger")] == "2"


def test_a_mutation_without_the_csrf_token_is_refused(client, registry):
    del client.headers["X-CSRF-Token"]
    assert client.post("/api/models/risk/aliases/champion", json={"version": 2}).status_code == 403
    assert aliases(registry)[("risk", "champion")] == "1"


def test_unreachable_registry_is_503_and_missing_registry_says_train(make_client, tmp_path):
    down = make_client(mlflow_tracking_uri="http://127.0.0.1:1")
    resp = down.get("/api/models")
    assert resp.status_code == 503 and "unreachable" in resp.json()["detail"]
    assert down.post("/api/models/risk/aliases/champion", json={"version": 1}).status_code == 503

    fresh = make_client(data_dir=tmp_path / "fresh")
    body = fresh.get("/api/models").json()
    assert "Train step" in body["message"] and not any(m["registered"] for m in body["models"])
    assert not (tmp_path / "fresh" / "mlflow.db").exists()  # reading did not create an empty registry
    resp = fresh.post("/api/models/risk/rollback", json={"version": 1})
    assert resp.status_code == 404 and "no versions of payment_analysis_risk" in resp.json()["detail"]


def test_models_page_renders_for_signed_in_users_only(client, make_client):
    page = client.get("/models")
    assert page.status_code == 200 and "/static/models.js" in page.text and 'id="models"' in page.text
    script = client.get("/static/models.js").text
    for hook in (
        'data-model="',
        'data-version="',
        'data-promote="champion"',
        'data-promote="challenger"',
        'data-rollback="',
        "PA.confirmDialog",
    ):
        assert hook in script
    anonymous = make_client(signed_in=False)
    resp = anonymous.get("/models", follow_redirects=False)
    assert resp.status_code == 303 and resp.headers["location"].startswith("/login")
    assert anonymous.get("/api/models").status_code == 401
