"""The launcher's JVM dependencies: resolved by ``spark.common.jars`` (shared with every local
SparkSession), re-exported here for `python -m launcher jars` and the Kafka broker."""

from spark.common.jars import POMS, jar_dir, kafka_classpath, resolve, spark_jars

__all__ = ["POMS", "jar_dir", "kafka_classpath", "resolve", "spark_jars"]
