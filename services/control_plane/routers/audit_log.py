"""The audit trail page and API."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse

from services.control_plane import audit
from services.control_plane.deps import DbSession, PageUser, Viewer
from services.control_plane.templating import render

router = APIRouter(tags=["audit"])


@router.get("/audit", response_class=HTMLResponse, include_in_schema=False)
def audit_page(request: Request, user: PageUser):
    return render(request, "audit.html", user, "/audit")


@router.get("/api/audit")
def audit_events(
    db: DbSession, _user: Viewer, limit: int = 200, action: str | None = None, target: str | None = None
) -> list[dict]:
    return audit.recent(db, min(max(limit, 1), 1000), action, target)
