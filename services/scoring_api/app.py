"""The FastAPI application: ``create_app(settings)``.

Hot path of ``POST /score``: a plain ASGI endpoint (``score_asgi``, served by the ``LimitAndMeasure``
middleware for a body with a Content-Length: no FastAPI routing, exception or dependency layers; the
FastAPI route ``score`` gives the same answers for the rest and documents it), API key and rate
limit (``auth.require_api_key``), the request parsed and validated in one pass over its bytes
(``decide_one`` through ``parse_transaction``: pydantic-core), ONE Redis command (``lookup``: a Lua
script reading the stored decision for idempotency and, for a new transaction, computing the velocity features while
recording it), the decision core straight to JSON (``DecisionEngine.decide_json``: derived features,
fast model scorers, compiled rules, policy), ONE more Redis command storing the decision with its
request fingerprint and putting it in this process's outbox (``store``), the hand-over to the Kafka
producer (``publisher``: no broker round trip), then the answer. Redis commands of concurrent
requests share one pipeline per event-loop turn (``AutoPipeline``): one socket write and read for
all of them; a request awaits its command's own future (``_script_within``), with no task of its
own. The Redis part of a request has a budget (``PA_REDIS_TIMEOUT_MS``): a stalled or unreachable
Redis is a 503 within it, never a hang, and error bodies never carry internal addresses or exception
text (those go to the log).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import gc
import logging
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Annotated, Any

import redis.asyncio
from fastapi import APIRouter, FastAPI, HTTPException, Path, Request, status
from fastapi.exception_handlers import http_exception_handler
from fastapi.exceptions import RequestValidationError
from fastapi.openapi.docs import get_redoc_html, get_swagger_ui_html
from fastapi.responses import HTMLResponse, JSONResponse, Response
from fastapi.telemetry import TelemetryConfig
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from redis.exceptions import NoScriptError, RedisError, ResponseError
from starlette.exceptions import HTTPException as StarletteHTTPException

from payments_core.contract.events import DecisionEvent, TransactionRequest
from payments_core.engine import DecisionEngine
from payments_core.models import CHAMPION, ModelSource
from payments_core.rules import starter_rule_set
from payments_core.rules.model import RuleSource, ruleset_path
from payments_core.samples import EXAMPLE_REQUEST
from payments_core.velocity import AsyncRedisVelocityStore
from services.scoring_api import metrics, registry_poll, similar
from services.scoring_api.auth import (
    Authenticated,
    KeyOnly,
    RateLimiter,
    admit,
    document_security,
    parse_rate,
)
from services.scoring_api.consumer_status import describe, read_status, redact, status_key
from services.scoring_api.middleware import LimitAndMeasure
from services.scoring_api.pipelining import AutoPipeline, eval_script
from services.scoring_api.publisher import DecisionPublisher, context_of, member_of
from services.scoring_api.settings import Settings, get_settings
from services.scoring_api.store import (
    EXISTS,
    LOOKUP_LUA,
    OUTBOX_FULL,
    STORE_LUA,
    DecisionStore,
    fingerprint,
    pack,
    unpack,
)

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
    401: {"model": Problem, "description": "Missing API key"},
    403: {"model": Problem, "description": "Invalid API key"},
    409: {"model": Problem, "description": "transaction_id already decided for a different request"},
    413: {"model": Problem, "description": "Request body too large"},
    429: {"model": Problem, "description": "Rate limit of the API key exceeded (header Retry-After)"},
    503: {"model": Problem, "description": "Decision store (Redis) unavailable or too slow (header Retry-After)"},
}
# a timed-out call may still have stored the decision (the outbox publishes it): a retry replays it
UNAVAILABLE = (
    "decision store unavailable or too slow; retry with the same transaction_id and body "
    "(a decision already made is returned, never made twice)"
)
_last_unavailable_log = [0.0]


def _unavailable(exc: BaseException | None, what: str = "Redis") -> HTTPException:
    """The 503 of a failed or too slow Redis: the details go to the log (at most once a second),
    never to the client."""
    metrics.REDIS_UNAVAILABLE.inc()
    now = time.monotonic()
    if now - _last_unavailable_log[0] > 1.0:
        _last_unavailable_log[0] = now
        reason = "no answer within PA_REDIS_TIMEOUT_MS" if isinstance(exc, TimeoutError) else exc
        log.warning("%s unavailable, answering 503: %s", what, reason)
    return HTTPException(status.HTTP_503_SERVICE_UNAVAILABLE, UNAVAILABLE, headers={"Retry-After": "1"})


async def _within(awaitable: Any, deadline: float) -> Any:
    """``awaitable`` if Redis answers before ``deadline`` (perf_counter), else a 503."""
    try:
        return await asyncio.wait_for(awaitable, timeout=max(deadline - time.perf_counter(), 0.001))
    except (TimeoutError, RedisError, OSError) as exc:
        raise _unavailable(exc) from None


def _conflict(transaction_ids: list[str]) -> HTTPException:
    metrics.IDEMPOTENCY_CONFLICTS.inc()
    more = len(transaction_ids) - 5
    shown = ", ".join(transaction_ids[:5]) + (f" and {more} more" if more > 0 else "")
    return HTTPException(
        status.HTTP_409_CONFLICT,
        f"transaction_id {shown} already decided for a different request: a transaction_id is an "
        "idempotency key, the same id must carry the same request (amount, merchant, every field). "
        "Send the original request again to get its decision, or use a new transaction_id.",
    )


def _replayed(value: bytes, fp: bytes, transaction_id: str) -> bytes:
    """The stored decision of a replay, or a 409 when it was made for a different request."""
    stored_fp, body = unpack(value)
    if stored_fp is not None and stored_fp != fp:
        raise _conflict([transaction_id])
    metrics.REPLAYS.inc()
    return body


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


@dataclass(slots=True, frozen=True)
class RedisPath:
    """The Redis handles of a request's script calls (``connect_redis``: ``state.redis_path``), the
    same-I/O ceiling's too. Read from one object because each attribute read on Starlette's ``State``
    is a Python ``__getattr__`` call."""

    velocity: AsyncRedisVelocityStore
    decisions: DecisionStore
    pipeline: AutoPipeline
    lookup_script: Any
    store_script: Any
    budget: float  # PA_REDIS_TIMEOUT_MS in seconds


@dataclass(slots=True, frozen=True)
class ScorePath:
    """Everything a ``POST /score`` request reads, resolved once the lifespan has it all
    (``state.score_path``): a request used to make ~15 ``State`` reads."""

    redis: RedisPath
    engine: DecisionEngine
    publisher: DecisionPublisher
    outbox_max: int  # PA_DECISIONS_OUTBOX_MAX
    similar_enrich: bool  # PA_SIMILAR_ENRICH


def _expire(future: asyncio.Future) -> None:
    if not future.done():
        future.set_exception(TimeoutError())


async def _script_within(path: RedisPath, script: Any, keys: list[Any], args: list[Any], deadline: float) -> Any:
    """A script call through the auto-pipeline (EVALSHA), answered before ``deadline`` (perf_counter)
    or a 503. The pipeline's own future carries the deadline (a timer), so the call costs no task and
    no ``wait_for``; a Redis that lost the script (NOSCRIPT) gets it loaded again, within the budget."""
    pipeline = path.pipeline
    try:
        future = pipeline.call("EVALSHA", script.sha, len(keys), *keys, *args)
        timer = asyncio.get_running_loop().call_later(max(deadline - time.perf_counter(), 0.001), _expire, future)
        try:
            return await future
        except NoScriptError:
            pass
        except ResponseError as exc:  # replies delivered from a pipeline may be generic errors
            if "NOSCRIPT" not in str(exc):
                raise
        finally:
            timer.cancel()
    except (TimeoutError, RedisError, OSError) as exc:
        raise _unavailable(exc) from None
    return await _within(eval_script(pipeline, script, keys, args), deadline)


async def lookup(path: RedisPath, data: dict[str, Any], deadline: float) -> tuple[str, Any]:
    """The one Redis command of every ``/score`` request before the decision: the stored decision of
    the transaction (a replay) or, for a new one, its velocity features while recording it. Returns
    (decision key, raw reply). ``bench.score``'s same-I/O ceiling makes exactly this call."""
    key = path.decisions.key(data["transaction_id"])
    keys, args = path.velocity.lookup_keys_args(key, data)
    return key, await _script_within(path, path.lookup_script, keys, args, deadline)


