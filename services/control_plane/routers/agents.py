"""Agents page and API: run a specialist, ask a question or run every specialist (as the scheduler does),
see the recommendations with their evidence (queries, figures, expected lift), accept one (a rule joins
the draft rule set in shadow; a configuration change is recorded as accepted) or dismiss it (feedback).

The analysis is the ``agents`` package's; this module is its host: it hands the agents the dashboard
tables' reader (the one the dashboards use), a backtest runner (the backtest step, through the backend's
runner, with the live rule set plus the candidate as the candidate set), the LLM endpoint when
``PA_LLM_ENDPOINT`` is set, and the recommendation store (``approval_recommendations``). Runs execute in a
background thread and are kept with their transcript in ``agent_runs``; feedback in ``agent_feedback``.
"""

from __future__ import annotations

import json
import logging
import threading
from datetime import datetime
from typing import Any, Literal

from fastapi import APIRouter, FastAPI, HTTPException, Query, Request, status
from fastapi.responses import HTMLResponse
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import Boolean, DateTime, Integer, String, Text, select, update
from sqlalchemy.orm import Mapped, Session, mapped_column

from agents import BY_NAME, SPECIALISTS, Orchestrator, RunRequest
from agents.backtest import BacktestRunner, BacktestUnavailable
from agents.llm import ChatClient, LLMConfig
from agents.query import NOT_REFRESHED
from agents.store import TABLE, RecommendationStore, StoreError
from agents.tools import ToolRefused, check_arguments
from payments_core.rules.model import Rule, RuleSet
from services.control_plane import audit, lakehouse, rule_store
from services.control_plane.backends import BackendError
from services.control_plane.db import Base, aware, iso, utcnow
from services.control_plane.deps import Admin, BackendDep, DbSession, PageUser, SettingsDep, Viewer
from services.control_plane.runner import AlreadyRunning
from services.control_plane.settings import ControlPlaneSettings
from services.control_plane.templating import render

router = APIRouter(tags=["agents"])
log = logging.getLogger("control_plane.agents")
MAX_ACTIVE_RUNS = 3
SCHEDULER = "scheduler"


# ------------------------------------------------------------------------------------------ tables
class AgentRun(Base):
    __tablename__ = "agent_runs"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    kind: Mapped[str] = mapped_column(String(16))
    agents: Mapped[str] = mapped_column(Text, default="[]")
    question: Mapped[str | None] = mapped_column(Text, nullable=True)
    backtest: Mapped[bool] = mapped_column(Boolean, default=True)
    status: Mapped[str] = mapped_column(String(16), default="running")
    planner: Mapped[str] = mapped_column(String(16), default="rules")
    model: Mapped[str | None] = mapped_column(String(300), nullable=True)
    started_by: Mapped[str] = mapped_column(String(200))
    started_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    finished_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    answer: Mapped[str | None] = mapped_column(Text, nullable=True)
    notes: Mapped[str] = mapped_column(Text, default="[]")
    transcript: Mapped[str] = mapped_column(Text, default="[]")
    recommendation_ids: Mapped[str] = mapped_column(Text, default="[]")
    error: Mapped[str | None] = mapped_column(Text, nullable=True)

    def as_dict(self, with_transcript: bool = False) -> dict[str, Any]:
        started, finished = aware(self.started_at), aware(self.finished_at)
        out = {
            "id": self.id,
            "kind": self.kind,
            "agents": json.loads(self.agents or "[]"),
            "question": self.question,
            "backtest": self.backtest,
            "status": self.status,
            "planner": self.planner,
            "model": self.model,
            "started_by": self.started_by,
            "started_at": iso(started),
            "finished_at": iso(finished),
            "duration_s": round(((finished or utcnow()) - started).total_seconds(), 2) if started else None,
            "answer": self.answer,
            "notes": json.loads(self.notes or "[]"),
            "recommendation_ids": json.loads(self.recommendation_ids or "[]"),
            "error": self.error,
        }
        if with_transcript:
            out["transcript"] = json.loads(self.transcript or "[]")
        return out


