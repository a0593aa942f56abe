"""Dashboard 3. Real-time monitoring."""

from __future__ import annotations

from dashboards.definitions.common import (
    APPROVAL,
    NETWORK,
    ROUTING,
    SOLUTION,
    TRANSACTIONS,
    agg,
    chart,
    col,
    counter,
    multi_select,
    table,
)
from dashboards.model import Dashboard, Dataset, layout
from dashboards.sql import count

LAST_HOUR = Dataset(
    "last_hour",
    "Approval KPIs over the last hour",
    """
SELECT window_start, window_end, transactions, approved, approval_rate, total_value_usd, avg_fraud_score,
    avg_latency_ms, p95_latency_ms
FROM {v_approval_kpis_last_hour}""",
)
ACTIVE_ALERTS = Dataset(
    "active_alerts",
    "Alerts firing now",
    """
SELECT alert_type, severity, metric, current_value, baseline_value, threshold, transactions_last_hour, evaluated_at,
    message
FROM {v_active_alerts}""",
)
LAST_DAY_HOURLY = Dataset(
    "last_day_hourly",
    "The last 24 hours with data, per hour",
    """
SELECT event_hour, transactions, approved, approval_rate, p95_latency_ms
FROM {v_approval_kpis_hourly}
WHERE event_hour > (SELECT MAX(event_hour) FROM {v_approval_kpis_hourly}) - INTERVAL 24 HOURS""",
)
DASHBOARD = Dashboard(
    3,
    "real_time_monitoring",
    "Real-time monitoring",
    "The last hour, the alerts firing now and approval by payment solution and card network.",
    datasets=(LAST_HOUR, ACTIVE_ALERTS, LAST_DAY_HOURLY, ROUTING),
    widgets=layout(
        [
            [
                counter(
                    "last_hour_volume",
                    "Transactions (last hour)",
                    LAST_HOUR,
                    col("transactions", "Transactions", "int"),
                ),
                counter(
                    "last_hour_approval",
                    "Approval rate (last hour)",
                    LAST_HOUR,
                    col("approval_rate", "Approval", "pct"),
                ),
                counter("last_hour_value", "Value, last hour (USD)", LAST_HOUR, col("total_value_usd", "Value", "usd")),
                counter("last_hour_p95", "p95 latency (last hour)", LAST_HOUR, col("p95_latency_ms", "p95", "ms")),
                counter("alerts", "Active alerts", ACTIVE_ALERTS, agg("Alerts", count(), "int"), width=2),
            ],
            [
                chart(
                    "line",
                    "approval_last_day",
                    "Approval rate per hour, last 24 hours with data",
                    LAST_DAY_HOURLY,
                    col("event_hour", "Hour", "datetime"),
                    APPROVAL,
                    width=3,
                ),
                chart(
                    "bar",
                    "volume_last_day",
                    "Transactions per hour, last 24 hours with data",
                    LAST_DAY_HOURLY,
                    col("event_hour", "Hour", "datetime"),
                    TRANSACTIONS,
                    width=3,
                ),
            ],
            [
                chart("bar", "approval_by_solution", "Approval rate by payment solution", ROUTING, SOLUTION, APPROVAL),
                chart("bar", "approval_by_network", "Approval rate by card network", ROUTING, NETWORK, APPROVAL),
            ],
            [
                table(
                    "alert_list",
                    "Active alerts",
                    ACTIVE_ALERTS,
                    [
                        col("alert_type", "Alert", "text"),
                        col("severity", "Severity", "text"),
                        col("metric", "Metric", "text"),
                        col("current_value", "Now", "num"),
                        col("baseline_value", "Baseline", "num"),
                        col("threshold", "Threshold", "num"),
                        col("transactions_last_hour", "Transactions", "int"),
                        col("message", "Message", "text"),
                    ],
                    height=3,
                )
            ],
        ]
    ),
    filters=(
        multi_select("network", "Card network", "card_network", ROUTING),
        multi_select("solution", "Payment solution", "payment_solution", ROUTING),
    ),
    notes=("Figures as of the last refresh of the dashboard tables; the live per-minute view is /dashboard.",),
)
