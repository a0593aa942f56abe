"""Silver: parsed, validated, deduplicated and enriched transactions; quarantine for the rest.

Plain DataFrame -> DataFrame functions, used by the pipeline (streaming) and tested directly on small
batch frames. The steps, in order:

1. ``parse`` - ``from_json`` against the contract's StructType plus the contract checks
   (``spark.common.contract_checks``; every field rule is read from the pydantic model).
2. ``quarantine`` - rows with at least one error: raw record, coordinates, first reason, all errors.
3. ``valid`` - the contract columns of the good rows (defaults filled) plus bronze lineage.
4. ``deduplicate`` - one row per ``transaction_id``. Streaming: the first one seen within the
   watermark on the Kafka timestamp (``DEDUP_WATERMARK``); batch: any one (duplicates are replays of
   the same event).
5. ``with_retry_features`` - per (card, merchant) pair, in event-time order: ``attempt_sequence``,
   ``seconds_since_previous_attempt``, ``previous_attempt_approved``, ``prior_approvals_card_merchant``.
   Batch: window functions. Streaming: ``with_retry_features_stream``, the same numbers from state
   kept per bucket of pairs (``applyInPandasWithState``), computed by ``advance_retry_state`` (pandas,
   vectorised); within a micro-batch in event-time order, across micro-batches in arrival order
   (Kafka keeps a card's events in order: the topic is keyed by card token).
6. ``enrich`` - derived features of ``payments_core.features`` (via ``spark.common.features``), decline
   taxonomy of ``payments_core.taxonomy``, merchant-segment dimension (MCC, risk class), time fields,
   USD value (DECIMAL from integer minor units), ``retry_waited_as_advised``.
"""
from __future__ import annotations

import io
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
from spark.common.features import _map, derived_columns, taxonomy_columns
from spark.common.schema import struct_type_for
from spark.etl.reference import SEGMENTS, USD_PER_UNIT

DEDUP_WATERMARK = "24 hours"
LINEAGE_COLUMNS = ("kafka_partition", "kafka_offset", "kafka_timestamp", "ingested_at")
CONTRACT_COLUMNS = tuple(TransactionEvent.model_fields)
RETRY_FEATURES = ("attempt_sequence", "seconds_since_previous_attempt", "previous_attempt_approved",
                  "prior_approvals_card_merchant")
PAIR = ("card_token_id", "merchant_id")
DEFAULT_RETRY_STATE_BUCKETS = 32


# ------------------------------------------------------------------------------------------ parse
def parse(bronze: DataFrame) -> DataFrame:
    return parse_and_check(bronze, raw="record_value", parsed="tx", errors="validation_errors")


def quarantine(parsed: DataFrame) -> DataFrame:
    return parsed.where(F.size("validation_errors") > 0).select(
        F.col("tx")["transaction_id"].alias("transaction_id"),
        "record_key", "record_value", "topic", *LINEAGE_COLUMNS,
        F.col("validation_errors")[0].alias("quarantine_reason"),
        F.split(F.col("validation_errors")[0], ":")[0].alias("quarantine_check"),
        "validation_errors",
        F.current_timestamp().alias("quarantined_at"),
    )


def valid(parsed: DataFrame) -> DataFrame:
    defaults = contract_defaults()
    cols = [F.coalesce(F.col("tx")[n], F.lit(defaults[n])).alias(n) if n in defaults else F.col("tx")[n].alias(n)
            for n in CONTRACT_COLUMNS]
    return parsed.where(F.size("validation_errors") == 0).select(*cols, *LINEAGE_COLUMNS)


def deduplicate(df: DataFrame, *, streaming: bool = False, watermark: str | None = DEDUP_WATERMARK) -> DataFrame:
    if streaming and watermark:
        return df.withWatermark("kafka_timestamp", watermark).dropDuplicatesWithinWatermark(["transaction_id"])
    return df.dropDuplicates(["transaction_id"])


# ------------------------------------------------------------------------------------------ retry features
def with_retry_features(df: DataFrame) -> DataFrame:
    """Retry features over a batch frame (window functions over each card-merchant pair)."""
    w = Window.partitionBy(*PAIR).orderBy("event_timestamp", "transaction_id")
    prior = w.rowsBetween(Window.unboundedPreceding, -1)
    prev_ts = F.lag("event_timestamp").over(w)
    return df.withColumns({
        "attempt_sequence": F.row_number().over(w).cast("long"),
        "seconds_since_previous_attempt": F.unix_micros(F.col("event_timestamp")).cast("double") / 1e6
        - F.unix_micros(prev_ts).cast("double") / 1e6,
        "previous_attempt_approved": F.lag("is_approved").over(w),
        "prior_approvals_card_merchant": F.coalesce(F.sum(F.col("is_approved").cast("long")).over(prior), F.lit(0)).cast("long"),
    })