class AgentFeedback(Base):
    __tablename__ = "agent_feedback"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    recommendation_id: Mapped[str] = mapped_column(String(200), index=True)
    verdict: Mapped[str] = mapped_column(String(16))
    reason: Mapped[str] = mapped_column(Text, default="")
    actor: Mapped[str] = mapped_column(String(200))
    at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    draft_rule_id: Mapped[str | None] = mapped_column(String(64), nullable=True)
    config_change: Mapped[str | None] = mapped_column(Text, nullable=True)

    def as_dict(self) -> dict[str, Any]:
        return {
            "verdict": self.verdict,
            "reason": self.reason,
            "actor": self.actor,
            "at": iso(self.at),
            "draft_rule_id": self.draft_rule_id,
            "config_change": json.loads(self.config_change) if self.config_change else None,
        }


# ------------------------------------------------------------------------------------------ the host
def reader(settings: ControlPlaneSettings) -> lakehouse.DeltaReader:
    """The dashboards' reader: the agents query the same ``dash_`` tables the 12 dashboards show."""
    return lakehouse.reader_for(settings.lakehouse_dir, settings.catalog, settings.lakehouse_schema)


def store(settings: ControlPlaneSettings) -> RecommendationStore:
    r = reader(settings)
    return RecommendationStore(r.folder, r)


def llm_config(settings: ControlPlaneSettings) -> LLMConfig | None:
    if not settings.llm_endpoint.strip():
        return None
    return LLMConfig(
        endpoint=settings.llm_endpoint.strip(),
        model=settings.llm_model.strip(),
        api_key=settings.llm_api_key.get_secret_value(),
        timeout_s=settings.llm_timeout_s,
        max_rounds=settings.llm_max_rounds,
        max_tool_calls=settings.llm_max_tool_calls,
    )


def backtest_runner(app: FastAPI, actor: str) -> BacktestRunner | None:
    """Backtests through the backtest step (``spark.jobs.backtest`` locally, its job on Databricks): the
    candidate set is the live set with the candidate rules added, handed over as the step's candidate file."""
    step = app.state.steps.by_id.get("backtest")
    if step is None:
        return None
    settings: ControlPlaneSettings = app.state.settings

    def run(rules: list[dict[str, Any]], note: str) -> dict[str, Any]:
        backend = app.state.backend
        runner, publisher = backend.runner, backend.rules
        unavailable = runner.unavailable(step)
        if unavailable:
            raise BacktestUnavailable(unavailable)
        with app.state.sessions() as db:
            live = rule_store.live_version(db, publisher)
        live_set = rule_store.rule_set_of(live)
        added = [Rule(**body) for body in rules]
        ids = {r.id for r in added}
        candidate = RuleSet(version="agents-candidate", rules=[*(r for r in live_set.rules if r.id not in ids), *added])
        params = step.resolve({})
        try:
            params["candidate_rules"] = publisher.write_candidate(candidate)
        except (BackendError, OSError) as exc:
            raise BacktestUnavailable(f"the candidate rule set could not be handed over: {exc}") from None
        try:
            job = runner.start(step, params, started_by=actor, note=f"{note} vs {live.label} ({live.full_version})")
        except (AlreadyRunning, BackendError) as exc:
            publisher.discard_candidate(params["candidate_rules"])
            raise BacktestUnavailable(str(exc)) from None
        runner.wait(job.id, settings.agents_backtest_timeout_s)
        done = runner.get(job.id)
        if done.active:
            runner.cancel(job.id)
            runner.wait(job.id, 30)  # SIGTERM to its process group (SIGKILL after the runner's grace period)
            raise BacktestUnavailable(
                f"backtest run {job.id} did not finish within {settings.agents_backtest_timeout_s:g} s (cancelled)"
            )
        result = done.as_dict()["result"]
        if done.status != "succeeded" or not result:
            raise BacktestUnavailable(f"backtest run {job.id} {done.status} without a result (see its log)")
        return {**result, "run_id": job.id}

    return run


