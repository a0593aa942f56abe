"""Jinja templates shared by the page routes: the navigation and the per-request context."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from fastapi import Request
from fastapi.responses import HTMLResponse
from fastapi.templating import Jinja2Templates

from services.control_plane.security import Principal, csrf_token

TEMPLATES = Jinja2Templates(directory=str(Path(__file__).parent / "templates"))

# (path, label, issue that brings it when not here yet)
NAVIGATION: tuple[tuple[str, str, str | None], ...] = (
    ("/setup", "Setup & Run", None),
    ("/dashboard", "Dashboard", None),
    ("/dashboards", "Dashboards", None),
    ("/decisions", "Decisions", None),
    ("/rules", "Rules", None),
    ("/models", "Models", None),
    ("/alerts", "Alerts", None),
    ("/agents", "Agents", None),
    ("/audit", "Audit", None),
)


def render(
    request: Request, template: str, user: Principal | None, page: str = "", status_code: int = 200, **context: Any
) -> HTMLResponse:
    settings = request.app.state.settings
    return TEMPLATES.TemplateResponse(
        request,
        template,
        {
            "user": user,
            "page": page,
            "nav": NAVIGATION,
            "csrf_token": csrf_token(request),
            "settings": settings,
            **context,
        },
        status_code=status_code,
    )
