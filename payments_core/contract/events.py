"""Transaction and decision events (SPEC "Transaction event" and "Decisions").

These pydantic models are the one definition of the contract. Field groups:

* ``TransactionRequest``: what a merchant / gateway knows before authorisation; ``POST /score``
  takes exactly this.
* ``TransactionEvent``: the request plus the processor's outcome and the hidden ground-truth fraud
  label; this is what flows on ``payments.transactions``.
* ``DecisionEvent``: what ``POST /score`` returns and the stream processor publishes on
  ``payments.decisions``.

Money is integer minor units (``amount_minor`` + ``currency``). Scores are plain floats in [0, 1].
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Final, Literal, get_args

from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field, ValidationInfo, field_validator

from payments_core.contract.clock import clock_of

SCHEMA_VERSION: Final = 1

MerchantSegment = Literal["Travel", "Retail", "Gaming", "Digital", "Entertainment", "Grocery", "Fuel", "Subscription"]
CardNetwork = Literal["visa", "mastercard", "amex", "discover"]
PaymentMethodType = Literal["credit", "debit"]
Currency = Literal["BRL", "USD", "MXN", "ARS", "CLP", "EUR"]
EntrySystem = Literal["PD", "WS", "SEP", "CHECKOUT"]
FlowType = Literal["payment_link", "payment_link_sep", "recurring", "legacy_ws", "standard_ecom"]
EntryMode = Literal["ecommerce", "card_on_file", "in_app", "moto"]
PaymentSolution = Literal["standard", "3ds", "network_token", "passkey", "apple_pay", "google_pay"]
DeviceType = Literal["desktop", "mobile_web", "mobile_app", "tablet"]
AntifraudResult = Literal["pass", "review", "fail"]
DeclineReason = Literal[
    "INSUFFICIENT_FUNDS",
    "LIMIT_EXCEEDED",
    "EXPIRED_CARD",
    "CVV_MISMATCH",
    "ISSUER_UNAVAILABLE",
    "DO_NOT_HONOR",
    "FRAUD_SUSPECTED",
    "3DS_AUTH_FAILED",
]
DecisionOutcome = Literal["approve", "challenge_3ds", "review", "decline"]

COUNTRY = Annotated[str, Field(pattern=r"^[A-Z]{2}$", examples=["BR"])]
SCORE = Annotated[float, Field(ge=0.0, le=1.0)]


def _integral(value: Any) -> Any:
    # JSON Schema counts 1000.0 as an integer, strict pydantic does not: accept integral floats
    # (exactly), keep refusing strings and fractions.
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value


# An integer as JSON Schema means it: 54 and 54.0, never "54" or 54.5.
JsonInt = Annotated[int, BeforeValidator(_integral)]


def _upper(value: str) -> str:
    return value.upper()


def enum_values(literal: Any) -> tuple[str, ...]:
    """The allowed values of one of the Literal enums above (for generators and SQL)."""
    return tuple(get_args(literal))


class _Model(BaseModel):
    # Unknown fields are an error: a misspelt field must not be silently ignored. Strict types: the
    # JSON Schema says boolean/integer/number, so 0 for a boolean or "54" for an amount is refused
    # too (timestamps are the one field parsed from a string).
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)


class TransactionRequest(_Model):
    """A card-not-present transaction as known before authorisation."""

    schema_version: Annotated[Literal[1], BeforeValidator(_integral)] = Field(
        SCHEMA_VERSION, description="Contract version"
    )
    transaction_id: str = Field(
        pattern=r"^txn_[0-9a-f]{16}$", description="Unique id", examples=["txn_00c0ffee00c0ffee"]
    )
    event_timestamp: datetime = Field(
        strict=False,
        description="When the transaction was attempted (UTC); at most PA_MAX_EVENT_SKEW_SECONDS (default 300) "
        "later than the server's clock",
    )
    merchant_id: str = Field(min_length=1, max_length=64, examples=["m_000123"])
    merchant_segment: MerchantSegment
    cardholder_id: str = Field(min_length=1, max_length=64, examples=["ch_0004567"])
    card_token_id: str = Field(min_length=1, max_length=64, examples=["tok_0009876"])
    card_bin: str = Field(pattern=r"^[0-9]{6,8}$", examples=["411111"])
    card_network: CardNetwork
    payment_method_type: PaymentMethodType
    issuer_country: Annotated[COUNTRY, AfterValidator(_upper)]
    geo_country: Annotated[COUNTRY, AfterValidator(_upper)]
    amount_minor: JsonInt = Field(ge=0, le=10**12, description="Amount in integer minor units")
    currency: Currency
    entry_system: EntrySystem
    flow_type: FlowType
    entry_mode: EntryMode
    payment_solution: PaymentSolution
    device_type: DeviceType
    device_fingerprint: str = Field(min_length=1, max_length=128)
    ip_address: str = Field(min_length=3, max_length=45)
    uses_3ds: bool = False
    three_ds_routed: bool = False
    three_ds_friction: bool = False
    three_ds_authenticated: bool = False
    antifraud_used: bool = False
    antifraud_result: AntifraudResult | None = None
    is_network_token: bool = False
    has_passkey: bool = False
    is_recurring: bool = False
    is_retry: bool = False
    retry_count: JsonInt = Field(0, ge=0, le=50)
    attempt_number: JsonInt = Field(1, ge=1, le=51)
    previous_decline_code: DeclineReason | None = None
    fraud_score: SCORE = Field(description="Upstream fraud score, 0 (safe) to 1 (fraud)")
    aml_risk_score: SCORE
    device_trust_score: SCORE = Field(description="1 = fully trusted device")

    @field_validator("event_timestamp")
    @classmethod
    def _not_ahead_of_the_server_clock(cls, value: datetime, info: ValidationInfo) -> datetime:
        # a future event time would trim the velocity windows of the present (see contract.clock)
        return clock_of(info.context).check(value)

    def field_values(self) -> dict[str, Any]:
        """``model_dump()``'s dict in a tenth of its time (the scoring API's hot path): the model is
        frozen and flat (scalar fields only; no extras, no computed fields), so its ``__dict__`` holds
        exactly those values, in field order. ``tests/payments_core/test_contract.py`` holds the two
        equal and the fields scalar."""
        return dict(self.__dict__)


class TransactionEvent(TransactionRequest):
    """A transaction with the processor's outcome, as produced to ``payments.transactions``."""

    is_approved: bool
    decline_reason: DeclineReason | None = None
    decline_code_raw: str | None = Field(None, max_length=16)
    processing_time_ms: JsonInt = Field(ge=0, le=600_000)
    # Hidden ground truth (chargeback-confirmed fraud). Never a model feature; used for training
    # labels and backtests only.
    is_fraud: bool = False