# The API's metrics are Prometheus (/metrics). FastAPI's OpenTelemetry bridge would otherwise look up the
# three global OTel providers on every request (each an os.environ read) to find that none is set.
NO_OTEL_BRIDGE: TelemetryConfig = {"tracing": False, "metrics": False, "logs": False}


def tune_gc() -> None:
    """Call once the process has loaded what it serves with. The heap is large after importing
    MLflow/sklearn/pandas: keep those objects out of the collector's full passes (long gen-2 pauses
    show up as p99 latency), and collect the young generation less often."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(20_000, 50, 100)


def connect_redis(state: Any, settings: Settings) -> Any:
    """The Redis client of an API process and what the hot path uses on it (velocity and decision
    stores, the auto-pipeline, the lookup and store scripts), set on ``state`` and gathered in
    ``state.redis_path``."""
    budget = state.redis_budget
    # requests give up on Redis after PA_REDIS_TIMEOUT_MS (a 503); the sockets' own timeouts only free
    # the connections of a stalled server
    client = redis.asyncio.Redis.from_url(
        settings.redis_url,
        socket_timeout=max(1.0, 4 * budget),
        socket_connect_timeout=max(0.25, budget),
        health_check_interval=30,
    )
    state.redis = client
    state.velocity = AsyncRedisVelocityStore(client, prefix=f"{settings.redis_prefix}:vel")
    state.decisions = DecisionStore(client, settings.redis_prefix, settings.decision_ttl_seconds)
    state.pipeline = AutoPipeline(client)
    state.lookup_script = client.register_script(LOOKUP_LUA)
    state.store_script = client.register_script(STORE_LUA)
    state.redis_path = RedisPath(
        state.velocity, state.decisions, state.pipeline, state.lookup_script, state.store_script, budget
    )
    return client


router = APIRouter()  # decisions (API key and rate limit)
public = APIRouter()  # health, readiness (never behind the key)
private = APIRouter()  # metrics (behind the key with PA_PRIVATE_METRICS)


def transaction_errors(exc: ValidationError) -> RequestValidationError:
    """The 422 of a refused ``/score`` body, in FastAPI's own format (``loc`` starts with ``body``)."""
    errors = []
    for err in exc.errors(include_url=False):
        err["loc"] = ("body", *err["loc"])
        if isinstance(err.get("input"), bytes):  # a body that is not JSON (or not UTF-8) is echoed as text
            err["input"] = err["input"].decode("utf-8", "replace")
        errors.append(err)
    return RequestValidationError(errors)