class AgentService:
    """The app's agent runs: each in a thread, its row updated as it goes; the optional scheduler."""

    def __init__(self, app: FastAPI):
        self.app = app
        self.sessions = app.state.sessions
        self.settings: ControlPlaneSettings = app.state.settings
        self._threads: dict[int, threading.Thread] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._scheduler: threading.Thread | None = None

    # ------------------------------------------------------------------------------ lifecycle
    def start(self) -> None:
        """Runs a restart cut short are interrupted; the scheduler starts when configured."""
        with self.sessions() as db:
            db.execute(
                update(AgentRun)
                .where(AgentRun.status == "running")
                .values(status="interrupted", finished_at=utcnow(), error="the control plane stopped during the run")
            )
            db.commit()
        minutes = self.settings.agents_schedule_minutes
        if minutes > 0:
            self._scheduler = threading.Thread(target=self._schedule, args=(minutes,), daemon=True, name="agents-sched")
            self._scheduler.start()

    def stop(self) -> None:
        self._stop.set()

    def _schedule(self, minutes: float) -> None:
        while not self._stop.wait(minutes * 60):
            try:
                self.start_run(RunRequest("scheduled"), SCHEDULER)
            except HTTPException as exc:
                log.warning("scheduled agent run not started: %s", exc.detail)

    # ------------------------------------------------------------------------------ runs
    def active(self) -> int:
        with self._lock:
            return sum(t.is_alive() for t in self._threads.values())

    def start_run(self, request: RunRequest, actor: str) -> AgentRun:
        if self.active() >= MAX_ACTIVE_RUNS:
            raise HTTPException(409, f"{MAX_ACTIVE_RUNS} agent runs are already running; wait for one to finish")
        agents = [request.agent] if request.kind == "specialist" else []
        with self.sessions() as db:
            row = AgentRun(
                kind=request.kind,
                agents=json.dumps(agents),
                question=request.question,
                backtest=request.backtest,
                status="running",
                started_by=actor,
                started_at=utcnow(),
            )
            db.add(row)
            db.commit()
        thread = threading.Thread(target=self._execute, args=(row.id, request, actor), daemon=True, name="agent-run")
        with self._lock:
            self._threads[row.id] = thread
        thread.start()
        return row

    def wait(self, run_id: int, timeout: float | None = None) -> None:
        thread = self._threads.get(run_id)
        if thread is not None:
            thread.join(timeout)

    def _save(self, run_id: int, **values: Any) -> None:
        with self.sessions() as db:
            db.execute(update(AgentRun).where(AgentRun.id == run_id).values(**values))
            db.commit()

    def _execute(self, run_id: int, request: RunRequest, actor: str) -> None:
        events: list[dict[str, Any]] = []

        def on_event(event: dict[str, Any]) -> None:
            events.append(event)
            self._save(run_id, transcript=json.dumps(events))

        config = llm_config(self.settings)
        orchestrator = Orchestrator(
            reader(self.settings),
            backtest=backtest_runner(self.app, actor),
            llm=ChatClient(config) if config else None,
            max_backtests=self.settings.agents_max_backtests,
            on_event=on_event,
        )
        try:
            result = orchestrator.run(request)
            notes = list(result.notes)
            saved = {"inserted": 0, "updated": 0}
            try:
                saved = store(self.settings).upsert(result.recommendations, run_id)
            except (StoreError, OSError) as exc:
                notes.append(f"the recommendations could not be written to {TABLE}: {exc}")
            log.info("agent run %d (%s): %s, %d recommendation(s) %s", run_id, request.kind, result.planner,
                     len(result.recommendations), saved)  # fmt: skip
            self._save(
                run_id,
                status="succeeded",
                agents=json.dumps(result.agents),
                planner=result.planner,
                model=result.model,
                answer=result.answer,
                notes=json.dumps(notes),
                transcript=json.dumps(result.transcript),
                recommendation_ids=json.dumps([r.id for r in result.recommendations]),
                finished_at=utcnow(),
            )
        except Exception as exc:
            log.exception("agent run %d failed", run_id)
            self._save(
                run_id,
                status="failed",
                error=f"{type(exc).__name__}: {exc}"[:2000],
                transcript=json.dumps(events),
                finished_at=utcnow(),
            )


