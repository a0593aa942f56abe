"""Similar past transactions on Databricks: a Vector Search Delta Sync index over
``transaction_summaries`` (filled by ``spark.jobs.bootstrap``), created and synced through databricks-sdk.

    python -m spark.jobs.vector_search_index --catalog C --schema S [--endpoint payment-analysis-vs]
        [--index-name C.S.transaction_summaries_vs] [--embedding-endpoint databricks-gte-large-en]
        [--no-change-data-feed] [--wait-seconds 1800]

Idempotent, one run:

1. Change Data Feed on the source table (a Delta Sync index reads the table's changes), with Spark SQL;
   ``--no-change-data-feed`` when it is already on (or the job has no Spark session).
2. The Vector Search endpoint (``STANDARD``): created when missing, waited for until ``ONLINE``.
3. The index: created when missing (``DELTA_SYNC``, ``TRIGGERED`` pipeline, primary key
   ``transaction_id``, embeddings computed by the model serving endpoint ``--embedding-endpoint`` from
   the text ``summary`` column, the outcome columns synced beside it); an existing one is checked
   (another source table or key is an error, never silently replaced) and synced (only the changed
   rows are embedded again: the incremental rebuild after each ETL/bootstrap run).
4. Waits until the index reports ready (``--wait-seconds``, 0: do not wait; the endpoint is always
   waited for) and logs its row count.

``query_similar`` is the lookup: the k nearest summaries to a text, with their outcomes and the mix,
computed by the decision core (``payments_core.similarity.outcomes_mix``) exactly as the local index does.
The local form (``spark.jobs.similar_index``: features -> usearch) needs no network.
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
from dataclasses import dataclass
from typing import Any

from databricks.sdk import WorkspaceClient
from databricks.sdk.errors import NotFound
from databricks.sdk.service.vectorsearch import (
    DeltaSyncVectorIndexSpecRequest,
    EmbeddingSourceColumn,
    EndpointStatusState,
    EndpointType,
    PipelineType,
    VectorIndex,
    VectorIndexType,
)

from payments_core.similarity import NeighbourMix, outcomes_mix
from spark.common.tables import TRANSACTION_SUMMARIES

log = logging.getLogger("spark.jobs.vector_search_index")

DEFAULT_ENDPOINT = "payment-analysis-vs"
DEFAULT_EMBEDDING_ENDPOINT = "databricks-gte-large-en"
DEFAULT_WAIT_SECONDS = 1800
PRIMARY_KEY = "transaction_id"
EMBEDDING_SOURCE = "summary"
# synced beside the embedding: what a lookup shows and what the mix is computed from
SYNCED_COLUMNS = (
    PRIMARY_KEY,
    EMBEDDING_SOURCE,
    "event_timestamp",
    "merchant_segment",
    "card_network",
    "payment_solution",
    "geo_country",
    "amount_usd",
    "is_approved",
    "decline_reason",
    "risk_tier",
    "is_fraud",
)
POLL_SECONDS = 10.0


class VectorSearchSetupError(RuntimeError):
    """The endpoint or the index is in a state this job must not paper over."""


@dataclass(frozen=True)
class IndexTarget:
    catalog: str
    schema: str
    endpoint: str = DEFAULT_ENDPOINT
    index_name: str | None = None  # default <catalog>.<schema>.transaction_summaries_vs
    embedding_endpoint: str = DEFAULT_EMBEDDING_ENDPOINT

    @property
    def source_table(self) -> str:
        return f"{self.catalog}.{self.schema}.{TRANSACTION_SUMMARIES}"

    @property
    def index(self) -> str:
        return self.index_name or f"{self.catalog}.{self.schema}.{TRANSACTION_SUMMARIES}_vs"


@dataclass(frozen=True)
class SyncReport:
    endpoint: str
    endpoint_created: bool
    index: str
    index_created: bool
    synced: bool  # a sync was requested (an existing index)
    ready: bool
    indexed_row_count: int | None


# ------------------------------------------------------------------------------------------ steps
def enable_change_data_feed(spark: Any, source_table: str) -> None:
    """Delta Sync reads the source's change feed; turning it on again is a no-op."""
    quoted = ".".join(f"`{part}`" for part in source_table.split("."))
    spark.sql(f"ALTER TABLE {quoted} SET TBLPROPERTIES (delta.enableChangeDataFeed = true)")


