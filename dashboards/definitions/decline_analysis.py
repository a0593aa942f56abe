"""Dashboard 2. Decline analysis and recovery."""

from __future__ import annotations

from dashboards.definitions.common import (
    DECLINE_PATTERNS,
    DECLINES_COL,
    REASON,
    REASON_CODES,
    RECOVERABLE_VALUE,
    RETRY,
    RETRY_SUCCESS_COL,
    SEGMENT,
    bar,
    counter,
    ratio_of,
    segment_filter,
    solution_filter,
    table,
    total_of,
)
from dashboards.model import Dashboard, layout

DECLINES = total_of("declines", "Declines")

DASHBOARD = Dashboard(
    2,
    "decline_analysis",
    "Decline analysis and recovery",
    "Why transactions are declined, by reason, segment and payment solution, and how much a retry recovers.",
    datasets=(DECLINE_PATTERNS, REASON_CODES, RETRY),
    widgets=layout(
        [
            [
                counter("declines", "Declines", DECLINE_PATTERNS, DECLINES),
                counter(
                    "soft_share", "Soft declines", DECLINE_PATTERNS, ratio_of("soft_declines", "declines", "Soft share")
                ),
                counter(
                    "declined_value",
                    "Declined value (USD)",
                    DECLINE_PATTERNS,
                    total_of("declined_value_usd", "Declined value", "usd"),
                    width=2,
                ),
                counter(
                    "recoverable_value",
                    "Recoverable value (USD)",
                    DECLINE_PATTERNS,
                    RECOVERABLE_VALUE,
                    width=2,
                    description="Soft declines' value times the success rate of retries after that reason",
                ),
            ],
            [
                bar("declines_by_reason", "Declines by reason", DECLINE_PATTERNS, REASON, DECLINES, horizontal=True),
                bar(
                    "recoverable_by_reason",
                    "Recoverable value by reason (USD)",
                    DECLINE_PATTERNS,
                    REASON,
                    total_of("recoverable_value_usd", "Recoverable value", "usd"),
                    horizontal=True,
                ),
            ],
            [
                bar("declines_by_segment", "Declines by merchant segment", DECLINE_PATTERNS, SEGMENT, DECLINES),
                bar("retry_success", "Retry success by previous decline reason", RETRY, REASON, RETRY_SUCCESS_COL),
            ],
            [
                table(
                    "reason_codes",
                    "Reason codes",
                    REASON_CODES,
                    [
                        REASON,
                        ("decline_code", "Code", "text"),
                        ("decline_group", "Group", "text"),
                        ("recommended_action", "Recommended action", "text"),
                        DECLINES_COL,
                        ("share_of_declines", "Share", "pct"),
                        ("declined_value_usd", "Declined value", "usd"),
                        RETRY_SUCCESS_COL,
                        ("estimated_recoverable_value_usd", "Recoverable", "usd"),
                        ("top_merchant_segment", "Top segment", "text"),
                    ],
                    order=(("declines", True),),
                )
            ],
        ]
    ),
    filters=(segment_filter(DECLINE_PATTERNS), solution_filter(DECLINE_PATTERNS)),
)
