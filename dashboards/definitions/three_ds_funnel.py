"""Dashboard 8. 3DS authentication funnel."""

from __future__ import annotations

from dashboards.definitions.common import (
    NETWORK,
    agg,
    chart,
    col,
    counter,
    multi_select,
    table,
)
from dashboards.model import Dashboard, Dataset, layout
from dashboards.sql import ratio, total

THREE_DS = Dataset(
    "three_ds_funnel",
    "3DS funnel per card network",
    """
SELECT card_network, transactions, three_ds_requested, three_ds_routed, three_ds_challenged, three_ds_authenticated,
    approved_after_authentication, routing_rate, challenge_rate, authentication_rate,
    approval_rate_after_authentication
FROM {v_three_ds_funnel}""",
)
THREE_DS_STAGES = Dataset(
    "three_ds_stages",
    "3DS funnel stages per card network (one row per stage)",
    """
SELECT card_network, '1 requested' AS stage, three_ds_requested AS stage_transactions FROM {v_three_ds_funnel}
UNION ALL SELECT card_network, '2 routed', three_ds_routed FROM {v_three_ds_funnel}
UNION ALL SELECT card_network, '3 challenged', three_ds_challenged FROM {v_three_ds_funnel}
UNION ALL SELECT card_network, '4 authenticated', three_ds_authenticated FROM {v_three_ds_funnel}
UNION ALL SELECT card_network, '5 approved', approved_after_authentication FROM {v_three_ds_funnel}""",
)
DASHBOARD = Dashboard(
    8,
    "three_ds_funnel",
    "3DS authentication funnel",
    "3-D Secure from request to approval: how many are routed, challenged, authenticated and approved.",
    datasets=(THREE_DS, THREE_DS_STAGES),
    widgets=layout(
        [
            [
                counter(
                    "requested",
                    "3DS requested",
                    THREE_DS,
                    agg("Requested", total("three_ds_requested"), "int"),
                    width=2,
                ),
                counter(
                    "challenge",
                    "Challenge rate",
                    THREE_DS,
                    agg("Challenged", ratio("three_ds_challenged", "three_ds_routed"), "pct"),
                ),
                counter(
                    "authentication",
                    "Authentication rate",
                    THREE_DS,
                    agg("Authenticated", ratio("three_ds_authenticated", "three_ds_routed"), "pct"),
                ),
                counter(
                    "approval_after",
                    "Approved after authentication",
                    THREE_DS,
                    agg("Approved", ratio("approved_after_authentication", "three_ds_authenticated"), "pct"),
                    width=2,
                ),
            ],
            [
                chart(
                    "bar",
                    "funnel",
                    "Funnel",
                    THREE_DS_STAGES,
                    col("stage", "Stage", "text"),
                    agg("Transactions", total("stage_transactions"), "int"),
                    order=(("stage", False),),
                    width=3,
                    height=5,
                ),
                chart(
                    "bar",
                    "authentication_by_network",
                    "Authentication rate by card network",
                    THREE_DS,
                    NETWORK,
                    agg("Authentication rate", ratio("three_ds_authenticated", "three_ds_routed"), "pct"),
                    width=3,
                    height=5,
                ),
            ],
            [
                table(
                    "by_network",
                    "Funnel by card network",
                    THREE_DS,
                    [
                        NETWORK,
                        col("transactions", "Transactions", "int"),
                        col("three_ds_requested", "Requested", "int"),
                        col("three_ds_routed", "Routed", "int"),
                        col("three_ds_challenged", "Challenged", "int"),
                        col("three_ds_authenticated", "Authenticated", "int"),
                        col("approved_after_authentication", "Approved", "int"),
                        col("challenge_rate", "Challenge rate", "pct"),
                        col("authentication_rate", "Authentication rate", "pct"),
                        col("approval_rate_after_authentication", "Approval after", "pct"),
                    ],
                    order=(("transactions", True),),
                    height=3,
                )
            ],
        ]
    ),
    filters=(multi_select("network", "Card network", "card_network", THREE_DS, THREE_DS_STAGES),),
)
