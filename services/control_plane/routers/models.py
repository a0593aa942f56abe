"""Models page and API (being built)."""
from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse

from services.control_plane.deps import PageUser
from services.control_plane.templating import render

router = APIRouter(tags=["models"])


@router.get("/models", response_class=HTMLResponse, include_in_schema=False)
def models_page(request: Request, user: PageUser):
    return render(request, "upcoming.html", user, "/models", title="Models", arrives="this release")
