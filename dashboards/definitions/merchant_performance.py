"""Dashboard 5. Merchant performance and segments."""

from __future__ import annotations

from dashboards.definitions.common import (
    APPROVAL,
    SEGMENT,
    TRANSACTIONS,
    agg,
    chart,
    col,
    counter,
    multi_select,
    table,
)
from dashboards.model import Dashboard, Dataset, layout
from dashboards.sql import count, ratio, total

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
DASHBOARD = Dashboard(
    5,
    "merchant_performance",
    "Merchant performance and segments",
    "Volume, value and approval per merchant segment, the largest merchants and the entry systems they use.",
    datasets=(SEGMENTS, MERCHANTS, ENTRY),
    widgets=layout(
        [
            [
                counter("merchants", "Merchants", MERCHANTS, agg("Merchants", count(), "int")),
                counter("volume", "Transactions", SEGMENTS, TRANSACTIONS),
                counter("approval", "Approval rate", SEGMENTS, APPROVAL),
                counter("value", "Value (USD)", SEGMENTS, agg("Value", total("total_value_usd"), "usd"), width=2),
                counter(
                    "ticket",
                    "Average ticket (USD)",
                    SEGMENTS,
                    agg("Ticket", ratio("total_value_usd", "transactions"), "usd"),
                ),
            ],
            [
                chart(
                    "bar",
                    "value_by_segment",
                    "Value by segment (USD)",
                    SEGMENTS,
                    SEGMENT,
                    agg("Value", total("total_value_usd"), "usd"),
                ),
                chart("bar", "approval_by_segment", "Approval rate by segment", SEGMENTS, SEGMENT, APPROVAL),
            ],
            [
                chart(
                    "bar",
                    "merchants_by_size",
                    "Merchants by size",
                    MERCHANTS,
                    col("merchant_size", "Size", "text"),
                    agg("Merchants", count(), "int"),
                    width=2,
                ),
                chart(
                    "bar",
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
                        col("merchant_id", "Merchant", "text"),
                        SEGMENT,
                        col("merchant_country", "Country", "text"),
                        col("merchant_size", "Size", "text"),
                        col("transactions", "Transactions", "int"),
                        col("approval_rate", "Approval", "pct"),
                        col("total_value_usd", "Value", "usd"),
                        col("last_seen_at", "Last seen", "datetime"),
                    ],
                    order=(("total_value_usd", True), ("merchant_id", False)),
                    limit=15,
                )
            ],
        ]
    ),
    filters=(
        multi_select("segment", "Merchant segment", "merchant_segment", SEGMENTS, MERCHANTS),
        multi_select("country", "Merchant country", "merchant_country", MERCHANTS),
    ),
)
