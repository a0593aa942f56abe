"""Decisions: the live decision stream (list, server-sent events, detail, feed status) and "Try a
transaction", which forwards a transaction to the scoring API's ``POST /score`` over HTTP. The decisions
come from the backend (Kafka locally, the decision log through the SQL warehouse on Databricks)."""

from __future__ import annotations

import asyncio
import json
import random
import secrets
from datetime import UTC, datetime
from typing import Annotated, Any

import httpx
from fastapi import APIRouter, Body, Depends, HTTPException, Query, Request
from fastapi.responses import HTMLResponse, JSONResponse
from fastapi.sse import EventSourceResponse, ServerSentEvent

from payments_core.contract import CURRENCY_EXPONENT, DecisionOutcome
from payments_core.contract.events import (
    CardNetwork,
    Currency,
    MerchantSegment,
    PaymentSolution,
    TransactionRequest,
    enum_values,
)
from payments_core.samples import sample_request
from services.control_plane import audit
from services.control_plane.backends import BackendError, DecisionSource
from services.control_plane.decision_feed import DecisionFilter
from services.control_plane.deps import DbSession, PageUser, SettingsDep, Viewer
from services.control_plane.templating import render

router = APIRouter(tags=["decisions"])
SOURCES = ("api", "stream", "backtest")
KEEPALIVE_S = 5.0  # a status event this often: keeps proxies from closing the stream and the page's counters fresh
MAX_BACKLOG = 500
SCORE_TIMEOUT_S = 10.0


def _feed(request: Request) -> DecisionSource:
    """The backend's decisions: the Kafka feed locally, the decision log through the SQL warehouse on
    Databricks."""
    return request.app.state.backend.decisions


def decision_filter(
    outcome: Annotated[str | None, Query(description="approve | challenge_3ds | review | decline")] = None,
    reason_code: Annotated[str | None, Query(description="Part of a reason code")] = None,
    merchant: Annotated[str | None, Query(description="Part of a merchant id")] = None,
    source: Annotated[str | None, Query(description="api | stream | backtest")] = None,
) -> DecisionFilter:
    """The filters shared by the list and the stream; an empty value means "any"."""
    outcome, source = outcome or None, source or None
    if outcome and outcome not in enum_values(DecisionOutcome):
        raise HTTPException(422, f"outcome must be one of {', '.join(enum_values(DecisionOutcome))}, not {outcome!r}")
    if source and source not in SOURCES:
        raise HTTPException(422, f"source must be one of {', '.join(SOURCES)}, not {source!r}")
    return DecisionFilter(
        outcome=outcome,
        reason_code=(reason_code or "").strip() or None,
        merchant=(merchant or "").strip() or None,
        source=source,
    )


Filters = Annotated[DecisionFilter, Depends(decision_filter)]


@router.get("/decisions", response_class=HTMLResponse, include_in_schema=False)
def decisions_page(request: Request, user: PageUser):
    return render(
        request,
        "decisions.html",
        user,
        "/decisions",
        choices={
            "outcome": enum_values(DecisionOutcome),
            "source": SOURCES,
            "merchant_segment": enum_values(MerchantSegment),
            "card_network": enum_values(CardNetwork),
            "payment_solution": enum_values(PaymentSolution),
            "currency": enum_values(Currency),
        },
        currency_exponents=json.dumps(CURRENCY_EXPONENT),
    )


@router.get("/api/decisions")
def list_decisions(
    request: Request, _user: Viewer, filters: Filters, limit: Annotated[int, Query(ge=1, le=10_000)] = 100
) -> list[dict]:
    """The most recent decisions the control plane has seen, newest first."""
    return _feed(request).recent(filters, limit)


@router.get("/api/decisions/feed")
def feed_status(request: Request, _user: Viewer) -> dict:
    """The consumer behind the page: connected or not, what it consumed, skipped and keeps."""
    return _feed(request).status()


@router.get("/api/decisions/stream", response_class=EventSourceResponse)
async def stream_decisions(
    request: Request, _user: Viewer, filters: Filters, backlog: Annotated[int, Query(ge=0, le=MAX_BACKLOG)] = 0
):
    """Server-sent events: ``status`` first, then the last ``backlog`` matching decisions (oldest
    first), then each new decision as it arrives (event ``decision``; a decision is sent again when
    its transaction's facts arrive after it). A ``status`` event every few seconds keeps it alive."""
    feed = _feed(request)
    subscription = feed.subscribe(asyncio.get_running_loop(), filters)  # before the backlog: no gap
    try:
        try:
            entries = await asyncio.to_thread(feed.recent, filters, backlog) if backlog else []
        except BackendError:  # the warehouse did not answer: the status says why, new rows still come
            entries = []
        yield ServerSentEvent(data=feed.status(), event="status", retry=3000)
        for entry in reversed(entries):
            yield ServerSentEvent(data=entry, event="decision", id=entry["decision_id"])
        while not await request.is_disconnected():
            try:
                entry = await asyncio.wait_for(subscription.queue.get(), timeout=KEEPALIVE_S)
            except TimeoutError:
                yield ServerSentEvent(data={**feed.status(), "dropped": subscription.dropped}, event="status")
                continue
            yield ServerSentEvent(data=entry, event="decision", id=entry["decision_id"])
    finally:
        feed.unsubscribe(subscription)


@router.get("/api/decisions/sample")
def sample_transaction(_user: Viewer, seed: int | None = None) -> dict:
    """A realistic, contract-valid transaction to try, timestamped now (JSON types, ready for /score)."""
    rng = random.Random(secrets.randbits(64) if seed is None else seed)
    body = sample_request(rng, event_timestamp=datetime.now(UTC))
    return json.loads(json.dumps(body, default=_json_default))


