"""Setup & Run: the steps, their runs (start, cancel, status, history), live log tails (SSE) and the
first-run sequence."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Annotated, Any

from fastapi import APIRouter, Body, HTTPException, Request, status
from fastapi.responses import HTMLResponse
from fastapi.sse import EventSourceResponse, ServerSentEvent
from sqlalchemy import select

from services.control_plane import audit
from services.control_plane.db import JobRun
from services.control_plane.deps import Admin, BackendDep, DbSession, PageUser, Viewer
from services.control_plane.first_run import FIRST_RUN_KEY, first_run_steps
from services.control_plane.runner import AlreadyRunning, SequenceRunning
from services.control_plane.steps import StepCatalog
from services.control_plane.templating import render

router = APIRouter(tags=["setup"])
LOG_POLL_S = 0.3


def _catalog(request: Request) -> StepCatalog:
    return request.app.state.steps


@router.get("/setup", response_class=HTMLResponse, include_in_schema=False)
def setup_page(request: Request, user: PageUser):
    return render(request, "setup.html", user, "/setup")


@router.get("/api/steps")
def list_steps(request: Request, db: DbSession, backend: BackendDep, _user: Viewer) -> list[dict]:
    """The steps in order, each with what it runs on this backend (``command``, ``available``) and its
    last run."""
    latest: dict[str, dict] = {}
    for row in db.scalars(select(JobRun).order_by(JobRun.id.desc()).limit(500)):
        latest.setdefault(row.step, row.as_dict())
    return [{**backend.runner.describe(s), "last_run": latest.get(s.id)} for s in _catalog(request).steps]


@router.post("/api/steps/{step_id}/run", status_code=status.HTTP_202_ACCEPTED)
def run_step(
    step_id: str,
    request: Request,
    db: DbSession,
    backend: BackendDep,
    user: Admin,
    params: Annotated[dict[str, Any] | None, Body(embed=True)] = None,
) -> dict:
    catalog = _catalog(request)
    step = catalog.by_id.get(step_id)
    if step is None:
        raise HTTPException(404, f"unknown step {step_id!r}; known: {', '.join(catalog.by_id)}")
    unavailable = backend.runner.unavailable(step)
    if unavailable:
        raise HTTPException(409, unavailable)
    hidden = {p.name for p in step.params if p.hidden}
    if hidden & set(params or {}):
        raise HTTPException(
            422,
            f"parameter(s) {', '.join(sorted(hidden & set(params or {})))} are set by the "
            "control plane, not by callers",
        )
    try:
        resolved = step.resolve(params)
    except ValueError as exc:
        raise HTTPException(422, str(exc)) from None
    try:
        run = backend.runner.start(step, resolved, started_by=user.name)
    except AlreadyRunning as exc:
        raise HTTPException(409, str(exc)) from None
    audit.record(db, user.name, "step.run", step_id, after={"run_id": run.id, "params": resolved})
    return run.as_dict()


@router.post("/api/runs/{run_id}/cancel")
def cancel_run(run_id: int, db: DbSession, backend: BackendDep, user: Admin) -> dict:
    run = db.get(JobRun, run_id)
    if run is None:
        raise HTTPException(404, f"no run {run_id}")
    if not run.active:
        raise HTTPException(409, f"run {run_id} is not running ({run.status})")
    if not backend.runner.cancel(run_id):
        raise HTTPException(409, f"run {run_id} is not a run this control plane follows ({run.backend} backend)")
    audit.record(db, user.name, "step.cancel", run.step, after={"run_id": run_id})
    return {"id": run_id, "status": "cancelling"}


@router.get("/api/runs")
def list_runs(db: DbSession, _user: Viewer, step: str | None = None, limit: int = 50) -> list[dict]:
    query = select(JobRun).order_by(JobRun.id.desc()).limit(min(max(limit, 1), 500))
    if step:
        query = query.where(JobRun.step == step)
    return [r.as_dict() for r in db.scalars(query)]


@router.get("/api/runs/{run_id}")
def get_run(run_id: int, db: DbSession, _user: Viewer, tail: int = 200) -> dict:
    run = db.get(JobRun, run_id)
    if run is None:
        raise HTTPException(404, f"no run {run_id}")
    log = Path(run.log_path)
    lines = log.read_text(errors="replace").splitlines()[-tail:] if log.exists() else []
    return {**run.as_dict(), "log": lines}


@router.get("/api/runs/{run_id}/log", response_class=EventSourceResponse)
async def follow_log(run_id: int, request: Request, backend: BackendDep, _user: Viewer, tail: int = 200):
    """The run's log as server-sent events: the last ``tail`` lines, then each new line as it is
    written (event ``line``), then ``end`` with the final status. A Databricks run's log is what the
    control plane writes while it follows the run: state changes, pipeline events, task outputs."""
    runner = backend.runner
    run = runner.get(run_id)
    if run is None:
        raise HTTPException(404, f"no run {run_id}")
    path = Path(run.log_path)
    for _ in range(20):  # the runner creates the file right after the row
        if path.exists():
            break
        await asyncio.sleep(0.05)
    offset = 0
    if path.exists():
        text = path.read_bytes()
        lines = text.split(b"\n")
        complete, partial = lines[:-1], lines[-1]
        for line in complete[-tail:]:
            yield ServerSentEvent(data=line.decode(errors="replace"), event="line")
        offset = len(text) - len(partial)
    pending = b""
    while not await request.is_disconnected():
        chunk = b""
        if path.exists():
            with path.open("rb") as fh:
                fh.seek(offset)
                chunk = fh.read(1 << 20)
        if chunk:
            offset += len(chunk)
            *complete, pending = (pending + chunk).split(b"\n")
            for line in complete:
                yield ServerSentEvent(data=line.decode(errors="replace"), event="line")
            continue
        current = runner.get(run_id)
        if not current.active:
            if pending:
                yield ServerSentEvent(data=pending.decode(errors="replace"), event="line")
            yield ServerSentEvent(data=current.as_dict(), event="end")
            return
        await asyncio.sleep(LOG_POLL_S)


@router.get("/api/first-run")
def first_run_state(backend: BackendDep, _user: Viewer) -> dict:
    state = backend.runner.get_state(FIRST_RUN_KEY)
    return state or {"status": "not_started", "steps": []}


@router.post("/api/first-run", status_code=status.HTTP_202_ACCEPTED)
def start_first_run(request: Request, db: DbSession, backend: BackendDep, user: Admin) -> dict:
    settings = request.app.state.settings
    try:
        backend.runner.run_sequence(first_run_steps(_catalog(request), settings), FIRST_RUN_KEY, user.name)
    except SequenceRunning as exc:
        raise HTTPException(409, str(exc)) from None
    audit.record(db, user.name, "first_run.start")
    return {"status": "running"}


def _json(value: Any) -> str:
    return json.dumps(value, default=str)
