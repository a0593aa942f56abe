"""Similar-transaction index: silver transactions -> the local HNSW index the scoring API serves
(``payments_core.similarity``), incrementally.

    python -m spark.jobs.similar_index [--catalog main] [--schema payment_analysis] [--warehouse-dir W]
                                       [--index-path P] [--max-rows N] [--lookback-minutes 60] [--rebuild]

Each run opens the index at ``--index-path`` (default ``PA_SIMILAR_INDEX_PATH``, else
``<PA_DATA_DIR>/similar/index.usearch``), takes its watermark (the latest ``ingested_at`` it holds),
reads the silver rows ingested after the watermark minus ``--lookback-minutes`` (rows of a micro-batch
may commit after a later one was indexed), drops the ones already indexed (by transaction id),
encodes the rest with the decision core's features, adds them and swaps the files in atomically; the
scoring API picks the new index up by itself. A first run (or ``--rebuild``) indexes the most recent
``--max-rows`` silver rows (0 = all). No silver yet: an empty index is written, so the API has one.

The vector of a silver row is the one ``POST /similar`` computes from the same transaction's request
body: the silver columns named like the contract's fields are the contract's values, and the core
derives everything else from them.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from dataclasses import asdict, dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from pydantic import Field
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from payments_core.contract.events import TransactionRequest
from payments_core.settings import CommonSettings
from payments_core.similarity import (
    IndexFormatError,
    SimilarIndex,
    default_index_path,
    outcome_rows,
    vectors_of_frame,
)
from spark.common.cli import add_lakehouse_args, lakehouse_from_args, setup_logging
from spark.common.session import get_spark
from spark.common.tables import SILVER_TRANSACTIONS, Lakehouse

log = logging.getLogger("spark.jobs.similar_index")

DEFAULT_MAX_ROWS = 0
DEFAULT_LOOKBACK_MINUTES = 60
ENCODE_BATCH_ROWS = 100_000  # rows encoded and added at a time (bounds the pandas copies)


class SimilarIndexSettings(CommonSettings):
    similar_index_path: Path | None = Field(
        None, description="The similar-transaction index file (default <data_dir>/similar/index.usearch)"
    )

    @property
    def index_path(self) -> Path:
        return self.similar_index_path or default_index_path(self.data_dir)


@dataclass(frozen=True)
class IndexReport:
    index_path: str
    indexed_before: int
    read: int  # silver rows read after the watermark (lookback included)
    added: int
    already_indexed: int
    indexed: int
    watermark: str | None  # latest ingestion time now indexed (UTC, ISO 8601)
    from_scratch: bool  # no usable index before this run (none, another vector version, or --rebuild)


def silver_rows(silver: DataFrame) -> DataFrame:
    """The columns the vector and the sidecar need; ``ingested_at`` never null (the watermark)."""
    return silver.select(
        *TransactionRequest.model_fields,
        "is_approved",
        # the taxonomy's standard reason (also set from a raw ISO code when the reason was missing)
        F.coalesce(F.col("decline_reason_std"), F.col("decline_reason")).alias("decline_reason"),
        "is_fraud",
        F.coalesce(F.col("ingested_at"), F.col("silver_processed_at"), F.col("event_timestamp")).alias("ingested_at"),
    )


def open_or_create(path: Path, rebuild: bool) -> tuple[SimilarIndex, bool]:
    """The index to add to; a fresh one when asked, when there is none, or when it is of another
    vector version (returns whether it starts from scratch)."""
    if rebuild:
        return SimilarIndex.empty(), True
    try:
        return SimilarIndex.open(path, writable=True), False
    except FileNotFoundError:
        return SimilarIndex.empty(), True
    except IndexFormatError as exc:
        log.warning("%s; rebuilding it from silver", exc)
        return SimilarIndex.empty(), True


def _utc_iso(epoch_us: int | None) -> str | None:
    if epoch_us is None:
        return None
    return datetime.fromtimestamp(epoch_us / 1e6, UTC).isoformat().replace("+00:00", "Z")


def run(
    spark: SparkSession,
    lakehouse: Lakehouse,
    index_path: Path,
    *,
    max_rows: int = DEFAULT_MAX_ROWS,
    lookback: timedelta = timedelta(minutes=DEFAULT_LOOKBACK_MINUTES),
    rebuild: bool = False,
) -> IndexReport:
    index, fresh = open_or_create(index_path, rebuild)
    before = len(index)
    read = added = 0
    if lakehouse.exists(spark, SILVER_TRANSACTIONS):
        rows = silver_rows(lakehouse.read(spark, SILVER_TRANSACTIONS))
        watermark_us = index.watermark_us
        if watermark_us is not None:
            since = datetime.fromtimestamp(watermark_us / 1e6, UTC) - lookback
            # an aware datetime: PySpark would read a naive one in the process's local time zone
            rows = rows.where(F.col("ingested_at") > F.lit(since))
        elif max_rows:
            rows = rows.orderBy(F.col("event_timestamp").desc(), "transaction_id").limit(max_rows)
        frame = rows.toPandas()
        read = len(frame)
        # oldest first: key order follows ingestion, so a later --max-rows cut keeps the newest
        frame = frame.sort_values(["ingested_at", "transaction_id"], kind="mergesort").reset_index(drop=True)
        for start in range(0, read, ENCODE_BATCH_ROWS):
            batch = frame.iloc[start : start + ENCODE_BATCH_ROWS]
            added += index.add(vectors_of_frame(batch), outcome_rows(batch))
    else:
        log.info("no %s yet: the index stays as it is (an empty one is written the first time)", SILVER_TRANSACTIONS)
    if added or fresh:
        index.save(index_path)
    return IndexReport(
        index_path=str(index_path),
        indexed_before=before,
        read=read,
        added=added,
        already_indexed=read - added,
        indexed=len(index),
        watermark=_utc_iso(index.watermark_us),
        from_scratch=fresh,
    )


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m spark.jobs.similar_index",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_lakehouse_args(p)
    p.add_argument(
        "--index-path",
        type=Path,
        default=None,
        help="Index file (default: $PA_SIMILAR_INDEX_PATH or <data_dir>/similar/index.usearch)",
    )
    p.add_argument(
        "--max-rows", type=int, default=DEFAULT_MAX_ROWS, help="first build: most recent silver rows to index (0 = all)"
    )
    p.add_argument(
        "--lookback-minutes",
        type=float,
        default=DEFAULT_LOOKBACK_MINUTES,
        help="re-read this much before the watermark (late commits); rows already indexed are skipped",
    )
    p.add_argument("--rebuild", action="store_true", help="start from an empty index")
    return p


def main(argv: list[str] | None = None) -> int:
    setup_logging()
    args = build_parser().parse_args(argv)
    if args.max_rows < 0 or args.lookback_minutes < 0:
        raise SystemExit("--max-rows and --lookback-minutes must be >= 0")
    lakehouse = lakehouse_from_args(args)
    index_path = args.index_path or SimilarIndexSettings().index_path
    spark = get_spark("similar-index", warehouse_dir=lakehouse.warehouse_dir)
    report = run(
        spark,
        lakehouse,
        index_path,
        max_rows=args.max_rows,
        lookback=timedelta(minutes=args.lookback_minutes),
        rebuild=args.rebuild,
    )
    log.info("similar-transaction index: %s", json.dumps(asdict(report)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
