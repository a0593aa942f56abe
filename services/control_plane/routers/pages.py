"""The front door and the pages of areas that arrive with later work."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, RedirectResponse

from services.control_plane.deps import PageUser
from services.control_plane.templating import NAVIGATION, render

router = APIRouter(include_in_schema=False)


@router.get("/")
def index(_user: PageUser) -> RedirectResponse:
    return RedirectResponse("/setup", status_code=303)


def _upcoming(path: str, label: str, arrives: str):
    def page(request: Request, user: PageUser) -> HTMLResponse:
        return render(request, "upcoming.html", user, path, title=label, arrives=arrives)

    return page


for _path, _label, _arrives in NAVIGATION:
    if _arrives:
        router.add_api_route(_path, _upcoming(_path, _label, _arrives), methods=["GET"], response_class=HTMLResponse)
