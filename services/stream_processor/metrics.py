"""Rolling one-minute metrics and alerts, in Delta, for the real-time dashboard.

After each decision-log batch the minutes it touched (by ``decided_at``) are recomputed FROM THE LOG
and upserted into ``stream_metrics_1m`` (one row per minute), so the metrics are exact, idempotent
(a replayed batch recomputes the same numbers) and need no streaming state. The current minute is
updated every batch while it fills.

Alerts (``stream_alerts``, one row per minute and alert type, ``active`` true when firing), judged
only on minutes with at least ``alert_min_volume`` transactions:

* ``approval_drop``: the processor approval rate of the minute is ``alert_approval_drop_pp`` points
  or more under its trailing baseline (volume-weighted, previous ``alert_baseline_minutes``). The
  baseline is relative, so a merchant mix with a low but steady approval rate does not fire forever
  (a defect of the seed);
* ``fraud_spike``: the share of decisions with ``risk_score >= alert_fraud_risk_threshold`` exceeds
  ``alert_fraud_spike_share``;
* ``latency``: the p99 event-to-decision latency of the minute exceeds ``alert_latency_p99_ms``.
"""

from __future__ import annotations

from dataclasses import dataclass

from pyspark.sql import Column, DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql import types as T

from services.stream_processor.tables import DeltaTarget

MINUTE_US = 60_000_000

METRICS_SCHEMA = T.StructType(
    [
        T.StructField("window_start", T.TimestampType(), False),
        T.StructField("window_end", T.TimestampType(), False),
        T.StructField("transactions", T.LongType()),
        T.StructField("approve", T.LongType()),
        T.StructField("challenge_3ds", T.LongType()),
        T.StructField("review", T.LongType()),
        T.StructField("decline", T.LongType()),
        T.StructField("decision_approval_rate", T.DoubleType()),
        T.StructField("processor_approvals", T.LongType()),
        T.StructField("processor_approval_rate", T.DoubleType()),
        T.StructField("avg_risk_score", T.DoubleType()),
        T.StructField("high_risk", T.LongType()),
        T.StructField("high_risk_share", T.DoubleType()),
        T.StructField("avg_fraud_score", T.DoubleType()),
        T.StructField("e2e_latency_p50_ms", T.DoubleType()),
        T.StructField("e2e_latency_p99_ms", T.DoubleType()),
        T.StructField("decision_latency_p99_ms", T.DoubleType()),
        T.StructField("processing_time_p99_ms", T.DoubleType()),
        T.StructField("rule_set_versions", T.ArrayType(T.StringType())),
        T.StructField("model_versions", T.ArrayType(T.StringType())),
        T.StructField("updated_at", T.TimestampType()),
    ]
)

ALERTS_SCHEMA = T.StructType(
    [
        T.StructField("window_start", T.TimestampType(), False),
        T.StructField("alert_type", T.StringType(), False),
        T.StructField("active", T.BooleanType()),
        T.StructField("severity", T.StringType()),
        T.StructField("metric", T.StringType()),
        T.StructField("value", T.DoubleType()),
        T.StructField("threshold", T.DoubleType()),
        T.StructField("baseline", T.DoubleType()),
        T.StructField("transactions", T.LongType()),
        T.StructField("message", T.StringType()),
        T.StructField("updated_at", T.TimestampType()),
    ]
)


@dataclass(frozen=True)
class AlertThresholds:
    min_volume: int = 50
    approval_drop_pp: float = 10.0
    baseline_minutes: int = 30
    fraud_risk_threshold: float = 0.6
    fraud_spike_share: float = 0.08
    latency_p99_ms: float = 1000.0


def _ts(micros: int) -> Column:
    return F.timestamp_micros(F.lit(int(micros)))


