"""Typed settings of the stream processor: one object, environment variables with prefix ``PA_``.

The platform-wide variables (``PA_KAFKA_BOOTSTRAP``, ``PA_REDIS_URL``, ``PA_TOPIC_PREFIX``,
``PA_DATA_DIR``, ``PA_WAREHOUSE_DIR``, ``PA_MLFLOW_TRACKING_URI``) are the ones ``make up`` sets for
every service; the processor's own knobs are ``PA_STREAM_*``.
"""

from __future__ import annotations

import os
from functools import cached_property
from pathlib import Path
from typing import Literal

from pydantic import Field, field_validator

from payments_core.contract.topics import DECISIONS, DECISIONS_DLQ, TRANSACTIONS, TRANSACTIONS_DLQ, prefixed
from payments_core.settings import CommonSettings

# Bump when a change makes old checkpoints unusable (new query shape, new state): the processor
# then starts from fresh checkpoints under the new version instead of failing on the old ones.
CHECKPOINT_VERSION = "v1"

Trigger = Literal["microbatch", "realtime"]
RealtimePublish = Literal["worker", "sink"]


class StreamProcessorSettings(CommonSettings):
    # --- platform: the shared PA_ variables come from CommonSettings ------------------------------
    kafka_options: dict[str, str] = Field(
        default_factory=dict,
        description="Extra Kafka client options for source and sink, e.g. security.protocol / sasl.* "
        "(JSON in PA_KAFKA_OPTIONS); passed as kafka.<name>",
    )

    # --- the scoring query (Kafka -> decision core -> Kafka) -------------------------------------
    stream_trigger: Trigger = Field("microbatch", description="microbatch | realtime")
    stream_interval: str = Field(
        "0 seconds",
        description="microbatch: processingTime interval ('0 seconds' = as fast as possible); "
        "realtime: the real-time batch duration (checkpoint interval; '0 seconds' = 5 minutes)",
    )
    stream_checkpoint_dir: Path | None = Field(
        None, description=f"Checkpoint root; default <data_dir>/checkpoints/stream_processor/{CHECKPOINT_VERSION}"
    )
    stream_max_offsets_per_trigger: int | None = Field(
        None, ge=1, description="Cap on records per micro-batch (microbatch mode only)"
    )
    stream_decisions_topic: str | None = Field(
        None, description="Publish decisions here instead of <prefix>payments.decisions (e.g. a shadow run)"
    )
    stream_dlq_topic: str | None = Field(
        None, description="Dead letters here instead of <prefix>payments.transactions.dlq"
    )
    stream_starting_offsets: str = Field(
        "earliest", description="Where a query with a fresh checkpoint starts: earliest | latest | JSON"
    )
    stream_arrow_batch_rows: int = Field(
        20000,
        ge=1,
        description="Micro-batch mode: rows per Arrow batch handed to the decision core (bigger: "
        "fewer velocity range scans per row)",
    )
    stream_realtime_arrow_batch_rows: int = Field(
        4,
        ge=1,
        description="Real-time mode: rows per Arrow batch. Spark closes an Arrow batch only when it is "
        "full (or the real-time batch ends): small batches for latency, not too small for "
        "throughput (measured at 1,000 tx/s on 2 cores: p99 17 s with 1, 5.6 s with 4; "
        "both fell behind)",
    )
    stream_realtime_publish: RealtimePublish = Field(
        "worker",
        description="Real-time mode: who writes the decisions to Kafka. worker: each Python scoring "
        "worker publishes its records itself as soon as they are decided (OSS Spark 4.2 "
        "reads a Python UDF's results back only when the real-time batch ends, so "
        "through the sink a decision waits for the end of its batch); sink: Spark's "
        "Kafka sink, as in micro-batch mode (for a runtime that streams UDF results)",
    )
    stream_realtime_coalesce_rows: int = Field(
        2000,
        ge=0,
        description="Real-time mode, worker publishing: each Python worker decides the Arrow batches "
        "waiting for it together, up to this many rows (0: one batch at a time). At low load "
        "that is one small batch, decided at once; behind (a start, a pause), the groups grow "
        "and so does the throughput. One 4-row batch at a time capped a worker's throughput at "
        "the per-batch cost (velocity script call, Python calls)",
    )
    stream_realtime_linger_ms: int = Field(
        20,
        ge=0,
        le=1000,
        description="Real-time mode, worker publishing: linger.ms of each Python worker's Kafka producer, "
        "how long it gathers decisions into one produce request (a decision waits at most this "
        "long; longer means fewer requests for the broker on the same cores: at 2,084 tx/s on 2 "
        "cores p99 294 ms with 1, 175 ms with 20)",
    )
    stream_realtime_buffer_bytes: int = Field(
        1024,
        ge=16,
        description="Real-time mode: spark.sql.execution.pandas.udf.buffer.size, the bytes the JVM "
        "buffers before sending rows to the Python worker (and the worker's socket "
        "buffers); Spark's 64 KiB default holds ~80 transactions per partition back",
    )
    stream_velocity: bool = Field(
        True,
        description="Read/record velocity in the online Redis store. Diagnostics only: without it "
        "velocity features are 0 and decisions differ from POST /score",
    )
    stream_redis_retry_seconds: float = Field(
        120.0,
        ge=0,
        description="How long a scoring batch retries its velocity call while Redis is unreachable (a "
        "restart, a failover) before the task, and with it the query, fails",
    )
    stream_engine_refresh_seconds: float = Field(
        10.0, ge=0, description="How often each Python worker asks for new champion models / rule sets"
    )
    stream_shuffle_partitions: int = Field(4, ge=1)
    stream_driver_memory: str = Field("2g", description="spark.driver.memory (local only)")
    stream_python_workers: int | None = Field(
        None,
        ge=1,
        description="Micro-batch mode: Python scoring tasks per batch (Kafka partitions are "
        "coalesced into this many); default: Spark's default parallelism (cores)",
    )

    stream_source_fetch_max_wait_ms: int = Field(
        20,
        ge=0,
        description="Micro-batch mode: fetch.max.wait.ms of the Kafka source's consumers (the client's "
        "500 ms default held small batches back; docs/performance.md). PA_KAFKA_OPTIONS wins if it sets it",
    )
    stream_sink_kafka_options: dict[str, str] = Field(
        default_factory=lambda: {"linger.ms": "5", "batch.size": "262144"},
        description="Producer settings of the scoring query's Kafka sink (micro-batch mode; passed as kafka.<name>). "
        "The Java client's 16 KiB batches hold ~10 decisions: bigger batches mean fewer produce "
        "requests for the sink and the broker. No compression: the scoring API's consumer "
        "(aiokafka) has no lz4/snappy/zstd codec installed",
    )
    stream_async_progress: bool = Field(
        True,
        description="Micro-batch mode: write offset/commit logs asynchronously (lower latency; a "
        "restart may replay up to the checkpoint interval, which the idempotent "
        "consumers absorb)",
    )
    stream_async_progress_interval_ms: int = Field(1000, ge=0)
    stream_progress_log_seconds: float = Field(30.0, gt=0, description="How often query progress is logged")

    # --- the decision-log query (decisions topic -> Delta, exactly one row per transaction) --------
    stream_log_interval: str = Field(
        "30 seconds",
        description="processingTime of the decision-log query (each batch: one Delta append and, "
        "every stream_metrics_interval_seconds, the touched minutes of the metrics; "
        "longer = fewer Delta commits and fixed work per decision)",
    )
    stream_metrics_interval_seconds: float = Field(
        60.0,
        ge=0,
        description="Refresh the one-minute metrics and alerts at most this often (each refresh "
        "re-reads the touched minutes from the log: at 5,000 tx/s 300,000 rows a minute)",
    )
    stream_log_max_offsets_per_trigger: int | None = Field(None, ge=1)
    stream_decision_log: bool = Field(True, description="Run the decision-log + metrics query")
    stream_log_process: bool = Field(
        True,
        description="python -m services.stream_processor run: run the decision-log query in its own "
        "Spark driver process at a lower CPU priority (stream_log_nice), so its Delta writes and "
        "metric refreshes take the CPU the scoring query leaves instead of stalling it (on 2 "
        "cores a Delta MERGE in the same JVM stalled real-time scoring for seconds)",
    )
    stream_log_nice: int = Field(19, ge=0, le=19, description="nice increment of the decision-log process")
    stream_log_task_slots: int | None = Field(
        None,
        ge=1,
        description="Task slots of the decision-log process's local Spark (default: half the cores, at "
        "least 1), so its batches never run on every core at once: on 2 cores the scoring query "
        "always finds one without the log's tasks (p99 at half saturation 1.14-1.16 s against "
        "1.29-1.35 s with a slot per core, the log's CPU the same)",
    )

    def log_task_slots(self) -> int:
        return self.stream_log_task_slots or max(1, (os.cpu_count() or 2) // 2)

    # --- one-minute metrics and alerts -------------------------------------------------------------
    alert_min_volume: int = Field(50, ge=1, description="Minimum transactions in a minute to judge it")
    alert_approval_drop_pp: float = Field(
        10.0, gt=0, description="approval_drop: approval rate this many points under the trailing baseline"
    )
    alert_baseline_minutes: int = Field(30, ge=1, description="Trailing window of the approval baseline")
    alert_fraud_risk_threshold: float = Field(0.6, ge=0, le=1, description="risk_score counted as high risk")
    alert_fraud_spike_share: float = Field(
        0.08, ge=0, le=1, description="fraud_spike: share of high-risk transactions in a minute above this"
    )
    alert_latency_p99_ms: float = Field(
        1000.0, gt=0, description="latency: p99 event-to-decision latency of a minute above this"
    )

    @field_validator("stream_interval", "stream_log_interval")
    @classmethod
    def _interval(cls, value: str) -> str:
        parts = value.strip().split()
        if len(parts) != 2 or not parts[0].replace(".", "", 1).isdigit():
            raise ValueError(f"expected '<number> <unit>', e.g. '0 seconds' or '500 milliseconds', got {value!r}")
        return value.strip()

    # --- derived -------------------------------------------------------------------------------------
    @property
    def checkpoint_root(self) -> Path:
        return (
            self.stream_checkpoint_dir or self.data_dir / "checkpoints" / "stream_processor" / CHECKPOINT_VERSION
        ).resolve()

    def checkpoint(self, query: str) -> str:
        return str(self.checkpoint_root / query)

    @cached_property
    def topics(self) -> Topics:
        return Topics(
            prefixed(TRANSACTIONS, self.topic_prefix),
            self.stream_dlq_topic or prefixed(TRANSACTIONS_DLQ, self.topic_prefix),
            self.stream_decisions_topic or prefixed(DECISIONS, self.topic_prefix),
            prefixed(DECISIONS_DLQ, self.topic_prefix),
        )

    def worker_producer_options(self) -> dict[str, str]:
        """Settings of the Python workers' own Kafka producer (real-time mode, ``worker`` publishing):
        the bootstrap servers and ``PA_KAFKA_OPTIONS``, which must then also be valid librdkafka
        settings (e.g. security.protocol, sasl.mechanism, sasl.username/password)."""
        return {
            "bootstrap.servers": self.kafka_bootstrap,
            "linger.ms": str(self.stream_realtime_linger_ms),
            **self.kafka_options,
        }

    def kafka_client_options(self) -> dict[str, str]:
        """Options for Spark's Kafka source/sink (``kafka.``-prefixed client settings)."""
        return {
            "kafka.bootstrap.servers": self.kafka_bootstrap,
            **{f"kafka.{k}": v for k, v in self.kafka_options.items()},
        }


class Topics:
    __slots__ = ("decisions", "decisions_dlq", "dlq", "transactions")

    def __init__(self, transactions: str, dlq: str, decisions: str, decisions_dlq: str):
        self.transactions, self.dlq, self.decisions = transactions, dlq, decisions
        # records of the decisions topic the decision log refuses (not a valid decision record)
        self.decisions_dlq = decisions_dlq

    def __repr__(self) -> str:
        return (
            f"Topics(transactions={self.transactions!r}, dlq={self.dlq!r}, decisions={self.decisions!r}, "
            f"decisions_dlq={self.decisions_dlq!r})"
        )
