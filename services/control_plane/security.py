"""Sign-in: who is asking, with which role, and CSRF for cookie sessions.

Three ways in, one ``Principal`` out:

* a session cookie (local mode): a user of the ``users`` table signed in with a password (argon2);
* ``Authorization: Bearer <PA_CONTROL_PLANE_TOKEN>``: an admin token for scripts, no cookie, no CSRF;
* ``PA_AUTH_MODE=databricks``: the identity a Databricks App forwards (``X-Forwarded-Email``,
  ``X-Forwarded-Preferred-Username``); admins are listed in ``PA_ADMIN_USERS``.

Mutating requests by a browser (cookie session or forwarded identity) must carry the session's CSRF
token in ``X-CSRF-Token`` (or a ``csrf_token`` form field); a cross-site page cannot read it.
"""

from __future__ import annotations

import hmac
import secrets
from dataclasses import dataclass
from pathlib import Path

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from fastapi import HTTPException, Request, status
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from services.control_plane.db import User, utcnow
from services.control_plane.settings import ControlPlaneSettings

ROLES = ("viewer", "admin")
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
CSRF_HEADER = "X-CSRF-Token"
_hasher = PasswordHasher()


@dataclass(frozen=True)
class Principal:
    name: str
    role: str
    via: str  # session | token | databricks

    @property
    def is_admin(self) -> bool:
        return self.role == "admin"

    @property
    def needs_csrf(self) -> bool:
        return self.via != "token"


def hash_password(password: str) -> str:
    return _hasher.hash(password)


def verify_password(password_hash: str | None, password: str) -> bool:
    if not password_hash:
        return False
    try:
        return _hasher.verify(password_hash, password)
    except (VerificationError, InvalidHashError):
        return False


def session_secret(settings: ControlPlaneSettings) -> str:
    """``PA_SESSION_SECRET``, else a random secret created once in the data folder (mode 600)."""
    if settings.session_secret.get_secret_value():
        return settings.session_secret.get_secret_value()
    path = settings.data_dir / "control_plane.secret"
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        _write_private(path, secrets.token_urlsafe(48))
    return path.read_text().strip()


def _write_private(path: Path, text: str) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.touch(mode=0o600)
    tmp.write_text(text)
    tmp.replace(path)


def csrf_token(request: Request) -> str:
    """The session's CSRF token (created on first use)."""
    token = request.session.get("csrf")
    if not token:
        token = request.session["csrf"] = secrets.token_urlsafe(32)
    return token


def check_csrf(request: Request, presented: str | None) -> None:
    expected = request.session.get("csrf")
    if not expected or not presented or not hmac.compare_digest(expected, presented):
        raise HTTPException(
            status.HTTP_403_FORBIDDEN, f"missing or wrong CSRF token: send the page's token in the {CSRF_HEADER} header"
        )


def principal_from_request(request: Request, db: Session, settings: ControlPlaneSettings) -> Principal | None:
    auth = request.headers.get("authorization", "")
    if auth.lower().startswith("bearer "):
        token = auth[7:].strip()
        expected = settings.control_plane_token.get_secret_value()
        if expected and hmac.compare_digest(token.encode(), expected.encode()):
            return Principal("token", "admin", "token")
        raise HTTPException(
            status.HTTP_401_UNAUTHORIZED, "invalid bearer token", headers={"WWW-Authenticate": "Bearer"}
        )
    if settings.auth_mode == "databricks":
        name = request.headers.get("x-forwarded-email") or request.headers.get("x-forwarded-preferred-username")
        if not name:
            return None
        role = "admin" if name.lower() in settings.admin_emails else "viewer"
        return Principal(name, role, "databricks")
    uid = request.session.get("uid")
    if uid is None:
        return None
    user = db.get(User, uid)
    if user is None:
        request.session.clear()
        return None
    return Principal(user.username, user.role, "session")


def authenticate(db: Session, username: str, password: str) -> User | None:
    user = db.scalar(select(User).where(User.username == username))
    if user is None:
        _hasher.hash(password)  # same work for unknown users: no timing oracle on user names
        return None
    if not verify_password(user.password_hash, password):
        return None
    user.last_login_at = utcnow()
    db.commit()
    return user


def ensure_admin(db: Session, settings: ControlPlaneSettings) -> str | None:
    """Create the first admin when there are no users. Returns the password when one was generated
    (to print once); None when users exist or the password came from ``PA_ADMIN_PASSWORD``."""
    if db.scalar(select(func.count()).select_from(User)):
        return None
    configured = settings.admin_password.get_secret_value()
    generated = not configured
    password = configured or secrets.token_urlsafe(12)
    db.add(User(username="admin", password_hash=hash_password(password), role="admin"))
    db.commit()
    return password if generated else None
