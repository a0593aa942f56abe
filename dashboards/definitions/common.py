"""What the 12 dashboard modules share: shorthands for fields, widgets and filters, the fields every
dashboard names the same way, and the datasets several dashboards use (one definition each)."""

from __future__ import annotations

from dashboards.model import Dataset, Field, Filter, Format, Widget, targets
from dashboards.sql import Expr, column, ratio, total


# ----------------------------------------------------------------------------------- shorthands
def col(name: str, title: str, fmt: Format = "num") -> Field:
    return Field(title, column(name), fmt)


def agg(title: str, expr: Expr, fmt: Format = "num") -> Field:
    return Field(title, expr, fmt)


def counter(name: str, title: str, dataset: Dataset, value: Field, width: int = 1, description: str = "") -> Widget:
    return Widget(name, "counter", title, dataset.name, (("value", value),), width, 2, description)


def chart(
    kind,
    name: str,
    title: str,
    dataset: Dataset,
    x: Field,
    y: Field,
    color: Field | None = None,
    width: int = 3,
    height: int = 4,
    **options,
) -> Widget:
    fields = (("x", x), ("y", y)) + ((("color", color),) if color else ())
    return Widget(name, kind, title, dataset.name, fields, width, height, **options)


def table(name: str, title: str, dataset: Dataset, columns: list[Field], width: int = 6, height: int = 5, **options):
    return Widget(name, "table", title, dataset.name, tuple(("column", c) for c in columns), width, height, **options)


def multi_select(name: str, title: str, column_name: str, *datasets: Dataset) -> Filter:
    return Filter(name, title, "multi_select", targets(column_name, datasets))


def date_range(name: str, title: str, column_name: str, *datasets: Dataset) -> Filter:
    return Filter(name, title, "date_range", targets(column_name, datasets))


TRANSACTIONS = agg("Transactions", total("transactions"), "int")
APPROVAL = agg("Approval rate", ratio("approved", "transactions"), "pct")
SEGMENT = col("merchant_segment", "Segment", "text")
NETWORK = col("card_network", "Card network", "text")
SOLUTION = col("payment_solution", "Payment solution", "text")
REASON = col("decline_reason", "Decline reason", "text")

# ------------------------------------------------------------------------------ shared datasets
DAILY_KPIS = Dataset(
    "daily_kpis",
    "Approval KPIs per day",
    """
SELECT event_date, transactions, approved, declined, total_value_usd, approved_value_usd, declined_value_usd,
    avg_fraud_score, fraud_transactions, avg_latency_ms, p95_latency_ms
FROM {v_approval_kpis_daily}""",
)
HOURLY_KPIS = Dataset(
    "hourly_kpis",
    "Approval KPIs per hour",
    """
SELECT event_hour, CAST(event_hour AS DATE) AS event_date, transactions, approved, approval_rate, avg_fraud_score,
    avg_latency_ms, p95_latency_ms
FROM {v_approval_kpis_hourly}""",
)
ROUTING = Dataset(
    "routing",
    "Approval, value and latency per payment solution and card network",
    """
SELECT payment_solution, card_network, transactions, approved, approval_rate, approved_value_usd, avg_latency_ms,
    p50_latency_ms, p95_latency_ms, p99_latency_ms, max_latency_ms, fraud_rate
FROM {v_routing_performance}""",
)
DECLINE_PATTERNS = Dataset(
    "decline_patterns",
    "Declines by reason, segment and payment solution with recovery potential",
    """
SELECT decline_reason, decline_group, recommended_action, merchant_segment, payment_solution, declines,
    CASE WHEN is_soft_decline THEN declines ELSE 0 END AS soft_declines, declined_value_usd, recoverable_value_usd
FROM {v_decline_patterns}""",
)
REASON_CODES = Dataset(
    "reason_codes",
    "One row per standard decline code",
    """
SELECT decline_reason, decline_code, decline_group, is_soft_decline, recommended_action, retry_after_seconds, declines,
    share_of_declines, declined_value_usd, avg_declined_amount_usd, retry_success_rate, estimated_recoverable_value_usd,
    top_merchant_segment
FROM {v_reason_code_insights}""",
)
RETRY = Dataset(
    "retry_performance",
    "Retries per previous decline reason",
    """
SELECT decline_reason, retries, recovered, retry_success_rate, recovered_value_usd, avg_seconds_since_previous,
    advised_retries, advised_success_rate, early_retries, baseline_success_rate, lift_over_baseline,
    first_attempt_approval_rate
FROM {v_retry_performance}""",
)
RECOMMENDATIONS = Dataset(
    "recommendations",
    "Data-driven recommendations with the numbers behind them",
    """
SELECT priority, category, scope, recommendation, metric, current_value, expected_value, estimated_impact_usd,
    evidence_transactions
FROM {v_recommendations}""",
)
GEOGRAPHY = Dataset(
    "geography",
    "KPIs per transaction country",
    """
SELECT country_code, country_name, region, latitude, longitude, transactions, approval_rate, total_value_usd,
    fraud_rate, cross_border_share
FROM {v_geography}""",
)
