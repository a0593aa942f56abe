"""Dashboard 1. Executive overview."""

from __future__ import annotations

from dashboards.definitions.common import (
    APPROVAL,
    DAILY_KPIS,
    GEOGRAPHY,
    HOURLY_KPIS,
    REASON,
    REASON_CODES,
    TRANSACTIONS,
    agg,
    chart,
    col,
    counter,
    date_range,
)
from dashboards.model import Dashboard, Widget, layout
from dashboards.sql import ratio, total, weighted

DASHBOARD = Dashboard(
    1,
    "executive_overview",
    "Executive overview",
    "Volume, approval rate, value and fraud at a glance; approval by hour and by country; top decline reasons.",
    datasets=(DAILY_KPIS, HOURLY_KPIS, GEOGRAPHY, REASON_CODES),
    widgets=layout(
        [
            [
                counter("volume", "Transactions", DAILY_KPIS, TRANSACTIONS),
                counter("approval_rate", "Approval rate", DAILY_KPIS, APPROVAL),
                counter("value", "Value (USD)", DAILY_KPIS, agg("Value", total("total_value_usd"), "usd")),
                counter(
                    "approved_value",
                    "Approved value (USD)",
                    DAILY_KPIS,
                    agg("Approved", total("approved_value_usd"), "usd"),
                ),
                counter(
                    "avg_fraud",
                    "Average fraud score",
                    DAILY_KPIS,
                    agg("Fraud score", weighted("avg_fraud_score", "transactions"), "score"),
                ),
                counter(
                    "fraud_rate",
                    "Fraud rate",
                    DAILY_KPIS,
                    agg("Fraud rate", ratio("fraud_transactions", "transactions"), "pct"),
                ),
            ],
            [
                chart(
                    "line",
                    "approval_by_hour",
                    "Approval rate by hour",
                    HOURLY_KPIS,
                    col("event_hour", "Hour", "datetime"),
                    APPROVAL,
                    width=4,
                ),
                chart(
                    "bar",
                    "volume_by_day",
                    "Transactions per day",
                    DAILY_KPIS,
                    col("event_date", "Day", "date"),
                    TRANSACTIONS,
                    width=2,
                ),
            ],
            [
                Widget(
                    "approval_by_country",
                    "map",
                    "Approval rate by country",
                    GEOGRAPHY.name,
                    (
                        ("region", col("country_code", "Country code", "text")),
                        ("value", col("approval_rate", "Approval rate", "pct")),
                        ("label", col("country_name", "Country", "text")),
                    ),
                    width=3,
                    height=5,
                ),
                chart(
                    "bar",
                    "top_decline_reasons",
                    "Top decline reasons",
                    REASON_CODES,
                    REASON,
                    col("declines", "Declines", "int"),
                    width=3,
                    height=5,
                    horizontal=True,
                    limit=8,
                ),
            ],
        ]
    ),
    filters=(date_range("dates", "Dates", "event_date", DAILY_KPIS, HOURLY_KPIS),),
)
