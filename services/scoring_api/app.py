"""The FastAPI application: ``create_app(settings)``.

Hot path of ``POST /score``: pydantic validation of the request (FastAPI), ONE Redis command (a Lua
script reading the stored decision for idempotency and computing the velocity features while
recording the transaction), the decision core (derived features, fast model scorers, compiled rules,
policy), then the answer. The decision's SET NX is written behind (``WriteBehindDecisions``: kept in
process until Redis acknowledges it). Redis commands of concurrent requests share one pipeline per
event-loop turn (``AutoPipeline``): one socket write and read for all of them.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import time
from collections.abc import AsyncIterator
from typing import Annotated, Any

import redis.asyncio
from fastapi import APIRouter, Body, FastAPI, HTTPException, Path, Request, status
from fastapi.exception_handlers import http_exception_handler
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, ConfigDict, Field
from redis.exceptions import RedisError
from starlette.exceptions import HTTPException as StarletteHTTPException

from payments_core.contract.events import DecisionEvent, TransactionRequest
from payments_core.engine import DecisionEngine
from payments_core.models import ModelSource
from payments_core.rules.model import RuleSource, ruleset_path
from payments_core.samples import EXAMPLE_REQUEST
from payments_core.velocity import AsyncRedisVelocityStore
from services.scoring_api import metrics, registry_poll
from services.scoring_api.auth import Authenticated
from services.scoring_api.middleware import LimitAndMeasure
from services.scoring_api.pipelining import AutoPipeline, eval_script
from services.scoring_api.settings import Settings, get_settings
from services.scoring_api.store import DecisionStore, WriteBehindDecisions

log = logging.getLogger("scoring_api")

JSON = "application/json"
_DECISION_JSON = DecisionEvent.__pydantic_serializer__


class BatchRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    transactions: list[TransactionRequest] = Field(
        min_length=1, max_length=10_000, description="Up to PA_MAX_BATCH transactions (default 500)"
    )


class BatchResponse(BaseModel):
    decisions: list[DecisionEvent]


class Problem(BaseModel):
    detail: Any


_ERRORS: dict[int | str, dict[str, Any]] = {
    401: {"model": Problem, "description": "Missing API key (auth on)"},
    403: {"model": Problem, "description": "Invalid API key"},
    413: {"model": Problem, "description": "Request body too large"},
    503: {"model": Problem, "description": "Redis unavailable"},
}
_EXAMPLES = {
    "typical": {"summary": "A typical domestic e-commerce payment", "value": EXAMPLE_REQUEST},
    "risky": {
        "summary": "A risky cross-border retry",
        "value": {
            **EXAMPLE_REQUEST,
            "transaction_id": "txn_0badc0de0badc0de",
            "geo_country": "US",
            "fraud_score": 0.91,
            "device_trust_score": 0.1,
            "is_retry": True,
            "retry_count": 1,
            "attempt_number": 2,
            "previous_decline_code": "DO_NOT_HONOR",
            "amount_minor": 250000,
        },
    },
}

router = APIRouter()  # decisions (API key when auth is on)
public = APIRouter()  # health, readiness, metrics (never behind the key)


@router.post(
    "/score",
    response_model=DecisionEvent,
    responses=_ERRORS,
    summary="Decide one transaction",
    description="Returns the decision for the transaction. Idempotent by transaction_id: scoring the "
    "same id again returns the stored decision (header `Idempotent-Replay: true`).",
)
async def score(request: Request, tx: Annotated[TransactionRequest, Body(openapi_examples=_EXAMPLES)]) -> Response:
    state = request.app.state
    started = request.scope.get("state", {}).get("started") or time.perf_counter()
    txn = tx.transaction_id
    written: WriteBehindDecisions = state.written
    stored = written.local(txn)
    if stored is None:
        data = tx.model_dump()
        keys, args = state.velocity.lookup_keys_args(state.decisions.key(txn), data)
        try:
            stored, velocity = state.velocity.parse_lookup(
                await eval_script(state.pipeline, state.velocity.script, keys, args)
            )
        except RedisError as exc:
            raise HTTPException(status.HTTP_503_SERVICE_UNAVAILABLE, f"Redis unavailable: {exc}") from None
        stored = stored or written.local(txn)  # a concurrent request of this worker decided meanwhile
    if stored is not None:
        metrics.REPLAYS.inc()
        return Response(stored, media_type=JSON, headers={"Idempotent-Replay": "true"})
    decision = state.engine.decide_dumped(data, velocity, source="api", started=started)
    body = _DECISION_JSON.to_json(decision)
    written.put(txn, body)
    metrics.DECISIONS.labels(decision.outcome).inc()
    return Response(body, media_type=JSON)


@router.post(
    "/score/batch",
    response_model=BatchResponse,
    responses=_ERRORS,
    summary="Decide many transactions",
    description="One decision per transaction, in order. Idempotent per transaction_id like /score.",
)
async def score_batch(request: Request, batch: BatchRequest) -> Response:
    state = request.app.state
    settings: Settings = state.settings
    started = request.scope.get("state", {}).get("started") or time.perf_counter()
    txs = batch.transactions
    if len(txs) > settings.max_batch:
        raise RequestValidationError(
            [
                {
                    "type": "too_long",
                    "loc": ("body", "transactions"),
                    "msg": f"at most {settings.max_batch} transactions per batch",
                    "input": len(txs),
                }
            ]
        )
    unique: dict[str, TransactionRequest] = {}
    for tx in txs:
        unique.setdefault(tx.transaction_id, tx)
    ids = list(unique)
    rows = [unique[i].model_dump() for i in ids]
    try:
        pipe = state.redis.pipeline(transaction=False)
        for i in ids:
            pipe.get(state.decisions.key(i))
        for row in rows:  # record the whole batch first, then read (order-independent features)
            state.velocity.add_to_pipeline(pipe, row, mode="2")
        for row in rows:
            state.velocity.add_to_pipeline(pipe, row, mode="0")
        replies = await pipe.execute()
        n = len(ids)
        stored = replies[:n]
        vel = replies[2 * n :]
        bodies: dict[str, bytes] = {}
        new: list[tuple[str, bytes]] = []
        for k, txn in enumerate(ids):
            if stored[k] is not None:
                bodies[txn] = stored[k]
                metrics.REPLAYS.inc()
                continue
            decision = state.engine.decide(unique[txn], state.velocity.parse(vel[k]), source="api", started=started)
            metrics.DECISIONS.labels(decision.outcome).inc()
            bodies[txn] = _DECISION_JSON.to_json(decision)
            new.append((txn, bodies[txn]))
        if new:
            pipe = state.redis.pipeline(transaction=False)
            for txn, body in new:
                pipe.set(state.decisions.key(txn), body, nx=True, ex=state.decisions.ttl)
            for txn, _ in new:
                pipe.get(state.decisions.key(txn))
            results = await pipe.execute()
            for (txn, _), winner in zip(new, results[len(new) :], strict=True):
                if winner is not None:
                    bodies[txn] = winner
    except RedisError as exc:
        raise HTTPException(status.HTTP_503_SERVICE_UNAVAILABLE, f"Redis unavailable: {exc}") from None
    out = b'{"decisions":[' + b",".join(bodies[tx.transaction_id] for tx in txs) + b"]}"
    return Response(out, media_type=JSON)


@router.get(
    "/decisions/{transaction_id}",
    response_model=DecisionEvent,
    responses={**_ERRORS, 404: {"model": Problem, "description": "No decision stored for this id"}},
    summary="The stored decision of a transaction",
    description="What the stream processor published on payments.decisions (consumed into Redis), or what "
    "POST /score decided; decisions expire after PA_DECISION_TTL_SECONDS.",
)
async def get_decision(
    request: Request,
    transaction_id: Annotated[str, Path(pattern=r"^txn_[0-9a-f]{16}$", examples=["txn_00c0ffee00c0ffee"])],
) -> Response:
    try:
        body = request.app.state.written.local(transaction_id) or await request.app.state.decisions.get(transaction_id)
    except RedisError as exc:
        raise HTTPException(status.HTTP_503_SERVICE_UNAVAILABLE, f"Redis unavailable: {exc}") from None
    if body is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"no decision for {transaction_id}")
    return Response(body, media_type=JSON)


class Health(BaseModel):
    status: str


class Readiness(BaseModel):
    ready: bool
    redis: bool
    rule_set_version: str | None = None
    model_versions: dict[str, str] = {}
    models_heuristic: bool | None = None
    rules_error: str | None = None
    consumer_heartbeat_age_s: float | None = None


@public.get("/health", response_model=Health, summary="Liveness")
async def health() -> dict[str, str]:
    return {"status": "ok"}


@public.get(
    "/ready",
    response_model=Readiness,
    responses={503: {"model": Readiness}},
    summary="Readiness: rules and models loaded, Redis reachable",
)
async def ready(request: Request) -> JSONResponse:
    state = request.app.state
    engine: DecisionEngine | None = getattr(state, "engine", None)
    redis_ok = False
    age = None
    try:
        pipe = state.redis.pipeline(transaction=False)
        pipe.ping()
        pipe.get(f"{state.settings.redis_prefix}:consumer:heartbeat")
        pong, beat = await asyncio.wait_for(pipe.execute(), timeout=1.0)
        redis_ok = bool(pong)
        if beat is not None:
            age = round(time.time() - float(beat), 3)
    except (TimeoutError, RedisError, OSError):
        redis_ok = False
    body = Readiness(
        ready=bool(engine) and redis_ok,
        redis=redis_ok,
        rule_set_version=engine.rule_set_version if engine else None,
        model_versions=engine.model_versions if engine else {},
        models_heuristic=engine.bundle.all_heuristic if engine else None,
        rules_error=engine.rule_source.last_error if engine and engine.rule_source else None,
        consumer_heartbeat_age_s=age,
    )
    return JSONResponse(body.model_dump(), status_code=200 if body.ready else 503)


@public.get(
    "/metrics",
    summary="Prometheus metrics",
    response_class=Response,
    responses={200: {"content": {"text/plain": {}}, "description": "Prometheus text format"}},
)
async def prometheus_metrics() -> Response:
    data, content_type = metrics.render()
    return Response(data, media_type=content_type)


# --------------------------------------------------------------------------------------------- app
def build_engine(settings: Settings) -> DecisionEngine:
    rules = RuleSource(ruleset_path(settings.data_dir) if settings.data_dir else None)
    models = (
        ModelSource(settings.mlflow_tracking_uri, settings.uc_catalog, settings.uc_schema)
        if settings.mlflow_tracking_uri
        else None
    )
    return DecisionEngine.from_sources(rules, models)


async def _refresher(app: FastAPI) -> None:
    settings: Settings = app.state.settings
    poller = app.state.poller
    loop = asyncio.get_running_loop()
    try:
        while True:
            await asyncio.sleep(settings.refresh_seconds)
            try:
                engine: DecisionEngine = app.state.engine
                versions = None
                if poller is not None:  # the registry lookups run in the helper process
                    versions = await loop.run_in_executor(
                        poller,
                        registry_poll.alias_versions,
                        settings.mlflow_tracking_uri,
                        settings.uc_catalog,
                        settings.uc_schema,
                    )
                if await asyncio.to_thread(engine.refresh, alias_versions=versions):
                    metrics.show_versions(engine.model_versions, engine.rule_set_version)
            except asyncio.CancelledError:
                raise
            except Exception:  # never let the refresher die (a broken helper process is replaced)
                log.exception("refresh failed")
                if poller is not None and getattr(poller, "_broken", False):
                    poller.shutdown(wait=False, cancel_futures=True)
                    poller = app.state.poller = registry_poll.start_poller(
                        settings.mlflow_tracking_uri, settings.uc_catalog, settings.uc_schema
                    )
    finally:
        if app.state.poller is not None:
            app.state.poller.shutdown(wait=False, cancel_futures=True)


@contextlib.asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    settings: Settings = app.state.settings
    # the registry poller's process starts (and imports MLflow) now, next to the engine's first load
    app.state.poller = (
        registry_poll.start_poller(settings.mlflow_tracking_uri, settings.uc_catalog, settings.uc_schema)
        if settings.mlflow_tracking_uri
        else None
    )
    engine = await asyncio.to_thread(build_engine, settings)
    if app.state.poller is not None:  # ready only once the poller has answered (imports done)
        try:
            await asyncio.wait_for(
                asyncio.get_running_loop().run_in_executor(
                    app.state.poller,
                    registry_poll.alias_versions,
                    settings.mlflow_tracking_uri,
                    settings.uc_catalog,
                    settings.uc_schema,
                ),
                timeout=120,
            )
        except Exception:  # the refresher retries (and replaces a broken poller)
            log.exception("registry poller did not answer at startup")
    app.state.engine = engine
    metrics.show_versions(engine.model_versions, engine.rule_set_version)
    client = redis.asyncio.Redis.from_url(
        settings.redis_url, socket_timeout=5, socket_connect_timeout=2, health_check_interval=30
    )
    app.state.redis = client
    app.state.velocity = AsyncRedisVelocityStore(client, prefix=f"{settings.redis_prefix}:vel")
    app.state.decisions = DecisionStore(client, settings.redis_prefix, settings.decision_ttl_seconds)
    app.state.pipeline = AutoPipeline(client)
    app.state.written = WriteBehindDecisions(app.state.decisions, app.state.pipeline)
    log.info(
        "scoring_api ready: rules=%s models=%s auth=%s",
        engine.rule_set_version,
        engine.model_versions,
        "on" if settings.auth_enabled else "off",
    )
    task = asyncio.create_task(_refresher(app))
    # the heap is large after importing MLflow/sklearn: keep those objects out of the collector's
    # full passes (long gen-2 pauses show up as p99 latency)
    gc.collect()
    gc.freeze()
    gc.set_threshold(20_000, 50, 100)
    try:
        yield
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        with contextlib.suppress(Exception):  # the decisions written behind reach Redis before we stop
            await asyncio.wait_for(app.state.pipeline.drain(), timeout=5)
        await client.aclose()


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or get_settings()
    settings.check()
    app = FastAPI(
        title="payment-analysis scoring API",
        version="1.0.0",
        description="Real-time payment decisions: approve, challenge_3ds, review or decline, with approval "
        "probability, risk score, recommended route, retry advice and reason codes.",
        lifespan=lifespan,
    )
    app.state.settings = settings
    app.state.api_keys = tuple(settings.keys)
    # The API-key check is a dependency of the routes only when auth is on (then the OpenAPI document
    # shows the security schemes); with auth off (dev) no per-request dependency runs at all.
    app.include_router(router, dependencies=[Authenticated] if settings.auth_enabled else [])
    app.include_router(public)

    @app.exception_handler(StarletteHTTPException)
    async def _http_errors(request: Request, exc: StarletteHTTPException) -> Response:
        if exc.status_code == 400:  # FastAPI's "error parsing the body" (e.g. not UTF-8): a 422 like the rest
            return JSONResponse(
                {"detail": [{"type": "json_invalid", "loc": ["body"], "msg": "body is not valid JSON (UTF-8)"}]},
                status_code=422,
            )
        return await http_exception_handler(request, exc)

    @app.exception_handler(Exception)
    async def _unhandled(request: Request, exc: Exception) -> JSONResponse:  # pragma: no cover - safety net
        log.error("unhandled error on %s", request.url.path, exc_info=exc)
        return JSONResponse({"detail": "internal error"}, status_code=500)

    app.add_middleware(LimitAndMeasure, max_body_bytes=settings.max_body_bytes)
    return app


def app_factory() -> FastAPI:
    """uvicorn --factory entry point (reads PA_* settings)."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    return create_app()
