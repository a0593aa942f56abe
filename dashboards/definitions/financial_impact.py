"""Dashboard 9. Financial impact."""

from __future__ import annotations

from dashboards.definitions.common import (
    DAILY_KPIS,
    DECLINE_PATTERNS,
    REASON,
    RECOMMENDATIONS,
    SEGMENT,
    agg,
    chart,
    col,
    counter,
    date_range,
    multi_select,
    table,
)
from dashboards.model import Dashboard, layout
from dashboards.sql import total

DASHBOARD = Dashboard(
    9,
    "financial_impact",
    "Financial impact",
    "Value approved, declined and recoverable, and the estimated value of each recommendation.",
    datasets=(DAILY_KPIS, DECLINE_PATTERNS, RECOMMENDATIONS),
    widgets=layout(
        [
            [
                counter(
                    "approved",
                    "Approved value (USD)",
                    DAILY_KPIS,
                    agg("Approved", total("approved_value_usd"), "usd"),
                    width=2,
                ),
                counter(
                    "declined",
                    "Declined value (USD)",
                    DAILY_KPIS,
                    agg("Declined", total("declined_value_usd"), "usd"),
                    width=2,
                ),
                counter(
                    "recoverable",
                    "Recoverable (USD)",
                    DECLINE_PATTERNS,
                    agg("Recoverable", total("recoverable_value_usd"), "usd"),
                ),
                counter(
                    "impact",
                    "Recommendations (USD)",
                    RECOMMENDATIONS,
                    agg("Impact", total("estimated_impact_usd"), "usd"),
                    description="Sum of the recommendations' estimated impact",
                ),
            ],
            [
                chart(
                    "area",
                    "approved_daily",
                    "Approved value per day (USD)",
                    DAILY_KPIS,
                    col("event_date", "Day", "date"),
                    agg("Approved", total("approved_value_usd"), "usd"),
                ),
                chart(
                    "bar",
                    "declined_daily",
                    "Declined value per day (USD)",
                    DAILY_KPIS,
                    col("event_date", "Day", "date"),
                    agg("Declined", total("declined_value_usd"), "usd"),
                ),
            ],
            [
                chart(
                    "bar",
                    "recoverable_by_reason",
                    "Recoverable value by decline reason (USD)",
                    DECLINE_PATTERNS,
                    REASON,
                    agg("Recoverable", total("recoverable_value_usd"), "usd"),
                    horizontal=True,
                ),
                chart(
                    "bar",
                    "declined_by_segment",
                    "Declined value by segment (USD)",
                    DECLINE_PATTERNS,
                    SEGMENT,
                    agg("Declined", total("declined_value_usd"), "usd"),
                ),
            ],
            [
                table(
                    "top_recommendations",
                    "Recommendations by estimated impact",
                    RECOMMENDATIONS,
                    [
                        col("priority", "Priority", "int"),
                        col("category", "Category", "text"),
                        col("scope", "Scope", "text"),
                        col("recommendation", "Recommendation", "text"),
                        col("estimated_impact_usd", "Estimated impact", "usd"),
                    ],
                    order=(("priority", False),),
                    limit=10,
                )
            ],
        ]
    ),
    filters=(
        date_range("dates", "Dates", "event_date", DAILY_KPIS),
        multi_select("segment", "Merchant segment", "merchant_segment", DECLINE_PATTERNS),
    ),
)
