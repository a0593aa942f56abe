"""Bronze streaming tables: raw Kafka records of the transactions topic and of its DLQ."""

from pyspark import pipelines as dp

from spark.etl.bronze import bronze_from_kafka, read_kafka_stream
from spark.pipelines.payment_etl import PIPELINE_NAME, settings_from_conf

_settings = settings_from_conf(spark)  # `spark` is injected by the pipeline runtime


@dp.table(name="bronze_transactions", comment="Raw transaction events from Kafka with offsets and ingestion time")
def bronze_transactions():
    return bronze_from_kafka(
        read_kafka_stream(
            spark,
            _settings.kafka,
            _settings.kafka.transactions_topic,
            consumer_group=f"{PIPELINE_NAME}.bronze_transactions",
        )
    )


@dp.table(name="bronze_dead_letters", comment="Raw records of the transactions dead-letter topic")
def bronze_dead_letters():
    return bronze_from_kafka(
        read_kafka_stream(
            spark,
            _settings.kafka,
            _settings.kafka.dlq_topic,
            consumer_group=f"{PIPELINE_NAME}.bronze_dead_letters",
        )
    )
