"""Models page and API: the four models' registered versions and metrics; promote, roll back, clear.

Every alias change is audited with the version before and after. Rolling back without a version
moves ``champion`` back to the version it held before its last change, read from that audit trail.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Annotated, Literal

from fastapi import APIRouter, Depends, HTTPException, Request, status
from fastapi.responses import HTMLResponse
from pydantic import BaseModel, Field
from sqlalchemy.orm import Session

from payments_core.models import CHALLENGER, CHAMPION
from services.control_plane import audit
from services.control_plane.deps import Admin, BackendDep, DbSession, PageUser, Viewer
from services.control_plane.model_registry import ModelRegistry, RegistryError
from services.control_plane.templating import render

router = APIRouter(tags=["models"])
# audit actions that move the champion alias (both record {"alias", "version"} before and after)
CHAMPION_MOVES = ("model.promote", "model.rollback")


def get_registry(backend: BackendDep) -> ModelRegistry:
    """The backend's registry: the MLflow registry of ``PA_MLFLOW_TRACKING_URI`` locally, Unity Catalog
    (``databricks-uc``) on Databricks."""
    return backend.registry


Registry = Annotated[ModelRegistry, Depends(get_registry)]


@contextmanager
def registry_errors() -> Iterator[None]:
    try:
        yield
    except RegistryError as exc:
        raise HTTPException(exc.status_code, str(exc)) from exc


class AliasTarget(BaseModel):
    version: int = Field(ge=1, description="Registered version number")


class RollbackTarget(BaseModel):
    version: int | None = Field(
        None,
        ge=1,
        description="Version to roll back to; empty: the champion before the last change (from the audit trail)",
    )


def previous_champion(db: Session, name: str, current: str | None) -> str | None:
    """The version ``name``'s champion held before the change that made ``current`` champion, when that
    change was made here (the audit trail); None when unknown (e.g. training moved it)."""
    if current is None:
        return None
    for event in audit.recent(db, limit=500, action_prefix="model.", target=name):
        after, before = event["after"] or {}, event["before"] or {}
        if event["action"] in CHAMPION_MOVES and after.get("alias") == CHAMPION:
            if after.get("version") == current:
                return before.get("version")
            return None  # the latest champion change is not the one that set it: unknown
    return None


@router.get("/models", response_class=HTMLResponse, include_in_schema=False)
def models_page(request: Request, user: PageUser):
    return render(request, "models.html", user, "/models")


@router.get("/api/models")
def list_models(registry: Registry, db: DbSession, _user: Viewer) -> dict:
    """The four models: versions (newest first) with metrics, threshold, estimator; champion and challenger."""
    with registry_errors():
        overview = registry.overview()
    models = [{**m, "previous_champion": previous_champion(db, m["name"], m["champion"])} for m in overview["models"]]
    return {**overview, "models": models}


@router.post("/api/models/{kind}/aliases/{alias}")
def promote(
    kind: str,
    alias: Literal["champion", "challenger"],
    body: AliasTarget,
    registry: Registry,
    db: DbSession,
    user: Admin,
) -> dict:
    """Point ``champion`` or ``challenger`` of ``kind`` at a version (audited ``model.promote``)."""
    with registry_errors():
        name = registry.name(kind)
        before, after = registry.set_alias(kind, alias, str(body.version))
    changed = before != after
    if changed:
        audit.record(
            db,
            user.name,
            "model.promote",
            name,
            before={"alias": alias, "version": before},
            after={"alias": alias, "version": after},
        )
    return {"kind": kind, "name": name, "alias": alias, "before": before, "version": after, "changed": changed}


@router.post("/api/models/{kind}/rollback")
def rollback(kind: str, registry: Registry, db: DbSession, user: Admin, body: RollbackTarget | None = None) -> dict:
    """Move ``champion`` back: to ``version`` when given, else to the version it held before its last
    change (audited ``model.rollback``)."""
    with registry_errors():
        name = registry.name(kind)
        current = registry.aliases(kind).get(CHAMPION)
        target = str(body.version) if body and body.version else previous_champion(db, name, current)
        if target is None:
            why = (
                "it has no champion"
                if current is None
                else f"v{current} was not made champion here (e.g. by the Train step), so its predecessor is unknown"
            )
            raise HTTPException(
                status.HTTP_409_CONFLICT, f"no earlier champion of {name} in the audit trail: {why}; choose the version"
            )
        before, after = registry.set_alias(kind, CHAMPION, target)
    changed = before != after
    if changed:
        audit.record(
            db,
            user.name,
            "model.rollback",
            name,
            before={"alias": CHAMPION, "version": before},
            after={"alias": CHAMPION, "version": after},
        )
    return {"kind": kind, "name": name, "alias": CHAMPION, "before": before, "version": after, "changed": changed}


@router.delete("/api/models/{kind}/aliases/challenger")
def clear_challenger(kind: str, registry: Registry, db: DbSession, user: Admin) -> dict:
    """Remove the ``challenger`` alias of ``kind`` (audited ``model.challenger_clear``)."""
    with registry_errors():
        name = registry.name(kind)
        before = registry.delete_alias(kind, CHALLENGER)
    if before is not None:
        audit.record(
            db,
            user.name,
            "model.challenger_clear",
            name,
            before={"alias": CHALLENGER, "version": before},
            after={"alias": CHALLENGER, "version": None},
        )
    return {
        "kind": kind,
        "name": name,
        "alias": CHALLENGER,
        "before": before,
        "version": None,
        "changed": before is not None,
    }
