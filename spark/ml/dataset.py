"""Silver history -> pandas frames and model feature matrices (training and backtest).

The feature matrix is the decision core's (``payments_core.model_features.feature_matrix``) over the
contract request fields, the core's derived features and the velocity features computed over the
whole history with the online semantics (``spark.ml.velocity``), so a model sees at training time
exactly the numbers the scoring API and the stream processor give it.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

import numpy as np
import pandas as pd
from pyspark.sql import SparkSession
from pyspark.sql import functions as F

from payments_core.contract.events import TransactionRequest
from payments_core.features import derive_frame
from payments_core.model_features import feature_matrix
from spark.common.tables import SILVER_TRANSACTIONS, Lakehouse
from spark.ml.velocity import velocity_frame

REQUEST_COLUMNS: tuple[str, ...] = tuple(TransactionRequest.model_fields)
OUTCOME_COLUMNS: tuple[str, ...] = (
    "is_approved",
    "decline_reason",
    "decline_code_raw",
    "processing_time_ms",
    "is_fraud",
)
EXTRA_COLUMNS: tuple[str, ...] = ("decline_reason_std", "is_soft_decline", "amount_usd")


def load_history(
    spark: SparkSession,
    lakehouse: Lakehouse,
    *,
    start: datetime | None = None,
    end: datetime | None = None,
    history_start: datetime | None = None,
) -> pd.DataFrame:
    """Silver rows in ``[start, end)`` as pandas, sorted by event time, with velocity columns.

    Velocity needs the history before ``start`` (up to the largest window): rows from
    ``history_start`` (default ``start`` minus one day) are loaded to compute it, then dropped.
    """
    silver = lakehouse.read(spark, SILVER_TRANSACTIONS)
    start = utc_timestamp(start).to_pydatetime() if start is not None else None
    end = utc_timestamp(end).to_pydatetime() if end is not None else None
    lo = history_start or (start - timedelta(days=1) if start else None)
    if lo is not None:
        silver = silver.where(F.col("event_timestamp") >= F.lit(lo))
    if end is not None:
        silver = silver.where(F.col("event_timestamp") < F.lit(end))
    cols = [*REQUEST_COLUMNS, *OUTCOME_COLUMNS, *EXTRA_COLUMNS]
    pdf = silver.select(*cols).toPandas()
    pdf["event_timestamp"] = pd.to_datetime(pdf["event_timestamp"], utc=True)
    pdf = pdf.sort_values(["event_timestamp", "transaction_id"], kind="mergesort").reset_index(drop=True)
    vel = velocity_frame(pdf)
    pdf = pd.concat([pdf, vel], axis=1)
    if start is not None:
        pdf = pdf[pdf["event_timestamp"] >= utc_timestamp(start)].reset_index(drop=True)
    return pdf


def utc_timestamp(value) -> pd.Timestamp:
    """A tz-aware UTC Timestamp (Spark hands back naive datetimes in the session time zone, UTC)."""
    ts = pd.Timestamp(value)
    return ts.tz_localize("UTC") if ts.tzinfo is None else ts.tz_convert("UTC")


def features(df: pd.DataFrame) -> np.ndarray:
    """The core's model feature matrix of ``df`` (velocity columns taken from ``df``)."""
    return feature_matrix(df, derive_frame(df))


@dataclass(frozen=True)
class TimeSplit:
    train: np.ndarray  # boolean masks over the frame
    validation: np.ndarray
    holdout: np.ndarray
    validation_start: pd.Timestamp
    holdout_start: pd.Timestamp


def time_split(df: pd.DataFrame, holdout_fraction: float = 0.2, validation_fraction: float = 0.1) -> TimeSplit:
    """Honest split by event time: train (oldest), validation (threshold and model choice), holdout
    (newest; reported metrics and champion comparison). Boundaries are event-time quantiles."""
    ts = df["event_timestamp"]
    holdout_start = ts.quantile(1.0 - holdout_fraction)
    validation_start = ts.quantile(1.0 - holdout_fraction - validation_fraction)
    holdout = (ts >= holdout_start).to_numpy()
    validation = ((ts >= validation_start) & (ts < holdout_start)).to_numpy()
    train = (ts < validation_start).to_numpy()
    return TimeSplit(train, validation, holdout, validation_start, holdout_start)