class RetryAdvice(_Model):
    should_retry: bool
    retry_after_seconds: JsonInt | None = Field(None, ge=0)
    max_attempts: JsonInt = Field(ge=0)


class ReasonCode(_Model):
    code: str = Field(description="Rule id or model factor name")
    kind: Literal["rule", "model_factor", "policy"]
    detail: str = ""


class DecisionEvent(_Model):
    """One decision per transaction: the body of ``POST /score`` and of ``payments.decisions``."""

    schema_version: Annotated[Literal[1], BeforeValidator(_integral)] = SCHEMA_VERSION
    decision_id: str = Field(description="Deterministic id: same inputs and versions, same id")
    transaction_id: str
    outcome: DecisionOutcome
    approval_probability: SCORE
    risk_score: SCORE
    recommended_route: PaymentSolution
    retry: RetryAdvice | None = Field(None, description="Present for declines only")
    reason_codes: list[ReasonCode]
    shadow_reason_codes: list[ReasonCode] = Field(
        default_factory=list, description="Shadow rules that fired; never change the outcome"
    )
    challenger_outcome: DecisionOutcome | None = Field(
        None, description="What the challenger model would have decided (logged only)"
    )
    rule_set_version: str
    model_versions: dict[str, str]
    latency_ms: float = Field(ge=0.0)
    decided_at: datetime = Field(strict=False)
    source: Literal["api", "stream", "backtest"]


def json_schemas() -> dict[str, dict[str, Any]]:
    """JSON Schema of every contract event, derived from the models above."""
    return {
        "TransactionRequest": TransactionRequest.model_json_schema(),
        "TransactionEvent": TransactionEvent.model_json_schema(),
        "DecisionEvent": DecisionEvent.model_json_schema(),
    }
