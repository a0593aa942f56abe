"""Dashboard 7. Daily trends."""

from __future__ import annotations

from dashboards.definitions.common import (
    APPROVAL_COL,
    APPROVAL_RATE_COL,
    DAY,
    TRANSACTIONS_COL,
    area,
    bar,
    col,
    counter,
    dates_filter,
    line,
)
from dashboards.model import Dashboard, Dataset, layout

TRENDS = Dataset(
    "daily_trends",
    "Last 90 days of daily KPIs with day-over-day change",
    """
SELECT event_date, transactions, approval_rate, total_value_usd, approved_value_usd, fraud_rate, avg_latency_ms,
    transactions_dod_change, approval_rate_dod_change, value_dod_change
FROM {v_daily_trends}""",
)
LATEST_DAY = Dataset(
    "latest_full_day",
    "The latest complete day (before today, UTC) with its day-over-day change",
    """
SELECT event_date, transactions, transactions_dod_change, approval_rate, approval_rate_dod_change, total_value_usd,
    value_dod_change
FROM {v_daily_trends}
WHERE event_date = (SELECT MAX(event_date) FROM {v_daily_trends} WHERE event_date < current_date())""",
)
TRANSACTIONS_CHANGE = col("transactions_dod_change", "Change", "change")

DASHBOARD = Dashboard(
    7,
    "daily_trends",
    "Daily trends",
    "The last 90 days, day by day, with the change over the previous day.",
    datasets=(TRENDS, LATEST_DAY),
    widgets=layout(
        [
            [
                counter("day", "Latest complete day", LATEST_DAY, DAY),
                counter("day_volume", "Transactions", LATEST_DAY, TRANSACTIONS_COL),
                counter("day_volume_change", "Transactions vs day before", LATEST_DAY, TRANSACTIONS_CHANGE),
                counter("day_approval", "Approval rate", LATEST_DAY, APPROVAL_COL),
                counter(
                    "day_approval_change",
                    "Approval vs day before",
                    LATEST_DAY,
                    col("approval_rate_dod_change", "Change", "pp"),
                ),
                counter(
                    "day_value_change", "Value vs day before", LATEST_DAY, col("value_dod_change", "Change", "change")
                ),
            ],
            [
                line("volume", "Transactions per day", TRENDS, DAY, TRANSACTIONS_COL),
                line("approval", "Approval rate per day", TRENDS, DAY, APPROVAL_RATE_COL),
            ],
            [
                area(
                    "value",
                    "Approved value per day (USD)",
                    TRENDS,
                    DAY,
                    col("approved_value_usd", "Approved value", "usd"),
                ),
                bar("volume_change", "Day-over-day change in transactions", TRENDS, DAY, TRANSACTIONS_CHANGE),
            ],
        ]
    ),
    filters=(dates_filter(TRENDS),),
    notes=("The counters show the latest complete UTC day; the filter applies to the charts.",),
)