def minute_metrics(decisions: DataFrame, high_risk_threshold: float) -> DataFrame:
    """One row per minute of ``decided_at`` over decision-log rows."""
    outcome = F.col("outcome")

    def counted(cond: Column) -> Column:
        return F.sum(F.when(cond, 1).otherwise(0)).cast("long")

    n = F.count(F.lit(1))
    agg = decisions.groupBy(F.window("decided_at", "1 minute").alias("w")).agg(
        n.alias("transactions"),
        counted(outcome == "approve").alias("approve"),
        counted(outcome == "challenge_3ds").alias("challenge_3ds"),
        counted(outcome == "review").alias("review"),
        counted(outcome == "decline").alias("decline"),
        counted(F.col("is_approved")).alias("processor_approvals"),
        F.count("is_approved").alias("_with_outcome"),
        F.avg("risk_score").alias("avg_risk_score"),
        counted(F.col("risk_score") >= F.lit(high_risk_threshold)).alias("high_risk"),
        F.avg("fraud_score").alias("avg_fraud_score"),
        F.percentile_approx("e2e_latency_ms", F.array(F.lit(0.5), F.lit(0.99)), 1000).alias("_e2e"),
        F.percentile_approx("latency_ms", F.lit(0.99), 1000).alias("decision_latency_p99_ms"),
        F.percentile_approx("processing_time_ms", F.lit(0.99), 1000).alias("_proc_p99"),
        F.array_sort(F.collect_set("rule_set_version")).alias("rule_set_versions"),
        F.array_sort(F.collect_set(F.to_json("model_versions"))).alias("model_versions"),
    )
    return agg.select(
        F.col("w.start").alias("window_start"),
        F.col("w.end").alias("window_end"),
        "transactions",
        "approve",
        "challenge_3ds",
        "review",
        "decline",
        (F.col("approve") / F.col("transactions")).alias("decision_approval_rate"),
        "processor_approvals",
        (F.col("processor_approvals") / F.nullif(F.col("_with_outcome"), F.lit(0))).alias("processor_approval_rate"),
        "avg_risk_score",
        "high_risk",
        (F.col("high_risk") / F.col("transactions")).alias("high_risk_share"),
        "avg_fraud_score",
        F.col("_e2e")[0].cast("double").alias("e2e_latency_p50_ms"),
        F.col("_e2e")[1].cast("double").alias("e2e_latency_p99_ms"),
        F.col("decision_latency_p99_ms").cast("double").alias("decision_latency_p99_ms"),
        F.col("_proc_p99").cast("double").alias("processing_time_p99_ms"),
        "rule_set_versions",
        "model_versions",
        F.current_timestamp().alias("updated_at"),
    )