def parse_transaction(raw: bytes) -> TransactionRequest:
    """A request body parsed and validated in one pass by pydantic-core (``model_validate_json``),
    not ``json.loads`` then model validation of the Python objects: about a tenth of ``/score``'s
    CPU (docs/performance.md). A refused body is FastAPI's 422."""
    try:
        return TransactionRequest.model_validate_json(raw)
    except ValidationError as exc:
        raise transaction_errors(exc) from None


async def read_transaction(request: Request) -> TransactionRequest:
    """``parse_transaction`` of the request's body (the bench's ceilings validate through it)."""
    return parse_transaction(await request.body())


# the body is read by ``read_transaction``; OpenAPI still documents it (schema and examples)
_SCORE_BODY = {
    "requestBody": {
        "required": True,
        "content": {
            "application/json": {
                "schema": {"$ref": "#/components/schemas/TransactionRequest"},
                "examples": _EXAMPLES,
            }
        },
    }
}
_SCORE_ERRORS = {
    **_ERRORS,
    422: {
        "description": "Validation Error (each error's loc names the field)",
        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/HTTPValidationError"}}},
    },
}


@router.post(
    "/score",
    response_model=DecisionEvent,
    responses=_SCORE_ERRORS,
    openapi_extra=_SCORE_BODY,
    summary="Decide one transaction",
    description="Returns the decision for the transaction. Idempotent by transaction_id: scoring the "
    "same id again with the same request returns the stored decision (header `Idempotent-Replay: true`); "
    "the same id with a different request is a 409. Every decision returned is also published to "
    "payments.decisions (source api).",
)
async def score(request: Request) -> Response:
    # served by ``score_asgi`` (below) when the request declares its Content-Length; this route is
    # the same decision for the rest (e.g. a chunked body) and what the OpenAPI document describes
    started = request.scope.get("state", {}).get("started") or time.perf_counter()
    body, replayed = await decide_one(request.app.state, await request.body(), started)
    return Response(body, media_type=JSON, headers=_REPLAY_HEADER if replayed else None)


