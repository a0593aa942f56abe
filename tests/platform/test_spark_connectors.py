"""A local SparkSession reads Kafka (batch and stream) and writes/reads Delta."""

from __future__ import annotations

import uuid

from confluent_kafka import Producer
from pyspark.sql import functions as F

from payments_core.contract.topics import TRANSACTIONS, prefixed


def test_readstream_kafka_into_delta(spark, kafka_bootstrap, kafka_topics, tmp_path):
    topic = prefixed(TRANSACTIONS, kafka_topics)
    marker = uuid.uuid4().hex
    producer = Producer({"bootstrap.servers": kafka_bootstrap})
    for i in range(50):
        producer.produce(topic, key=f"card{i % 5}", value=f'{{"marker":"{marker}","n":{i}}}')
    assert producer.flush(10) == 0

    table = tmp_path / "delta_probe"
    stream = (
        spark.readStream.format("kafka")
        .option("kafka.bootstrap.servers", kafka_bootstrap)
        .option("subscribe", topic)
        .option("startingOffsets", "earliest")
        .load()
        .select(
            F.col("key").cast("string").alias("key"),
            F.col("value").cast("string").alias("value"),
            "partition",
            "offset",
        )
        .where(F.col("value").contains(marker))
    )
    query = (
        stream.writeStream.format("delta")
        .option("checkpointLocation", str(tmp_path / "ckpt"))
        .trigger(availableNow=True)
        .start(str(table))
    )
    query.awaitTermination(120)
    assert query.exception() is None

    written = spark.read.format("delta").load(str(table))
    assert written.count() == 50
    assert written.select(F.get_json_object("value", "$.n").cast("int").alias("n")).agg(F.sum("n")).first()[0] == sum(
        range(50)
    )
    history = spark.sql(f"DESCRIBE HISTORY delta.`{table}`").select("operation").collect()
    assert history[0]["operation"] == "STREAMING UPDATE"


def test_delta_table_update_and_time_travel(spark, tmp_path):
    path = str(tmp_path / "tt")
    spark.range(10).write.format("delta").save(path)
    spark.sql(f"DELETE FROM delta.`{path}` WHERE id < 5")
    assert spark.read.format("delta").load(path).count() == 5
    assert spark.read.format("delta").option("versionAsOf", 0).load(path).count() == 10
