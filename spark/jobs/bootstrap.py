"""Lakehouse bootstrap: the tables the apps need besides the pipeline's, idempotent.

    python -m spark.jobs.bootstrap [--catalog main] [--schema payment_analysis]

Needs no trained model and no data (``make up`` runs it on an empty lakehouse):

=========================== ==================================================================== ===================
table                       content                                                              on a re-run
=========================== ==================================================================== ===================
``app_config``              effective catalog and schema (key/value)                             missing keys added
``approval_rules``          the core's starter rule set (``payments_core.rules``), schema from   missing ids added
                            the ``Rule`` model, plus ``rule_set_version``
``approval_recommendations`` starter recommendations from the decline taxonomy                   missing ids added
``countries``               static reference (``spark.etl.reference``)                           rewritten if changed
``online_features``         per card / device / merchant history aggregates from silver (empty   rewritten if changed
                            until silver exists)
``transaction_summaries``   one text summary per silver transaction (most recent                 missing ids added
                            ``--max-summaries``) for the similar-transaction index
=========================== ==================================================================== ===================

Rows edited by the control plane (rules, recommendations, config) are never overwritten. Running the
job twice on the same data writes nothing the second time (no new Delta version).
"""

from __future__ import annotations

import argparse
import logging
import sys
from dataclasses import dataclass

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql import types as T

from payments_core.rules import starter_rule_set
from payments_core.rules.model import Rule
from payments_core.taxonomy import DECLINES
from spark.common.cli import add_lakehouse_args, lakehouse_from_args, setup_logging
from spark.common.schema import struct_type_for
from spark.common.session import get_spark
from spark.common.tables import (
    APP_CONFIG,
    APPROVAL_RECOMMENDATIONS,
    APPROVAL_RULES,
    COUNTRIES,
    ONLINE_FEATURES,
    SILVER_TRANSACTIONS,
    TRANSACTION_SUMMARIES,
    Lakehouse,
)
from spark.etl.reference import country_rows

log = logging.getLogger("spark.jobs.bootstrap")
DEFAULT_MAX_SUMMARIES = 100_000

APP_CONFIG_SCHEMA = T.StructType(
    [
        T.StructField("key", T.StringType(), False),
        T.StructField("value", T.StringType()),
        T.StructField("description", T.StringType()),
    ]
)
RULES_SCHEMA = T.StructType(
    [
        *(T.StructField(f.name, f.dataType, True) for f in struct_type_for(Rule).fields),
        T.StructField("rule_set_version", T.StringType()),
    ]
)
RECOMMENDATIONS_SCHEMA = T.StructType(
    [
        T.StructField(n, t)
        for n, t in (
            ("recommendation_id", T.StringType()),
            ("category", T.StringType()),
            ("scope", T.StringType()),
            ("title", T.StringType()),
            ("recommendation", T.StringType()),
            ("evidence", T.StringType()),
            ("source", T.StringType()),
            ("status", T.StringType()),
        )
    ]
)
COUNTRIES_SCHEMA = T.StructType(
    [
        T.StructField(n, t)
        for n, t in (
            ("country_code", T.StringType()),
            ("country_name", T.StringType()),
            ("region", T.StringType()),
            ("latitude", T.DoubleType()),
            ("longitude", T.DoubleType()),
            ("is_market", T.BooleanType()),
        )
    ]
)
ONLINE_FEATURES_SCHEMA = T.StructType(
    [
        T.StructField(n, t)
        for n, t in (
            ("entity_type", T.StringType()),
            ("entity_id", T.StringType()),
            ("transactions", T.LongType()),
            ("approved", T.LongType()),
            ("approval_rate", T.DoubleType()),
            ("soft_declines", T.LongType()),
            ("hard_declines", T.LongType()),
            ("total_amount_usd", T.DecimalType(18, 2)),
            ("avg_fraud_score", T.DoubleType()),
            ("first_seen_at", T.TimestampType()),
            ("last_seen_at", T.TimestampType()),
        )
    ]
)
SUMMARIES_SCHEMA = T.StructType(
    [
        T.StructField(n, t)
        for n, t in (
            ("transaction_id", T.StringType()),
            ("event_timestamp", T.TimestampType()),
            ("summary", T.StringType()),
            ("merchant_segment", T.StringType()),
            ("card_network", T.StringType()),
            ("payment_solution", T.StringType()),
            ("geo_country", T.StringType()),
            ("amount_usd", T.DecimalType(18, 2)),
            ("is_approved", T.BooleanType()),
            ("decline_reason", T.StringType()),
            ("risk_tier", T.StringType()),
            ("is_fraud", T.BooleanType()),
        )
    ]
)


