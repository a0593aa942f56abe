"""Sign-in and sign-out (cookie session), who am I, and user management for admins."""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Form, HTTPException, Request, status
from fastapi.responses import HTMLResponse, RedirectResponse
from pydantic import BaseModel, Field
from sqlalchemy import select

from services.control_plane import audit
from services.control_plane.db import User
from services.control_plane.deps import Admin, DbSession, SettingsDep, Viewer, optional_user
from services.control_plane.security import authenticate, check_csrf, csrf_token, hash_password
from services.control_plane.templating import render

router = APIRouter(tags=["auth"])


def _safe_next(next_url: str | None) -> str:
    # only same-site paths: never redirect a signed-in user to another origin
    if not next_url or not next_url.startswith("/") or next_url.startswith("//"):
        return "/setup"
    return next_url


@router.get("/login", response_class=HTMLResponse, include_in_schema=False)
def login_page(request: Request, db: DbSession, settings: SettingsDep, next: str | None = None):
    if optional_user(request, db, settings) is not None:
        return RedirectResponse(_safe_next(next), status_code=303)
    return render(request, "login.html", None, next=_safe_next(next), error=None)


@router.post("/login", include_in_schema=False)
def login(
    request: Request,
    db: DbSession,
    username: Annotated[str, Form()],
    password: Annotated[str, Form()],
    csrf_token_field: Annotated[str, Form(alias="csrf_token")] = "",
    next: Annotated[str, Form()] = "/setup",
):
    check_csrf(request, csrf_token_field)
    user = authenticate(db, username.strip(), password)
    if user is None:
        audit.record(db, username.strip()[:200] or "?", "auth.login_failed")
        return render(
            request, "login.html", None, next=_safe_next(next), error="Wrong user name or password.", status_code=401
        )
    request.session.clear()  # a new session on sign-in: no fixation
    request.session["uid"] = user.id
    csrf_token(request)
    audit.record(db, user.username, "auth.login")
    return RedirectResponse(_safe_next(next), status_code=303)


@router.post("/logout", include_in_schema=False)
def logout(request: Request, db: DbSession, user: Viewer):
    audit.record(db, user.name, "auth.logout")
    request.session.clear()
    return RedirectResponse("/login", status_code=303)


@router.get("/api/me")
def me(request: Request, user: Viewer) -> dict:
    return {"name": user.name, "role": user.role, "via": user.via, "csrf_token": csrf_token(request)}


class NewUser(BaseModel):
    username: str = Field(min_length=1, max_length=200, pattern=r"^[A-Za-z0-9_.@+-]+$")
    password: str = Field(min_length=10, max_length=200)
    role: Literal["viewer", "admin"] = "viewer"


class PasswordChange(BaseModel):
    password: str = Field(min_length=10, max_length=200)


@router.get("/api/users")
def list_users(db: DbSession, _user: Admin) -> list[dict]:
    return [
        {
            "username": u.username,
            "role": u.role,
            "created_at": str(u.created_at),
            "last_login_at": str(u.last_login_at) if u.last_login_at else None,
        }
        for u in db.scalars(select(User).order_by(User.username))
    ]


@router.post("/api/users", status_code=201)
def create_user(body: NewUser, db: DbSession, user: Admin) -> dict:
    if db.scalar(select(User).where(User.username == body.username)):
        raise HTTPException(status.HTTP_409_CONFLICT, f"user {body.username!r} exists")
    db.add(User(username=body.username, password_hash=hash_password(body.password), role=body.role))
    audit.record(db, user.name, "user.create", body.username, after={"role": body.role})
    return {"username": body.username, "role": body.role}


@router.put("/api/users/{username}/password")
def change_password(username: str, body: PasswordChange, db: DbSession, user: Viewer) -> dict:
    if username != user.name and not user.is_admin:
        raise HTTPException(status.HTTP_403_FORBIDDEN, "only admins change other users' passwords")
    target = db.scalar(select(User).where(User.username == username))
    if target is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"no user {username!r}")
    target.password_hash = hash_password(body.password)
    audit.record(db, user.name, "user.password", username)
    return {"username": username}
