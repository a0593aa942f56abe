"""Dashboard 10. Technical performance and latency."""

from __future__ import annotations

from dashboards.definitions.common import (
    HOUR,
    HOURLY_KPIS,
    NETWORK,
    P95_COL,
    ROUTING,
    SOLUTION,
    TRANSACTIONS_COL,
    agg,
    bar,
    chart,
    col,
    counter,
    dates_filter,
    line,
    network_filter,
    solution_filter,
    table,
    weighted_mean,
)
from dashboards.model import Dashboard, Dataset, layout
from dashboards.sql import maximum

LATENCY_HISTOGRAM = Dataset(
    "latency_histogram",
    "Processing-time histogram",
    """
SELECT latency_bucket_ms, transactions, approval_rate
FROM {v_latency_histogram}""",
)
DASHBOARD = Dashboard(
    10,
    "technical_performance",
    "Technical performance and latency",
    "Processing time: average, p95 and p99 per route and hour, and its distribution.",
    datasets=(ROUTING, LATENCY_HISTOGRAM, HOURLY_KPIS),
    widgets=layout(
        [
            [
                counter(
                    "avg_latency", "Average latency", ROUTING, weighted_mean("avg_latency_ms", "Average", "ms"), width=2
                ),
                counter(
                    "worst_p95",
                    "p95, slowest route",
                    ROUTING,
                    agg("p95", maximum("p95_latency_ms"), "ms"),
                    description="Percentiles do not add up across routes: the highest route percentile",
                ),
                counter("worst_p99", "p99, slowest route", ROUTING, agg("p99", maximum("p99_latency_ms"), "ms")),
                counter("max_latency", "Maximum", ROUTING, agg("Maximum", maximum("max_latency_ms"), "ms"), width=2),
            ],
            [
                chart(
                    "histogram",
                    "histogram",
                    "Processing-time histogram",
                    LATENCY_HISTOGRAM,
                    col("latency_bucket_ms", "Processing time (ms)", "text"),
                    TRANSACTIONS_COL,
                ),
                line("p95_hourly", "p95 latency per hour", HOURLY_KPIS, HOUR, P95_COL),
            ],
            [
                bar(
                    "p95_by_route",
                    "p95 latency by payment solution and network",
                    ROUTING,
                    SOLUTION,
                    P95_COL,
                    NETWORK,
                    width=6,
                ),
            ],
            [
                table(
                    "routes",
                    "Latency by route",
                    ROUTING,
                    [
                        SOLUTION,
                        NETWORK,
                        TRANSACTIONS_COL,
                        ("avg_latency_ms", "Average", "ms"),
                        ("p50_latency_ms", "p50", "ms"),
                        P95_COL,
                        ("p99_latency_ms", "p99", "ms"),
                        ("max_latency_ms", "Max", "ms"),
                    ],
                    order=(("p95_latency_ms", True), ("payment_solution", False), ("card_network", False)),
                )
            ],
        ]
    ),
    filters=(network_filter(ROUTING), solution_filter(ROUTING), dates_filter(HOURLY_KPIS)),
)