@dataclass(frozen=True)
class BootstrapSettings:
    lakehouse: Lakehouse
    max_summaries: int = DEFAULT_MAX_SUMMARIES


# ------------------------------------------------------------------------------------------ content
def app_config_rows(lakehouse: Lakehouse) -> list[tuple]:
    return [
        ("catalog", lakehouse.catalog, "Unity Catalog catalog (locally: folder under the warehouse)"),
        ("schema", lakehouse.schema, "Schema of every lakehouse table and view"),
    ]


def rule_rows() -> list[dict]:
    rules = starter_rule_set()
    return [{**r.model_dump(mode="python"), "rule_set_version": rules.full_version} for r in rules.ordered()]


def recommendation_rows() -> list[tuple]:
    rows = []
    for reason, d in DECLINES.items():
        if d.soft:
            text = (
                f"Retry {reason} declines after {d.retry_after_seconds} s, at most {d.max_attempts} attempts "
                f"({d.recommended_action})."
            )
        else:
            text = f"Do not retry {reason} declines; {d.recommended_action.replace('_', ' ')}."
        rows.append(
            (
                f"taxonomy:{reason}",
                "retry" if d.soft else "decline_handling",
                reason,
                f"{reason} ({d.group}, {'soft' if d.soft else 'hard'})",
                text,
                f"decline taxonomy: ISO 8583 code {d.raw_code}, group {d.group}",
                "bootstrap",
                "open",
            )
        )
    return rows


def online_features(silver: DataFrame) -> DataFrame:
    parts = []
    for entity, column in (("card", "card_token_id"), ("device", "device_fingerprint"), ("merchant", "merchant_id")):
        parts.append(
            silver.groupBy(F.col(column).alias("entity_id"))
            .agg(
                F.count("*").alias("transactions"),
                F.count_if("is_approved").alias("approved"),
                F.round(F.avg(F.col("is_approved").cast("int")), 4).alias("approval_rate"),
                F.count_if(~F.col("is_approved") & F.col("is_soft_decline")).alias("soft_declines"),
                F.count_if(~F.col("is_approved") & ~F.coalesce(F.col("is_soft_decline"), F.lit(False))).alias(
                    "hard_declines"
                ),
                F.sum("amount_usd").cast("decimal(18,2)").alias("total_amount_usd"),
                F.round(F.avg("fraud_score"), 4).alias("avg_fraud_score"),
                F.min("event_timestamp").alias("first_seen_at"),
                F.max("event_timestamp").alias("last_seen_at"),
            )
            .select(F.lit(entity).alias("entity_type"), "*")
        )
    out = parts[0]
    for p in parts[1:]:
        out = out.unionByName(p)
    return out.select(*[F.col(f.name).cast(f.dataType) for f in ONLINE_FEATURES_SCHEMA.fields])


def transaction_summaries(silver: DataFrame, limit: int) -> DataFrame:
    outcome = F.when(F.col("is_approved"), F.lit("Approved")).otherwise(
        F.concat(F.lit("Declined "), F.coalesce(F.col("decline_reason_std"), F.lit("UNKNOWN")))
    )
    summary = F.concat_ws(
        " ",
        outcome,
        F.lit(":"),
        F.format_number(F.col("amount_major"), 2),
        F.col("currency"),
        F.col("merchant_segment"),
        F.col("card_network"),
        F.col("payment_method_type"),
        F.concat(F.col("issuer_country"), F.lit("->"), F.col("geo_country")),
        F.concat(F.lit("via "), F.col("payment_solution")),
        F.col("service_path"),
        F.concat(F.lit("risk "), F.col("risk_tier")),
        F.when(F.col("is_retry"), F.concat(F.lit("retry #"), F.col("attempt_sequence").cast("string"))),
        F.when(F.col("uses_3ds"), F.lit("3DS")),
        F.col("device_type"),
    )
    recent = silver.orderBy(F.col("event_timestamp").desc(), "transaction_id").limit(limit) if limit else silver
    return recent.select(
        "transaction_id",
        "event_timestamp",
        summary.alias("summary"),
        "merchant_segment",
        "card_network",
        "payment_solution",
        "geo_country",
        "amount_usd",
        "is_approved",
        F.col("decline_reason_std").alias("decline_reason"),
        "risk_tier",
        "is_fraud",
    )


