"""Dashboard 8. 3DS authentication funnel."""

from __future__ import annotations

from dashboards.definitions.common import (
    NETWORK,
    TRANSACTIONS_COL,
    bar,
    col,
    counter,
    network_filter,
    ratio_of,
    table,
    total_of,
)
from dashboards.model import Dashboard, Dataset, layout

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
                counter("requested", "3DS requested", THREE_DS, total_of("three_ds_requested", "Requested"), width=2),
                counter(
                    "challenge",
                    "Challenge rate",
                    THREE_DS,
                    ratio_of("three_ds_challenged", "three_ds_routed", "Challenged"),
                ),
                counter(
                    "authentication",
                    "Authentication rate",
                    THREE_DS,
                    ratio_of("three_ds_authenticated", "three_ds_routed", "Authenticated"),
                ),
                counter(
                    "approval_after",
                    "Approved after authentication",
                    THREE_DS,
                    ratio_of("approved_after_authentication", "three_ds_authenticated", "Approved"),
                    width=2,
                ),
            ],
            [
                bar(
                    "funnel",
                    "Funnel",
                    THREE_DS_STAGES,
                    col("stage", "Stage", "text"),
                    total_of("stage_transactions", "Transactions"),
                    order=(("stage", False),),
                    width=3,
                    height=5,
                ),
                bar(
                    "authentication_by_network",
                    "Authentication rate by card network",
                    THREE_DS,
                    NETWORK,
                    ratio_of("three_ds_authenticated", "three_ds_routed", "Authentication rate"),
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
                        TRANSACTIONS_COL,
                        ("three_ds_requested", "Requested", "int"),
                        ("three_ds_routed", "Routed", "int"),
                        ("three_ds_challenged", "Challenged", "int"),
                        ("three_ds_authenticated", "Authenticated", "int"),
                        ("approved_after_authentication", "Approved", "int"),
                        ("challenge_rate", "Challenge rate", "pct"),
                        ("authentication_rate", "Authentication rate", "pct"),
                        ("approval_rate_after_authentication", "Approval after", "pct"),
                    ],
                    order=(("transactions", True),),
                    height=3,
                )
            ],
        ]
    ),
    filters=(network_filter(THREE_DS, THREE_DS_STAGES),),
)
