"""The stream processor's two queries, built from injectable parts.

``score`` (stateless, the hot path; micro-batch or real-time mode, only the trigger differs)::

    Kafka payments.transactions ─► score_udf (contract validation + decision core, Arrow batches)
        ─► Kafka sink, one record per input: payments.decisions (key transaction_id)
                                             or payments.transactions.dlq (key topic/partition/offset)

``decision_log`` (micro-batch; Delta is not a real-time-mode sink)::

    Kafka payments.decisions ─► foreachBatch: records that are not valid decisions ─► payments.decisions.dlq;
        idempotent append to the Delta decision log (exactly one row per transaction)
        ─► recompute the touched minutes of stream_metrics_1m and stream_alerts

Every builder takes the parts tests swap: the source DataFrame (``source=``), topic names and paths
(through ``StreamProcessorSettings``), the trigger and the checkpoint. ``start`` builds the real
thing in one call.
"""

from __future__ import annotations

import contextlib
import logging
from dataclasses import dataclass
from typing import Literal

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql.streaming import StreamingQuery

from payments_core.rules.model import ruleset_path
from services.stream_processor.decision_log import DeadLetterSink, DecisionLogWriter
from services.stream_processor.metrics import AlertThresholds, MetricsWriter
from services.stream_processor.scoring import (
    INPUT_COLUMNS,
    OUTPUT_DDL,
    ScoringConfig,
    score_map_in_arrow,
    score_publish_udf,
    score_udf,
)
from services.stream_processor.settings import StreamProcessorSettings
from services.stream_processor.tables import ALERTS, DECISION_LOG, METRICS_1M, DeltaTarget
from spark.common.session import get_spark

log = logging.getLogger(__name__)

SCORE_QUERY = "score"
LOG_QUERY = "decision_log"
ScorerForm = Literal["arrow_udf", "map_in_arrow"]


# ------------------------------------------------------------------------------------------ session
def spark_conf(settings: StreamProcessorSettings) -> dict[str, str]:
    """Session settings the processor needs on top of ``spark.common.session`` defaults."""
    return {
        "spark.driver.memory": settings.stream_driver_memory,
        "spark.sql.shuffle.partitions": str(settings.stream_shuffle_partitions),
        # Arrow batches handed to the decision core
        "spark.sql.execution.arrow.maxRecordsPerBatch": str(settings.stream_arrow_batch_rows),
        "spark.sql.streaming.stopTimeout": "60000",
    }


FAIR_POOLS = """<?xml version="1.0"?>
<allocations>
  <pool name="score"><schedulingMode>FIFO</schedulingMode><weight>4</weight><minShare>2</minShare></pool>
  <pool name="decision_log"><schedulingMode>FIFO</schedulingMode><weight>1</weight><minShare>0</minShare></pool>
</allocations>
"""


def get_session(settings: StreamProcessorSettings, app_name: str = "stream-processor") -> SparkSession:
    """The processor's session: the project's ``get_spark`` plus the processor's settings, and FAIR
    scheduling with a heavier pool for the scoring query, so the decision log's Delta writes do not
    hold the task slots the hot path needs."""
    conf = spark_conf(settings)
    pools = settings.checkpoint_root / "fairscheduler.xml"
    pools.parent.mkdir(parents=True, exist_ok=True)
    pools.write_text(FAIR_POOLS)
    conf.update({"spark.scheduler.mode": "FAIR", "spark.scheduler.allocation.file": str(pools)})
    # Thread stacks of 32 MiB: when a query stops during a foreachBatch, Spark 4.2 checks the Python
    # error for an interruption with the regex "...calling((.|\r\n|\r|\n)*)..." (SPARK-48717), which
    # recurses per character; on a ~15,000-character py4j traceback it overflowed the default 1 MiB
    # and the decision-log query died with StackOverflowError instead of stopping.
    return get_spark(app_name, warehouse_dir=settings.warehouse, extra_conf=conf, java_options="-Xss32m")