def service(app: FastAPI) -> AgentService:
    found = getattr(app.state, "agents", None)
    if found is None:
        found = app.state.agents = AgentService(app)
    return found


def on_start(app: FastAPI) -> None:
    service(app).start()


def on_stop(app: FastAPI) -> None:
    service(app).stop()


# ------------------------------------------------------------------------------------------ requests
class RunBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    agent: str | None = Field(None, description="Run this specialist (its name, see GET /api/agents)")
    question: str | None = Field(None, max_length=2000, description="Ask a question; the orchestrator routes it")
    scheduled: bool = Field(False, description="Run every specialist, as the scheduler does")
    backtest: bool = Field(True, description="Measure candidate rules with backtests (each is a Spark job)")
    arguments: dict[str, Any] | None = Field(None, description="The specialist's parameters (agent runs)")


class Decision(BaseModel):
    model_config = ConfigDict(extra="forbid")

    comment: str = Field("", max_length=2000)


class Dismissal(BaseModel):
    model_config = ConfigDict(extra="forbid")

    reason: str = Field(..., min_length=1, max_length=2000, description="Why: kept as feedback")


def _request(body: RunBody) -> RunRequest:
    chosen = [body.agent is not None, bool(body.question and body.question.strip()), body.scheduled]
    if sum(chosen) != 1:
        raise HTTPException(422, "give exactly one of agent, question or scheduled")
    try:
        if body.scheduled:
            return RunRequest("scheduled", backtest=body.backtest)
        if body.agent is not None:
            request = RunRequest("specialist", agent=body.agent, backtest=body.backtest, arguments=body.arguments)
            specialist = BY_NAME[body.agent]
            check_arguments(specialist.tool_name, specialist.schema, body.arguments or {})
            return request
        return RunRequest("question", question=(body.question or "").strip(), backtest=body.backtest)
    except (ValueError, ToolRefused) as exc:
        raise HTTPException(422, str(exc)) from None


def _feedback(db: Session, ids: list[str]) -> dict[str, list[dict[str, Any]]]:
    out: dict[str, list[dict[str, Any]]] = {}
    if ids:
        for f in db.scalars(
            select(AgentFeedback).where(AgentFeedback.recommendation_id.in_(ids)).order_by(AgentFeedback.id)
        ):
            out.setdefault(f.recommendation_id, []).append(f.as_dict())
    return out