_REPLAY_HEADER = {"Idempotent-Replay": "true"}


async def decide_one(state: Any, raw: bytes, started: float) -> tuple[bytes, bool]:
    """``POST /score`` on the request's bytes: (the decision's JSON, whether it is a replay).
    Raises the route's errors (422, 409, 503) as FastAPI exceptions."""
    path: ScorePath = state.score_path
    redis_path = path.redis
    tx = parse_transaction(raw)
    deadline = started + redis_path.budget
    txn = tx.transaction_id
    data = tx.field_values()
    fp = fingerprint(data)
    key, reply = await lookup(redis_path, data, deadline)
    if reply[0]:  # decided before: replay, or 409 for a different request (nothing was recorded)
        return _replayed(reply[0], fp, txn), True
    velocity = redis_path.velocity.parse(reply[1:])
    outcome, plain = path.engine.decide_json(data, velocity, source="api", started=started)
    body = similar.enrich_decision(state, data, plain) if path.similar_enrich else plain
    publisher = path.publisher
    context = context_of(data)
    member = member_of(context, plain)
    stored = await _script_within(
        redis_path,
        redis_path.store_script,
        [key, publisher.outbox_key],
        [pack(fp, body), redis_path.decisions.ttl, member, int(time.time() * 1000), path.outbox_max],
        deadline,
    )
    if stored[0] == OUTBOX_FULL:
        raise _unavailable(RuntimeError("decision outbox full: payments.decisions unreachable"), "Kafka")
    if stored[0] == EXISTS:  # decided concurrently (another request, worker or the stream)
        return _replayed(stored[1], fp, txn), True
    publisher.publish(txn, member, (context, plain))
    metrics.decided(outcome)
    return body, False


_JSON_HEADERS = [(b"content-type", JSON.encode())]
_REPLAY_RAW = [(b"idempotent-replay", b"true")]


def _exception_handler(app: FastAPI, exc: Exception) -> Any:
    """The handler Starlette's ``ExceptionMiddleware`` would pick for ``exc`` (by status code for an
    HTTP exception, then by class), or None: unhandled, the outer ``ServerErrorMiddleware`` answers 500."""
    handlers = app.exception_handlers
    if isinstance(exc, StarletteHTTPException) and exc.status_code in handlers:
        return handlers[exc.status_code]
    for cls in type(exc).__mro__:
        if cls is Exception:
            return None
        if cls in handlers:
            return handlers[cls]
    return None