def _in_pool(spark: SparkSession, pool: str) -> None:
    # queries started from this thread run their jobs in ``pool`` (ignored without FAIR scheduling;
    # no SparkContext under Spark Connect, e.g. Databricks serverless / standard access mode)
    with contextlib.suppress(Exception):
        spark.sparkContext.setLocalProperty("spark.scheduler.pool", pool)


def _default_parallelism(spark: SparkSession) -> int | None:
    try:
        return spark.sparkContext.defaultParallelism
    except Exception:  # no SparkContext under Spark Connect
        return None


def scoring_config(
    settings: StreamProcessorSettings, *, velocity: bool | None = None, publish: bool = False
) -> ScoringConfig:
    """``publish``: the Python workers publish the records themselves (``score_publish_udf``)."""
    rules = ruleset_path(settings.data_dir, settings.rules_volume_path)
    use_velocity = settings.stream_velocity if velocity is None else velocity
    return ScoringConfig(
        decisions_topic=settings.topics.decisions,
        dlq_topic=settings.topics.dlq,
        redis_url=settings.redis_url if use_velocity else None,
        mlflow_tracking_uri=settings.mlflow_tracking_uri,
        rules_path=str(rules) if rules else None,
        refresh_seconds=settings.stream_engine_refresh_seconds,
        velocity_prefix=f"{settings.redis_prefix}:vel",
        uc_catalog=settings.uc_catalog,
        uc_schema=settings.uc_schema,
        publish=tuple(sorted(settings.worker_producer_options().items())) if publish else None,
        max_event_skew_seconds=settings.max_event_skew_seconds,
        redis_retry_seconds=settings.stream_redis_retry_seconds,
        coalesce_rows=settings.stream_realtime_coalesce_rows if publish else 0,
    )


# ------------------------------------------------------------------------------------------ sources
def source_client_options(settings: StreamProcessorSettings, *, realtime: bool = False) -> dict[str, str]:
    """The Kafka client options of a source (``kafka.``-prefixed); ``PA_KAFKA_OPTIONS`` wins. Micro-batch
    sources get ``stream_source_fetch_max_wait_ms``; real-time mode's consumers poll continuously."""
    own = {} if realtime else {"kafka.fetch.max.wait.ms": str(settings.stream_source_fetch_max_wait_ms)}
    return {**own, **settings.kafka_client_options()}


def kafka_source(
    spark: SparkSession,
    settings: StreamProcessorSettings,
    topic: str,
    *,
    realtime: bool = False,
    max_offsets_per_trigger: int | None = None,
    include_headers: bool = False,
) -> DataFrame:
    reader = (
        spark.readStream.format("kafka")
        .options(**source_client_options(settings, realtime=realtime))
        .option("subscribe", topic)
        .option("startingOffsets", settings.stream_starting_offsets)
    )
    if include_headers:
        reader = reader.option("includeHeaders", "true")
    if max_offsets_per_trigger and not realtime:
        reader = reader.option("maxOffsetsPerTrigger", str(max_offsets_per_trigger))
    return reader.load()


# ------------------------------------------------------------------------------------------ transforms
def score_stream(
    raw: DataFrame, config: ScoringConfig, form: ScorerForm = "arrow_udf", tasks: int | None = None
) -> DataFrame:
    """Kafka records (``INPUT_COLUMNS``) -> Kafka sink records (``topic, key, value, headers``).

    ``tasks``: merge the Kafka partitions into this many tasks (``coalesce``, no shuffle), so each
    Python worker gets bigger Arrow batches and a micro-batch runs in one wave; micro-batch only
    (real-time mode needs one long-running task per Kafka partition).

    With ``config.publish`` the scorer publishes the records itself (``score_publish_udf``) and the
    query yields no rows: the sink has nothing to write."""
    cols = raw.select(*INPUT_COLUMNS)
    if tasks:
        cols = cols.coalesce(tasks)
    if form == "map_in_arrow":
        return cols.mapInArrow(score_map_in_arrow(config), OUTPUT_DDL)
    udf = score_publish_udf(config) if config.publish else score_udf(config)
    out = cols.select(udf(*[F.col(c) for c in INPUT_COLUMNS]).alias("o"))
    if config.publish:
        out = out.where(F.col("o").isNotNull())
    return out.select("o.topic", "o.key", "o.value", "o.headers")


