"""Control-plane fixtures: the app under TestClient with a real database (SQLite, or PostgreSQL via
the session fixture), signed in through the real login form, CSRF header set like the pages do."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator

import pytest
from fastapi.testclient import TestClient

from services.control_plane.app import create_app
from services.control_plane.settings import ControlPlaneSettings
from services.control_plane.steps import STEPS, Step

ADMIN_PASSWORD = "admin-password-for-tests"


def login(client: TestClient, username: str = "admin", password: str = ADMIN_PASSWORD) -> str:
    """Sign in through the form; returns the session's CSRF token (also set as the client's header)."""
    page = client.get("/login")
    token = re.search(r'name="csrf_token" value="([^"]+)"', page.text).group(1)
    resp = client.post(
        "/login",
        data={"username": username, "password": password, "csrf_token": token, "next": "/setup"},
        follow_redirects=False,
    )
    assert resp.status_code == 303, resp.text
    csrf = client.get("/api/me").json()["csrf_token"]
    client.headers["X-CSRF-Token"] = csrf
    return csrf


@pytest.fixture
def make_client(tmp_path) -> Iterator[Callable[..., TestClient]]:
    """``make_client(steps=..., signed_in=True, **settings)``: an app on a fresh data folder."""
    opened: list[TestClient] = []

    def make(steps: tuple[Step, ...] = STEPS, signed_in: bool = True, **overrides) -> TestClient:
        base = dict(
            data_dir=tmp_path,
            kafka_bootstrap="127.0.0.1:1",
            first_run=False,
            decision_feed=False,
            admin_password=ADMIN_PASSWORD,
        )
        base.update(overrides)
        client = TestClient(create_app(ControlPlaneSettings(**base), steps=steps))
        client.__enter__()
        opened.append(client)
        if signed_in:
            login(client)
        return client

    yield make
    for client in opened:
        client.__exit__(None, None, None)
