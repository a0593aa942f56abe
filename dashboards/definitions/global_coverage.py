"""Dashboard 12. Global coverage."""

from __future__ import annotations

from dashboards.definitions.common import (
    GEOGRAPHY,
    TRANSACTIONS,
    agg,
    chart,
    col,
    counter,
    multi_select,
    table,
)
from dashboards.model import Dashboard, Widget, layout
from dashboards.sql import count, total, weighted

DASHBOARD = Dashboard(
    12,
    "global_coverage",
    "Global coverage",
    "Where transactions happen: volume, approval, value and fraud per country on a world map.",
    datasets=(GEOGRAPHY,),
    widgets=layout(
        [
            [
                counter("countries", "Countries", GEOGRAPHY, agg("Countries", count(), "int")),
                counter("volume", "Transactions", GEOGRAPHY, TRANSACTIONS),
                counter(
                    "approval",
                    "Approval rate",
                    GEOGRAPHY,
                    agg("Approval", weighted("approval_rate", "transactions"), "pct"),
                ),
                counter("value", "Value (USD)", GEOGRAPHY, agg("Value", total("total_value_usd"), "usd"), width=2),
                counter(
                    "cross_border",
                    "Cross-border",
                    GEOGRAPHY,
                    agg("Cross-border", weighted("cross_border_share", "transactions"), "pct"),
                ),
            ],
            [
                Widget(
                    "world",
                    "map",
                    "Transactions by country",
                    GEOGRAPHY.name,
                    (
                        ("region", col("country_code", "Country code", "text")),
                        ("value", col("transactions", "Transactions", "int")),
                        ("label", col("country_name", "Country", "text")),
                    ),
                    width=6,
                    height=7,
                ),
            ],
            [
                chart(
                    "bar",
                    "approval_by_country",
                    "Approval rate by country",
                    GEOGRAPHY,
                    col("country_name", "Country", "text"),
                    col("approval_rate", "Approval rate", "pct"),
                ),
                chart(
                    "bar",
                    "value_by_region",
                    "Value by region (USD)",
                    GEOGRAPHY,
                    col("region", "Region", "text"),
                    agg("Value", total("total_value_usd"), "usd"),
                ),
            ],
            [
                table(
                    "countries_table",
                    "Countries",
                    GEOGRAPHY,
                    [
                        col("country_code", "Code", "text"),
                        col("country_name", "Country", "text"),
                        col("region", "Region", "text"),
                        col("transactions", "Transactions", "int"),
                        col("approval_rate", "Approval", "pct"),
                        col("total_value_usd", "Value", "usd"),
                        col("fraud_rate", "Fraud rate", "pct"),
                        col("cross_border_share", "Cross-border", "pct"),
                    ],
                    order=(("transactions", True), ("country_code", False)),
                    height=4,
                )
            ],
        ]
    ),
    filters=(
        multi_select("region", "Region", "region", GEOGRAPHY),
        multi_select("country", "Country", "country_code", GEOGRAPHY),
    ),
)
