"""Dashboard 4. Fraud and risk."""

from __future__ import annotations

from dashboards.definitions.common import (
    DAILY_KPIS,
    SEGMENT,
    TRANSACTIONS,
    agg,
    chart,
    col,
    counter,
    date_range,
    multi_select,
    table,
)
from dashboards.model import Dashboard, Dataset, layout
from dashboards.sql import ratio, total, weighted

RISK = Dataset(
    "risk_signals",
    "Risk tiers by merchant segment",
    """
SELECT risk_tier, merchant_segment, transactions, avg_composite_risk, avg_fraud_score, avg_aml_risk_score,
    avg_device_trust_score, fraud_transactions, fraud_declined, fraud_approved, fraud_approved_value_usd,
    approval_rate, cross_border_share, night_share
FROM {v_risk_signals}""",
)
DASHBOARD = Dashboard(
    4,
    "fraud_risk",
    "Fraud and risk",
    "Fraud caught and missed by risk tier and merchant segment, risk scores and the daily fraud rate.",
    datasets=(RISK, DAILY_KPIS),
    widgets=layout(
        [
            [
                counter("fraud", "Fraud transactions", RISK, agg("Fraud", total("fraud_transactions"), "int")),
                counter(
                    "fraud_rate",
                    "Fraud rate",
                    RISK,
                    agg("Fraud rate", ratio("fraud_transactions", "transactions"), "pct"),
                ),
                counter(
                    "caught",
                    "Fraud declined",
                    RISK,
                    agg("Caught", ratio("fraud_declined", "fraud_transactions"), "pct"),
                ),
                counter(
                    "missed_value",
                    "Fraud approved (USD)",
                    RISK,
                    agg("Missed", total("fraud_approved_value_usd"), "usd"),
                ),
                counter(
                    "composite_risk",
                    "Composite risk",
                    RISK,
                    agg("Risk", weighted("avg_composite_risk", "transactions"), "score"),
                ),
                counter(
                    "device_trust",
                    "Device trust",
                    RISK,
                    agg("Trust", weighted("avg_device_trust_score", "transactions"), "score"),
                ),
            ],
            [
                chart(
                    "bar",
                    "fraud_by_tier",
                    "Fraud rate by risk tier",
                    RISK,
                    col("risk_tier", "Risk tier", "text"),
                    agg("Fraud rate", ratio("fraud_transactions", "transactions"), "pct"),
                    width=2,
                ),
                chart(
                    "bar",
                    "volume_by_tier",
                    "Transactions by risk tier and segment",
                    RISK,
                    col("risk_tier", "Risk tier", "text"),
                    TRANSACTIONS,
                    SEGMENT,
                    width=4,
                ),
            ],
            [
                chart(
                    "bar",
                    "fraud_by_segment",
                    "Fraud rate by merchant segment",
                    RISK,
                    SEGMENT,
                    agg("Fraud rate", ratio("fraud_transactions", "transactions"), "pct"),
                ),
                chart(
                    "line",
                    "fraud_daily",
                    "Fraud rate per day",
                    DAILY_KPIS,
                    col("event_date", "Day", "date"),
                    agg("Fraud rate", ratio("fraud_transactions", "transactions"), "pct"),
                ),
            ],
            [
                table(
                    "risk_table",
                    "Risk tiers by segment",
                    RISK,
                    [
                        col("risk_tier", "Risk tier", "text"),
                        SEGMENT,
                        col("transactions", "Transactions", "int"),
                        col("avg_composite_risk", "Composite risk", "score"),
                        col("avg_fraud_score", "Fraud score", "score"),
                        col("fraud_transactions", "Fraud", "int"),
                        col("fraud_declined", "Declined", "int"),
                        col("fraud_approved", "Approved", "int"),
                        col("approval_rate", "Approval", "pct"),
                        col("cross_border_share", "Cross-border", "pct"),
                        col("night_share", "Night", "pct"),
                    ],
                    order=(("fraud_transactions", True), ("risk_tier", False), ("merchant_segment", False)),
                )
            ],
        ]
    ),
    filters=(
        multi_select("segment", "Merchant segment", "merchant_segment", RISK),
        multi_select("tier", "Risk tier", "risk_tier", RISK),
        date_range("dates", "Dates", "event_date", DAILY_KPIS),
    ),
)
