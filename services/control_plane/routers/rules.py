"""Rules page and API: the draft rule set (create, edit, delete, validate as you type), its diff against
the live set, backtest of the draft, activation, history and rollback. The semantics are in
``services.control_plane.rule_store``; this module maps them to HTTP."""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, Any, TypeVar

from fastapi import APIRouter, Body, HTTPException, Request, status
from fastapi.responses import HTMLResponse
from pydantic import BaseModel, ConfigDict, Field

from services.control_plane import rule_store
from services.control_plane.deps import Admin, BackendDep, DbSession, PageUser, Viewer
from services.control_plane.templating import render

router = APIRouter(tags=["rules"])
T = TypeVar("T")
RuleBody = Annotated[
    dict[str, Any],
    Body(
        examples=[
            {
                "id": "R100",
                "name": "Gaming at night",
                "type": "risk",
                "condition": "merchant_segment = 'Gaming' AND is_night",
                "action": "review",
                "priority": 80,
                "active": True,
                "shadow": True,
                "description": "",
            }
        ]
    ),
]


class Publication(BaseModel):
    model_config = ConfigDict(extra="forbid")

    comment: str = Field("", max_length=2000)
    base_version_id: int | None = Field(
        None,
        description="The live version the caller reviewed against; refused (409) when the live set has moved since",
    )


class Rollback(BaseModel):
    model_config = ConfigDict(extra="forbid")

    comment: str = Field("", max_length=2000)


class BacktestRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    days: int | None = Field(None, description="Days of silver history (default: the step's)")
    max_rows: int | None = Field(None, description="Most recent rows (0 = all)")


def _call(fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    try:
        return fn(*args, **kwargs)
    except rule_store.RuleError as exc:
        raise HTTPException(exc.status, exc.detail) from None


@router.get("/rules", response_class=HTMLResponse, include_in_schema=False)
def rules_page(request: Request, user: PageUser):
    return render(request, "rules.html", user, "/rules", help=rule_store.language_help())


@router.get("/api/rules")
def draft(db: DbSession, backend: BackendDep, _user: Viewer) -> dict:
    """Live version, the published file, the draft rules (each with its status against live) and the diff."""
    return _call(rule_store.draft_view, db, backend.rules)


@router.get("/api/rules/meta")
def meta(_user: Viewer) -> dict:
    """Fields of the condition language, rule types, actions, backtest metrics (the editor's help)."""
    return rule_store.language_help()


@router.post("/api/rules/validate")
def validate(body: RuleBody, _user: Viewer) -> dict:
    """Check a condition or a whole rule without saving: ``valid``, ``errors`` (a condition error has
    ``line``, ``column`` and ``pos``, the character offset), ``fields_used``."""
    return rule_store.validate(body)


@router.post("/api/rules", status_code=status.HTTP_201_CREATED)
def create_rule(body: RuleBody, db: DbSession, backend: BackendDep, user: Admin) -> dict:
    return _call(rule_store.create_rule, db, backend.rules, body, user.name)


@router.put("/api/rules/{rule_id}")
def update_rule(rule_id: str, body: RuleBody, db: DbSession, backend: BackendDep, user: Admin) -> dict:
    return _call(rule_store.update_rule, db, backend.rules, rule_id, body, user.name)


@router.delete("/api/rules/{rule_id}")
def delete_rule(rule_id: str, db: DbSession, backend: BackendDep, user: Admin) -> dict:
    return _call(rule_store.delete_rule, db, backend.rules, rule_id, user.name)


@router.post("/api/rules/draft/discard")
def discard_draft(db: DbSession, backend: BackendDep, user: Admin) -> dict:
    """Reset the draft to the live set."""
    return _call(rule_store.discard_draft, db, backend.rules, user.name)


@router.post("/api/rules/activate", status_code=status.HTTP_201_CREATED)
def activate(db: DbSession, backend: BackendDep, user: Admin, body: Publication | None = None) -> dict:
    """Publish the draft as the next live version (409 when it is identical to the live set): the file
    locally, the Unity Catalog volume (``PA_RULES_VOLUME_PATH``) on Databricks."""
    body = body or Publication()
    return _call(rule_store.activate, db, backend.rules, user.name, body.comment, body.base_version_id)


@router.get("/api/rules/versions")
def versions(db: DbSession, backend: BackendDep, _user: Viewer, limit: int = 50) -> list[dict]:
    """Every published version, newest first, with who, when, the comment and the diff to its predecessor."""
    return _call(rule_store.list_versions, db, backend.rules, min(max(limit, 1), 500))


@router.get("/api/rules/versions/{version_id}")
def version(version_id: int, db: DbSession, _user: Viewer) -> dict:
    return _call(rule_store.get_version, db, version_id)


@router.post("/api/rules/versions/{version_id}/rollback", status_code=status.HTTP_201_CREATED)
def rollback(version_id: int, db: DbSession, backend: BackendDep, user: Admin, body: Rollback | None = None) -> dict:
    """Publish that version's content again as the next version; the draft is reset to it."""
    return _call(rule_store.rollback, db, backend.rules, version_id, user.name, (body or Rollback()).comment)


@router.post("/api/rules/backtest", status_code=status.HTTP_202_ACCEPTED)
def backtest(
    request: Request, db: DbSession, backend: BackendDep, user: Admin, body: BacktestRequest | None = None
) -> dict:
    """Replay the draft against the live set with the backtest step (one run at a time)."""
    step = request.app.state.steps.by_id.get("backtest")
    if step is None:
        raise HTTPException(409, "this control plane has no backtest step")
    given = (body or BacktestRequest()).model_dump(exclude_none=True)
    return _call(rule_store.start_backtest, db, backend.rules, backend.runner, step, given, user.name)


@router.get("/api/rules/backtests")
def backtests(db: DbSession, _user: Viewer, limit: int = 20) -> list[dict]:
    """Recent backtests of drafts with their metrics (live, candidate, delta, better or worse)."""
    return rule_store.list_backtests(db, min(max(limit, 1), 200))


@router.get("/api/rules/backtests/{run_id}")
def backtest_run(run_id: int, db: DbSession, _user: Viewer) -> dict:
    return _call(rule_store.get_backtest, db, run_id)
