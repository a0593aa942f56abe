"""Control-plane web app and API (FastAPI): pages for people, ``/api`` for the pages and scripts.

The app talks to no other service's code: the scoring API over HTTP, Kafka with its own consumer,
rules and models through ``payments_core`` and MLflow, the lakehouse through Delta reads. Steps,
services, models, decisions and rule publication go through the backend ``PA_BACKEND`` names
(``backends/``: this machine, or a Databricks workspace).
"""

from __future__ import annotations

import logging
from contextlib import asynccontextmanager
from pathlib import Path
from urllib.parse import quote

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, RedirectResponse
from fastapi.staticfiles import StaticFiles
from starlette.middleware.sessions import SessionMiddleware

from services.control_plane.backends import BackendError, make_backend
from services.control_plane.db import make_engine, make_sessionmaker, migrate
from services.control_plane.deps import LoginRequired
from services.control_plane.first_run import close_interrupted_sequence, maybe_start_first_run
from services.control_plane.routers import (
    agents,
    alerts,
    audit_log,
    auth,
    dashboard,
    dashboards,
    decisions,
    models,
    pages,
    platform,
    rules,
    runs,
    services,
)
from services.control_plane.security import ensure_admin, session_secret
from services.control_plane.settings import ControlPlaneSettings, get_settings
from services.control_plane.steps import STEPS, Step, StepCatalog

log = logging.getLogger("control_plane")
STATIC = Path(__file__).parent / "static"
VENDOR = Path(__file__).parent / "web" / "dist"


def create_app(settings: ControlPlaneSettings | None = None, steps: tuple[Step, ...] = STEPS) -> FastAPI:
    settings = settings or get_settings()

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        engine = make_engine(settings.database_url)
        migrate(engine)
        app.state.sessions = make_sessionmaker(engine)
        # the one choice of backend (PA_BACKEND): every router reaches it through deps.BackendDep
        backend = make_backend(settings, app.state.sessions, app.state.steps.steps)
        app.state.backend = backend
        with app.state.sessions() as db:
            password = ensure_admin(db, settings)
        if password:  # shown once; the database keeps only its hash
            log.warning("created the first admin: user 'admin', password %s (change it on /audit)", password)
        backend.start()
        close_interrupted_sequence(backend)
        maybe_start_first_run(backend, app.state.steps, settings)
        agents.on_start(app)  # runs cut short by a restart are marked interrupted; the optional scheduler
        yield
        agents.on_stop(app)
        backend.stop()
        engine.dispose()

    app = FastAPI(title="payment-analysis control plane", version="0.2.0", lifespan=lifespan)
    app.state.settings = settings
    app.state.steps = StepCatalog(steps)
    app.add_middleware(
        SessionMiddleware,
        secret_key=session_secret(settings),
        session_cookie="pa_session",
        max_age=settings.session_max_age_s,
        same_site="lax",
        https_only=settings.secure_cookies,
    )

    @app.exception_handler(BackendError)
    async def backend_error(_request: Request, exc: BackendError) -> JSONResponse:
        """A backend that is not configured or does not answer: its message and status, never a 500."""
        return JSONResponse({"detail": str(exc)}, status_code=exc.status_code)

    @app.exception_handler(LoginRequired)
    async def to_login(_request: Request, exc: LoginRequired) -> RedirectResponse:
        return RedirectResponse(f"/login?next={quote(exc.next_url)}", status_code=303)

    @app.get("/health", tags=["platform"])
    def health() -> dict:
        return {"status": "ok", "database": settings.database_url.split(":", 1)[0], "backend": settings.backend}

    app.mount("/static", StaticFiles(directory=STATIC), name="static")
    VENDOR.mkdir(parents=True, exist_ok=True)
    app.mount("/vendor", StaticFiles(directory=VENDOR), name="vendor")
    for module in (
        auth,
        pages,
        runs,
        services,
        platform,
        decisions,
        rules,
        models,
        dashboard,
        dashboards,
        alerts,
        agents,
        audit_log,
    ):
        app.include_router(module.router)
    return app
