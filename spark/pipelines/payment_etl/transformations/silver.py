"""Silver streaming tables: validated, deduplicated, enriched transactions; quarantine.

Both read the transactions topic themselves (each with its own checkpoint) rather than the
``bronze_transactions`` table:

* ``silver_transactions`` keeps retry-feature state with ``applyInPandasWithState``; over Spark Connect
  (how ``spark-pipelines`` runs locally) the server analyses that operator's input when the flow is
  registered, before ``bronze_transactions`` exists, which fails with TABLE_OR_VIEW_NOT_FOUND;
* ``silver_quarantine`` then reads the topic too, so that within one update it sees exactly the records
  silver saw (a flow reading bronze may start before bronze has committed the update's records).

All three tables see the same records (same topic, same offsets): bronze stays the raw archive and
``v_data_quality`` reconciles bronze = silver + quarantine + duplicates after every update.
"""

from pyspark import pipelines as dp

from spark.etl.bronze import bronze_from_kafka, read_kafka_stream
from spark.etl.silver import silver_quarantine as to_quarantine
from spark.etl.silver import silver_transactions as to_silver
from spark.pipelines.payment_etl import PIPELINE_NAME, settings_from_conf

_settings = settings_from_conf(spark)  # `spark` is injected by the pipeline runtime


@dp.table(name="silver_transactions", comment="Validated, deduplicated and enriched transactions")
def silver_transactions():
    records = bronze_from_kafka(
        read_kafka_stream(
            spark,
            _settings.kafka,
            _settings.kafka.transactions_topic,
            consumer_group=f"{PIPELINE_NAME}.silver_transactions",
        )
    )
    return to_silver(
        records, streaming=True, buckets=_settings.retry_state_buckets, watermark=_settings.dedup_watermark
    )


@dp.table(name="silver_quarantine", comment="Rejected transaction records with the reason")
def silver_quarantine():
    records = bronze_from_kafka(
        read_kafka_stream(
            spark,
            _settings.kafka,
            _settings.kafka.transactions_topic,
            consumer_group=f"{PIPELINE_NAME}.silver_quarantine",
        )
    )
    return to_quarantine(records)
