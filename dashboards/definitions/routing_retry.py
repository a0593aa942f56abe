"""Dashboard 6. Smart routing and retry."""

from __future__ import annotations

from dashboards.definitions.common import (
    APPROVAL_RATE,
    CATEGORY,
    ESTIMATED_IMPACT_COL,
    NETWORK,
    PRIORITY_COL,
    REASON,
    RECOMMENDATION,
    RECOMMENDATIONS,
    RETRY,
    RETRY_SUCCESS_COL,
    ROUTING,
    SOLUTION,
    TRANSACTIONS,
    bar,
    col,
    counter,
    multi_select,
    network_filter,
    ratio_of,
    solution_filter,
    table,
    total_of,
)
from dashboards.model import Dashboard, layout

LIFT = col("lift_over_baseline", "Lift", "pp")

DASHBOARD = Dashboard(
    6,
    "routing_retry",
    "Smart routing and retry",
    "Which payment solution and network approve best, what retries recover, and the recommendations drawn from both.",
    datasets=(ROUTING, RETRY, RECOMMENDATIONS),
    widgets=layout(
        [
            [
                counter("retries", "Retries", RETRY, total_of("retries", "Retries")),
                counter("recovered", "Recovered", RETRY, total_of("recovered", "Recovered")),
                counter("retry_success", "Retry success", RETRY, ratio_of("recovered", "retries", "Success")),
                counter(
                    "recovered_value", "Recovered value (USD)", RETRY, total_of("recovered_value_usd", "Value", "usd")
                ),
                counter("routed", "Transactions routed", ROUTING, TRANSACTIONS),
                counter("route_approval", "Approval rate", ROUTING, APPROVAL_RATE),
            ],
            [
                bar(
                    "approval_by_route",
                    "Approval rate by payment solution and network",
                    ROUTING,
                    SOLUTION,
                    APPROVAL_RATE,
                    NETWORK,
                    width=4,
                ),
                bar(
                    "value_by_solution",
                    "Approved value by solution (USD)",
                    ROUTING,
                    SOLUTION,
                    total_of("approved_value_usd", "Approved value", "usd"),
                    width=2,
                    horizontal=True,
                ),
            ],
            [
                bar("retry_lift", "Lift of waiting as advised over earlier retries", RETRY, REASON, LIFT, width=3),
                bar(
                    "retry_success_by_reason",
                    "Retry success by previous decline reason",
                    RETRY,
                    REASON,
                    RETRY_SUCCESS_COL,
                    width=3,
                ),
            ],
            [
                table(
                    "retry_table",
                    "Retries by previous decline reason",
                    RETRY,
                    [
                        REASON,
                        ("retries", "Retries", "int"),
                        ("recovered", "Recovered", "int"),
                        ("retry_success_rate", "Success", "pct"),
                        ("advised_success_rate", "Waited as advised", "pct"),
                        ("baseline_success_rate", "Retried earlier", "pct"),
                        LIFT,
                        ("avg_seconds_since_previous", "Average wait", "seconds"),
                        ("recovered_value_usd", "Recovered value", "usd"),
                    ],
                    order=(("retries", True),),
                    height=4,
                )
            ],
            [
                table(
                    "recommendations",
                    "Recommendations",
                    RECOMMENDATIONS,
                    [
                        PRIORITY_COL,
                        CATEGORY,
                        RECOMMENDATION,
                        ESTIMATED_IMPACT_COL,
                        ("evidence_transactions", "Evidence (transactions)", "int"),
                    ],
                    order=(("priority", False),),
                    limit=15,
                )
            ],
        ]
    ),
    filters=(
        network_filter(ROUTING),
        solution_filter(ROUTING),
        multi_select("category", "Recommendation", "category", RECOMMENDATIONS),
    ),
)
