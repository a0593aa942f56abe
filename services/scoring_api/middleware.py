"""Pure ASGI middleware (cheaper than BaseHTTPMiddleware): request size limit and latency metric, and
the plain ASGI endpoints (``endpoints``: (method, path) -> ASGI callable) it serves itself for a
request that declares its Content-Length (``POST /score``: ``app.score_asgi``), below its limit and
inside its measurement like every route."""

from __future__ import annotations

import time
from typing import Any

import orjson

from services.scoring_api.metrics import REQUEST_SECONDS

_ROUTES = {"/score", "/score/batch", "/health", "/ready", "/metrics"}


def route_label(path: str) -> str:
    if path in _ROUTES:
        return path
    if path.startswith("/decisions/"):
        return "/decisions/{transaction_id}"
    return "other"


class _TooLarge(Exception):
    pass


class LimitAndMeasure:
    def __init__(self, app: Any, max_body_bytes: int, endpoints: dict[tuple[str, str], Any] | None = None):
        self.app = app
        self.max_body = max_body_bytes
        self.endpoints = endpoints or {}

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        scope.setdefault("state", {})["started"] = started
        try:
            declared = chunked = False
            for name, value in scope.get("headers", ()):
                if name == b"content-length":
                    try:
                        too_big = int(value) > self.max_body
                        declared = True
                    except ValueError:
                        too_big = False
                    if too_big:
                        await _send_413(send, self.max_body)
                        return
                elif name == b"transfer-encoding":
                    chunked = True
            if declared and not chunked:
                # the HTTP server delivers at most Content-Length bytes: nothing to count
                endpoint = self.endpoints.get((scope["method"], scope["path"]))
                if endpoint is not None and not scope.get("root_path"):
                    await endpoint(scope, receive, send)
                else:
                    await self.app(scope, receive, send)
                return
            seen = 0
            exceeded = False
            replaced = False

            async def limited_receive() -> dict:
                nonlocal seen, exceeded
                message = await receive()
                if message["type"] == "http.request":
                    seen += len(message.get("body", b""))
                    if seen > self.max_body:
                        exceeded = True
                        raise _TooLarge()
                return message

            async def guarded_send(message: dict) -> None:
                # the framework may turn the read error into its own 400: answer 413 instead
                nonlocal replaced
                if exceeded:
                    if message["type"] == "http.response.start" and not replaced:
                        replaced = True
                        await _send_413(send, self.max_body)
                    return
                await send(message)

            try:
                await self.app(scope, limited_receive, guarded_send)
            except _TooLarge:
                if not replaced:
                    await _send_413(send, self.max_body)
        finally:
            _histogram(scope["path"], scope.get("method", "")).observe(time.perf_counter() - started)


_HISTOGRAMS: dict[tuple[str, str], Any] = {}


def _histogram(path: str, method: str) -> Any:
    """``REQUEST_SECONDS`` of a route and method (the labelled child looked up once)."""
    label = route_label(path)
    child = _HISTOGRAMS.get((label, method))
    if child is None:
        child = _HISTOGRAMS[(label, method)] = REQUEST_SECONDS.labels(label, method)
    return child


async def _send_413(send: Any, limit: int) -> None:
    body = orjson.dumps({"detail": f"request body larger than {limit} bytes"})
    await send(
        {
            "type": "http.response.start",
            "status": 413,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
                (b"connection", b"close"),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})