def ensure_endpoint(w: WorkspaceClient, name: str, wait_seconds: float, poll_seconds: float = POLL_SECONDS) -> bool:
    """The endpoint, created when missing and waited for until ONLINE. Returns whether it was created."""
    try:
        info = w.vector_search_endpoints.get_endpoint(name)
        created = False
    except NotFound:
        log.info("creating Vector Search endpoint %s", name)
        info = w.vector_search_endpoints.create_endpoint(name=name, endpoint_type=EndpointType.STANDARD).response
        created = True
    deadline = time.monotonic() + wait_seconds
    while True:
        state = info.endpoint_status.state if info.endpoint_status else None
        if state == EndpointStatusState.ONLINE:
            return created
        if state == EndpointStatusState.OFFLINE:
            message = info.endpoint_status.message if info.endpoint_status else ""
            raise VectorSearchSetupError(f"Vector Search endpoint {name} is OFFLINE: {message}")
        if time.monotonic() >= deadline:
            raise VectorSearchSetupError(
                f"Vector Search endpoint {name} not ONLINE after {wait_seconds:.0f} s ({state})"
            )
        time.sleep(poll_seconds)
        info = w.vector_search_endpoints.get_endpoint(name)


def _check_existing(index: VectorIndex, target: IndexTarget) -> None:
    spec = index.delta_sync_index_spec
    problems = []
    if index.index_type != VectorIndexType.DELTA_SYNC or spec is None:
        problems.append(f"type {index.index_type.value if index.index_type else None}, expected DELTA_SYNC")
    elif spec.source_table != target.source_table:
        problems.append(f"source table {spec.source_table}, expected {target.source_table}")
    if index.primary_key != PRIMARY_KEY:
        problems.append(f"primary key {index.primary_key}, expected {PRIMARY_KEY}")
    if problems:
        raise VectorSearchSetupError(
            f"index {target.index} exists with {'; '.join(problems)}: delete it or pass another --index-name"
        )


def ensure_index(w: WorkspaceClient, target: IndexTarget) -> tuple[VectorIndex, bool]:
    """The Delta Sync index, created when missing, otherwise checked and synced. Returns (index, created)."""
    try:
        existing = w.vector_search_indexes.get_index(target.index)
    except NotFound:
        log.info("creating Delta Sync index %s over %s", target.index, target.source_table)
        created = w.vector_search_indexes.create_index(
            name=target.index,
            endpoint_name=target.endpoint,
            primary_key=PRIMARY_KEY,
            index_type=VectorIndexType.DELTA_SYNC,
            delta_sync_index_spec=DeltaSyncVectorIndexSpecRequest(
                source_table=target.source_table,
                pipeline_type=PipelineType.TRIGGERED,
                embedding_source_columns=[
                    EmbeddingSourceColumn(
                        name=EMBEDDING_SOURCE, embedding_model_endpoint_name=target.embedding_endpoint
                    )
                ],
                columns_to_sync=list(SYNCED_COLUMNS),
            ),
        )
        return created, True
    _check_existing(existing, target)
    log.info("syncing Delta Sync index %s", target.index)
    w.vector_search_indexes.sync_index(target.index)
    return existing, False


def wait_ready(w: WorkspaceClient, name: str, wait_seconds: float, poll_seconds: float = POLL_SECONDS) -> VectorIndex:
    index = w.vector_search_indexes.get_index(name)
    deadline = time.monotonic() + wait_seconds
    while not (index.status and index.status.ready) and time.monotonic() < deadline:
        time.sleep(poll_seconds)
        index = w.vector_search_indexes.get_index(name)
    return index


