"""Dashboard 2. Decline analysis and recovery."""

from __future__ import annotations

from dashboards.definitions.common import (
    DECLINE_PATTERNS,
    REASON,
    REASON_CODES,
    RETRY,
    SEGMENT,
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
    2,
    "decline_analysis",
    "Decline analysis and recovery",
    "Why transactions are declined, by reason, segment and payment solution, and how much a retry recovers.",
    datasets=(DECLINE_PATTERNS, REASON_CODES, RETRY),
    widgets=layout(
        [
            [
                counter("declines", "Declines", DECLINE_PATTERNS, agg("Declines", total("declines"), "int")),
                counter(
                    "soft_share",
                    "Soft declines",
                    DECLINE_PATTERNS,
                    agg("Soft share", ratio("soft_declines", "declines"), "pct"),
                ),
                counter(
                    "declined_value",
                    "Declined value (USD)",
                    DECLINE_PATTERNS,
                    agg("Declined value", total("declined_value_usd"), "usd"),
                    width=2,
                ),
                counter(
                    "recoverable_value",
                    "Recoverable value (USD)",
                    DECLINE_PATTERNS,
                    agg("Recoverable", total("recoverable_value_usd"), "usd"),
                    width=2,
                    description="Soft declines' value times the success rate of retries after that reason",
                ),
            ],
            [
                chart(
                    "bar",
                    "declines_by_reason",
                    "Declines by reason",
                    DECLINE_PATTERNS,
                    REASON,
                    agg("Declines", total("declines"), "int"),
                    horizontal=True,
                ),
                chart(
                    "bar",
                    "recoverable_by_reason",
                    "Recoverable value by reason (USD)",
                    DECLINE_PATTERNS,
                    REASON,
                    agg("Recoverable value", total("recoverable_value_usd"), "usd"),
                    horizontal=True,
                ),
            ],
            [
                chart(
                    "bar",
                    "declines_by_segment",
                    "Declines by merchant segment",
                    DECLINE_PATTERNS,
                    SEGMENT,
                    agg("Declines", total("declines"), "int"),
                ),
                chart(
                    "bar",
                    "retry_success",
                    "Retry success by previous decline reason",
                    RETRY,
                    REASON,
                    col("retry_success_rate", "Retry success", "pct"),
                ),
            ],
            [
                table(
                    "reason_codes",
                    "Reason codes",
                    REASON_CODES,
                    [
                        REASON,
                        col("decline_code", "Code", "text"),
                        col("decline_group", "Group", "text"),
                        col("recommended_action", "Recommended action", "text"),
                        col("declines", "Declines", "int"),
                        col("share_of_declines", "Share", "pct"),
                        col("declined_value_usd", "Declined value", "usd"),
                        col("retry_success_rate", "Retry success", "pct"),
                        col("estimated_recoverable_value_usd", "Recoverable", "usd"),
                        col("top_merchant_segment", "Top segment", "text"),
                    ],
                    order=(("declines", True),),
                )
            ],
        ]
    ),
    filters=(
        multi_select("segment", "Merchant segment", "merchant_segment", DECLINE_PATTERNS),
        multi_select("solution", "Payment solution", "payment_solution", DECLINE_PATTERNS),
    ),
)