async def score_asgi(app: FastAPI, scope: dict, receive: Any, send: Any) -> None:
    """``POST /score`` as a plain ASGI endpoint, called by ``LimitAndMeasure`` (size limit, latency
    metric) under Starlette's ``ServerErrorMiddleware`` (500): the same API-key dependency, the same
    decision (``decide_one``), the same responses, and errors answered by the app's own exception
    handlers (FastAPI's 422 format, ``Retry-After`` of a 503 ...), without FastAPI's routing, exception
    and dependency layers (docs/performance.md: ~40 µs of the event loop per request)."""
    request = Request(scope, receive)
    state = app.state
    try:
        if state.settings.auth_enabled:
            admit(request)
        body, replayed = await decide_one(state, await request.body(), scope["state"]["started"])
    except Exception as exc:
        handler = _exception_handler(app, exc)
        if handler is None:
            raise
        response = await handler(request, exc)
        await response(scope, receive, send)
        return
    headers = [(b"content-length", b"%d" % len(body)), *_JSON_HEADERS]
    await send(
        {"type": "http.response.start", "status": 200, "headers": _REPLAY_RAW + headers if replayed else headers}
    )
    await send({"type": "http.response.body", "body": body})


@router.post(
    "/score/batch",
    response_model=BatchResponse,
    responses=_ERRORS,
    summary="Decide many transactions",
    description="One decision per transaction, in order. Idempotent per transaction_id like /score (a "
    "transaction_id already decided for a different request, or given twice with different requests, "
    "is a 409 for the whole batch, which then records nothing).",
)
async def score_batch(request: Request, batch: BatchRequest) -> Response:
    state = request.app.state
    settings: Settings = state.settings
    started = request.scope.get("state", {}).get("started") or time.perf_counter()
    deadline = started + state.redis_budget
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
    unique: dict[str, tuple[TransactionRequest, dict[str, Any], bytes]] = {}
    clashes: list[str] = []
    for tx in txs:
        data = tx.field_values()
        fp = fingerprint(data)
        seen = unique.setdefault(tx.transaction_id, (tx, data, fp))
        if seen[2] != fp and tx.transaction_id not in clashes:
            clashes.append(tx.transaction_id)
    if clashes:
        raise _conflict(clashes)
    ids = list(unique)
    pipe = state.redis.pipeline(transaction=False)
    for i in ids:
        pipe.get(state.decisions.key(i))
    stored = await _within(pipe.execute(), deadline)
    bodies: dict[str, bytes] = {}
    conflicts: list[str] = []
    for txn, value in zip(ids, stored, strict=True):
        if value is not None:
            stored_fp, body = unpack(value)
            if stored_fp is not None and stored_fp != unique[txn][2]:
                conflicts.append(txn)
            bodies[txn] = body
    if conflicts:
        raise _conflict(conflicts)
    metrics.REPLAYS.inc(len(bodies))
    new_ids = [txn for txn in ids if txn not in bodies]
    if new_ids:
        rows = [unique[txn][1] for txn in new_ids]
        pipe = state.redis.pipeline(transaction=False)
        for row in rows:  # record the whole batch first, then read (order-independent features)
            state.velocity.add_to_pipeline(pipe, row, mode="2")
        for row in rows:
            state.velocity.add_to_pipeline(pipe, row, mode="0")
        vel = (await _within(pipe.execute(), deadline))[len(rows) :]
        publisher: DecisionPublisher = state.publisher
        now_ms = int(time.time() * 1000)
        new: list[tuple[str, bytes, str]] = []
        pipe = state.redis.pipeline(transaction=False)
        for txn, row, features in zip(new_ids, rows, vel, strict=True):
            decision = state.engine.decide_dumped(row, state.velocity.parse(features), source="api", started=started)
            body = _DECISION_JSON.to_json(decision)
            member = member_of(context_of(row), body)
            new.append((txn, member, decision.outcome))
            bodies[txn] = body
            await state.store_script(
                keys=[state.decisions.key(txn), publisher.outbox_key],
                args=[pack(unique[txn][2], body), state.decisions.ttl, member, now_ms, settings.decisions_outbox_max],
                client=pipe,
            )
        results = await _within(pipe.execute(), deadline)
        if any(r[0] == OUTBOX_FULL for r in results):
            raise _unavailable(RuntimeError("decision outbox full: payments.decisions unreachable"), "Kafka")
        for (txn, member, outcome), result in zip(new, results, strict=True):
            if result[0] == EXISTS:  # decided concurrently
                stored_fp, bodies[txn] = unpack(result[1])
                if stored_fp is not None and stored_fp != unique[txn][2]:
                    raise _conflict([txn])
                continue
            publisher.publish(txn, member)
            metrics.DECISIONS.labels(outcome).inc()
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
    state = request.app.state
    started = request.scope.get("state", {}).get("started") or time.perf_counter()
    body = await _within(state.decisions.get(transaction_id), started + state.redis_budget)
    if body is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"no decision for {transaction_id}")
    return Response(body, media_type=JSON)


