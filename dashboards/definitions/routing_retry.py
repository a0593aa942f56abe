"""Dashboard 6. Smart routing and retry."""

from __future__ import annotations

from dashboards.definitions.common import (
    APPROVAL,
    NETWORK,
    REASON,
    RECOMMENDATIONS,
    RETRY,
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
from dashboards.model import Dashboard, layout
from dashboards.sql import ratio, total

DASHBOARD = Dashboard(
    6,
    "routing_retry",
    "Smart routing and retry",
    "Which payment solution and network approve best, what retries recover, and the recommendations drawn from both.",
    datasets=(ROUTING, RETRY, RECOMMENDATIONS),
    widgets=layout(
        [
            [
                counter("retries", "Retries", RETRY, agg("Retries", total("retries"), "int")),
                counter("recovered", "Recovered", RETRY, agg("Recovered", total("recovered"), "int")),
                counter("retry_success", "Retry success", RETRY, agg("Success", ratio("recovered", "retries"), "pct")),
                counter(
                    "recovered_value", "Recovered value (USD)", RETRY, agg("Value", total("recovered_value_usd"), "usd")
                ),
                counter("routed", "Transactions routed", ROUTING, TRANSACTIONS),
                counter("route_approval", "Approval rate", ROUTING, APPROVAL),
            ],
            [
                chart(
                    "bar",
                    "approval_by_route",
                    "Approval rate by payment solution and network",
                    ROUTING,
                    SOLUTION,
                    APPROVAL,
                    NETWORK,
                    width=4,
                ),
                chart(
                    "bar",
                    "value_by_solution",
                    "Approved value by solution (USD)",
                    ROUTING,
                    SOLUTION,
                    agg("Approved value", total("approved_value_usd"), "usd"),
                    width=2,
                    horizontal=True,
                ),
            ],
            [
                chart(
                    "bar",
                    "retry_lift",
                    "Lift of waiting as advised over earlier retries",
                    RETRY,
                    REASON,
                    col("lift_over_baseline", "Lift", "pp"),
                    width=3,
                ),
                chart(
                    "bar",
                    "retry_success_by_reason",
                    "Retry success by previous decline reason",
                    RETRY,
                    REASON,
                    col("retry_success_rate", "Retry success", "pct"),
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
                        col("retries", "Retries", "int"),
                        col("recovered", "Recovered", "int"),
                        col("retry_success_rate", "Success", "pct"),
                        col("advised_success_rate", "Waited as advised", "pct"),
                        col("baseline_success_rate", "Retried earlier", "pct"),
                        col("lift_over_baseline", "Lift", "pp"),
                        col("avg_seconds_since_previous", "Average wait", "seconds"),
                        col("recovered_value_usd", "Recovered value", "usd"),
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
                        col("priority", "Priority", "int"),
                        col("category", "Category", "text"),
                        col("recommendation", "Recommendation", "text"),
                        col("estimated_impact_usd", "Estimated impact", "usd"),
                        col("evidence_transactions", "Evidence (transactions)", "int"),
                    ],
                    order=(("priority", False),),
                    limit=15,
                )
            ],
        ]
    ),
    filters=(
        multi_select("network", "Card network", "card_network", ROUTING),
        multi_select("solution", "Payment solution", "payment_solution", ROUTING),
        multi_select("category", "Recommendation", "category", RECOMMENDATIONS),
    ),
)