def _with_feedback(db: Session, rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    feedback = _feedback(db, [r["recommendation_id"] for r in rows])
    return [{**r, "feedback": feedback.get(r["recommendation_id"], [])} for r in rows]


def _store_call(fn, *args, **kwargs):
    try:
        return fn(*args, **kwargs)
    except StoreError as exc:
        raise HTTPException(exc.status, str(exc)) from None


# ------------------------------------------------------------------------------------------ pages
@router.get("/agents", response_class=HTMLResponse, include_in_schema=False)
def agents_page(request: Request, user: PageUser, settings: SettingsDep):
    return render(request, "agents.html", user, "/agents", info=_info(request, settings))


def _info(request: Request, settings: ControlPlaneSettings) -> dict[str, Any]:
    config = llm_config(settings)
    step = request.app.state.steps.by_id.get("backtest")
    unavailable = request.app.state.backend.runner.unavailable(step) if step is not None else "no backtest step"
    r = reader(settings)
    refreshed = r.info("dash_refreshes")
    return {
        "specialists": [s.describe() for s in SPECIALISTS],
        "llm": config.describe() if config else None,
        "backtest": {"available": not unavailable, "reason": unavailable, "max_per_run": settings.agents_max_backtests},
        "table": {"name": TABLE, **r.info(TABLE).as_dict()},
        "data": {
            "refreshed": refreshed.exists,
            "updated_at": iso(refreshed.updated_at),
            "message": None if refreshed.exists else NOT_REFRESHED,
        },
        "schedule_minutes": settings.agents_schedule_minutes or None,
    }


@router.get("/api/agents")
def agents_info(request: Request, settings: SettingsDep, _user: Viewer) -> dict[str, Any]:
    """The specialists (with their parameters), the LLM in use if any, whether backtests can run, the
    recommendations table and the freshness of the dashboard tables the agents read."""
    return _info(request, settings)


@router.post("/api/agents/runs", status_code=status.HTTP_202_ACCEPTED)
def start_run(body: RunBody, request: Request, db: DbSession, user: Admin) -> dict[str, Any]:
    """Start a run: one specialist (``agent``), a question, or every specialist (``scheduled``)."""
    run_request = _request(body)
    row = service(request.app).start_run(run_request, user.name)
    audit.record(
        db,
        user.name,
        "agents.run",
        str(row.id),
        after={
            "kind": run_request.kind,
            "agent": run_request.agent,
            "question": run_request.question,
            "backtest": run_request.backtest,
            "arguments": run_request.arguments,
        },
    )
    return row.as_dict()


@router.get("/api/agents/runs")
def list_runs(db: DbSession, _user: Viewer, limit: int = Query(20, ge=1, le=200)) -> list[dict[str, Any]]:
    return [r.as_dict() for r in db.scalars(select(AgentRun).order_by(AgentRun.id.desc()).limit(limit))]


@router.get("/api/agents/runs/{run_id}")
def get_run(run_id: int, db: DbSession, settings: SettingsDep, _user: Viewer) -> dict[str, Any]:
    """A run with its transcript (routing, queries, tool calls, backtests, LLM rounds) and its
    recommendations as they are now (status included)."""
    row = db.get(AgentRun, run_id)
    if row is None:
        raise HTTPException(404, f"no agent run {run_id}")
    out = row.as_dict(with_transcript=True)
    ids = out["recommendation_ids"]
    found = {r["recommendation_id"]: r for r in _store_call(store(settings).list, ids=ids, limit=len(ids) or 1)}
    out["recommendations"] = _with_feedback(db, [found[i] for i in ids if i in found])
    return out


@router.get("/api/agents/recommendations")
def list_recommendations(
    db: DbSession,
    settings: SettingsDep,
    _user: Viewer,
    status_: Literal["proposed", "accepted", "dismissed"] | None = Query(None, alias="status"),
    agent: str | None = None,
    limit: int = Query(100, ge=1, le=1000),
) -> dict[str, Any]:
    """The agents' recommendations in ``approval_recommendations``, newest first, each with its evidence
    and the feedback given on it."""
    if agent is not None and agent not in BY_NAME:
        raise HTTPException(422, f"unknown agent {agent!r}; the agents are: {', '.join(BY_NAME)}")
    rows = _store_call(store(settings).list, status=status_, agent=agent, limit=limit)
    return {"table": TABLE, "recommendations": _with_feedback(db, rows)}


def _recommendation(db: Session, settings: ControlPlaneSettings, recommendation_id: str) -> dict[str, Any]:
    row = _store_call(store(settings).get, recommendation_id)
    if row is None:
        raise HTTPException(404, f"no recommendation {recommendation_id!r}")
    return _with_feedback(db, [row])[0]


@router.get("/api/agents/recommendations/{recommendation_id}")
def get_recommendation(recommendation_id: str, db: DbSession, settings: SettingsDep, _user: Viewer) -> dict:
    return _recommendation(db, settings, recommendation_id)


@router.post("/api/agents/recommendations/{recommendation_id}/accept")
def accept(
    recommendation_id: str,
    db: DbSession,
    settings: SettingsDep,
    backend: BackendDep,
    user: Admin,
    body: Decision | None = None,
) -> dict[str, Any]:
    """A proposed rule joins the draft rule set in shadow (logged, never deciding, until someone activates
    it on /rules); a proposed configuration change is recorded as accepted for a person to apply."""
    comment = (body or Decision()).comment.strip()
    rec = _recommendation(db, settings, recommendation_id)
    if rec["status"] != "proposed":
        raise HTTPException(409, f"{recommendation_id} is {rec['status']}, not proposed")
    action = rec["evidence"].get("action") or {}
    records = store(settings)
    draft_rule = None
    if action.get("kind") == "rule":
        body_rule = {
            "id": action["rule_id"],
            "name": action["name"],
            "type": action["type"],
            "condition": action["condition"],
            "action": action["action"],
            "priority": action["priority"],
            "active": True,
            "shadow": True,
            "description": (action.get("description") or "") + f" (recommendation {recommendation_id})",
        }
        _rule, errors = rule_store.check_rule(body_rule)
        if errors:
            raise HTTPException(422, {"message": "the proposed rule no longer validates", "errors": errors})
        _store_call(records.set_status, recommendation_id, "accepted")
        try:
            draft_rule = rule_store.create_rule(db, backend.rules, body_rule, user.name)
        except rule_store.RuleError as exc:
            try:  # the recommendation was not accepted after all
                records.set_status(recommendation_id, "proposed", expected="accepted")
            except StoreError:
                log.exception("%s stays accepted although its rule was refused", recommendation_id)
            raise HTTPException(exc.status, exc.detail) from None
    elif action.get("kind") == "config":
        _store_call(records.set_status, recommendation_id, "accepted")
    else:
        raise HTTPException(422, f"{recommendation_id} proposes no action that can be accepted")
    config_change = None if draft_rule else {k: action.get(k) for k in ("key", "current", "proposed", "note")}
    db.add(
        AgentFeedback(
            recommendation_id=recommendation_id,
            verdict="accepted",
            reason=comment,
            actor=user.name,
            at=utcnow(),
            draft_rule_id=draft_rule["id"] if draft_rule else None,
            config_change=json.dumps(config_change, default=str) if config_change else None,
        )
    )
    audit.record(
        db,
        user.name,
        "agents.accept",
        recommendation_id,
        before={"status": "proposed"},
        after={
            "status": "accepted",
            "comment": comment,
            "draft_rule": draft_rule["id"] if draft_rule else None,
            "config_change": config_change,
        },
        commit=False,
    )
    db.commit()
    return {
        "recommendation": _recommendation(db, settings, recommendation_id),
        "draft_rule": draft_rule,
        "config_change": config_change,
    }


@router.post("/api/agents/recommendations/{recommendation_id}/dismiss")
def dismiss(recommendation_id: str, body: Dismissal, db: DbSession, settings: SettingsDep, user: Admin) -> dict:
    """Dismiss a proposed recommendation; the reason is kept as feedback (a later run does not propose it
    again: its status stays dismissed)."""
    _recommendation(db, settings, recommendation_id)
    _store_call(store(settings).set_status, recommendation_id, "dismissed")
    reason = body.reason.strip()
    db.add(AgentFeedback(recommendation_id=recommendation_id, verdict="dismissed", reason=reason, actor=user.name))
    audit.record(
        db,
        user.name,
        "agents.dismiss",
        recommendation_id,
        before={"status": "proposed"},
        after={"status": "dismissed", "reason": reason},
        commit=False,
    )
    db.commit()
    return _recommendation(db, settings, recommendation_id)