class Health(BaseModel):
    status: str


class ModelState(BaseModel):
    source: str = Field(description="registry: a registered model decides; fallback: the built-in heuristic")
    name: str | None = Field(None, description="Registered model name")
    version: str = Field(description="Registry version in use, or heuristic")
    alias: str | None = None
    registry_version: str | None = Field(None, description="Version the registry's champion alias points to")
    reason: str | None = Field(None, description="Why the fallback decides")


class RulesState(BaseModel):
    version: str
    source: str = Field(description="file, volume (a Unity Catalog volume) or starter (the built-in rule set)")
    path: str | None = None
    error: str | None = None


class Readiness(BaseModel):
    ready: bool
    redis: bool
    rule_set_version: str | None = None
    model_versions: dict[str, str] = {}
    models_heuristic: bool | None = None
    rules_error: str | None = None
    consumer_heartbeat_age_s: float | None = None
    models: dict[str, ModelState] = {}
    rules: RulesState | None = None
    consumer: dict[str, Any] = {}
    publisher: dict[str, Any] = {}


@public.get("/health", response_model=Health, summary="Liveness")
async def health() -> dict[str, str]:
    return {"status": "ok"}


@functools.cache
def _starter_version() -> str:
    return starter_rule_set().full_version


def model_states(engine: DecisionEngine) -> dict[str, ModelState]:
    """Per kind: the registered model that decides, or the heuristic fallback and why."""
    aliases = engine.snapshot.alias_versions
    source = engine.model_source
    out = {}
    for kind, model in engine.bundle.champions.items():
        registered = aliases.get((kind, CHAMPION))
        if not model.is_heuristic:
            out[kind] = ModelState(
                source="registry",
                name=model.name,
                version=model.version,
                alias=model.alias,
                registry_version=registered,
            )
            continue
        if source is None:
            reason = "no model registry configured (PA_MLFLOW_TRACKING_URI)"
        elif registered is None:
            reason = "no champion registered (or the registry did not answer)"
        else:
            failure = source.errors.get(f"{kind}@{CHAMPION}")
            reason = f"registered version {registered} could not be loaded"
            if failure:
                reason += f" ({redact(failure)})"
        out[kind] = ModelState(source="fallback", version=model.version, registry_version=registered, reason=reason)
    return out


def rules_state(engine: DecisionEngine) -> RulesState:
    rs = engine.rule_source
    version = engine.rule_set_version
    path = rs.path if rs is not None else None
    if path is None or version == _starter_version():
        source = "starter"
    elif str(path).startswith("/Volumes/"):
        source = "volume"
    else:
        source = "file"
    return RulesState(
        version=version, source=source, path=str(path) if path else None, error=rs.last_error if rs else None
    )


