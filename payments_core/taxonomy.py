"""Decline taxonomy: one table used by the simulator (raw codes), silver enrichment, the decision
core's retry advice and the gold views. Raw codes follow ISO 8583 response codes."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class DeclineClass:
    reason: str  # standard reason (contract enum DeclineReason)
    raw_code: str  # ISO 8583 response code the processor returns
    group: str  # funds | card_data | technical | issuer_policy | fraud | authentication
    soft: bool  # soft declines may succeed on retry; hard declines never do
    recommended_action: str
    retry_after_seconds: int | None  # None: do not retry
    max_attempts: int


DECLINES: dict[str, DeclineClass] = {
    d.reason: d
    for d in (
        DeclineClass("INSUFFICIENT_FUNDS", "51", "funds", True, "retry_after_payday_window", 6 * 3600, 3),
        DeclineClass("LIMIT_EXCEEDED", "61", "funds", True, "retry_next_day_or_split", 24 * 3600, 2),
        DeclineClass("EXPIRED_CARD", "54", "card_data", False, "request_card_update", None, 0),
        DeclineClass("CVV_MISMATCH", "N7", "card_data", False, "ask_customer_to_reenter_cvv", None, 0),
        DeclineClass("ISSUER_UNAVAILABLE", "91", "technical", True, "retry_now_or_reroute", 30, 3),
        DeclineClass("DO_NOT_HONOR", "05", "issuer_policy", True, "retry_with_3ds_or_network_token", 3600, 2),
        DeclineClass("FRAUD_SUSPECTED", "59", "fraud", False, "do_not_retry_review_risk", None, 0),
        DeclineClass("3DS_AUTH_FAILED", "R1", "authentication", False, "do_not_retry_ask_customer", None, 0),
    )
}

RAW_CODE_TO_REASON: dict[str, str] = {d.raw_code: d.reason for d in DECLINES.values()}
SOFT_DECLINES: frozenset[str] = frozenset(r for r, d in DECLINES.items() if d.soft)
