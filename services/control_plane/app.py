"""Control-plane web app and API (FastAPI): pages for people, ``/api`` for the pages and scripts.

The app talks to no other service's code: the scoring API over HTTP, Kafka with its own consumer,
rules and models through ``payments_core`` and MLflow, the lakehouse through Delta reads.
"""

from __future__ import annotations

import logging
from contextlib import asynccontextmanager
from pathlib import Path
from urllib.parse import quote

from fastapi import FastAPI, Request
from fastapi.responses import RedirectResponse
from fastapi.staticfiles import StaticFiles
from starlette.middleware.sessions import SessionMiddleware

from services.control_plane.db import make_engine, make_sessionmaker, migrate
from services.control_plane.decision_feed import DecisionFeed
from services.control_plane.deps import LoginRequired
from services.control_plane.first_run import maybe_start_first_run
from services.control_plane.routers import (
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
from services.control_plane.runner import StepRunner
from services.control_plane.security import ensure_admin, session_secret
from services.control_plane.settings import ControlPlaneSettings, get_settings
from services.control_plane.steps import STEPS, Step, StepCatalog

log = logging.getLogger("control_plane")
STATIC = Path(__file__).parent / "static"
VENDOR = Path(__file__).parent / "web" / "dist"


def step_environment(settings: ControlPlaneSettings) -> dict[str, str]:
    """What every step's process gets on top of the control plane's own environment: the same data
    folder, lakehouse, registry and Kafka as the control plane, however those were configured."""
    env = {
        "PA_DATA_DIR": str(settings.data_dir),
        "PA_WAREHOUSE_DIR": str(settings.lakehouse_dir),
        "PA_MLFLOW_TRACKING_URI": settings.tracking_uri,
        "PA_CATALOG": settings.catalog,
        "PA_SCHEMA": settings.lakehouse_schema,
        "PA_KAFKA_BOOTSTRAP": settings.kafka_bootstrap,
        "PA_TOPIC_PREFIX": settings.topic_prefix,
    }
    return env


def create_app(settings: ControlPlaneSettings | None = None, steps: tuple[Step, ...] = STEPS) -> FastAPI:
    settings = settings or get_settings()

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        engine = make_engine(settings.database_url)
        migrate(engine)
        app.state.sessions = make_sessionmaker(engine)
        app.state.runner = StepRunner(app.state.sessions, settings.job_log_dir, step_environment(settings))
        app.state.runner.reconcile()
        with app.state.sessions() as db:
            password = ensure_admin(db, settings)
        if password:  # shown once; the database keeps only its hash
            log.warning("created the first admin: user 'admin', password %s (change it on /audit)", password)
        app.state.feed = DecisionFeed(settings)
        if settings.decision_feed:
            app.state.feed.start()
        maybe_start_first_run(app.state.runner, app.state.steps, settings)
        yield
        app.state.feed.stop()
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

    @app.exception_handler(LoginRequired)
    async def to_login(_request: Request, exc: LoginRequired) -> RedirectResponse:
        return RedirectResponse(f"/login?next={quote(exc.next_url)}", status_code=303)

    @app.get("/health", tags=["platform"])
    def health() -> dict:
        return {"status": "ok", "database": settings.database_url.split(":", 1)[0]}

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
        audit_log,
    ):
        app.include_router(module.router)
    return app
