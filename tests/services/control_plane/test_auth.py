"""Sign-in, roles, CSRF and the audit of sign-ins, against real SQLite and PostgreSQL."""

from __future__ import annotations

import re

import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient

from tests.services.control_plane.conftest import ADMIN_PASSWORD, login


@pytest.fixture(params=["sqlite", "postgres"])
def db_url(request) -> str:
    return "" if request.param == "sqlite" else request.getfixturevalue("postgres_url")


def test_pages_need_sign_in_and_login_lands_on_the_page_asked_for(make_client, db_url):
    client = make_client(signed_in=False, control_plane_database_url=db_url)
    for path in ("/setup", "/dashboard", "/decisions", "/rules", "/models", "/alerts", "/audit"):
        resp = client.get(path, follow_redirects=False)
        assert resp.status_code == 303 and resp.headers["location"] == f"/login?next={path}"
    page = client.get("/login?next=/rules")
    token = re.search(r'name="csrf_token" value="([^"]+)"', page.text).group(1)
    bad = client.post("/login", data={"username": "admin", "password": "nope", "csrf_token": token, "next": "/rules"})
    assert bad.status_code == 401 and "Wrong user name or password" in bad.text
    ok = client.post(
        "/login",
        data={"username": "admin", "password": ADMIN_PASSWORD, "csrf_token": token, "next": "/rules"},
        follow_redirects=False,
    )
    assert ok.status_code == 303 and ok.headers["location"] == "/rules"
    for path in (
        "/setup",
        "/dashboard",
        "/decisions",
        "/rules",
        "/models",
        "/alerts",
        "/audit",
        "/dashboards",
        "/agents",
    ):
        assert client.get(path).status_code == 200, path
    actions = [e["action"] for e in client.get("/api/audit").json()]
    assert "auth.login" in actions and "auth.login_failed" in actions


def test_login_refuses_a_missing_csrf_token_and_an_offsite_next(make_client):
    client = make_client(signed_in=False)
    resp = client.post("/login", data={"username": "admin", "password": ADMIN_PASSWORD})
    assert resp.status_code == 403
    page = client.get("/login")
    token = re.search(r'name="csrf_token" value="([^"]+)"', page.text).group(1)
    resp = client.post(
        "/login",
        data={"username": "admin", "password": ADMIN_PASSWORD, "csrf_token": token, "next": "https://evil.example/"},
        follow_redirects=False,
    )
    assert resp.headers["location"] == "/setup"


def test_mutations_need_a_session_and_the_csrf_token(make_client, db_url):
    anonymous = make_client(signed_in=False, control_plane_database_url=db_url)
    assert anonymous.post("/api/steps/backfill/run").status_code == 401
    assert anonymous.get("/api/steps").status_code == 401

    client = make_client(control_plane_database_url=db_url)
    token = client.headers.pop("X-CSRF-Token")
    resp = client.post("/api/steps/backfill/run", json={"params": {"days": "many"}})
    assert resp.status_code == 403 and "CSRF" in resp.json()["detail"]
    resp = client.post(
        "/api/steps/backfill/run", json={"params": {"days": "many"}}, headers={"X-CSRF-Token": "x" + token}
    )
    assert resp.status_code == 403
    # with the token the request reaches the handler (which refuses the bad parameter, naming it)
    resp = client.post("/api/steps/backfill/run", json={"params": {"days": "many"}}, headers={"X-CSRF-Token": token})
    assert resp.status_code == 422 and "'days'" in resp.json()["detail"]


def test_viewers_read_but_do_not_change(make_client):
    admin = make_client()
    created = admin.post("/api/users", json={"username": "ana", "password": "viewer-password-1", "role": "viewer"})
    assert created.status_code == 201
    assert admin.post("/api/users", json={"username": "ana", "password": "viewer-password-1"}).status_code == 409
    assert admin.post("/api/users", json={"username": "bo", "password": "short"}).status_code == 422

    viewer = TestClient(admin.app)
    login(viewer, "ana", "viewer-password-1")
    assert viewer.get("/api/steps").status_code == 200
    resp = viewer.post("/api/steps/backfill/run")
    assert resp.status_code == 403 and "viewer" in resp.json()["detail"]
    assert viewer.get("/api/users").status_code == 403
    # a viewer changes their own password, not someone else's
    assert viewer.put("/api/users/ana/password", json={"password": "a-new-password-2"}).status_code == 200
    assert viewer.put("/api/users/admin/password", json={"password": "a-new-password-2"}).status_code == 403
    audit = admin.get("/api/audit?action=user.").json()
    assert {(e["action"], e["target"]) for e in audit} >= {("user.create", "ana"), ("user.password", "ana")}


def test_logout_ends_the_session(make_client):
    client = make_client()
    assert client.post("/logout", data={}, follow_redirects=False).status_code == 303
    assert client.get("/api/me").status_code == 401


def test_bearer_token_for_scripts(make_client):
    client = make_client(signed_in=False, control_plane_token="script-token-0123456789")
    assert client.get("/api/me", headers={"Authorization": "Bearer wrong"}).status_code == 401
    me = client.get("/api/me", headers={"Authorization": "Bearer script-token-0123456789"}).json()
    assert me["role"] == "admin" and me["via"] == "token"
    # no cookie, so no CSRF needed: the handler answers (404 for an unknown step)
    resp = client.post("/api/steps/nope/run", headers={"Authorization": "Bearer script-token-0123456789"})
    assert resp.status_code == 404


def test_databricks_app_identity_from_forwarded_headers(make_client):
    client = make_client(signed_in=False, auth_mode="databricks", admin_users="Lead@Example.com")
    assert client.get("/api/me").status_code == 401
    viewer = client.get("/api/me", headers={"X-Forwarded-Email": "analyst@example.com"}).json()
    assert viewer["role"] == "viewer" and viewer["name"] == "analyst@example.com"
    admin = client.get("/api/me", headers={"X-Forwarded-Email": "lead@example.com"}).json()
    assert admin["role"] == "admin"
    # forwarded identities are browser sessions too: CSRF applies
    resp = client.post("/api/steps/nope/run", headers={"X-Forwarded-Email": "lead@example.com"})
    assert resp.status_code == 403
    resp = client.post(
        "/api/steps/nope/run", headers={"X-Forwarded-Email": "lead@example.com", "X-CSRF-Token": admin["csrf_token"]}
    )
    assert resp.status_code == 404


def test_first_admin_password_is_generated_once_and_kept_hashed(make_client, tmp_path):
    make_client(signed_in=False, admin_password="")
    engine = sa.create_engine(f"sqlite:///{tmp_path / 'control_plane.db'}")
    with engine.connect() as conn:
        rows = conn.execute(sa.text("SELECT username, password_hash, role FROM users")).all()
    assert [(r[0], r[2]) for r in rows] == [("admin", "admin")]
    assert rows[0][1].startswith("$argon2")