# ------------------------------------------------------------------------------------------ queries
def _trigger(writer, *, trigger: str, interval: str, available_now: bool):
    if available_now:
        return writer.trigger(availableNow=True)
    if trigger == "realtime":
        # the real-time batch duration only sets how often offsets are checkpointed (and how much a
        # restart replays) once the workers publish: long batches, few batch transitions
        return writer.trigger(realTime=interval if interval and not interval.startswith("0 ") else "5 minutes")
    return writer.trigger(processingTime=interval)


def start_scoring(
    spark: SparkSession,
    settings: StreamProcessorSettings,
    *,
    source: DataFrame | None = None,
    config: ScoringConfig | None = None,
    form: ScorerForm = "arrow_udf",
    available_now: bool = False,
    query_name: str = SCORE_QUERY,
) -> StreamingQuery:
    realtime = settings.stream_trigger == "realtime" and not available_now
    if source is None:
        source = kafka_source(
            spark,
            settings,
            settings.topics.transactions,
            realtime=realtime,
            max_offsets_per_trigger=settings.stream_max_offsets_per_trigger,
        )
    publish = realtime and settings.stream_realtime_publish == "worker" and form == "arrow_udf"
    if realtime:
        # OSS Spark refuses Python UDF operators in real-time mode by allow-list (they run when the
        # check is off; see the README section on real-time mode). An Arrow batch goes to Python only
        # when full (or when the real-time batch ends): small batches, and a small JVM -> Python
        # buffer (``pandas.udf.buffer.size``: the JVM sends what it has buffered only once it holds
        # that many bytes; 64 KiB by default, ~80 transactions per partition). Runtime SQL settings
        # of the session, read while the query runs (so they stay set; the processor's session runs
        # one scoring query).
        spark.conf.set("spark.sql.streaming.realTimeMode.allowlistCheck", "false")
        spark.conf.set("spark.sql.streaming.realTimeMode.minBatchDuration", "1000")
        spark.conf.set("spark.sql.execution.arrow.maxRecordsPerBatch", str(settings.stream_realtime_arrow_batch_rows))
        spark.conf.set("spark.sql.execution.pandas.udf.buffer.size", str(settings.stream_realtime_buffer_bytes))
    tasks = None if realtime else (settings.stream_python_workers or _default_parallelism(spark))
    if config is None:
        config = scoring_config(settings, publish=publish)
    records = score_stream(source, config, form, tasks)
    sink_options = {} if realtime else {f"kafka.{k}": v for k, v in settings.stream_sink_kafka_options.items()}
    writer = (
        records.writeStream.format("kafka")
        .options(**{**settings.kafka_client_options(), **sink_options})
        .option("checkpointLocation", settings.checkpoint(query_name))
        .queryName(query_name)
        .outputMode("update")
    )
    if not realtime and not available_now and settings.stream_async_progress:
        # offsets/commits written off the critical path (Kafka sink only; not in real-time mode)
        writer = writer.option("asyncProgressTrackingEnabled", "true").option(
            "asyncProgressTrackingCheckpointIntervalMs", str(settings.stream_async_progress_interval_ms)
        )
    writer = _trigger(
        writer, trigger=settings.stream_trigger, interval=settings.stream_interval, available_now=available_now
    )
    _in_pool(spark, "score")
    query = writer.start()
    log.info(
        "query %s started (%s, %s)",
        query_name,
        "availableNow" if available_now else settings.stream_trigger,
        settings.stream_interval,
    )
    return query


