"""Dashboard 4. Fraud and risk."""

from __future__ import annotations

from dashboards.definitions.common import (
    APPROVAL_COL,
    CROSS_BORDER_COL,
    DAILY_KPIS,
    DAY,
    FRAUD_RATE,
    SEGMENT,
    TRANSACTIONS,
    TRANSACTIONS_COL,
    bar,
    col,
    counter,
    dates_filter,
    line,
    multi_select,
    ratio_of,
    segment_filter,
    table,
    total_of,
    weighted_mean,
)
from dashboards.model import Dashboard, Dataset, layout

RISK = Dataset(
    "risk_signals",
    "Risk tiers by merchant segment",
    """
SELECT risk_tier, merchant_segment, transactions, avg_composite_risk, avg_fraud_score, avg_aml_risk_score,
    avg_device_trust_score, fraud_transactions, fraud_declined, fraud_approved, fraud_approved_value_usd,
    approval_rate, cross_border_share, night_share
FROM {v_risk_signals}""",
)
RISK_TIER = col("risk_tier", "Risk tier", "text")

DASHBOARD = Dashboard(
    4,
    "fraud_risk",
    "Fraud and risk",
    "Fraud caught and missed by risk tier and merchant segment, risk scores and the daily fraud rate.",
    datasets=(RISK, DAILY_KPIS),
    widgets=layout(
        [
            [
                counter("fraud", "Fraud transactions", RISK, total_of("fraud_transactions", "Fraud")),
                counter("fraud_rate", "Fraud rate", RISK, FRAUD_RATE),
                counter("caught", "Fraud declined", RISK, ratio_of("fraud_declined", "fraud_transactions", "Caught")),
                counter(
                    "missed_value", "Fraud approved (USD)", RISK, total_of("fraud_approved_value_usd", "Missed", "usd")
                ),
                counter("composite_risk", "Composite risk", RISK, weighted_mean("avg_composite_risk", "Risk", "score")),
                counter(
                    "device_trust", "Device trust", RISK, weighted_mean("avg_device_trust_score", "Trust", "score")
                ),
            ],
            [
                bar("fraud_by_tier", "Fraud rate by risk tier", RISK, RISK_TIER, FRAUD_RATE, width=2),
                bar(
                    "volume_by_tier",
                    "Transactions by risk tier and segment",
                    RISK,
                    RISK_TIER,
                    TRANSACTIONS,
                    SEGMENT,
                    width=4,
                ),
            ],
            [
                bar("fraud_by_segment", "Fraud rate by merchant segment", RISK, SEGMENT, FRAUD_RATE),
                line("fraud_daily", "Fraud rate per day", DAILY_KPIS, DAY, FRAUD_RATE),
            ],
            [
                table(
                    "risk_table",
                    "Risk tiers by segment",
                    RISK,
                    [
                        RISK_TIER,
                        SEGMENT,
                        TRANSACTIONS_COL,
                        ("avg_composite_risk", "Composite risk", "score"),
                        ("avg_fraud_score", "Fraud score", "score"),
                        ("fraud_transactions", "Fraud", "int"),
                        ("fraud_declined", "Declined", "int"),
                        ("fraud_approved", "Approved", "int"),
                        APPROVAL_COL,
                        CROSS_BORDER_COL,
                        ("night_share", "Night", "pct"),
                    ],
                    order=(("fraud_transactions", True), ("risk_tier", False), ("merchant_segment", False)),
                )
            ],
        ]
    ),
    filters=(
        segment_filter(RISK),
        multi_select("tier", "Risk tier", "risk_tier", RISK),
        dates_filter(DAILY_KPIS),
    ),
)
