"""Dashboard 5. Merchant performance and segments."""

from __future__ import annotations

from dashboards.definitions.common import (
    APPROVAL_COL,
    APPROVAL_RATE,
    SEGMENT,
    TOTAL_VALUE,
    TRANSACTIONS,
    TRANSACTIONS_COL,
    VALUE_COL,
    bar,
    col,
    counter,
    multi_select,
    ratio_of,
    row_count,
    segment_filter,
    table,
)
from dashboards.model import Dashboard, Dataset, layout

SEGMENTS = Dataset(
    "segments",
    "KPIs per merchant segment",
    """
SELECT merchant_segment, merchant_mcc, merchant_segment_risk, merchants, transactions, approved, approval_rate,
    total_value_usd, avg_ticket_usd, fraud_rate, avg_latency_ms, top_decline_reason
FROM {v_merchant_segment_performance}""",
)
MERCHANTS = Dataset(
    "merchants",
    "Merchants seen in silver",
    """
SELECT merchant_id, merchant_segment, merchant_country, merchant_size, transactions, approval_rate, total_value_usd,
    last_seen_at
FROM {dim_merchants}""",
)
ENTRY = Dataset(
    "entry_systems",
    "Transactions by entry system and flow",
    """
SELECT entry_system, flow_type, transactions, share_of_transactions, approval_rate, total_value_usd, avg_latency_ms
FROM {v_entry_system_distribution}""",
)
MERCHANT_COUNT = row_count("Merchants")
SIZE = col("merchant_size", "Size", "text")

DASHBOARD = Dashboard(
    5,
    "merchant_performance",
    "Merchant performance and segments",
    "Volume, value and approval per merchant segment, the largest merchants and the entry systems they use.",
    datasets=(SEGMENTS, MERCHANTS, ENTRY),
    widgets=layout(
        [
            [
                counter("merchants", "Merchants", MERCHANTS, MERCHANT_COUNT),
                counter("volume", "Transactions", SEGMENTS, TRANSACTIONS),
                counter("approval", "Approval rate", SEGMENTS, APPROVAL_RATE),
                counter("value", "Value (USD)", SEGMENTS, TOTAL_VALUE, width=2),
                counter(
                    "ticket",
                    "Average ticket (USD)",
                    SEGMENTS,
                    ratio_of("total_value_usd", "transactions", "Ticket", "usd"),
                ),
            ],
            [
                bar("value_by_segment", "Value by segment (USD)", SEGMENTS, SEGMENT, TOTAL_VALUE),
                bar("approval_by_segment", "Approval rate by segment", SEGMENTS, SEGMENT, APPROVAL_RATE),
            ],
            [
                bar("merchants_by_size", "Merchants by size", MERCHANTS, SIZE, MERCHANT_COUNT, width=2),
                bar(
                    "entry_systems",
                    "Transactions by entry system and flow",
                    ENTRY,
                    col("entry_system", "Entry system", "text"),
                    TRANSACTIONS,
                    col("flow_type", "Flow", "text"),
                    width=4,
                ),
            ],
            [
                table(
                    "top_merchants",
                    "Top merchants by value",
                    MERCHANTS,
                    [
                        ("merchant_id", "Merchant", "text"),
                        SEGMENT,
                        ("merchant_country", "Country", "text"),
                        SIZE,
                        TRANSACTIONS_COL,
                        APPROVAL_COL,
                        VALUE_COL,
                        ("last_seen_at", "Last seen", "datetime"),
                    ],
                    order=(("total_value_usd", True), ("merchant_id", False)),
                    limit=15,
                )
            ],
        ]
    ),
    filters=(
        segment_filter(SEGMENTS, MERCHANTS),
        multi_select("country", "Merchant country", "merchant_country", MERCHANTS),
    ),
)
