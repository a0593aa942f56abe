"""Dashboard 12. Global coverage."""

from __future__ import annotations

from dashboards.definitions.common import (
    APPROVAL_COL,
    APPROVAL_RATE_COL,
    COUNTRY,
    CROSS_BORDER_COL,
    GEOGRAPHY,
    TOTAL_VALUE,
    TRANSACTIONS,
    TRANSACTIONS_COL,
    VALUE_COL,
    bar,
    col,
    counter,
    multi_select,
    row_count,
    table,
    weighted_mean,
    world_map,
)
from dashboards.model import Dashboard, layout

REGION = col("region", "Region", "text")

DASHBOARD = Dashboard(
    12,
    "global_coverage",
    "Global coverage",
    "Where transactions happen: volume, approval, value and fraud per country on a world map.",
    datasets=(GEOGRAPHY,),
    widgets=layout(
        [
            [
                counter("countries", "Countries", GEOGRAPHY, row_count("Countries")),
                counter("volume", "Transactions", GEOGRAPHY, TRANSACTIONS),
                counter("approval", "Approval rate", GEOGRAPHY, weighted_mean("approval_rate", "Approval", "pct")),
                counter("value", "Value (USD)", GEOGRAPHY, TOTAL_VALUE, width=2),
                counter(
                    "cross_border",
                    "Cross-border",
                    GEOGRAPHY,
                    weighted_mean("cross_border_share", "Cross-border", "pct"),
                ),
            ],
            [
                world_map("world", "Transactions by country", GEOGRAPHY, TRANSACTIONS_COL, width=6, height=7),
            ],
            [
                bar("approval_by_country", "Approval rate by country", GEOGRAPHY, COUNTRY, APPROVAL_RATE_COL),
                bar("value_by_region", "Value by region (USD)", GEOGRAPHY, REGION, TOTAL_VALUE),
            ],
            [
                table(
                    "countries_table",
                    "Countries",
                    GEOGRAPHY,
                    [
                        ("country_code", "Code", "text"),
                        COUNTRY,
                        REGION,
                        TRANSACTIONS_COL,
                        APPROVAL_COL,
                        VALUE_COL,
                        ("fraud_rate", "Fraud rate", "pct"),
                        CROSS_BORDER_COL,
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
