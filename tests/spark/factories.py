"""Small hand-made contract events and bronze frames for the Spark tests."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from payments_core.contract.events import TransactionEvent
from payments_core.contract.serde import DEFAULT_SERDE

T0 = datetime(2026, 11, 2, 12, 0, tzinfo=UTC)  # a Monday


def event(n: int = 0, **kw: Any) -> dict[str, Any]:
    """A valid TransactionEvent as a dict; ``n`` makes the id unique."""
    base: dict[str, Any] = dict(
        transaction_id=f"txn_{n:016x}",
        event_timestamp=T0 + timedelta(minutes=n),
        merchant_id="m_000001",
        merchant_segment="Retail",
        cardholder_id="ch_0001",
        card_token_id="tok_0001",
        card_bin="411111",
        card_network="visa",
        payment_method_type="credit",
        issuer_country="BR",
        geo_country="BR",
        amount_minor=5400,
        currency="BRL",
        entry_system="CHECKOUT",
        flow_type="standard_ecom",
        entry_mode="ecommerce",
        payment_solution="standard",
        device_type="mobile_app",
        device_fingerprint="dev_0001",
        ip_address="177.0.0.1",
        fraud_score=0.1,
        aml_risk_score=0.05,
        device_trust_score=0.9,
        is_approved=True,
        processing_time_ms=200,
    )
    base.update(kw)
    if not base["is_approved"] and "decline_reason" not in kw:
        base["decline_reason"] = "INSUFFICIENT_FUNDS"
    return TransactionEvent(**base).model_dump(mode="json")


def as_json(record: dict[str, Any]) -> str:
    return DEFAULT_SERDE.dumps(record).decode()


def bronze_frame(
    spark,
    values: list[str | dict[str, Any]],
    *,
    topic: str = "payments.transactions",
    start: datetime = T0,
    step_s: int = 1,
):
    """A bronze_transactions-shaped batch frame of the given raw records (dicts are JSON-encoded)."""
    rows = []
    for i, v in enumerate(values):
        raw = as_json(v) if isinstance(v, dict) else v
        ts = start + timedelta(seconds=i * step_s)
        rows.append((f"k{i}", raw, topic, 0, i, ts, None, ts))
    schema = (
        "record_key string, record_value string, topic string, kafka_partition int, kafka_offset long, "
        "kafka_timestamp timestamp, kafka_headers map<string,string>, ingested_at timestamp"
    )
    return spark.createDataFrame(rows, schema)