_STATE_COLUMNS = ("card_token_id", "merchant_id", "attempts", "approvals", "last_ts_us", "last_approved")


def _empty_state() -> pd.DataFrame:
    return pd.DataFrame({"card_token_id": pd.Series(dtype=object), "merchant_id": pd.Series(dtype=object),
                         "attempts": pd.Series(dtype="int64"), "approvals": pd.Series(dtype="int64"),
                         "last_ts_us": pd.Series(dtype="int64"), "last_approved": pd.Series(dtype=bool)})


def _ts_us(values: pd.Series) -> np.ndarray:
    ts = pd.to_datetime(values)
    if getattr(ts.dt, "tz", None) is not None:
        ts = ts.dt.tz_convert("UTC").dt.tz_localize(None)
    return ts.astype("datetime64[us]").astype("int64").to_numpy()


def advance_retry_state(rows: pd.DataFrame, state: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Retry features of ``rows`` given the per-pair ``state`` of earlier rows; returns the rows (in
    event-time order) with the four feature columns and the new state. Vectorised over all pairs."""
    rows = rows.sort_values(["event_timestamp", "transaction_id"], kind="mergesort").reset_index(drop=True)
    ts_us = _ts_us(rows["event_timestamp"])
    approved = rows["is_approved"].astype(bool).to_numpy()
    keys = pd.MultiIndex.from_frame(rows[list(PAIR)].astype(str))
    codes, uniques = pd.factorize(keys)
    st = state.set_index(list(PAIR)) if len(state) else _empty_state().set_index(list(PAIR))
    hit = st.reindex(uniques)
    base_attempts = hit["attempts"].fillna(0).to_numpy(dtype=np.int64)[codes]
    base_approvals = hit["approvals"].fillna(0).to_numpy(dtype=np.int64)[codes]
    state_last_ts = hit["last_ts_us"].to_numpy(dtype=np.float64)[codes]  # NaN when new
    state_last_ok = hit["last_approved"].to_numpy(dtype=object)[codes]

    g = pd.Series(codes)
    seq_in_batch = g.groupby(g).cumcount().to_numpy()
    approved_s = pd.Series(approved.astype(np.int64))
    approvals_before_in_batch = (approved_s.groupby(g).cumsum() - approved_s).to_numpy()
    prev_ts_in_batch = pd.Series(ts_us.astype(np.float64)).groupby(g).shift(1).to_numpy()
    prev_ok_in_batch = pd.Series(approved, dtype=object).groupby(g).shift(1).to_numpy()
    first = seq_in_batch == 0
    prev_ts = np.where(first, state_last_ts, prev_ts_in_batch)
    prev_ok = np.where(first, state_last_ok, prev_ok_in_batch)

    out = rows.copy()
    out["attempt_sequence"] = (base_attempts + seq_in_batch + 1).astype(np.int64)
    out["seconds_since_previous_attempt"] = (ts_us - prev_ts) / 1e6  # NaN -> null
    out["previous_attempt_approved"] = pd.Series(prev_ok, dtype=object).where(pd.notna(prev_ok), None)
    out["prior_approvals_card_merchant"] = (base_approvals + approvals_before_in_batch).astype(np.int64)

    last = pd.DataFrame({"code": codes, "ts": ts_us, "ok": approved}).groupby("code").agg(
        n=("ts", "size"), ok_sum=("ok", "sum"), last_ts=("ts", "last"), last_ok=("ok", "last"))
    upd = pd.DataFrame({
        "attempts": hit["attempts"].fillna(0).to_numpy(dtype=np.int64)[last.index] + last["n"].to_numpy(),
        "approvals": hit["approvals"].fillna(0).to_numpy(dtype=np.int64)[last.index] + last["ok_sum"].to_numpy(),
        "last_ts_us": last["last_ts"].to_numpy(dtype=np.int64),
        "last_approved": last["last_ok"].to_numpy(dtype=bool),
    }, index=uniques[last.index])
    new_state = pd.concat([st.drop(index=upd.index, errors="ignore"), upd])
    new_state.index.names = list(PAIR)
    return out, new_state.reset_index()[list(_STATE_COLUMNS)]


def _state_to_bytes(state: pd.DataFrame) -> bytes:
    import pyarrow as pa

    sink = io.BytesIO()
    table = pa.Table.from_pandas(state, preserve_index=False)
    with pa.ipc.new_stream(sink, table.schema) as writer:
        writer.write_table(table)
    return sink.getvalue()


def _state_from_bytes(blob: bytes) -> pd.DataFrame:
    import pyarrow as pa

    return pa.ipc.open_stream(blob).read_all().to_pandas()


def valid_schema() -> T.StructType:
    """Schema of ``valid(...)`` frames, known without analysis (pipeline functions may not analyse)."""
    contract = struct_type_for(TransactionEvent)
    lineage = [T.StructField("kafka_partition", T.IntegerType()), T.StructField("kafka_offset", T.LongType()),
               T.StructField("kafka_timestamp", T.TimestampType()), T.StructField("ingested_at", T.TimestampType())]
    return T.StructType([T.StructField(f.name, f.dataType, True) for f in contract.fields] + lineage)


def with_retry_features_stream(df: DataFrame, buckets: int = DEFAULT_RETRY_STATE_BUCKETS) -> DataFrame:
    """Retry features over a streaming frame of ``valid_schema()``: state per bucket of card-merchant
    pairs."""
    out_schema = T.StructType([*valid_schema().fields,
                               T.StructField("attempt_sequence", T.LongType()),
                               T.StructField("seconds_since_previous_attempt", T.DoubleType()),
                               T.StructField("previous_attempt_approved", T.BooleanType()),
                               T.StructField("prior_approvals_card_merchant", T.LongType())])
    columns = [f.name for f in out_schema.fields]

    def step(key, batches: Iterator[pd.DataFrame], state) -> Iterator[pd.DataFrame]:
        rows = pd.concat(list(batches), ignore_index=True)
        previous = _state_from_bytes(state.get[0]) if state.exists else _empty_state()
        out, new_state = advance_retry_state(rows, previous)
        state.update((_state_to_bytes(new_state),))
        yield out[columns]

    bucketed = df.withColumn("_retry_bucket", F.pmod(F.xxhash64(*PAIR), F.lit(buckets)))
    if hasattr(bucketed, "_cached_schema"):
        # Spark Connect's applyInPandasWithState asks for the input's columns, i.e. an analysis, which
        # pipeline query functions forbid (ATTEMPT_ANALYSIS_IN_PIPELINE_QUERY_FUNCTION). The schema is
        # known statically, so it is handed over instead of being analysed.
        bucketed._cached_schema = T.StructType([*valid_schema().fields, T.StructField("_retry_bucket", T.LongType())])
    return bucketed.groupBy("_retry_bucket").applyInPandasWithState(
        step, outputStructType=out_schema, stateStructType="pairs binary", outputMode="append",
        timeoutConf="NoTimeout",
    )


# ------------------------------------------------------------------------------------------ enrich
def _usd(amount_minor: Column, currency: Column) -> Column:
    rate = _map({c: str(r) for c, r in USD_PER_UNIT.items()})[currency].cast("decimal(18,6)")
    scale = F.pow(F.lit(10), _map(CURRENCY_EXPONENT)[currency]).cast("decimal(18,0)")
    return (amount_minor.cast("decimal(20,0)") / scale * rate).cast("decimal(18,2)")


def enrichment_columns() -> dict[str, Column]:
    seg = F.col("merchant_segment")
    cols: dict[str, Column] = {}
    cols.update(derived_columns())
    cols.update(taxonomy_columns())
    cols.update({
        "merchant_mcc": _map({s: v[0] for s, v in SEGMENTS.items()})[seg],
        "merchant_mcc_description": _map({s: v[1] for s, v in SEGMENTS.items()})[seg],
        "merchant_segment_risk": _map({s: v[2] for s, v in SEGMENTS.items()})[seg],
        "event_date": F.to_date(F.to_utc_timestamp("event_timestamp", F.current_timezone())),
        "event_hour": F.date_trunc("hour", F.col("event_timestamp")),
        "amount_usd": _usd(F.col("amount_minor"), F.col("currency")),
    })
    return cols


def enrich(df: DataFrame) -> DataFrame:
    """Stateless enrichment of rows that carry the retry features."""
    prev_retry_after = _map({r: d.retry_after_seconds for r, d in DECLINES.items()
                             if d.retry_after_seconds})[F.col("previous_decline_code")]
    waited = F.when(F.col("is_retry") & prev_retry_after.isNotNull() & F.col("seconds_since_previous_attempt").isNotNull(),
                    F.col("seconds_since_previous_attempt") >= prev_retry_after)
    return df.withColumns({**enrichment_columns(), "retry_waited_as_advised": waited,
                           "silver_processed_at": F.current_timestamp()})


# ------------------------------------------------------------------------------------------ compose
def silver_transactions(bronze: DataFrame, *, streaming: bool = False, buckets: int = DEFAULT_RETRY_STATE_BUCKETS,
                        watermark: str | None = DEDUP_WATERMARK) -> DataFrame:
    """bronze -> silver. ``streaming`` picks the stateful path (no analysis of ``bronze`` is done)."""
    rows = deduplicate(valid(parse(bronze)), streaming=streaming, watermark=watermark)
    rows = with_retry_features_stream(rows, buckets) if streaming else with_retry_features(rows)
    return enrich(rows)


def silver_quarantine(bronze: DataFrame) -> DataFrame:
    return quarantine(parse(bronze))
