"""The 12 dashboards: /dashboards lists them, /dashboards/<id> draws one, /api/dashboards/<id> gives
its numbers with the filters applied, /dashboards/<id>/lakeview.json is its Lakeview file.

Numbers come from the dashboard tables (``dashboard_data``), never from Spark: a page is rendered with
its data embedded, so the first paint needs no second request; filter changes call the API.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, HTTPException, Request, status
from fastapi.responses import FileResponse, HTMLResponse

from dashboards import FOLDER
from dashboards.model import Dashboard
from services.control_plane import dashboard_data, lakehouse
from services.control_plane.deps import PageUser, SettingsDep, Viewer
from services.control_plane.settings import ControlPlaneSettings
from services.control_plane.templating import render

router = APIRouter(tags=["dashboards"])


def _reader(settings: ControlPlaneSettings) -> lakehouse.DeltaReader:
    return lakehouse.reader_for(settings.lakehouse_dir, settings.catalog, settings.lakehouse_schema)


def _dashboard(dashboard_id: str) -> Dashboard:
    found = dashboard_data.get(dashboard_id)
    if found is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"no dashboard {dashboard_id!r}")
    return found


def _data(request: Request, settings: ControlPlaneSettings, dashboard: Dashboard) -> dict[str, Any]:
    try:
        selection = dashboard_data.Selection.from_params(dashboard, request.query_params)
    except ValueError as exc:
        raise HTTPException(422, str(exc)) from None
    return dashboard_data.dashboard_data(_reader(settings), dashboard, selection)


@router.get("/dashboards", response_class=HTMLResponse, include_in_schema=False)
def dashboards_page(request: Request, user: PageUser, settings: SettingsDep):
    return render(request, "dashboards.html", user, "/dashboards", overview=dashboard_data.overview(_reader(settings)))


@router.get("/dashboards/{dashboard_id}", response_class=HTMLResponse, include_in_schema=False)
def dashboard_page(dashboard_id: str, request: Request, user: PageUser, settings: SettingsDep):
    dashboard = _dashboard(dashboard_id)
    return render(request, "dashboard_view.html", user, "/dashboards", data=_data(request, settings, dashboard))


@router.get("/dashboards/{dashboard_id}/lakeview.json", include_in_schema=False)
def lakeview_file(dashboard_id: str, _user: PageUser) -> FileResponse:
    dashboard = _dashboard(dashboard_id)
    return FileResponse(FOLDER / dashboard.file_name, media_type="application/json", filename=dashboard.file_name)


@router.get("/api/dashboards")
def list_dashboards(settings: SettingsDep, _user: Viewer) -> dict[str, Any]:
    """The 12 dashboards, when their tables were last refreshed and which datasets are missing."""
    return dashboard_data.overview(_reader(settings))


@router.get("/api/dashboards/{dashboard_id}")
def dashboard_numbers(dashboard_id: str, request: Request, settings: SettingsDep, _user: Viewer) -> dict[str, Any]:
    """One dashboard's widgets with their rows. Filters as query parameters: ``<filter>=value``
    (repeatable) for a multi-select, ``<filter>_from`` / ``<filter>_to`` (YYYY-MM-DD) for a date range."""
    return _data(request, settings, _dashboard(dashboard_id))
