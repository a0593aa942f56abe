"""API-key / bearer-token auth: ``Authorization: Bearer <key>`` or ``X-API-Key: <key>``.
Missing credentials -> 401 (with WWW-Authenticate), wrong ones -> 403. Off when PA_ENV=dev unless
PA_AUTH=on."""

from __future__ import annotations

import hmac
from typing import Annotated

from fastapi import Depends, HTTPException, Request, status
from fastapi.security import APIKeyHeader, HTTPAuthorizationCredentials, HTTPBearer

bearer = HTTPBearer(auto_error=False, description="API key as a bearer token")
api_key_header = APIKeyHeader(name="X-API-Key", auto_error=False, description="API key")


async def require_api_key(
    request: Request,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)],
    header_key: Annotated[str | None, Depends(api_key_header)],
) -> None:
    settings = request.app.state.settings
    if not settings.auth_enabled:
        return
    presented = credentials.credentials if credentials is not None else header_key
    if not presented:
        raise HTTPException(
            status.HTTP_401_UNAUTHORIZED,
            "missing API key: send 'Authorization: Bearer <key>' or 'X-API-Key: <key>'",
            headers={"WWW-Authenticate": "Bearer"},
        )
    for key in request.app.state.api_keys:
        if hmac.compare_digest(presented.encode(), key.encode()):
            return
    raise HTTPException(status.HTTP_403_FORBIDDEN, "invalid API key")


Authenticated = Depends(require_api_key)
