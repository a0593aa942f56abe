"""Dashboard 1. Executive overview."""

from __future__ import annotations

from dashboards.definitions.common import (
    APPROVAL_RATE,
    APPROVAL_RATE_COL,
    APPROVED_VALUE,
    DAILY_KPIS,
    DAY,
    DECLINES_COL,
    FRAUD_RATE,
    GEOGRAPHY,
    HOUR,
    HOURLY_KPIS,
    REASON,
    REASON_CODES,
    TOTAL_VALUE,
    TRANSACTIONS,
    bar,
    counter,
    dates_filter,
    line,
    weighted_mean,
    world_map,
)
from dashboards.model import Dashboard, layout

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
                counter("approval_rate", "Approval rate", DAILY_KPIS, APPROVAL_RATE),
                counter("value", "Value (USD)", DAILY_KPIS, TOTAL_VALUE),
                counter("approved_value", "Approved value (USD)", DAILY_KPIS, APPROVED_VALUE),
                counter(
                    "avg_fraud",
                    "Average fraud score",
                    DAILY_KPIS,
                    weighted_mean("avg_fraud_score", "Fraud score", "score"),
                ),
                counter("fraud_rate", "Fraud rate", DAILY_KPIS, FRAUD_RATE),
            ],
            [
                line("approval_by_hour", "Approval rate by hour", HOURLY_KPIS, HOUR, APPROVAL_RATE, width=4),
                bar("volume_by_day", "Transactions per day", DAILY_KPIS, DAY, TRANSACTIONS, width=2),
            ],
            [
                world_map(
                    "approval_by_country", "Approval rate by country", GEOGRAPHY, APPROVAL_RATE_COL, width=3, height=5
                ),
                bar(
                    "top_decline_reasons",
                    "Top decline reasons",
                    REASON_CODES,
                    REASON,
                    DECLINES_COL,
                    width=3,
                    height=5,
                    horizontal=True,
                    limit=8,
                ),
            ],
        ]
    ),
    filters=(dates_filter(DAILY_KPIS, HOURLY_KPIS),),
)
