"""Dashboard 11. Streaming and data quality."""

from __future__ import annotations

from dashboards.definitions.common import (
    agg,
    chart,
    col,
    counter,
    date_range,
    table,
)
from dashboards.model import Dashboard, Dataset, layout
from dashboards.sql import total

INGESTION = Dataset(
    "ingestion_hourly",
    "Per ingestion hour: bronze, silver, quarantine, dead letters and lag",
    """
SELECT ingestion_hour, CAST(ingestion_hour AS DATE) AS ingestion_date, bronze_events, silver_rows, quarantined_rows,
    dead_letters, duplicates_dropped, avg_ingestion_lag_s, p95_ingestion_lag_s
FROM {v_streaming_ingestion}""",
)
INGESTION_LAYERS = Dataset(
    "ingestion_layers",
    "Rows per ingestion hour and layer (one row per layer)",
    """
SELECT ingestion_hour, CAST(ingestion_hour AS DATE) AS ingestion_date, 'bronze' AS layer, bronze_events AS layer_rows
FROM {v_streaming_ingestion}
UNION ALL SELECT ingestion_hour, CAST(ingestion_hour AS DATE), 'silver', silver_rows FROM {v_streaming_ingestion}
UNION ALL SELECT ingestion_hour, CAST(ingestion_hour AS DATE), 'quarantine', quarantined_rows
FROM {v_streaming_ingestion}
UNION ALL SELECT ingestion_hour, CAST(ingestion_hour AS DATE), 'dead letters', dead_letters
FROM {v_streaming_ingestion}""",
)
DATA_QUALITY = Dataset(
    "data_quality",
    "Data-quality checks",
    """
SELECT check_name, detail, affected_rows, bronze_events, affected_share
FROM {v_data_quality}""",
)
RETENTION = Dataset(
    "retention",
    "History held: event days in silver and the ingestion span of bronze",
    """
SELECT d.oldest_event_date, d.newest_event_date, d.days_with_data, d.silver_transactions, i.bronze_events,
    i.first_ingestion_hour, i.last_ingested_at
FROM (SELECT MIN(event_date) AS oldest_event_date, MAX(event_date) AS newest_event_date, COUNT(*) AS days_with_data,
        SUM(transactions) AS silver_transactions
      FROM {v_approval_kpis_daily}) d
CROSS JOIN (SELECT SUM(bronze_events) AS bronze_events, MIN(ingestion_hour) AS first_ingestion_hour,
        MAX(last_ingested_at) AS last_ingested_at
      FROM {v_streaming_ingestion}) i""",
)
DASHBOARD = Dashboard(
    11,
    "streaming_data_quality",
    "Streaming and data quality",
    "What arrived in bronze, what reached silver, what was quarantined or dead-lettered, ingestion lag "
    "and how much history is held.",
    datasets=(INGESTION, INGESTION_LAYERS, DATA_QUALITY, RETENTION),
    widgets=layout(
        [
            [
                counter("bronze", "Bronze events", INGESTION, agg("Bronze", total("bronze_events"), "int")),
                counter("silver", "Silver rows", INGESTION, agg("Silver", total("silver_rows"), "int")),
                counter("quarantined", "Quarantined", INGESTION, agg("Quarantined", total("quarantined_rows"), "int")),
                counter("dead_letters", "Dead letters", INGESTION, agg("Dead letters", total("dead_letters"), "int")),
                counter(
                    "duplicates", "Duplicates dropped", INGESTION, agg("Duplicates", total("duplicates_dropped"), "int")
                ),
                counter("history_days", "Days of history", RETENTION, col("days_with_data", "Days", "int")),
            ],
            [
                chart(
                    "line",
                    "layers",
                    "Rows per ingestion hour: bronze vs silver",
                    INGESTION_LAYERS,
                    col("ingestion_hour", "Ingestion hour", "datetime"),
                    agg("Rows", total("layer_rows"), "int"),
                    col("layer", "Layer", "text"),
                    width=4,
                ),
                chart(
                    "bar",
                    "checks",
                    "Rows affected by check",
                    DATA_QUALITY,
                    col("check_name", "Check", "text"),
                    agg("Rows", total("affected_rows"), "int"),
                    width=2,
                    horizontal=True,
                ),
            ],
            [
                chart(
                    "line",
                    "lag",
                    "p95 ingestion lag per hour",
                    INGESTION,
                    col("ingestion_hour", "Ingestion hour", "datetime"),
                    col("p95_ingestion_lag_s", "p95 lag", "seconds"),
                    width=3,
                ),
                table(
                    "retention",
                    "History held",
                    RETENTION,
                    [
                        col("oldest_event_date", "Oldest event day", "date"),
                        col("newest_event_date", "Newest event day", "date"),
                        col("silver_transactions", "Silver transactions", "int"),
                        col("first_ingestion_hour", "First ingestion", "datetime"),
                        col("last_ingested_at", "Last ingestion", "datetime"),
                    ],
                    width=3,
                    height=4,
                ),
            ],
            [
                table(
                    "quality_checks",
                    "Data-quality checks",
                    DATA_QUALITY,
                    [
                        col("check_name", "Check", "text"),
                        col("detail", "Detail", "text"),
                        col("affected_rows", "Rows", "int"),
                        col("affected_share", "Share of bronze", "pct"),
                    ],
                    order=(("affected_rows", True), ("check_name", False), ("detail", False)),
                    height=4,
                )
            ],
        ]
    ),
    filters=(date_range("dates", "Ingestion dates", "ingestion_date", INGESTION, INGESTION_LAYERS),),
)
