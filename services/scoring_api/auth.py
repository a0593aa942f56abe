"""API-key / bearer-token auth and per-key rate limits.

``Authorization: Bearer <key>`` or ``X-API-Key: <key>``: missing credentials -> 401 (with
WWW-Authenticate), wrong ones -> 403. On in every ``PA_ENV``; ``PA_AUTH=off`` exists for dev/test
only (refused with ``PA_ENV=prod``). Keys: ``PA_API_KEYS`` and the local key file (``keyfile``).

Rate limit (``PA_RATE_LIMIT``, e.g. ``1000/second``): a GCRA (generic cell rate algorithm, the
token bucket without a refill timer) per key: up to ``n`` requests at once, then one every
``period / n``; above it 429 with ``Retry-After`` (whole seconds). The state is one float per key in
this worker process, so the check costs no round trip; with ``serve --workers K`` each worker admits
the rate on its own (K times the rate for the instance).
"""

from __future__ import annotations

import hmac
import math
import re
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Annotated, Any

from fastapi import APIRouter, Depends, FastAPI, HTTPException, Request, status
from fastapi.encoders import jsonable_encoder
from fastapi.routing import APIRoute
from fastapi.security import APIKeyHeader, HTTPAuthorizationCredentials, HTTPBearer
from fastapi.security.utils import get_authorization_scheme_param

from services.scoring_api import metrics

bearer = HTTPBearer(auto_error=False, description="API key as a bearer token")
api_key_header = APIKeyHeader(name="X-API-Key", auto_error=False, description="API key")

_PERIODS = {"second": 1.0, "minute": 60.0, "hour": 3600.0}
_RATE = re.compile(r"^\s*(\d+)\s*/\s*(second|minute|hour)s?\s*$")


@dataclass(frozen=True)
class Rate:
    count: int
    period_s: float

    @property
    def interval(self) -> float:
        return self.period_s / self.count


def parse_rate(text: str) -> Rate | None:
    """``"1000/second"`` -> Rate(1000, 1.0); ``"off"`` / ``"0"`` / empty -> None (no limit)."""
    if text.strip().lower() in ("", "off", "0", "none"):
        return None
    match = _RATE.match(text.lower())
    if not match or int(match.group(1)) < 1:
        raise ValueError(f"PA_RATE_LIMIT: expected '<n>/second|minute|hour' or 'off', got {text!r}")
    return Rate(int(match.group(1)), _PERIODS[match.group(2)])


class RateLimiter:
    """GCRA per key (see the module docstring). ``check`` returns 0 when admitted, else the seconds
    to wait."""

    def __init__(self, rate: Rate, clock=time.monotonic):
        self.rate = rate
        self.clock = clock
        self._tat: dict[str, float] = {}  # theoretical arrival time of the next request, per key

    def check(self, key: str) -> float:
        now = self.clock()
        interval = self.rate.interval
        tolerance = self.rate.period_s - interval  # a burst of `count` requests
        tat = max(self._tat.get(key, now), now)
        allowed_at = tat - tolerance
        if now < allowed_at:
            return allowed_at - now
        self._tat[key] = tat + interval
        return 0.0


def _presented(credentials: HTTPAuthorizationCredentials | None, header_key: str | None) -> str | None:
    return credentials.credentials if credentials is not None else header_key


def presented_key(request: Request) -> str | None:
    """The key a request presents, read as ``bearer`` and ``api_key_header`` read it (the bearer token
    first), without running them as dependencies."""
    headers = request.headers
    authorization = headers.get("Authorization")
    scheme, credentials = get_authorization_scheme_param(authorization)
    if authorization and scheme and credentials and scheme.lower() == "bearer":
        return credentials
    return headers.get(api_key_header.model.name) or None


def authenticate(request: Request, presented: str | None) -> str:
    """The matching configured key, else 401/403."""
    if not presented:
        raise HTTPException(
            status.HTTP_401_UNAUTHORIZED,
            "missing API key: send 'Authorization: Bearer <key>' or 'X-API-Key: <key>'",
            headers={"WWW-Authenticate": "Bearer"},
        )
    found = None
    given = presented.encode()
    for key, expected in request.app.state.api_keys:  # compare with every key: the time does not tell which matched
        if hmac.compare_digest(given, expected):
            found = key
    if found is None:
        raise HTTPException(status.HTTP_403_FORBIDDEN, "invalid API key")
    return found


async def require_api_key(request: Request) -> None:
    """API key and rate limit of the decision routes: ONE dependency reading the headers itself
    (``presented_key``). Each dependency FastAPI resolves costs several microseconds per request; the
    security schemes are documented in the OpenAPI document by ``document_security`` instead."""
    if request.app.state.settings.auth_enabled:
        admit(request)


def admit(request: Request) -> None:
    """``require_api_key``'s checks when auth is on, called directly by ``/score``'s own endpoint."""
    key = authenticate(request, presented_key(request))
    limiter: RateLimiter | None = request.app.state.rate_limiter
    if limiter is not None:
        wait = limiter.check(key)
        if wait > 0:
            metrics.RATE_LIMITED.inc()
            retry_after = max(1, math.ceil(wait))
            raise HTTPException(
                status.HTTP_429_TOO_MANY_REQUESTS,
                f"rate limit of this API key exceeded ({request.app.state.settings.rate_limit}); "
                f"retry after {retry_after} s",
                headers={"Retry-After": str(retry_after)},
            )


async def require_api_key_only(
    request: Request,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)],
    header_key: Annotated[str | None, Depends(api_key_header)],
) -> None:
    """The key without the rate limit (private /docs and /metrics: a scraper must not use up the
    budget of the decisions)."""
    if request.app.state.settings.auth_enabled:
        authenticate(request, _presented(credentials, header_key))


Authenticated = Depends(require_api_key)
KeyOnly = Depends(require_api_key_only)
SCHEMES = (bearer, api_key_header)


def document_security(app: FastAPI, routers: Sequence[APIRouter]) -> None:
    """Show ``bearer`` and ``api_key_header`` on the operations of ``routers`` in the OpenAPI
    document (components and per operation) exactly as FastAPI does for security dependencies:
    ``require_api_key`` reads the headers itself, so FastAPI does not see them."""
    protected = {
        (route.path, method.lower())
        for r in routers
        for route in r.routes
        if isinstance(route, APIRoute) and route.include_in_schema
        for method in route.methods or ()
    }
    build = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema:
            return app.openapi_schema
        schema = build()
        schemes = schema.setdefault("components", {}).setdefault("securitySchemes", {})
        for scheme in SCHEMES:
            schemes[scheme.scheme_name] = jsonable_encoder(scheme.model, by_alias=True, exclude_none=True)
        for path, operations in schema.get("paths", {}).items():
            for method, operation in operations.items():
                if (path, method) in protected:
                    operation.setdefault("security", []).extend({s.scheme_name: []} for s in SCHEMES)
        return schema

    app.openapi = openapi  # type: ignore[method-assign]
