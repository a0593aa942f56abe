"""Gold partial aggregates: silver summed at every grain a gold view needs, one batch of rows at a time.

``gold_partials`` is an append-only streaming table of the pipeline fed from ``silver_transactions``:
each micro-batch of new silver rows (a few thousand on an incremental update) is summed per grain
(``GRAINS``: hour, route x latency, declines, retries, merchant...) and the sums are appended. The
gold datasets (``spark.etl.gold``) are views that re-aggregate these rows: every measure is additive
(counts, sums, min/max), so summing the partials of any split of silver gives the numbers of silver
as a whole. Percentiles come from exact histograms (``processing_time_ms`` is an integer of ms: one
row per distinct value), i.e. the exact rank statistic that ``percentile_approx`` approximates; the
ingestion lag (seconds) is kept to 3 significant digits.

The pipeline therefore scans only the new silver rows per update instead of recomputing 15
materialized views over all of silver (OSS materialized views are full recomputes), and a view reads
thousands of partial rows instead of silver's millions.

Plain DataFrame -> DataFrame (``partial_aggregates``), streaming or batch; the sums are computed in
Arrow per partition (``mapInArrow``: stateless, no shuffle, no state store), since a streaming
aggregation could only be appended after a watermark. Rows are never rewritten: a full refresh of
``silver_transactions`` must full-refresh ``gold_partials`` too (``--full-refresh`` does both).
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from pyspark.sql import DataFrame
from pyspark.sql import functions as F
from pyspark.sql import types as T

PARTIALS = "gold_partials"

# dimension columns of the partial rows (a grain uses some of them; the others are null)
DIMENSIONS: dict[str, T.DataType] = {
    "event_date": T.DateType(),
    "event_hour": T.TimestampType(),
    "processing_time_ms": T.LongType(),
    "merchant_id": T.StringType(),
    "merchant_segment": T.StringType(),
    "merchant_mcc": T.StringType(),
    "merchant_segment_risk": T.StringType(),
    "geo_country": T.StringType(),
    "payment_solution": T.StringType(),
    "card_network": T.StringType(),
    "entry_system": T.StringType(),
    "flow_type": T.StringType(),
    "risk_tier": T.StringType(),
    "decline_reason_std": T.StringType(),
    "decline_code_std": T.StringType(),
    "decline_group": T.StringType(),
    "is_soft_decline": T.BooleanType(),
    "recommended_action": T.StringType(),
    "retry_after_seconds": T.LongType(),
    "is_retry": T.BooleanType(),
    "previous_decline_code": T.StringType(),
    "retry_waited_as_advised": T.BooleanType(),
    "ingestion_hour": T.TimestampType(),
    "ingestion_lag_s": T.DoubleType(),
}

_INGESTION_LAG_S = "(unix_micros(ingested_at) - unix_micros(event_timestamp)) / 1e6"

# measure -> (input expression over silver, type); every one is summed, except *_min/*_max
MEASURES: dict[str, tuple[str, T.DataType]] = {
    "n": ("1", T.LongType()),
    "approved": ("CAST(is_approved AS BIGINT)", T.LongType()),
    "value_cents": ("CAST(amount_usd * 100 AS BIGINT)", T.LongType()),
    "approved_cents": ("CASE WHEN is_approved THEN CAST(amount_usd * 100 AS BIGINT) ELSE 0 END", T.LongType()),
    "fraud": ("CAST(is_fraud AS BIGINT)", T.LongType()),
    "fraud_score_sum": ("fraud_score", T.DoubleType()),
    "latency_sum": ("CAST(processing_time_ms AS BIGINT)", T.LongType()),
    "composite_risk_sum": ("composite_risk_score", T.DoubleType()),
    "aml_risk_sum": ("aml_risk_score", T.DoubleType()),
    "device_trust_sum": ("device_trust_score", T.DoubleType()),
    "fraud_declined": ("CAST(is_fraud AND NOT is_approved AS BIGINT)", T.LongType()),
    "fraud_approved": ("CAST(is_fraud AND is_approved AS BIGINT)", T.LongType()),
    "fraud_approved_cents": (
        "CASE WHEN is_fraud AND is_approved THEN CAST(amount_usd * 100 AS BIGINT) ELSE 0 END",
        T.LongType(),
    ),
    "cross_border": ("CAST(is_cross_border AS BIGINT)", T.LongType()),
    "night": ("CAST(is_night AS BIGINT)", T.LongType()),
    "three_ds_requested": ("CAST(COALESCE(uses_3ds, false) AS BIGINT)", T.LongType()),
    "three_ds_routed": ("CAST(COALESCE(three_ds_routed, false) AS BIGINT)", T.LongType()),
    "three_ds_challenged": ("CAST(COALESCE(three_ds_friction, false) AS BIGINT)", T.LongType()),
    "three_ds_authenticated": ("CAST(COALESCE(three_ds_authenticated, false) AS BIGINT)", T.LongType()),
    "authenticated_approved": ("CAST(COALESCE(three_ds_authenticated AND is_approved, false) AS BIGINT)", T.LongType()),
    "seconds_since_previous_sum": ("COALESCE(seconds_since_previous_attempt, 0D)", T.DoubleType()),
    "seconds_since_previous_n": ("CAST(seconds_since_previous_attempt IS NOT NULL AS BIGINT)", T.LongType()),
    "ingestion_lag_sum": (_INGESTION_LAG_S, T.DoubleType()),
    "event_ts_min": ("event_timestamp", T.TimestampType()),
    "event_ts_max": ("event_timestamp", T.TimestampType()),
    "ingested_at_max": ("ingested_at", T.TimestampType()),
}

_KPI = ("n", "approved", "value_cents", "approved_cents", "fraud", "fraud_score_sum", "latency_sum")

# grain -> (dimensions, measures, row filter over silver or None)
GRAINS: dict[str, tuple[tuple[str, ...], tuple[str, ...], str | None]] = {
    # daily and hourly KPIs with latency percentiles (one row per hour and distinct latency)
    "hour_latency": (("event_date", "event_hour", "processing_time_ms"), _KPI, None),
    # routing performance, latency histogram
    "route_latency": (
        ("payment_solution", "card_network", "processing_time_ms"),
        ("n", "approved", "approved_cents", "fraud", "latency_sum"),
        None,
    ),
    # merchant segments (KPIs with p95 latency)
    "segment_latency": (
        ("merchant_segment", "merchant_mcc", "merchant_segment_risk", "processing_time_ms"),
        _KPI,
        None,
    ),
    # routing recommendations
    "route_segment": (("merchant_segment", "card_network", "payment_solution"), ("n", "approved", "value_cents"), None),
    # decline patterns, reason codes, top decline reason per segment
    "declines": (
        (
            "decline_reason_std",
            "decline_code_std",
            "decline_group",
            "is_soft_decline",
            "recommended_action",
            "retry_after_seconds",
            "merchant_segment",
            "payment_solution",
        ),
        ("n", "value_cents"),
        "NOT is_approved",
    ),
    # retry performance and recovery rates (first attempts: is_retry false)
    "retry": (
        ("is_retry", "previous_decline_code", "retry_waited_as_advised"),
        ("n", "approved", "approved_cents", "seconds_since_previous_sum", "seconds_since_previous_n"),
        None,
    ),
    "risk": (
        ("risk_tier", "merchant_segment"),
        (
            "n",
            "approved",
            "fraud",
            "fraud_score_sum",
            "composite_risk_sum",
            "aml_risk_sum",
            "device_trust_sum",
            "fraud_declined",
            "fraud_approved",
            "fraud_approved_cents",
            "cross_border",
            "night",
        ),
        None,
    ),
    "three_ds": (
        ("card_network",),
        (
            "n",
            "three_ds_requested",
            "three_ds_routed",
            "three_ds_challenged",
            "three_ds_authenticated",
            "authenticated_approved",
        ),
        None,
    ),
    "entry": (("entry_system", "flow_type"), ("n", "approved", "value_cents", "latency_sum"), None),
    "geo": (("geo_country",), ("n", "approved", "value_cents", "fraud", "cross_border"), None),
    "merchant": (
        ("merchant_id", "merchant_segment", "merchant_mcc", "merchant_segment_risk", "geo_country"),
        ("n", "approved", "value_cents", "event_ts_min", "event_ts_max"),
        None,
    ),
    "ingestion": (("ingestion_hour", "ingestion_lag_s"), ("n", "ingestion_lag_sum", "ingested_at_max"), None),
}

# dimensions computed from silver columns (the others are silver columns)
_DERIVED_DIMENSIONS = {
    "ingestion_hour": "date_trunc('hour', ingested_at)",
    "ingestion_lag_s": _INGESTION_LAG_S,
}
_FILTERS = {f"_f_{g}": f for g, (_, _, f) in GRAINS.items() if f}


def partials_schema() -> T.StructType:
    return T.StructType(
        [
            T.StructField("grain", T.StringType(), False),
            *(T.StructField(d, t) for d, t in DIMENSIONS.items()),
            *(T.StructField(m, t) for m, (_, t) in MEASURES.items()),
            T.StructField("aggregated_at", T.TimestampType()),
        ]
    )


def _three_significant_digits(x: np.ndarray) -> np.ndarray:
    with np.errstate(divide="ignore", invalid="ignore"):
        magnitude = np.floor(np.log10(np.abs(x)))
        factor = np.where(np.isfinite(magnitude), 10.0 ** (2 - magnitude), 1.0)
        return np.where(x == 0, 0.0, np.round(x * factor) / factor)


# a sum over no values is 0, as pandas and SQL's COALESCE(SUM(...), 0) give; min/max of nothing stay null
_AGGREGATION = {
    "sum": ("sum", pc.ScalarAggregateOptions(skip_nulls=True, min_count=0)),
    "min": ("min", pc.ScalarAggregateOptions(skip_nulls=True)),
    "max": ("max", pc.ScalarAggregateOptions(skip_nulls=True)),
}


def _kind(measure: str) -> str:
    return "min" if measure.endswith("_min") else "max" if measure.endswith("_max") else "sum"


def aggregate_arrow(rows: pa.Table) -> pa.Table:
    """The partial rows of one batch of input rows (``_inputs`` of silver), every grain. Arrow's hash
    aggregation end to end: no conversion of the rows to Python objects (pandas needed one per string
    cell, and its group-by hashed them again per grain)."""
    types = dict(zip(rows.schema.names, rows.schema.types, strict=True))
    string_type, timestamp_type = types["merchant_id"], types["event_ts_min"]  # as the input carries them
    out = []
    for grain, (dims, measures, row_filter) in GRAINS.items():
        sub = rows.filter(rows[f"_f_{grain}"]) if row_filter else rows
        if not sub.num_rows:
            continue
        grouped = sub.group_by(list(dims), use_threads=False).aggregate(
            [(m, *_AGGREGATION[_kind(m)]) for m in measures]
        )
        n = grouped.num_rows
        columns = {"grain": pa.repeat(pa.scalar(grain, string_type), n)}
        for name in DIMENSIONS:
            columns[name] = grouped[name] if name in dims else pa.nulls(n, types[name])
        for name in MEASURES:
            columns[name] = (
                grouped[f"{name}_{_kind(name)}"].cast(types[name]) if name in measures else pa.nulls(n, types[name])
            )
        out.append(pa.table(columns))
    if not out:
        return pa.table({})
    result = pa.concat_tables(out)
    now = pa.scalar(datetime.now(UTC), timestamp_type)
    return result.append_column("aggregated_at", pa.repeat(now, result.num_rows))


def _aggregate(batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
    rows = pa.Table.from_batches([b for b in batches if b.num_rows])
    if not rows.num_rows:
        return
    lag = rows["ingestion_lag_s"]
    rounded = _three_significant_digits(lag.to_numpy(zero_copy_only=False).astype(float))
    rows = rows.set_column(
        rows.schema.get_field_index("ingestion_lag_s"),
        "ingestion_lag_s",
        pa.array(rounded, lag.type, mask=pc.is_null(lag).to_numpy(zero_copy_only=False)),
    )
    yield from aggregate_arrow(rows).combine_chunks().to_batches()


def _inputs() -> list[tuple[str, str, T.DataType]]:
    """(name, expression over silver, type) of every column ``_aggregate`` reads."""
    return [
        *((d, _DERIVED_DIMENSIONS.get(d, d), t) for d, t in DIMENSIONS.items()),
        *((m, expr, t) for m, (expr, t) in MEASURES.items()),
        *((name, f"COALESCE({f}, false)", T.BooleanType()) for name, f in _FILTERS.items()),
    ]


def partial_aggregates(silver: DataFrame) -> DataFrame:
    """silver rows (streaming or batch) -> partial rows of every grain (no analysis of ``silver``)."""
    inputs = _inputs()
    rows = silver.select(*(F.expr(expr).cast(t).alias(name) for name, expr, t in inputs))
    if hasattr(rows, "_cached_schema"):
        # Spark Connect's mapInArrow asks for the input's columns, i.e. an analysis, which pipeline query
        # functions forbid (ATTEMPT_ANALYSIS_IN_PIPELINE_QUERY_FUNCTION); the schema is known statically
        # (pyspark.sql.connect's DataFrame has no public setter for it)
        rows._cached_schema = T.StructType([T.StructField(name, t) for name, _, t in inputs])  # noqa: SLF001
    return rows.mapInArrow(_aggregate, partials_schema())