def decision_log_writer(
    settings: StreamProcessorSettings, metrics_interval_s: float | None = None
) -> DecisionLogWriter:
    def target(name: str) -> DeltaTarget:
        return DeltaTarget.of(name, settings.warehouse, settings.catalog, settings.lakehouse_schema)

    thresholds = AlertThresholds(
        min_volume=settings.alert_min_volume,
        approval_drop_pp=settings.alert_approval_drop_pp,
        baseline_minutes=settings.alert_baseline_minutes,
        fraud_risk_threshold=settings.alert_fraud_risk_threshold,
        fraud_spike_share=settings.alert_fraud_spike_share,
        latency_p99_ms=settings.alert_latency_p99_ms,
    )
    interval = settings.stream_metrics_interval_seconds if metrics_interval_s is None else metrics_interval_s
    return DecisionLogWriter(
        target(DECISION_LOG),
        MetricsWriter(target(METRICS_1M), target(ALERTS), thresholds),
        metrics_interval_s=interval,
        dead_letters=DeadLetterSink(settings.topics.decisions_dlq, settings.kafka_client_options()),
    )


def start_decision_log(
    spark: SparkSession,
    settings: StreamProcessorSettings,
    *,
    source: DataFrame | None = None,
    available_now: bool = False,
    query_name: str = LOG_QUERY,
    writer: DecisionLogWriter | None = None,
) -> StreamingQuery:
    """``writer``: the foreachBatch body (default ``decision_log_writer``: the log, its dead letters and
    the one-minute metrics)."""
    # availableNow runs end after their last batch: refresh the metrics on every batch then
    writer_fn = writer or decision_log_writer(settings, 0.0 if available_now else None)
    writer_fn.ensure(spark)
    if source is None:
        source = kafka_source(
            spark,
            settings,
            settings.topics.decisions,
            include_headers=True,
            max_offsets_per_trigger=settings.stream_log_max_offsets_per_trigger,
        )
    stream_writer = (
        source.writeStream.foreachBatch(writer_fn)
        .option("checkpointLocation", settings.checkpoint(query_name))
        .queryName(query_name)
    )
    stream_writer = (
        stream_writer.trigger(availableNow=True)
        if available_now
        else stream_writer.trigger(processingTime=settings.stream_log_interval)
    )
    _in_pool(spark, "decision_log")
    query = stream_writer.start()
    writer_fn.bind(query.id)
    _WRITERS[query.id] = writer_fn  # Running.stop flushes its pending metrics
    log.info("query %s started", query_name)
    return query


_WRITERS: dict[str, DecisionLogWriter] = {}


@dataclass
class Running:
    score: StreamingQuery
    decision_log: StreamingQuery | None
    spark: SparkSession | None = None

    @property
    def queries(self) -> list[StreamingQuery]:
        return [q for q in (self.score, self.decision_log) if q is not None]

    def stop(self) -> None:
        for q in self.queries:
            try:
                q.stop()
            except Exception as exc:  # stopping is best effort
                log.warning("stopping %s: %s", q.name, exc)
        writer = _WRITERS.get(self.decision_log.id) if self.decision_log is not None else None
        if writer is not None and self.spark is not None:
            try:
                writer.flush(self.spark)
            except Exception as exc:
                log.warning("final metrics refresh: %s", exc)


def start(spark: SparkSession, settings: StreamProcessorSettings, *, form: ScorerForm = "arrow_udf") -> Running:
    """Both queries, continuously (``make up``)."""
    score = start_scoring(spark, settings, form=form)
    dlog = start_decision_log(spark, settings) if settings.stream_decision_log else None
    return Running(score, dlog, spark)


def run_available_now(
    spark: SparkSession,
    settings: StreamProcessorSettings,
    *,
    form: ScorerForm = "arrow_udf",
    timeout_s: int | None = None,
) -> None:
    """Process everything available, then stop: scoring first, then the decision log (so the log
    sees every decision the scoring query published)."""
    q = start_scoring(spark, settings, form=form, available_now=True)
    q.awaitTermination(timeout_s)
    if (failure := q.exception()) is not None:
        raise failure
    if settings.stream_decision_log:
        q = start_decision_log(spark, settings, available_now=True)
        q.awaitTermination(timeout_s)
        if (failure := q.exception()) is not None:
            raise failure
