"""Dashboard 3. Real-time monitoring."""

from __future__ import annotations

from dashboards.definitions.common import (
    APPROVAL_COL,
    APPROVAL_RATE,
    HOUR,
    NETWORK,
    P95_COL,
    ROUTING,
    SOLUTION,
    TRANSACTIONS,
    TRANSACTIONS_COL,
    VALUE_COL,
    bar,
    counter,
    line,
    network_filter,
    row_count,
    solution_filter,
    table,
)
from dashboards.model import Dashboard, Dataset, layout

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
                counter("last_hour_volume", "Transactions (last hour)", LAST_HOUR, TRANSACTIONS_COL),
                counter("last_hour_approval", "Approval rate (last hour)", LAST_HOUR, APPROVAL_COL),
                counter("last_hour_value", "Value, last hour (USD)", LAST_HOUR, VALUE_COL),
                counter("last_hour_p95", "p95 latency (last hour)", LAST_HOUR, P95_COL),
                counter("alerts", "Active alerts", ACTIVE_ALERTS, row_count("Alerts"), width=2),
            ],
            [
                line(
                    "approval_last_day",
                    "Approval rate per hour, last 24 hours with data",
                    LAST_DAY_HOURLY,
                    HOUR,
                    APPROVAL_RATE,
                    width=3,
                ),
                bar(
                    "volume_last_day",
                    "Transactions per hour, last 24 hours with data",
                    LAST_DAY_HOURLY,
                    HOUR,
                    TRANSACTIONS,
                    width=3,
                ),
            ],
            [
                bar("approval_by_solution", "Approval rate by payment solution", ROUTING, SOLUTION, APPROVAL_RATE),
                bar("approval_by_network", "Approval rate by card network", ROUTING, NETWORK, APPROVAL_RATE),
            ],
            [
                table(
                    "alert_list",
                    "Active alerts",
                    ACTIVE_ALERTS,
                    [
                        ("alert_type", "Alert", "text"),
                        ("severity", "Severity", "text"),
                        ("metric", "Metric", "text"),
                        ("current_value", "Now", "num"),
                        ("baseline_value", "Baseline", "num"),
                        ("threshold", "Threshold", "num"),
                        ("transactions_last_hour", "Transactions", "int"),
                        ("message", "Message", "text"),
                    ],
                    height=3,
                )
            ],
        ]
    ),
    filters=(network_filter(ROUTING), solution_filter(ROUTING)),
    notes=("Figures as of the last refresh of the dashboard tables; the live per-minute view is /dashboard.",),
)