def alerts_for(minutes: DataFrame, history: DataFrame, t: AlertThresholds) -> DataFrame:
    """Alert rows (3 per minute of ``minutes``) given the metrics ``history`` for the baseline."""
    h = history.select(
        F.col("window_start").alias("h_start"),
        F.col("processor_approvals").alias("h_appr"),
        F.col("transactions").alias("h_n"),
        F.col("processor_approval_rate").alias("h_rate"),
    )
    lookback = F.expr(f"INTERVAL {int(t.baseline_minutes)} MINUTES")
    base = (
        minutes.alias("m")
        .join(
            h,
            (h.h_start < F.col("m.window_start"))
            & (h.h_start >= F.col("m.window_start") - lookback)
            & h.h_rate.isNotNull(),
            "left",
        )
        .groupBy("m.window_start")
        .agg((F.sum("h_appr") / F.sum("h_n")).alias("baseline_approval_rate"))
    )
    m = minutes.join(base, "window_start", "left")
    enough = F.col("transactions") >= F.lit(t.min_volume)
    drop = F.col("baseline_approval_rate") - F.col("processor_approval_rate")
    approval = m.select(
        "window_start",
        F.lit("approval_drop").alias("alert_type"),
        F.coalesce(enough & (drop * 100 >= F.lit(t.approval_drop_pp)), F.lit(False)).alias("active"),
        F.when(drop * 100 >= 2 * t.approval_drop_pp, "critical").otherwise("warning").alias("severity"),
        F.lit("processor_approval_rate").alias("metric"),
        F.col("processor_approval_rate").alias("value"),
        (F.col("baseline_approval_rate") - F.lit(t.approval_drop_pp / 100)).alias("threshold"),
        F.col("baseline_approval_rate").alias("baseline"),
        "transactions",
        F.format_string(
            "approval %.1f%% vs baseline %.1f%% over %d transactions",
            F.col("processor_approval_rate") * 100,
            F.col("baseline_approval_rate") * 100,
            F.col("transactions"),
        ).alias("message"),
    )
    fraud = m.select(
        "window_start",
        F.lit("fraud_spike").alias("alert_type"),
        F.coalesce(enough & (F.col("high_risk_share") > F.lit(t.fraud_spike_share)), F.lit(False)).alias("active"),
        F.when(F.col("high_risk_share") > 2 * t.fraud_spike_share, "critical").otherwise("warning").alias("severity"),
        F.lit("high_risk_share").alias("metric"),
        F.col("high_risk_share").alias("value"),
        F.lit(t.fraud_spike_share).alias("threshold"),
        F.lit(None).cast("double").alias("baseline"),
        "transactions",
        F.format_string(
            "%.1f%% of %d decisions with risk >= %.2f",
            F.col("high_risk_share") * 100,
            F.col("transactions"),
            F.lit(t.fraud_risk_threshold),
        ).alias("message"),
    )
    latency = m.select(
        "window_start",
        F.lit("latency").alias("alert_type"),
        F.coalesce(enough & (F.col("e2e_latency_p99_ms") > F.lit(t.latency_p99_ms)), F.lit(False)).alias("active"),
        F.when(F.col("e2e_latency_p99_ms") > 5 * t.latency_p99_ms, "critical").otherwise("warning").alias("severity"),
        F.lit("e2e_latency_p99_ms").alias("metric"),
        F.col("e2e_latency_p99_ms").alias("value"),
        F.lit(t.latency_p99_ms).alias("threshold"),
        F.lit(None).cast("double").alias("baseline"),
        "transactions",
        F.format_string("p99 event-to-decision latency %.0f ms", F.col("e2e_latency_p99_ms")).alias("message"),
    )
    return approval.unionByName(fraud).unionByName(latency).withColumn("updated_at", F.current_timestamp())


@dataclass
class MetricsWriter:
    metrics: DeltaTarget
    alerts: DeltaTarget
    thresholds: AlertThresholds = AlertThresholds()

    def ensure(self, spark: SparkSession) -> None:
        self.metrics.ensure(spark, METRICS_SCHEMA)
        self.alerts.ensure(spark, ALERTS_SCHEMA)

    def refresh(self, spark: SparkSession, log: DeltaTarget, decided_lo_us: int, decided_hi_us: int) -> None:
        """Recompute the minutes in [decided_lo, decided_hi] from the log; upsert metrics and alerts."""
        lo = decided_lo_us - decided_lo_us % MINUTE_US
        hi = decided_hi_us - decided_hi_us % MINUTE_US + MINUTE_US
        decisions = log.read(spark).where(F.col("decided_at").between(_ts(lo), _ts(hi - 1)))
        # one row per minute: materialise, then replace the touched minutes (one Delta commit each)
        minutes = minute_metrics(decisions, self.thresholds.fraud_risk_threshold).persist()
        try:
            minutes.count()
            touched = f"window_start >= timestamp_micros({lo}) AND window_start < timestamp_micros({hi})"
            self.metrics.replace_where(minutes, touched)
            lookback_us = self.thresholds.baseline_minutes * MINUTE_US
            history = self.metrics.read(spark).where(F.col("window_start").between(_ts(lo - lookback_us), _ts(hi)))
            self.alerts.replace_where(alerts_for(minutes, history, self.thresholds), touched)
        finally:
            minutes.unpersist()
