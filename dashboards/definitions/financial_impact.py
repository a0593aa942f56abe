"""Dashboard 9. Financial impact."""

from __future__ import annotations

from dashboards.definitions.common import (
    APPROVED_VALUE,
    CATEGORY,
    DAILY_KPIS,
    DAY,
    DECLINE_PATTERNS,
    ESTIMATED_IMPACT_COL,
    PRIORITY_COL,
    REASON,
    RECOMMENDATION,
    RECOMMENDATIONS,
    RECOVERABLE_VALUE,
    SEGMENT,
    area,
    bar,
    counter,
    dates_filter,
    segment_filter,
    table,
    total_of,
)
from dashboards.model import Dashboard, layout

DECLINED_VALUE = total_of("declined_value_usd", "Declined", "usd")

DASHBOARD = Dashboard(
    9,
    "financial_impact",
    "Financial impact",
    "Value approved, declined and recoverable, and the estimated value of each recommendation.",
    datasets=(DAILY_KPIS, DECLINE_PATTERNS, RECOMMENDATIONS),
    widgets=layout(
        [
            [
                counter("approved", "Approved value (USD)", DAILY_KPIS, APPROVED_VALUE, width=2),
                counter("declined", "Declined value (USD)", DAILY_KPIS, DECLINED_VALUE, width=2),
                counter("recoverable", "Recoverable (USD)", DECLINE_PATTERNS, RECOVERABLE_VALUE),
                counter(
                    "impact",
                    "Recommendations (USD)",
                    RECOMMENDATIONS,
                    total_of("estimated_impact_usd", "Impact", "usd"),
                    description="Sum of the recommendations' estimated impact",
                ),
            ],
            [
                area("approved_daily", "Approved value per day (USD)", DAILY_KPIS, DAY, APPROVED_VALUE),
                bar("declined_daily", "Declined value per day (USD)", DAILY_KPIS, DAY, DECLINED_VALUE),
            ],
            [
                bar(
                    "recoverable_by_reason",
                    "Recoverable value by decline reason (USD)",
                    DECLINE_PATTERNS,
                    REASON,
                    RECOVERABLE_VALUE,
                    horizontal=True,
                ),
                bar(
                    "declined_by_segment", "Declined value by segment (USD)", DECLINE_PATTERNS, SEGMENT, DECLINED_VALUE
                ),
            ],
            [
                table(
                    "top_recommendations",
                    "Recommendations by estimated impact",
                    RECOMMENDATIONS,
                    [PRIORITY_COL, CATEGORY, ("scope", "Scope", "text"), RECOMMENDATION, ESTIMATED_IMPACT_COL],
                    order=(("priority", False),),
                    limit=10,
                )
            ],
        ]
    ),
    filters=(dates_filter(DAILY_KPIS), segment_filter(DECLINE_PATTERNS)),
)
