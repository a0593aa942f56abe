"""Control-plane web app and API (FastAPI)."""
from __future__ import annotations

from contextlib import asynccontextmanager
from pathlib import Path
from typing import Annotated

import httpx
from fastapi import Depends, FastAPI, HTTPException, Request
from fastapi.responses import HTMLResponse
from fastapi.templating import Jinja2Templates
from sqlalchemy import select

from services.control_plane.db import JobRun, make_engine, make_sessionmaker
from services.control_plane.kafka_status import topic_status
from services.control_plane.runner import StepRunner
from services.control_plane.settings import ControlPlaneSettings, get_settings
from services.control_plane.steps import STEPS, STEPS_BY_ID, Step

TEMPLATES = Jinja2Templates(directory=str(Path(__file__).parent / "templates"))


def _runner(request: Request) -> StepRunner:
    return request.app.state.runner


Runner = Annotated[StepRunner, Depends(_runner)]


def create_app(settings: ControlPlaneSettings | None = None, steps: tuple[Step, ...] = STEPS) -> FastAPI:
    settings = settings or get_settings()
    steps_by_id = {s.id: s for s in steps} if steps is not STEPS else STEPS_BY_ID

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        engine = make_engine(settings.database_url)
        app.state.sessions = make_sessionmaker(engine)
        app.state.runner = StepRunner(app.state.sessions, settings.job_log_dir)
        yield
        engine.dispose()

    app = FastAPI(title="payment-analysis control plane", version="0.1.0", lifespan=lifespan)

    def last_runs(r: StepRunner) -> dict[str, dict]:
        with r.sessions() as db:
            rows = db.scalars(select(JobRun).order_by(JobRun.id.desc()).limit(200)).all()
        latest: dict[str, dict] = {}
        for row in rows:
            latest.setdefault(row.step, row.as_dict())
        return latest

    @app.get("/health")
    def health() -> dict:
        return {"status": "ok", "database": settings.database_url.split(":", 1)[0]}

    @app.get("/api/steps")
    def list_steps(r: Runner) -> list[dict]:
        latest = last_runs(r)
        return [{"id": s.id, "title": s.title, "description": s.description, "available": s.available,
                 "command": " ".join(["python", "-m", s.module, *s.args]), "last_run": latest.get(s.id)}
                for s in steps]

    @app.post("/api/steps/{step_id}/run", status_code=202)
    def run_step(step_id: str, r: Runner) -> dict:
        step = steps_by_id.get(step_id)
        if step is None:
            raise HTTPException(404, f"unknown step {step_id!r}; known: {', '.join(steps_by_id)}")
        if not step.available:
            raise HTTPException(409, f"step {step_id!r} is not available in this build ({step.module} missing)")
        latest = last_runs(r).get(step_id)
        if latest and latest["status"] == "running":
            raise HTTPException(409, f"step {step_id!r} is already running (run {latest['id']})")
        return r.start(step).as_dict()

    @app.get("/api/runs/{run_id}")
    def get_run(run_id: int, r: Runner, tail: int = 200) -> dict:
        with r.sessions() as db:
            run = db.get(JobRun, run_id)
            if run is None:
                raise HTTPException(404, f"no run {run_id}")
            body = run.as_dict()
            log = Path(run.log_path)
        lines = log.read_text(errors="replace").splitlines()[-tail:] if log.exists() else []
        return {**body, "log": lines}

    @app.get("/api/platform")
    async def platform() -> dict:
        api = {"url": settings.scoring_api_url, "status": "down"}
        try:
            async with httpx.AsyncClient(timeout=1.0) as client:
                resp = await client.get(f"{settings.scoring_api_url}/health")
                api["status"] = "up" if resp.status_code == 200 else f"http {resp.status_code}"
        except httpx.HTTPError:
            pass
        return {"scoring_api": api, "kafka": topic_status(settings.kafka_bootstrap, settings.topic_prefix),
                "catalog": settings.catalog, "schema": settings.schema_name}

    @app.get("/", response_class=HTMLResponse)
    def index(request: Request) -> HTMLResponse:
        return TEMPLATES.TemplateResponse(request, "index.html", {"settings": settings})

    return app