# ------------------------------------------------------------------------------------------ writers
def insert_missing(spark: SparkSession, lakehouse: Lakehouse, name: str, df: DataFrame, key: str) -> int:
    """Create ``name`` from ``df``, or append the rows whose ``key`` is not there yet. Returns rows added."""
    if not lakehouse.exists(spark, name):
        lakehouse.write(df, name)
        return df.count()
    current = lakehouse.read(spark, name).select(key)
    missing = df.join(current, on=key, how="left_anti").cache()
    n = missing.count()
    if n:
        lakehouse.write(missing, name, mode="append")
    missing.unpersist()
    return n


def replace_if_changed(spark: SparkSession, lakehouse: Lakehouse, name: str, df: DataFrame) -> bool:
    """Overwrite ``name`` with ``df`` unless it already holds exactly these rows. Returns whether it wrote."""
    if lakehouse.exists(spark, name):
        old = lakehouse.read(spark, name)
        if (
            old.schema.simpleString() == df.schema.simpleString()
            and old.exceptAll(df).isEmpty()
            and df.exceptAll(old).isEmpty()
        ):
            return False
    lakehouse.write(df, name)
    return True


def run(spark: SparkSession, settings: BootstrapSettings) -> dict[str, int | bool]:
    lh = settings.lakehouse
    lh.ensure_schema(spark)
    report: dict[str, int | bool] = {}
    report[APP_CONFIG] = insert_missing(
        spark, lh, APP_CONFIG, spark.createDataFrame(app_config_rows(lh), APP_CONFIG_SCHEMA), "key"
    )
    report[APPROVAL_RULES] = insert_missing(
        spark, lh, APPROVAL_RULES, spark.createDataFrame(rule_rows(), RULES_SCHEMA), "id"
    )
    report[APPROVAL_RECOMMENDATIONS] = insert_missing(
        spark,
        lh,
        APPROVAL_RECOMMENDATIONS,
        spark.createDataFrame(recommendation_rows(), RECOMMENDATIONS_SCHEMA),
        "recommendation_id",
    )
    report[COUNTRIES] = replace_if_changed(
        spark, lh, COUNTRIES, spark.createDataFrame(country_rows(), COUNTRIES_SCHEMA)
    )
    if lh.exists(spark, SILVER_TRANSACTIONS):
        silver = lh.read(spark, SILVER_TRANSACTIONS)
        report[ONLINE_FEATURES] = replace_if_changed(spark, lh, ONLINE_FEATURES, online_features(silver))
        report[TRANSACTION_SUMMARIES] = insert_missing(
            spark, lh, TRANSACTION_SUMMARIES, transaction_summaries(silver, settings.max_summaries), "transaction_id"
        )
    else:
        log.info("no silver_transactions yet: online_features and transaction_summaries created empty")
        for name, schema in ((ONLINE_FEATURES, ONLINE_FEATURES_SCHEMA), (TRANSACTION_SUMMARIES, SUMMARIES_SCHEMA)):
            if not lh.exists(spark, name):
                lh.write(spark.createDataFrame([], schema), name)
                report[name] = True
            else:
                report[name] = False
    return report


def main(argv: list[str] | None = None) -> int:
    setup_logging()
    p = argparse.ArgumentParser(
        prog="python -m spark.jobs.bootstrap", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    add_lakehouse_args(p)
    p.add_argument(
        "--max-summaries",
        type=int,
        default=DEFAULT_MAX_SUMMARIES,
        help="most recent silver transactions to summarise (0 = all)",
    )
    args = p.parse_args(argv)
    settings = BootstrapSettings(lakehouse_from_args(args), args.max_summaries)

    spark = get_spark("lakehouse-bootstrap", warehouse_dir=settings.lakehouse.warehouse_dir)
    report = run(spark, settings)
    log.info("bootstrap of %s.%s: %s", settings.lakehouse.catalog, settings.lakehouse.schema, report)
    return 0


if __name__ == "__main__":
    sys.exit(main())
