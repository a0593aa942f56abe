"""Alerts page and API (being built)."""
from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse

from services.control_plane.deps import PageUser
from services.control_plane.templating import render

router = APIRouter(tags=["alerts"])


@router.get("/alerts", response_class=HTMLResponse, include_in_schema=False)
def alerts_page(request: Request, user: PageUser):
    return render(request, "upcoming.html", user, "/alerts", title="Alerts", arrives="this release")
