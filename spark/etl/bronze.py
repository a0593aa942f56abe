"""Bronze: raw Kafka records, unparsed, with their coordinates and ingestion time.

``bronze_transactions`` keeps every record of ``payments.transactions`` exactly as received (value
as a UTF-8 string, key, topic/partition/offset, the producer timestamp) plus ``ingested_at``.
``bronze_dead_letters`` does the same for ``payments.transactions.dlq`` (records the stream processor
or producers refused, with the reason in the record headers or body).
"""

from __future__ import annotations

from dataclasses import dataclass

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from payments_core.contract.topics import TRANSACTIONS, TRANSACTIONS_DLQ, prefixed

BRONZE_COLUMNS = (
    "record_key",
    "record_value",
    "topic",
    "kafka_partition",
    "kafka_offset",
    "kafka_timestamp",
    "kafka_headers",
    "ingested_at",
)


@dataclass(frozen=True)
class KafkaSource:
    bootstrap: str
    topic_prefix: str = ""
    starting_offsets: str = "earliest"
    max_offsets_per_trigger: int | None = None
    extra_options: tuple[tuple[str, str], ...] = ()  # e.g. SASL settings on Databricks

    @property
    def transactions_topic(self) -> str:
        return prefixed(TRANSACTIONS, self.topic_prefix)

    @property
    def dlq_topic(self) -> str:
        return prefixed(TRANSACTIONS_DLQ, self.topic_prefix)

    def options(self, topic: str) -> dict[str, str]:
        opts = {
            "kafka.bootstrap.servers": self.bootstrap,
            "subscribe": topic,
            "startingOffsets": self.starting_offsets,
            # a retention gap must not stop the pipeline; it shows up as missing offsets in bronze
            "failOnDataLoss": "false",
            "includeHeaders": "true",
        }
        if self.max_offsets_per_trigger:
            opts["maxOffsetsPerTrigger"] = str(self.max_offsets_per_trigger)
        opts.update(dict(self.extra_options))
        return opts


def read_kafka_stream(
    spark: SparkSession, source: KafkaSource, topic: str, consumer_group: str | None = None
) -> DataFrame:
    """The Kafka source of ``topic``. ``consumer_group``: a stable ``group.id`` for the executors' consumers
    (Spark assigns partitions itself and commits nothing, so the group only names the consumers): Spark
    pools consumers per group and partition, so a query restarted with the same group (every triggered
    pipeline update restarts its flows) reuses the previous run's connected consumers instead of
    creating one per partition per run (by default each run has a new random group)."""
    options = source.options(topic)
    if consumer_group and "kafka.group.id" not in options:
        options["kafka.group.id"] = consumer_group
    return spark.readStream.format("kafka").options(**options).load()


def bronze_from_kafka(raw: DataFrame, *, with_headers: bool = True) -> DataFrame:
    """Kafka source rows -> bronze rows (streaming or batch). No analysis of ``raw`` (pipeline query
    functions may not trigger any): ``with_headers`` says whether the source has a ``headers`` column
    (``includeHeaders``)."""
    headers = (
        F.map_from_entries(F.transform("headers", lambda h: F.struct(h["key"], h["value"].cast("string"))))
        if with_headers
        else F.lit(None).cast("map<string,string>")
    )
    return raw.select(
        F.col("key").cast("string").alias("record_key"),
        F.col("value").cast("string").alias("record_value"),
        F.col("topic"),
        F.col("partition").alias("kafka_partition"),
        F.col("offset").alias("kafka_offset"),
        F.col("timestamp").alias("kafka_timestamp"),
        headers.alias("kafka_headers"),
        F.current_timestamp().alias("ingested_at"),
    )
