"""Alerts page and API: the stream's alerts (``stream_alerts``), active ones and recent episodes.

The stream processor judges every minute with enough traffic (approval drop against a trailing
baseline, fraud spike, p99 latency) and writes one row per minute and alert type; an alert is active
when the latest minute of its type is, and it started at the first minute of that active streak.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query, Request
from fastapi.responses import HTMLResponse

from services.control_plane import lakehouse
from services.control_plane.deps import PageUser, SettingsDep, Viewer
from services.control_plane.templating import render

router = APIRouter(tags=["alerts"])


@router.get("/alerts", response_class=HTMLResponse, include_in_schema=False)
def alerts_page(request: Request, user: PageUser):
    return render(request, "alerts.html", user, "/alerts")


@router.get("/api/alerts")
def alerts_data(
    settings: SettingsDep,
    _user: Viewer,
    active_only: Annotated[bool, Query(description="Only the active alerts, no history")] = False,
    hours: Annotated[float, Query(gt=0, le=24 * 7, description="History window in hours")] = 24.0,
) -> dict[str, Any]:
    """Active alerts (type, severity, since when, metric, value, threshold, baseline) and, unless
    ``active_only``, the alert episodes of the last ``hours``, newest first."""
    reader = lakehouse.reader_for(settings.lakehouse_dir, settings.catalog, settings.lakehouse_schema)
    return lakehouse.alerts(reader, history_hours=hours, active_only=active_only)
