"""What the 12 dashboard modules share: shorthands for fields, widgets and filters, the fields every
dashboard names the same way, and the datasets several dashboards use (one definition each)."""

from __future__ import annotations

from collections.abc import Sequence
from functools import partial

from dashboards.model import Dataset, Field, Filter, Format, Widget, targets
from dashboards.sql import Expr, column, count, ratio, total, weighted

# A table column: a Field, or (dataset column, title, format) for a column shown as the dataset holds it
Column = Field | tuple[str, str, Format]


# --------------------------------------------------------------------------------------- fields
def col(name: str, title: str, fmt: Format = "num") -> Field:
    """A dataset column as it is (the dataset holds one row per group already)."""
    return Field(title, column(name), fmt)


def agg(title: str, expr: Expr, fmt: Format = "num") -> Field:
    return Field(title, expr, fmt)


def total_of(name: str, title: str, fmt: Format = "int") -> Field:
    """The sum of a column over a widget's rows (a count unless told otherwise)."""
    return Field(title, total(name), fmt)


def ratio_of(numerator: str, denominator: str, title: str, fmt: Format = "pct") -> Field:
    """SUM(numerator) / SUM(denominator) over a widget's rows (a share unless told otherwise)."""
    return Field(title, ratio(numerator, denominator), fmt)


def weighted_mean(name: str, title: str, fmt: Format) -> Field:
    """The mean of a per-row average or rate, weighted by the rows' transactions."""
    return Field(title, weighted(name, "transactions"), fmt)


def row_count(title: str) -> Field:
    return Field(title, count(), "int")


def columns(*specs: Column) -> tuple[Field, ...]:
    """Table columns: Fields as they are, (column, title, format) tuples as :func:`col`."""
    return tuple(s if isinstance(s, Field) else col(*s) for s in specs)


# -------------------------------------------------------------------------------------- widgets
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


# chart("bar", ...) and so on: bar(name, title, dataset, x, y, color=None, width=3, height=4, **options)
bar = partial(chart, "bar")
line = partial(chart, "line")
area = partial(chart, "area")


def table(
    name: str, title: str, dataset: Dataset, fields: Sequence[Column], width: int = 6, height: int = 5, **options
) -> Widget:
    """A table of ``fields``, each a Field or a (column, title, format) tuple (see :func:`columns`)."""
    roles = tuple(("column", f) for f in columns(*fields))
    return Widget(name, "table", title, dataset.name, roles, width, height, **options)


def world_map(name: str, title: str, dataset: Dataset, value: Field, width: int, height: int) -> Widget:
    """Countries shaded by ``value``, labelled with their names."""
    fields = (("region", col("country_code", "Country code", "text")), ("value", value), ("label", COUNTRY))
    return Widget(name, "map", title, dataset.name, fields, width, height)


# -------------------------------------------------------------------------------------- filters
def multi_select(name: str, title: str, column_name: str, *datasets: Dataset) -> Filter:
    return Filter(name, title, "multi_select", targets(column_name, datasets))


def date_range(name: str, title: str, column_name: str, *datasets: Dataset) -> Filter:
    return Filter(name, title, "date_range", targets(column_name, datasets))


def dates_filter(*datasets: Dataset) -> Filter:
    return date_range("dates", "Dates", "event_date", *datasets)


def segment_filter(*datasets: Dataset) -> Filter:
    return multi_select("segment", "Merchant segment", "merchant_segment", *datasets)


def network_filter(*datasets: Dataset) -> Filter:
    return multi_select("network", "Card network", "card_network", *datasets)


def solution_filter(*datasets: Dataset) -> Filter:
    return multi_select("solution", "Payment solution", "payment_solution", *datasets)


# -------------------------------------------------------------------------------- shared fields
# What a widget groups or labels its rows by.
SEGMENT = col("merchant_segment", "Segment", "text")
NETWORK = col("card_network", "Card network", "text")
SOLUTION = col("payment_solution", "Payment solution", "text")
REASON = col("decline_reason", "Decline reason", "text")
COUNTRY = col("country_name", "Country", "text")
DAY = col("event_date", "Day", "date")
HOUR = col("event_hour", "Hour", "datetime")
CATEGORY = col("category", "Category", "text")
RECOMMENDATION = col("recommendation", "Recommendation", "text")

# Measures aggregated over the rows a widget groups: a sum, a ratio of sums.
TRANSACTIONS = total_of("transactions", "Transactions")
APPROVAL_RATE = ratio_of("approved", "transactions", "Approval rate")
FRAUD_RATE = ratio_of("fraud_transactions", "transactions", "Fraud rate")
TOTAL_VALUE = total_of("total_value_usd", "Value", "usd")
APPROVED_VALUE = total_of("approved_value_usd", "Approved", "usd")
RECOVERABLE_VALUE = total_of("recoverable_value_usd", "Recoverable", "usd")

# Measures read as the dataset holds them (``_COL``), for datasets with a row per thing shown; named
# after their title.
TRANSACTIONS_COL = col("transactions", "Transactions", "int")
APPROVAL_COL = col("approval_rate", "Approval", "pct")
APPROVAL_RATE_COL = col("approval_rate", "Approval rate", "pct")
VALUE_COL = col("total_value_usd", "Value", "usd")
CROSS_BORDER_COL = col("cross_border_share", "Cross-border", "pct")
DECLINES_COL = col("declines", "Declines", "int")
RETRY_SUCCESS_COL = col("retry_success_rate", "Retry success", "pct")
P95_COL = col("p95_latency_ms", "p95", "ms")
PRIORITY_COL = col("priority", "Priority", "int")
ESTIMATED_IMPACT_COL = col("estimated_impact_usd", "Estimated impact", "usd")

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
