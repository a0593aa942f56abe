"""Similar past transactions: ``GET /similar/{transaction_id}`` (an indexed transaction) and
``POST /similar`` (any transaction, the ``/score`` body), each answering the k nearest indexed
transactions with their outcomes and the mix (approval rate, most common decline reason, fraud share).

The index (``payments_core.similarity``, built by ``python -m spark.jobs.similar_index``) is memory-mapped
read-only at start and swapped for the new one when its file changes (checked every
``PA_REFRESH_SECONDS``, like the rules and models); lookups in flight keep the one they started with.
No index yet: both endpoints answer 503 saying how to build one.

With ``PA_SIMILAR_ENRICH=true`` each ``POST /score`` decision also carries ``"similar"``: the mix of the
``DEFAULT_K`` nearest past transactions (``enrich_decision``). It is part of the stored decision, so an
idempotent replay answers the same body. Off by default: it adds a lookup to every decision.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import time
from collections.abc import AsyncIterator
from datetime import datetime
from pathlib import Path
from typing import Annotated, Any

import orjson
from fastapi import APIRouter, Body, FastAPI, HTTPException, Query, Request, status
from fastapi import Path as PathParam
from pydantic import BaseModel, Field

from payments_core.contract.events import TransactionRequest
from payments_core.samples import EXAMPLE_REQUEST
from payments_core.similarity import (
    DEFAULT_K,
    MAX_K,
    IndexFormatError,
    SimilarIndex,
    SimilarResult,
    default_index_path,
    index_signature,
    vector_of_request,
)
from services.scoring_api.settings import Settings

log = logging.getLogger("scoring_api.similar")


# ------------------------------------------------------------------------------------------ models
class SimilarTransaction(BaseModel):
    transaction_id: str
    distance: float = Field(description="Squared Euclidean distance of the feature vectors (0: same features)")
    event_timestamp: datetime
    amount_minor: int = Field(description="Amount in integer minor units")
    amount: str | None = Field(description="Amount in major units, exact decimal text")
    currency: str | None
    merchant_segment: str | None
    card_network: str | None
    payment_solution: str | None
    geo_country: str
    is_approved: bool
    decline_reason: str | None
    is_fraud: bool | None = Field(description="Confirmed fraud label; null when unknown")


class SimilarMix(BaseModel):
    neighbours: int
    approval_rate: float | None
    declines: int
    top_decline_reason: str | None = Field(description="Most common decline reason among the declined neighbours")
    top_decline_reason_count: int
    fraud_share: float | None = Field(description="Share of fraud among the neighbours with a known label")
    fraud_labelled: int


class IndexInfo(BaseModel):
    transactions: int
    built_at: str | None


class SimilarResponse(BaseModel):
    transaction_id: str
    indexed: bool = Field(description="Whether the transaction itself is in the index (it is never its own neighbour)")
    k: int
    neighbours: list[SimilarTransaction]
    mix: SimilarMix
    index: IndexInfo


class Problem(BaseModel):
    detail: Any


_ERRORS: dict[int | str, dict[str, Any]] = {
    401: {"model": Problem, "description": "Missing API key (auth on)"},
    403: {"model": Problem, "description": "Invalid API key"},
    503: {"model": Problem, "description": "No similar-transaction index yet"},
}
K = Annotated[int, Query(ge=1, le=MAX_K, description=f"How many neighbours (at most {MAX_K})")]


# ------------------------------------------------------------------------------------------ the index
class IndexHolder:
    """The index in use and where it comes from; ``refresh`` swaps in a changed file."""

    def __init__(self, path: Path):
        self.path = path
        self.index: SimilarIndex | None = None
        self.signature: tuple[int, int, int] | None = None
        self.error: str | None = None
        self._lock = threading.Lock()  # one refresh at a time (startup and the watcher)

    def refresh(self) -> bool:
        """Open the file again if it changed since the last look. Returns whether a new index is in use.
        A file that cannot be opened leaves the previous index in use (the error is kept)."""
        with self._lock:
            signature = index_signature(self.path)
            if signature is None:
                if self.index is None:
                    # what clients read: no file path (internal); the log has it
                    self.error = "no similar-transaction index yet: run python -m spark.jobs.similar_index"
                return False
            if signature == self.signature:
                return False
            try:
                index = SimilarIndex.open(self.path)
            except (OSError, ValueError, IndexFormatError) as exc:
                self.error = "the similar-transaction index cannot be opened; see the scoring API's log"
                log.warning("similar-transaction index at %s unusable: %s", self.path, exc)
                return False
            self.index, self.signature, self.error = index, signature, None
            log.info("similar-transaction index loaded: %d transactions from %s", len(index), self.path)
            return True


def index_path(settings: Settings) -> Path:
    return settings.similar_index_path or default_index_path(settings.data_dir)


async def _watch(holder: IndexHolder, every_s: float) -> None:
    while True:
        await asyncio.sleep(every_s)
        try:
            await asyncio.to_thread(holder.refresh)
        except asyncio.CancelledError:
            raise
        except Exception:  # never let the watcher die
            log.exception("similar-transaction index refresh failed")


@contextlib.asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    settings: Settings = app.state.settings
    holder = IndexHolder(index_path(settings))
    await asyncio.to_thread(holder.refresh)
    app.state.similar = holder
    task = asyncio.create_task(_watch(holder, settings.refresh_seconds))
    try:
        yield
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


router = APIRouter(lifespan=lifespan, tags=["similar"])


def _index(request: Request) -> SimilarIndex:
    holder: IndexHolder = request.app.state.similar
    if holder.index is None:
        raise HTTPException(status.HTTP_503_SERVICE_UNAVAILABLE, holder.error or "no similar-transaction index")
    return holder.index


def _answer(index: SimilarIndex, transaction_id: str, indexed: bool, k: int, result: SimilarResult) -> dict[str, Any]:
    return {
        "transaction_id": transaction_id,
        "indexed": indexed,
        "k": k,
        "neighbours": [n.as_dict() for n in result.neighbours],
        "mix": result.mix.as_dict(),
        "index": {"transactions": len(index), "built_at": index.built_at},
    }


# ------------------------------------------------------------------------------------------ routes
# Plain `def`: FastAPI runs them in its thread pool, so a lookup never holds the event loop.
@router.get(
    "/similar/{transaction_id}",
    response_model=SimilarResponse,
    responses={**_ERRORS, 404: {"model": Problem, "description": "The transaction is not in the index"}},
    summary="Past transactions most similar to an indexed one",
)
def similar_to_indexed(
    request: Request,
    transaction_id: Annotated[str, PathParam(pattern=r"^txn_[0-9a-f]{16}$", examples=["txn_00c0ffee00c0ffee"])],
    k: K = DEFAULT_K,
) -> dict[str, Any]:
    index = _index(request)
    row = index.row_of(transaction_id)
    if row is None:
        raise HTTPException(
            status.HTTP_404_NOT_FOUND,
            f"{transaction_id} is not in the similar-transaction index ({len(index)} transactions indexed); "
            "POST /similar with its body looks up any transaction",
        )
    return _answer(index, transaction_id, True, k, index.search(index.vector_at(row), k, exclude_row=row))


@router.post(
    "/similar",
    response_model=SimilarResponse,
    responses=_ERRORS,
    summary="Past transactions most similar to a transaction (the /score body)",
    description="Validated exactly like POST /score (422 naming the field); records nothing (no velocity, "
    "no decision).",
)
def similar_to_request(
    request: Request,
    tx: Annotated[TransactionRequest, Body(openapi_examples={"typical": {"value": EXAMPLE_REQUEST}})],
    k: K = DEFAULT_K,
) -> dict[str, Any]:
    index = _index(request)
    row = index.row_of(tx.transaction_id)
    result = index.search(vector_of_request(tx.model_dump()), k, exclude_row=row)
    return _answer(index, tx.transaction_id, row is not None, k, result)


# ------------------------------------------------------------------------------------------ /score
def enrich_decision(state: Any, tx: dict[str, Any], body: bytes) -> bytes:
    """The decision JSON with ``"similar"`` (the mix of the nearest past transactions) added when
    PA_SIMILAR_ENRICH is on and an index is loaded; ``body`` unchanged otherwise. Never fails the
    decision: an error is logged and the decision goes out as it is."""
    if not state.settings.similar_enrich:
        return body
    holder: IndexHolder | None = getattr(state, "similar", None)
    index = holder.index if holder is not None else None
    if index is None:
        return body
    try:
        started = time.perf_counter()
        mix = index.mix_of(vector_of_request(tx), DEFAULT_K, exclude_row=index.row_of(tx["transaction_id"]))
        similar = {"k": DEFAULT_K, **mix.as_dict(), "lookup_ms": round((time.perf_counter() - started) * 1000, 3)}
    except Exception:
        log.exception("similar-transaction enrichment failed for %s", tx.get("transaction_id"))
        return body
    return body[:-1] + b',"similar":' + orjson.dumps(similar) + b"}"
