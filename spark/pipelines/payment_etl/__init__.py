"""The payment ETL as a Spark Declarative Pipeline (Lakeflow on Databricks).

``transformations/`` holds the thin ``@dp`` definition files the pipeline loads (bronze, silver,
gold); the transformations themselves are the plain functions of ``spark.etl``. The same files run
locally through the ``spark-pipelines`` CLI (``spark.pipelines.local``, ``python -m spark.jobs.etl``)
and on Databricks as a Lakeflow pipeline whose libraries are this folder.

Pipeline configuration keys (spec ``configuration`` locally, pipeline ``configuration`` on Databricks),
read by :func:`settings_from_conf`:

=====================================  ===========================================================
``pa.kafka.bootstrap``                 Kafka bootstrap servers (required)
``pa.kafka.topic_prefix``              isolation prefix of the topic names (default empty)
``pa.kafka.starting_offsets``          ``earliest`` (default) or ``latest``
``pa.kafka.max_offsets_per_trigger``   cap per micro-batch (default 250000; 0 = none)
``pa.kafka.option.<name>``             any extra Kafka source option (e.g. SASL on Databricks)
``pa.silver.retry_state_buckets``      buckets of the retry-feature state (default 32)
``pa.silver.dedup_watermark``          dedup horizon on the Kafka timestamp (default 24 hours)
=====================================  ===========================================================
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from spark.etl.bronze import KafkaSource
from spark.etl.silver import DEDUP_WATERMARK, DEFAULT_RETRY_STATE_BUCKETS

PIPELINE_NAME = "payment_etl"
TRANSFORMATIONS_DIR = Path(__file__).resolve().parent / "transformations"
CONF_PREFIX = "pa."
DEFAULT_MAX_OFFSETS_PER_TRIGGER = 250_000


@dataclass(frozen=True)
class PipelineSettings:
    kafka: KafkaSource
    retry_state_buckets: int = DEFAULT_RETRY_STATE_BUCKETS
    dedup_watermark: str = DEDUP_WATERMARK

    def configuration(self) -> dict[str, str]:
        """The pipeline configuration block that reproduces these settings."""
        conf = {
            "pa.kafka.bootstrap": self.kafka.bootstrap,
            "pa.kafka.topic_prefix": self.kafka.topic_prefix,
            "pa.kafka.starting_offsets": self.kafka.starting_offsets,
            "pa.kafka.max_offsets_per_trigger": str(self.kafka.max_offsets_per_trigger or 0),
            "pa.silver.retry_state_buckets": str(self.retry_state_buckets),
            "pa.silver.dedup_watermark": self.dedup_watermark,
        }
        conf.update({f"pa.kafka.option.{k}": v for k, v in self.kafka.extra_options})
        return conf


def settings_from_conf(spark) -> PipelineSettings:
    """Settings from the session configuration (inside the pipeline)."""

    def get(key: str, default: str | None = None) -> str | None:
        try:
            return spark.conf.get(key, default)
        except Exception:  # Spark Connect raises when a key is missing and no default is given
            return default

    bootstrap = get("pa.kafka.bootstrap")
    if not bootstrap:
        raise ValueError("pipeline configuration 'pa.kafka.bootstrap' is required")
    extra: list[tuple[str, str]] = []
    try:
        for key, value in spark.conf.getAll.items():  # pyspark >= 3.4
            if key.startswith("pa.kafka.option."):
                extra.append((key.removeprefix("pa.kafka.option."), value))
    except Exception:
        pass
    max_offsets = int(get("pa.kafka.max_offsets_per_trigger", str(DEFAULT_MAX_OFFSETS_PER_TRIGGER)) or 0)
    return PipelineSettings(
        kafka=KafkaSource(
            bootstrap=bootstrap,
            topic_prefix=get("pa.kafka.topic_prefix", "") or "",
            starting_offsets=get("pa.kafka.starting_offsets", "earliest") or "earliest",
            max_offsets_per_trigger=max_offsets or None,
            extra_options=tuple(sorted(extra)),
        ),
        retry_state_buckets=int(get("pa.silver.retry_state_buckets", str(DEFAULT_RETRY_STATE_BUCKETS))),
        dedup_watermark=get("pa.silver.dedup_watermark", DEDUP_WATERMARK) or DEDUP_WATERMARK,
    )
