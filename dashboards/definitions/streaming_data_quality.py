"""Dashboard 11. Streaming and data quality."""

from __future__ import annotations

from dashboards.definitions.common import (
    bar,
    col,
    counter,
    date_range,
    line,
    table,
    total_of,
)
from dashboards.model import Dashboard, Dataset, layout

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
INGESTION_HOUR = col("ingestion_hour", "Ingestion hour", "datetime")
CHECK = col("check_name", "Check", "text")

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
                counter("bronze", "Bronze events", INGESTION, total_of("bronze_events", "Bronze")),
                counter("silver", "Silver rows", INGESTION, total_of("silver_rows", "Silver")),
                counter("quarantined", "Quarantined", INGESTION, total_of("quarantined_rows", "Quarantined")),
                counter("dead_letters", "Dead letters", INGESTION, total_of("dead_letters", "Dead letters")),
                counter("duplicates", "Duplicates dropped", INGESTION, total_of("duplicates_dropped", "Duplicates")),
                counter("history_days", "Days of history", RETENTION, col("days_with_data", "Days", "int")),
            ],
            [
                line(
                    "layers",
                    "Rows per ingestion hour: bronze vs silver",
                    INGESTION_LAYERS,
                    INGESTION_HOUR,
                    total_of("layer_rows", "Rows"),
                    col("layer", "Layer", "text"),
                    width=4,
                ),
                bar(
                    "checks",
                    "Rows affected by check",
                    DATA_QUALITY,
                    CHECK,
                    total_of("affected_rows", "Rows"),
                    width=2,
                    horizontal=True,
                ),
            ],
            [
                line(
                    "lag",
                    "p95 ingestion lag per hour",
                    INGESTION,
                    INGESTION_HOUR,
                    col("p95_ingestion_lag_s", "p95 lag", "seconds"),
                    width=3,
                ),
                table(
                    "retention",
                    "History held",
                    RETENTION,
                    [
                        ("oldest_event_date", "Oldest event day", "date"),
                        ("newest_event_date", "Newest event day", "date"),
                        ("silver_transactions", "Silver transactions", "int"),
                        ("first_ingestion_hour", "First ingestion", "datetime"),
                        ("last_ingested_at", "Last ingestion", "datetime"),
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
                        CHECK,
                        ("detail", "Detail", "text"),
                        ("affected_rows", "Rows", "int"),
                        ("affected_share", "Share of bronze", "pct"),
                    ],
                    order=(("affected_rows", True), ("check_name", False), ("detail", False)),
                    height=4,
                )
            ],
        ]
    ),
    filters=(date_range("dates", "Ingestion dates", "ingestion_date", INGESTION, INGESTION_LAYERS),),
)
