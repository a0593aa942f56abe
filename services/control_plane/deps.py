"""Request dependencies (``Annotated`` aliases): settings, the backend, database session, the signed-in user.

``Viewer``: any signed-in user (reads). ``Admin``: an admin; on a mutating request from a browser the
CSRF token is checked too. Pages use ``page_user`` and redirect to /login instead of answering 401.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Annotated

from fastapi import Depends, HTTPException, Request, status
from sqlalchemy.orm import Session

from services.control_plane.backends import Backend
from services.control_plane.security import CSRF_HEADER, SAFE_METHODS, Principal, check_csrf, principal_from_request
from services.control_plane.settings import ControlPlaneSettings


def get_settings(request: Request) -> ControlPlaneSettings:
    return request.app.state.settings


SettingsDep = Annotated[ControlPlaneSettings, Depends(get_settings)]


def get_backend(request: Request) -> Backend:
    """The backend the app chose at start (``PA_BACKEND``): steps, services, models, decisions, rules."""
    return request.app.state.backend


BackendDep = Annotated[Backend, Depends(get_backend)]


def get_db(request: Request) -> Iterator[Session]:
    with request.app.state.sessions() as db:
        yield db


DbSession = Annotated[Session, Depends(get_db)]


class LoginRequired(Exception):
    """Raised by page dependencies; the app answers with a redirect to /login."""

    def __init__(self, next_url: str):
        self.next_url = next_url


def optional_user(request: Request, db: DbSession, settings: SettingsDep) -> Principal | None:
    return principal_from_request(request, db, settings)


def require_user(request: Request, user: Annotated[Principal | None, Depends(optional_user)]) -> Principal:
    if user is None:
        raise HTTPException(
            status.HTTP_401_UNAUTHORIZED,
            "sign in first (POST /login) or send a bearer token",
            headers={"WWW-Authenticate": "Bearer"},
        )
    if request.method not in SAFE_METHODS and user.needs_csrf:
        check_csrf(request, request.headers.get(CSRF_HEADER))
    return user


def require_admin(user: Annotated[Principal, Depends(require_user)]) -> Principal:
    if not user.is_admin:
        raise HTTPException(status.HTTP_403_FORBIDDEN, f"{user.name} is a viewer; this action needs the admin role")
    return user


def page_user(request: Request, user: Annotated[Principal | None, Depends(optional_user)]) -> Principal:
    if user is None:
        raise LoginRequired(str(request.url.path) + (f"?{request.url.query}" if request.url.query else ""))
    return user


Viewer = Annotated[Principal, Depends(require_user)]
Admin = Annotated[Principal, Depends(require_admin)]
PageUser = Annotated[Principal, Depends(page_user)]