def report_fallbacks(app: FastAPI) -> None:
    """Fallback models and starter rules as metrics (``pa_model_fallback``, ``pa_rules_fallback``) and,
    when they start, a WARNING line: never silent."""
    engine: DecisionEngine = app.state.engine
    before: dict[str, Any] = app.state.fallbacks
    for kind, model in model_states(engine).items():
        fallback = model.source == "fallback"
        metrics.MODEL_FALLBACK.labels(kind).set(1 if fallback else 0)
        if fallback and before.get(kind) != model.reason:
            log.warning("model %s: the heuristic fallback decides: %s", kind, model.reason)
        elif not fallback and before.get(kind):
            log.info("model %s: registered version %s decides again", kind, model.version)
        before[kind] = model.reason if fallback else None
    rules = rules_state(engine)
    starter = rules.source == "starter"
    metrics.RULES_FALLBACK.set(1 if starter else 0)
    now = ("starter", rules.error) if starter else ("published", rules.version)
    if starter and before.get("rules") != now:
        where = rules.path or "no rules folder (PA_DATA_DIR / PA_RULES_VOLUME_PATH)"
        why = f": {rules.error}" if rules.error else ": not published"
        log.warning("rules: the starter rule set decides (%s%s)", where, why)
    before["rules"] = now


@public.get(
    "/ready",
    response_model=Readiness,
    responses={503: {"model": Readiness}},
    summary="Readiness: what decides (models, rules), Redis, the decisions consumer and publisher",
    description="Ready (200) when the engine is loaded, Redis answers, the decisions consumer (when `serve` "
    "runs one) is running and not failing, and the decision outbox is not full. Fallback models and "
    "starter rules do not make it red: they are reported here, in /metrics and in the log.",
)
async def ready(request: Request) -> JSONResponse:
    state = request.app.state
    settings: Settings = state.settings
    engine: DecisionEngine | None = getattr(state, "engine", None)
    redis_ok = False
    status_raw = beat = None
    try:
        pipe = state.redis.pipeline(transaction=False)
        pipe.ping()
        pipe.get(status_key(settings.redis_prefix))
        pipe.get(f"{settings.redis_prefix}:consumer:heartbeat")
        pong, status_raw, beat = await asyncio.wait_for(pipe.execute(), timeout=max(state.redis_budget, 0.5))
        redis_ok = bool(pong)
    except (TimeoutError, RedisError, OSError):
        redis_ok = False
    consumer_ok, consumer = read_status(status_raw, settings.decisions_consumer)
    if not redis_ok:
        consumer = {"expected": settings.decisions_consumer, "running": None}
        consumer_ok = not settings.decisions_consumer
    age = consumer.get("heartbeat_age_s")
    if age is None and beat is not None:
        age = round(time.time() - float(beat), 3)
    publisher: DecisionPublisher | None = getattr(state, "publisher", None)
    published = publisher.status() if publisher else {}
    outbox_ok = not publisher or publisher.outbox_size < settings.decisions_outbox_max
    body = Readiness(
        ready=bool(engine) and redis_ok and consumer_ok and outbox_ok,
        redis=redis_ok,
        rule_set_version=engine.rule_set_version if engine else None,
        model_versions=engine.model_versions if engine else {},
        models_heuristic=engine.bundle.all_heuristic if engine else None,
        rules_error=engine.rule_source.last_error if engine and engine.rule_source else None,
        consumer_heartbeat_age_s=age,
        models=model_states(engine) if engine else {},
        rules=rules_state(engine) if engine else None,
        consumer=consumer,
        publisher=published,
    )
    return JSONResponse(body.model_dump(), status_code=200 if body.ready else 503)


