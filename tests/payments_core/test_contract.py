"""The contract is defined once; pydantic, JSON Schema and Spark StructType agree."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

import pytest
from pydantic import ValidationError

from payments_core.contract import (
    DecisionEvent,
    TransactionEvent,
    TransactionRequest,
    from_minor_units,
    json_schemas,
    to_minor_units,
)
from payments_core.contract.serde import DEFAULT_SERDE
from spark.common.schema import struct_type_for


def sample_request(**overrides) -> dict:
    base = dict(
        transaction_id="txn_0123456789abcdef",
        event_timestamp="2026-11-27T10:00:00Z",
        merchant_id="m_1",
        merchant_segment="Retail",
        cardholder_id="ch_1",
        card_token_id="tok_1",
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
        device_type="mobile_web",
        device_fingerprint="dev_1",
        ip_address="10.0.0.1",
        fraud_score=0.1,
        aml_risk_score=0.05,
        device_trust_score=0.9,
    )
    base.update(overrides)
    return base


def test_json_schema_and_spark_schema_have_the_same_fields():
    schemas = json_schemas()
    for model in (TransactionRequest, TransactionEvent, DecisionEvent):
        json_fields = set(schemas[model.__name__]["properties"])
        spark_fields = {f.name for f in struct_type_for(model).fields}
        assert json_fields == spark_fields == set(model.model_fields)
    assert set(TransactionRequest.model_fields) < set(TransactionEvent.model_fields)


def test_required_fields_agree_between_json_schema_and_spark_nullability():
    schema = json_schemas()["TransactionEvent"]
    required = set(schema["required"])
    for field in struct_type_for(TransactionEvent).fields:
        assert field.nullable == (field.name not in required), field.name


def test_money_is_integer_minor_units_never_float():
    schema = json_schemas()["TransactionRequest"]["properties"]
    assert schema["amount_minor"]["type"] == "integer"
    assert not any(p.get("type") == "number" and "amount" in n for n, p in schema.items())
    assert to_minor_units(Decimal("54.305"), "BRL") == 5430  # banker's rounding
    assert to_minor_units("1999", "CLP") == 1999
    assert from_minor_units(5431, "BRL") == Decimal("54.31")
    with pytest.raises(ValidationError):
        TransactionRequest(**sample_request(amount_minor=54.5))


def test_invalid_event_names_the_field():
    with pytest.raises(ValidationError) as err:
        TransactionRequest(**sample_request(card_network="diners"))
    assert err.value.errors()[0]["loc"] == ("card_network",)
    with pytest.raises(ValidationError) as err:
        TransactionRequest(**sample_request(unknown_field=1))
    assert err.value.errors()[0]["loc"] == ("unknown_field",)


def test_serde_round_trip():
    event = TransactionEvent(**sample_request(), is_approved=True, processing_time_ms=180)
    payload = DEFAULT_SERDE.dumps(event.model_dump(mode="json"))
    back = TransactionEvent.model_validate(DEFAULT_SERDE.loads(payload))
    assert back == event
    assert back.event_timestamp == datetime(2026, 11, 27, 10, tzinfo=UTC)
    assert back.schema_version == 1