def sync(
    w: WorkspaceClient,
    target: IndexTarget,
    *,
    wait_seconds: float = DEFAULT_WAIT_SECONDS,
    poll_seconds: float = POLL_SECONDS,
) -> SyncReport:
    # an index can only be created on an ONLINE endpoint: that wait is not optional
    endpoint_created = ensure_endpoint(w, target.endpoint, max(wait_seconds, DEFAULT_WAIT_SECONDS), poll_seconds)
    index, index_created = ensure_index(w, target)
    if wait_seconds > 0:
        index = wait_ready(w, target.index, wait_seconds, poll_seconds)
    status = index.status
    report = SyncReport(
        endpoint=target.endpoint,
        endpoint_created=endpoint_created,
        index=target.index,
        index_created=index_created,
        synced=not index_created,
        ready=bool(status and status.ready),
        indexed_row_count=status.indexed_row_count if status else None,
    )
    log.info("Vector Search index: %s", report)
    return report


# ------------------------------------------------------------------------------------------ lookup
@dataclass(frozen=True)
class SimilarSummaries:
    rows: list[dict[str, Any]]  # synced columns plus "score" (higher is more similar)
    mix: NeighbourMix


def _cell(value: Any, type_text: str | None) -> Any:
    # the query API returns every cell as JSON; booleans may come back as text
    if value is None:
        return None
    if type_text and type_text.lower() in ("boolean", "bool") and isinstance(value, str):
        return value.lower() == "true"
    return value


def query_similar(w: WorkspaceClient, index_name: str, summary_text: str, k: int) -> SimilarSummaries:
    """The ``k`` summaries nearest to ``summary_text`` with their outcomes and the mix."""
    response = w.vector_search_indexes.query_index(
        index_name, columns=list(SYNCED_COLUMNS), query_text=summary_text, num_results=k
    )
    columns = (response.manifest.columns or []) if response.manifest else []
    data = (response.result.data_array or []) if response.result else []
    rows = [{c.name: _cell(v, c.type_text) for c, v in zip(columns, row, strict=False) if c.name} for row in data]
    mix = outcomes_mix(
        [bool(r.get("is_approved")) for r in rows],
        [r.get("decline_reason") for r in rows],
        [r.get("is_fraud") for r in rows],
    )
    return SimilarSummaries(rows, mix)


# ------------------------------------------------------------------------------------------ CLI
def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m spark.jobs.vector_search_index",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--catalog", required=True)
    p.add_argument("--schema", required=True)
    p.add_argument("--endpoint", default=DEFAULT_ENDPOINT, help="Vector Search endpoint")
    p.add_argument("--index-name", default=None, help="default <catalog>.<schema>.transaction_summaries_vs")
    p.add_argument("--embedding-endpoint", default=DEFAULT_EMBEDDING_ENDPOINT, help="embedding model serving endpoint")
    p.add_argument(
        "--no-change-data-feed",
        dest="change_data_feed",
        action="store_false",
        help="do not turn Change Data Feed on for the source table (already on)",
    )
    p.add_argument("--wait-seconds", type=float, default=DEFAULT_WAIT_SECONDS, help="0: do not wait for ready")
    p.add_argument("--poll-seconds", type=float, default=POLL_SECONDS, help="between status reads while waiting")
    return p


def main(argv: list[str] | None = None, workspace: WorkspaceClient | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    args = build_parser().parse_args(argv)
    target = IndexTarget(args.catalog, args.schema, args.endpoint, args.index_name, args.embedding_endpoint)
    if args.change_data_feed:
        from spark.common.session import get_spark  # noqa: PLC0415 - only this step needs a Spark session

        enable_change_data_feed(get_spark("vector-search-index"), target.source_table)
    report = sync(
        workspace or WorkspaceClient(), target, wait_seconds=args.wait_seconds, poll_seconds=args.poll_seconds
    )
    return 0 if report.ready or args.wait_seconds == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
