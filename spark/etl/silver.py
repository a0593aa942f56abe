"""Silver: parsed, validated, deduplicated and enriched transactions; quarantine for the rest.

Plain DataFrame -> DataFrame functions, used by the pipeline (streaming) and tested directly on small
batch frames. The steps, in order:

1. ``parse`` - ``from_json`` against the contract's StructType plus the contract checks
   (``spark.common.contract_checks``; every field rule is read from the pydantic model).
2. ``quarantine`` - rows with at least one error: raw record, coordinates, first reason, all errors.
3. ``valid`` - the contract columns of the good rows (defaults filled) plus bronze lineage.
4. dedup - one row per ``transaction_id``. Batch: ``deduplicate``, any one (duplicates are replays
   of the same event). Streaming: the first one seen, unless seen within the horizon on the Kafka
   timestamp (``DEDUP_WATERMARK``); ``drop_seen``, in the same stateful step as the retry features.
5. retry features - per (card, merchant) pair, in event-time order: ``attempt_sequence``,
   ``seconds_since_previous_attempt``, ``previous_attempt_approved``, ``prior_approvals_card_merchant``.
   Batch: ``with_retry_features``, window functions. Streaming: ``dedup_and_retry_features_stream``,
   the same numbers from state kept per bucket of pairs (``applyInPandasWithState``), computed by
   ``advance_retry_state`` (pandas, vectorised); within a micro-batch in event-time order, across
   micro-batches in arrival order (Kafka keeps a card's events in order: the topic is keyed by card
   token). The state is int64 arrays (a bucket's state is read and written as a memory copy).
6. ``enrich`` - derived features of ``payments_core.features`` (via ``spark.common.features``), decline
   taxonomy of ``payments_core.taxonomy``, merchant-segment dimension (MCC, risk class), time fields,
   USD value (DECIMAL from integer minor units), ``retry_waited_as_advised``.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import pandas as pd
from pyspark.sql import Column, DataFrame, Window
from pyspark.sql import functions as F
from pyspark.sql import types as T

from payments_core.contract.events import TransactionEvent
from payments_core.contract.money import CURRENCY_EXPONENT
from payments_core.taxonomy import DECLINES
from spark.common.contract_checks import contract_defaults, parse_and_check
from spark.common.features import derived_columns, literal_map, taxonomy_columns
from spark.common.schema import struct_type_for
from spark.etl.reference import SEGMENTS, USD_PER_UNIT

DEDUP_WATERMARK = "24 hours"
LINEAGE_COLUMNS = ("kafka_partition", "kafka_offset", "kafka_timestamp", "ingested_at")
CONTRACT_COLUMNS = tuple(TransactionEvent.model_fields)
RETRY_FEATURES = (
    "attempt_sequence",
    "seconds_since_previous_attempt",
    "previous_attempt_approved",
    "prior_approvals_card_merchant",
)
PAIR = ("card_token_id", "merchant_id")
DEFAULT_RETRY_STATE_BUCKETS = 32


# ------------------------------------------------------------------------------------------ parse
def parse(bronze: DataFrame) -> DataFrame:
    return parse_and_check(bronze, raw="record_value", parsed="tx", errors="validation_errors")


def quarantine(parsed: DataFrame) -> DataFrame:
    return parsed.where(F.size("validation_errors") > 0).select(
        F.col("tx")["transaction_id"].alias("transaction_id"),
        "record_key",
        "record_value",
        "topic",
        *LINEAGE_COLUMNS,
        F.col("validation_errors")[0].alias("quarantine_reason"),
        F.split(F.col("validation_errors")[0], ":")[0].alias("quarantine_check"),
        "validation_errors",
        F.current_timestamp().alias("quarantined_at"),
    )


def valid(parsed: DataFrame) -> DataFrame:
    defaults = contract_defaults()
    cols = [
        F.coalesce(F.col("tx")[n], F.lit(defaults[n])).alias(n) if n in defaults else F.col("tx")[n].alias(n)
        for n in CONTRACT_COLUMNS
    ]
    return parsed.where(F.size("validation_errors") == 0).select(*cols, *LINEAGE_COLUMNS)


def deduplicate(df: DataFrame) -> DataFrame:
    """Batch dedup: one row per ``transaction_id`` (duplicates are replays of the same event). The
    streaming dedup is part of ``dedup_and_retry_features_stream``."""
    return df.dropDuplicates(["transaction_id"])


# ------------------------------------------------------------------------------------------ retry features
def with_retry_features(df: DataFrame) -> DataFrame:
    """Retry features over a batch frame (window functions over each card-merchant pair)."""
    w = Window.partitionBy(*PAIR).orderBy("event_timestamp", "transaction_id")
    prior = w.rowsBetween(Window.unboundedPreceding, -1)
    prev_ts = F.lag("event_timestamp").over(w)
    return df.withColumns(
        {
            "attempt_sequence": F.row_number().over(w).cast("long"),
            "seconds_since_previous_attempt": F.unix_micros(F.col("event_timestamp")).cast("double") / 1e6
            - F.unix_micros(prev_ts).cast("double") / 1e6,
            "previous_attempt_approved": F.lag("is_approved").over(w),
            "prior_approvals_card_merchant": F.coalesce(
                F.sum(F.col("is_approved").cast("long")).over(prior), F.lit(0)
            ).cast("long"),
        }
    )


# state per pair: [pair hash, attempts, approvals, last event time (us), last approved (0/1)] as int64
_STATE_WIDTH = 5


def _empty_state() -> np.ndarray:
    return np.zeros((0, _STATE_WIDTH), dtype=np.int64)


def _ts_us(values: pd.Series) -> np.ndarray:
    ts = pd.to_datetime(values)
    if getattr(ts.dt, "tz", None) is not None:
        ts = ts.dt.tz_convert("UTC").dt.tz_localize(None)
    return ts.astype("datetime64[us]").astype("int64").to_numpy()


def advance_retry_state(rows: pd.DataFrame, state: np.ndarray) -> tuple[pd.DataFrame, np.ndarray]:
    """Retry features of ``rows`` (which carry ``_pair``, the 64-bit hash of the card-merchant pair)
    given the per-pair ``state`` of earlier rows (sorted by pair hash); returns the rows in event-time
    order with the four feature columns, and the new state. Vectorised over all pairs; the state is
    plain int64 arrays, so reading and writing it is a memory copy."""
    rows = rows.sort_values(["event_timestamp", "transaction_id"], kind="mergesort").reset_index(drop=True)
    ts_us = _ts_us(rows["event_timestamp"])
    approved = rows["is_approved"].astype(bool).to_numpy()
    codes, uniques = pd.factorize(rows["_pair"].to_numpy(dtype=np.int64))
    uniques = np.asarray(uniques, dtype=np.int64)
    pos = np.searchsorted(state[:, 0], uniques)
    found = (
        (pos < len(state)) & (state[np.minimum(pos, max(len(state) - 1, 0)), 0] == uniques)
        if len(state)
        else np.zeros(len(uniques), bool)
    )
    prev = np.zeros((len(uniques), _STATE_WIDTH), dtype=np.int64)
    prev[found] = state[pos[found]]
    base_attempts, base_approvals = prev[codes, 1], prev[codes, 2]
    state_last_ts = np.where(found[codes], prev[codes, 3], np.iinfo(np.int64).min)
    state_last_ok = prev[codes, 4].astype(bool)

    g = pd.Series(codes)
    seq_in_batch = g.groupby(g).cumcount().to_numpy()
    approved_i = approved.astype(np.int64)
    approvals_before_in_batch = pd.Series(approved_i).groupby(g).cumsum().to_numpy() - approved_i
    prev_ts_in_batch = pd.Series(ts_us).groupby(g).shift(1).to_numpy()
    prev_ok_in_batch = pd.Series(approved_i).groupby(g).shift(1).to_numpy()
    first = seq_in_batch == 0
    has_prev = np.where(first, found[codes], True)
    prev_ts = np.where(first, state_last_ts, prev_ts_in_batch)
    prev_ok = np.where(first, state_last_ok, prev_ok_in_batch == 1)

    out = rows.drop(columns=["_pair"])
    out["attempt_sequence"] = base_attempts + seq_in_batch + 1
    out["seconds_since_previous_attempt"] = np.where(has_prev, (ts_us - np.where(has_prev, prev_ts, 0)) / 1e6, np.nan)
    out["previous_attempt_approved"] = pd.Series(np.where(has_prev, prev_ok, False), dtype=object).where(has_prev, None)
    out["prior_approvals_card_merchant"] = base_approvals + approvals_before_in_batch

    n_per = np.bincount(codes, minlength=len(uniques))
    ok_per = np.bincount(codes, weights=approved_i, minlength=len(uniques)).astype(np.int64)
    last_row = np.zeros(len(uniques), dtype=np.int64)
    last_row[codes] = np.arange(len(codes))  # rows are in event-time order: the last write wins
    upd = np.column_stack([uniques, prev[:, 1] + n_per, prev[:, 2] + ok_per, ts_us[last_row], approved_i[last_row]])
    keep = np.ones(len(state), bool)
    keep[pos[found]] = False
    new_state = np.concatenate([state[keep], upd])
    return out, new_state[np.argsort(new_state[:, 0], kind="stable")]


def valid_schema() -> T.StructType:
    """Schema of ``valid(...)`` frames, known without analysis (pipeline functions may not analyse)."""
    contract = struct_type_for(TransactionEvent)
    lineage = [
        T.StructField("kafka_partition", T.IntegerType()),
        T.StructField("kafka_offset", T.LongType()),
        T.StructField("kafka_timestamp", T.TimestampType()),
        T.StructField("ingested_at", T.TimestampType()),
    ]
    return T.StructType([T.StructField(f.name, f.dataType, True) for f in contract.fields] + lineage)


# dedup state per transaction seen: [transaction key, expiry (Kafka time + horizon, us)] as int64
_SEEN_WIDTH = 2


def _empty_seen() -> np.ndarray:
    return np.zeros((0, _SEEN_WIDTH), dtype=np.int64)


def drop_seen(rows: pd.DataFrame, seen: np.ndarray, horizon_us: int) -> tuple[pd.DataFrame, np.ndarray]:
    """Streaming dedup of ``rows`` (which carry ``_txn``, the transaction id as a 64-bit key) against
    ``seen`` (the keys of earlier rows with their expiry, sorted by key): keeps the first row per key in
    arrival order (Kafka time, partition, offset) unless the key was seen within the horizon; returns
    the kept rows and the new state. Entries expire ``horizon`` after their Kafka time once the latest
    Kafka time seen is past that (the watermark of ``dropDuplicatesWithinWatermark``); unlike that
    operator, rows older than the watermark are kept, not dropped as late."""
    kafka_us = _ts_us(rows["kafka_timestamp"])
    order = np.lexsort((rows["kafka_offset"].to_numpy(), rows["kafka_partition"].to_numpy(), kafka_us))
    rows, kafka_us = rows.iloc[order].reset_index(drop=True), kafka_us[order]
    key = rows["_txn"].to_numpy(dtype=np.int64)
    first = ~pd.Series(key).duplicated().to_numpy()
    latest = max(
        int(kafka_us.max()) if len(kafka_us) else np.iinfo(np.int64).min,
        int(seen[:, 1].max()) - horizon_us if len(seen) else np.iinfo(np.int64).min,
    )
    live = seen[seen[:, 1] >= latest - horizon_us] if len(seen) else seen
    pos = np.searchsorted(live[:, 0], key)
    in_state = (
        (pos < len(live)) & (live[np.minimum(pos, max(len(live) - 1, 0)), 0] == key)
        if len(live)
        else np.zeros(len(key), bool)
    )
    keep = first & ~in_state
    new = np.column_stack([key[keep], kafka_us[keep] + horizon_us]).astype(np.int64)
    state = np.concatenate([live, new])
    return rows[keep].reset_index(drop=True), state[np.argsort(state[:, 0], kind="stable")]


def _blob_array(blob: bytes, width: int) -> np.ndarray:
    if len(blob) % (8 * width):
        # the state of checkpoints written before the int64 layout (Arrow IPC of pandas frames)
        raise ValueError("silver state of an older format: full-refresh silver_transactions")
    return np.frombuffer(blob, dtype=np.int64).reshape(-1, width)


def transaction_key(transaction_id: Column) -> Column:
    """``txn_`` + 16 hex digits (the contract's pattern) -> the 64-bit integer they spell (exact)."""

    def half(start: int) -> Column:
        return F.conv(F.substring(transaction_id, start, 8), 16, 10).cast("long")

    return F.shiftleft(half(5), 32).bitwiseOR(half(13))


def dedup_and_retry_features_stream(
    df: DataFrame, buckets: int = DEFAULT_RETRY_STATE_BUCKETS, watermark: str | None = DEDUP_WATERMARK
) -> DataFrame:
    """Dedup and retry features over a streaming frame of ``valid_schema()`` in ONE stateful step per
    bucket of card-merchant pairs (each pair identified by the 64-bit ``xxhash64`` of card token and
    merchant id): rows whose transaction id was seen within ``watermark`` (Kafka time) are dropped
    (``drop_seen``), then the retry features of the rest are computed (``advance_retry_state``).

    Duplicates are replays of the same event, so they fall in the same bucket. One step instead of
    ``dropDuplicatesWithinWatermark`` + a second stateful operator: no second shuffle, and no scan of
    every key of the dedup state on each micro-batch to evict expired ones (that operator's eviction
    iterates the whole state store; here expiry is a vectorised filter of an int64 array)."""
    # no watermark: duplicates dropped whenever they come (the state keeps every transaction)
    horizon_us = int(pd.Timedelta(watermark).value // 1000) if watermark else np.iinfo(np.int64).max // 4
    out_schema = T.StructType(
        [
            *valid_schema().fields,
            T.StructField("attempt_sequence", T.LongType()),
            T.StructField("seconds_since_previous_attempt", T.DoubleType()),
            T.StructField("previous_attempt_approved", T.BooleanType()),
            T.StructField("prior_approvals_card_merchant", T.LongType()),
        ]
    )
    columns = [f.name for f in out_schema.fields]

    def step(key, batches: Iterator[pd.DataFrame], state) -> Iterator[pd.DataFrame]:
        rows = pd.concat(list(batches), ignore_index=True)
        if state.exists:
            pairs, seen = _blob_array(state.get[0], _STATE_WIDTH), _blob_array(state.get[1], _SEEN_WIDTH)
        else:
            pairs, seen = _empty_state(), _empty_seen()
        rows, seen = drop_seen(rows, seen, horizon_us)
        if rows.empty:
            state.update((pairs.tobytes(), seen.tobytes()))
            return
        out, pairs = advance_retry_state(rows.drop(columns=["_txn"]), pairs)
        state.update((pairs.tobytes(), seen.tobytes()))
        yield out[columns]

    pair = F.xxhash64(*PAIR)
    keyed = df.withColumns(
        {"_pair": pair, "_retry_bucket": F.pmod(pair, F.lit(buckets)), "_txn": transaction_key(F.col("transaction_id"))}
    )
    if hasattr(keyed, "_cached_schema"):
        # Spark Connect's applyInPandasWithState asks for the input's columns, i.e. an analysis, which
        # pipeline query functions forbid (ATTEMPT_ANALYSIS_IN_PIPELINE_QUERY_FUNCTION). The schema is
        # known statically, so it is handed over instead of being analysed.
        keyed._cached_schema = T.StructType(  # noqa: SLF001 - pyspark.sql.connect has no public setter
            [
                *valid_schema().fields,
                T.StructField("_pair", T.LongType()),
                T.StructField("_retry_bucket", T.LongType()),
                T.StructField("_txn", T.LongType()),
            ]
        )
    return keyed.groupBy("_retry_bucket").applyInPandasWithState(
        step,
        outputStructType=out_schema,
        stateStructType="pairs binary, seen binary",
        outputMode="append",
        timeoutConf="NoTimeout",
    )


# ------------------------------------------------------------------------------------------ enrich
def _usd(amount_minor: Column, currency: Column) -> Column:
    rate = literal_map({c: str(r) for c, r in USD_PER_UNIT.items()})[currency].cast("decimal(18,6)")
    scale = F.pow(F.lit(10), literal_map(CURRENCY_EXPONENT)[currency]).cast("decimal(18,0)")
    return (amount_minor.cast("decimal(20,0)") / scale * rate).cast("decimal(18,2)")


def enrichment_columns() -> dict[str, Column]:
    seg = F.col("merchant_segment")
    cols: dict[str, Column] = {}
    cols.update(derived_columns())
    cols.update(taxonomy_columns())
    cols.update(
        {
            "merchant_mcc": literal_map({s: v[0] for s, v in SEGMENTS.items()})[seg],
            "merchant_mcc_description": literal_map({s: v[1] for s, v in SEGMENTS.items()})[seg],
            "merchant_segment_risk": literal_map({s: v[2] for s, v in SEGMENTS.items()})[seg],
            "event_date": F.to_date(F.to_utc_timestamp("event_timestamp", F.current_timezone())),
            "event_hour": F.date_trunc("hour", F.col("event_timestamp")),
            "amount_usd": _usd(F.col("amount_minor"), F.col("currency")),
        }
    )
    return cols


def enrich(df: DataFrame) -> DataFrame:
    """Stateless enrichment of rows that carry the retry features."""
    prev_retry_after = literal_map({r: d.retry_after_seconds for r, d in DECLINES.items() if d.retry_after_seconds})[
        F.col("previous_decline_code")
    ]
    waited = F.when(
        F.col("is_retry") & prev_retry_after.isNotNull() & F.col("seconds_since_previous_attempt").isNotNull(),
        F.col("seconds_since_previous_attempt") >= prev_retry_after,
    )
    return df.withColumns(
        {**enrichment_columns(), "retry_waited_as_advised": waited, "silver_processed_at": F.current_timestamp()}
    )


# ------------------------------------------------------------------------------------------ compose
def silver_transactions(
    bronze: DataFrame,
    *,
    streaming: bool = False,
    buckets: int = DEFAULT_RETRY_STATE_BUCKETS,
    watermark: str | None = DEDUP_WATERMARK,
) -> DataFrame:
    """bronze -> silver. ``streaming`` picks the stateful path (no analysis of ``bronze`` is done)."""
    rows = valid(parse(bronze))
    if streaming:
        rows = dedup_and_retry_features_stream(rows, buckets, watermark)
    else:
        rows = with_retry_features(deduplicate(rows))
    return enrich(rows)


def silver_quarantine(bronze: DataFrame) -> DataFrame:
    return quarantine(parse(bronze))