@router.post("/api/decisions/try")
async def try_transaction(
    request: Request,
    settings: SettingsDep,
    db: DbSession,
    user: Viewer,
    transaction: Annotated[dict[str, Any], Body(description="A TransactionRequest")],
):
    """Score one transaction with the scoring API. Its 4xx (e.g. 422 naming the field) pass through;
    the API unreachable -> 503. Scoring changes no configuration, so any signed-in user may try."""
    headers = {"Accept": "application/json"}
    if settings.scoring_api_key.get_secret_value():
        headers["Authorization"] = f"Bearer {settings.scoring_api_key.get_secret_value()}"
    url = f"{settings.scoring_api_url.rstrip('/')}/score"
    try:
        async with httpx.AsyncClient(timeout=SCORE_TIMEOUT_S) as client:
            resp = await client.post(url, json=transaction, headers=headers)
    except httpx.HTTPError as exc:
        raise HTTPException(
            503,
            f"the scoring API at {settings.scoring_api_url} is not reachable "
            f"({type(exc).__name__}: {exc}); is it running?",
        ) from None
    body = _json_or_text(resp)
    detail = body.get("detail", body) if isinstance(body, dict) else body
    if resp.status_code in (401, 403):  # the control plane's key, not the user's session: never a 401 here
        raise HTTPException(
            502,
            f"the scoring API refused the control plane's API key ({resp.status_code}: "
            f"{detail}); set PA_SCORING_API_KEY to one of its PA_API_KEYS",
        )
    if 400 <= resp.status_code < 500:
        return JSONResponse({"detail": detail}, status_code=resp.status_code)
    if resp.status_code >= 500 or not isinstance(body, dict):
        raise HTTPException(
            503 if resp.status_code == 503 else 502, f"the scoring API answered {resp.status_code}: {detail}"
        )
    # who tried what: the API's velocity counters and decision store now hold this transaction
    audit.record(
        db,
        user.name,
        "decisions.try",
        str(body.get("transaction_id", "")),
        after={"outcome": body.get("outcome"), "rule_set_version": body.get("rule_set_version")},
    )
    replay = resp.headers.get("Idempotent-Replay")
    return JSONResponse(body, headers={"Idempotent-Replay": replay} if replay else None)


@router.get("/api/decisions/{transaction_id}")
def decision_detail(transaction_id: str, request: Request, _user: Viewer) -> dict:
    """One buffered decision with its transaction's facts (``transaction`` is null until they arrive)."""
    entry = _feed(request).get(transaction_id)
    if entry is None:
        settings = request.app.state.settings
        where = (
            "in the decision log"
            if settings.backend == "databricks"
            else f"among the last {settings.decision_buffer} the control plane has seen"
        )
        raise HTTPException(404, f"no decision for {transaction_id} {where}")
    return entry


def _json_default(value: Any) -> str:
    if isinstance(value, datetime):
        return value.isoformat().replace("+00:00", "Z")
    return str(value)  # Decimal (money) as text, never a float


def _json_or_text(resp: httpx.Response) -> Any:
    try:
        return resp.json()
    except ValueError:
        return resp.text[:500]


# ------------------------------------------------------------------------------ similar past transactions
SIMILAR_TIMEOUT_S = 5.0
SIMILAR_MAX_K = 100  # the scoring API's bound


@router.get("/api/decisions/{transaction_id}/similar")
async def similar_transactions(
    transaction_id: str,
    request: Request,
    settings: SettingsDep,
    _user: Viewer,
    k: Annotated[int, Query(ge=1, le=SIMILAR_MAX_K)] = 10,
):
    """The past transactions most similar to this decision's transaction, with their outcomes and the
    mix, from the scoring API: ``POST /similar`` with the transaction's facts when the control plane has
    them, else ``GET /similar/{id}`` (a transaction in the index). The API's 404/503 pass through."""
    try:
        entry = await asyncio.to_thread(_feed(request).get, transaction_id)
    except BackendError:  # the warehouse did not answer: the index may still know the transaction
        entry = None
    facts = (entry or {}).get("transaction")
    base = settings.scoring_api_url.rstrip("/")
    headers = {"Accept": "application/json"}
    if settings.scoring_api_key.get_secret_value():
        headers["Authorization"] = f"Bearer {settings.scoring_api_key.get_secret_value()}"
    try:
        async with httpx.AsyncClient(timeout=SIMILAR_TIMEOUT_S) as client:
            if facts:
                # the facts are the transaction event plus display fields: send only the request's fields
                body = {name: facts[name] for name in TransactionRequest.model_fields if name in facts}
                resp = await client.post(f"{base}/similar", params={"k": k}, json=body, headers=headers)
            else:
                resp = await client.get(f"{base}/similar/{transaction_id}", params={"k": k}, headers=headers)
    except httpx.HTTPError as exc:
        raise HTTPException(
            503, f"the scoring API at {settings.scoring_api_url} is not reachable ({type(exc).__name__}: {exc})"
        ) from None
    body = _json_or_text(resp)
    detail = body.get("detail", body) if isinstance(body, dict) else body
    if resp.status_code in (401, 403):
        raise HTTPException(
            502,
            f"the scoring API refused the control plane's API key ({resp.status_code}: {detail}); "
            "set PA_SCORING_API_KEY to one of its PA_API_KEYS",
        )
    if resp.status_code != 200 or not isinstance(body, dict):
        status = resp.status_code if resp.status_code in (404, 422, 503) else 502
        raise HTTPException(status, f"similar transactions: the scoring API answered {resp.status_code}: {detail}")
    return {**body, "looked_up_by": "facts" if facts else "id"}
