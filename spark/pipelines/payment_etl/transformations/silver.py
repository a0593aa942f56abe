"""Silver streaming tables: validated, deduplicated, enriched transactions; quarantine.

``silver_transactions`` reads the transactions topic itself (with its own checkpoint) rather than the
``bronze_transactions`` table: its retry features keep state with ``applyInPandasWithState``, and over
Spark Connect (how ``spark-pipelines`` runs locally) the server analyses the input of that operator
when the flow is registered, before ``bronze_transactions`` exists, which fails with
TABLE_OR_VIEW_NOT_FOUND. Both tables see the same records (same topic, same offsets), so bronze stays
the raw archive and ``v_data_quality`` still reconciles bronze = silver + quarantine + duplicates.
"""
from pyspark import pipelines as dp

from spark.etl.bronze import bronze_from_kafka, read_kafka_stream
from spark.etl.silver import silver_quarantine as to_quarantine
from spark.etl.silver import silver_transactions as to_silver
from spark.pipelines.payment_etl import settings_from_conf

_settings = settings_from_conf(spark)  # noqa: F821 - `spark` is injected by the pipeline runtime


@dp.table(name="silver_transactions", comment="Validated, deduplicated and enriched transactions")
def silver_transactions():
    records = bronze_from_kafka(read_kafka_stream(spark, _settings.kafka, _settings.kafka.transactions_topic))  # noqa: F821
    return to_silver(records, streaming=True, buckets=_settings.retry_state_buckets, watermark=_settings.dedup_watermark)


@dp.table(name="silver_quarantine", comment="Rejected transaction records with the reason")
def silver_quarantine():
    return to_quarantine(spark.readStream.table("bronze_transactions"))  # noqa: F821