@private.get(
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
    rules = RuleSource(ruleset_path(settings.data_dir, settings.rules_volume_path) if settings.data_dir else None)
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
                    report_fallbacks(app)
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
    report_fallbacks(app)
    client = connect_redis(app.state, settings)
    app.state.publisher = DecisionPublisher(settings, client, app.state.pipeline)
    await app.state.publisher.start()
    app.state.score_path = ScorePath(
        app.state.redis_path, engine, app.state.publisher, settings.decisions_outbox_max, settings.similar_enrich
    )
    log.info(
        "scoring_api ready: rules=%s models=%s auth=%s rate limit=%s decisions -> %s",
        engine.rule_set_version,
        engine.model_versions,
        "on" if settings.auth_enabled else "OFF (PA_AUTH=off)",
        settings.rate_limit if settings.auth_enabled else "-",
        app.state.publisher.topic,
    )
    task = asyncio.create_task(_refresher(app))
    tune_gc()
    try:
        yield
    finally:
        task.cancel()
        await asyncio.wait({task}, timeout=5)  # bounded: shutdown never hangs on a lost Redis reply
        try:  # flush the producer; what Kafka has not acknowledged stays in the outbox
            await asyncio.wait_for(app.state.publisher.stop(), timeout=30)
        except Exception as exc:
            log.warning("decision publisher did not stop cleanly: %s", describe(exc))
        with contextlib.suppress(Exception):
            await asyncio.wait_for(app.state.pipeline.drain(), timeout=5)
        app.state.pipeline.close()
        await client.aclose()


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or get_settings()
    settings.check()
    app = FastAPI(
        telemetry=NO_OTEL_BRIDGE,
        title="payment-analysis scoring API",
        version="1.0.0",
        description="Real-time payment decisions: approve, challenge_3ds, review or decline, with approval "
        "probability, risk score, recommended route, retry advice and reason codes.",
        lifespan=lifespan,
        docs_url=None if settings.private_docs else "/docs",
        redoc_url=None if settings.private_docs else "/redoc",
        openapi_url=None if settings.private_docs else "/openapi.json",
    )
    app.state.settings = settings
    app.state.api_keys = tuple((key, key.encode()) for key in settings.keys)  # (key, its bytes to compare)
    app.state.rate_limiter = RateLimiter(rate) if (rate := parse_rate(settings.rate_limit)) else None
    app.state.redis_budget = settings.redis_timeout_ms / 1000
    app.state.fallbacks = {}
    if not settings.auth_enabled:
        log.warning("scoring_api: API-key auth is OFF (PA_AUTH=off, PA_ENV=%s): anyone can call /score", settings.env)
    # The API-key check is a dependency of the routes when auth is on (then the OpenAPI document
    # shows the security schemes); with PA_AUTH=off (dev/test only) no per-request dependency runs at all.
    app.include_router(router, dependencies=[Authenticated] if settings.auth_enabled else [])
    app.include_router(similar.router, dependencies=[Authenticated] if settings.auth_enabled else [])
    if settings.auth_enabled:
        document_security(app, [router, similar.router])
    app.include_router(public)
    private_deps = [KeyOnly] if settings.auth_enabled else []
    app.include_router(private, dependencies=private_deps if settings.private_metrics else [])
    if settings.private_docs:
        _private_docs(app, private_deps)

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

    app.add_middleware(
        LimitAndMeasure,
        max_body_bytes=settings.max_body_bytes,
        endpoints={("POST", "/score"): functools.partial(score_asgi, app)},
    )
    return app


def _private_docs(app: FastAPI, dependencies: list[Any]) -> None:
    """/openapi.json, /docs and /redoc behind the API key (PA_PRIVATE_DOCS): for a client that sends
    the key itself (curl, a proxy adding the header); the pages fetch /openapi.json with the browser's
    own headers, so they need that too."""

    @app.get("/openapi.json", include_in_schema=False, dependencies=dependencies)
    async def openapi_json() -> JSONResponse:
        return JSONResponse(app.openapi())

    @app.get("/docs", include_in_schema=False, dependencies=dependencies)
    async def docs() -> HTMLResponse:
        return get_swagger_ui_html(openapi_url="/openapi.json", title=f"{app.title} - docs")

    @app.get("/redoc", include_in_schema=False, dependencies=dependencies)
    async def redoc() -> HTMLResponse:
        return get_redoc_html(openapi_url="/openapi.json", title=f"{app.title} - ReDoc")


def app_factory() -> FastAPI:
    """uvicorn --factory entry point (reads PA_* settings)."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    return create_app()
