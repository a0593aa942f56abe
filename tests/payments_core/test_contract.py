"""The contract is defined once; pydantic, JSON Schema and Spark StructType agree."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import orjson
import pytest
from pydantic import ValidationError

from payments_core.contract import (
    CONTEXT_HEADER,
    DEFAULT_MAX_EVENT_SKEW_SECONDS,
    DecisionEvent,
    EventClock,
    TransactionEvent,
    TransactionRequest,
    check_decision_record,
    configure_max_event_skew,
    from_minor_units,
    json_schemas,
    to_minor_units,
)
from payments_core.contract.decision_records import context_header
from payments_core.contract.serde import DEFAULT_SERDE
from payments_core.samples import sample_request as simulated
from payments_core.settings import CommonSettings
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


# ------------------------------------------------------------------------------------------ event time
def _stamp(delta: timedelta) -> str:
    return (datetime.now(UTC) + delta).isoformat()


def test_an_event_time_ahead_of_the_server_clock_is_refused_naming_the_field():
    with pytest.raises(ValidationError) as err:
        TransactionRequest(**sample_request(event_timestamp=_stamp(timedelta(days=1))))
    error = err.value.errors()[0]
    assert error["loc"] == ("event_timestamp",) and error["type"] == "event_in_future"
    assert "ahead of the server clock" in error["msg"] and "300 s" in error["msg"]
    # the event as it flows on the topic too, and a naive time (read as UTC) the same way
    with pytest.raises(ValidationError, match="event_timestamp"):
        TransactionEvent(
            **sample_request(event_timestamp=_stamp(timedelta(hours=2))), is_approved=True, processing_time_ms=1
        )
    naive = (datetime.now(UTC) + timedelta(hours=2)).replace(tzinfo=None).isoformat()
    with pytest.raises(ValidationError, match="event_timestamp"):
        TransactionRequest(**sample_request(event_timestamp=naive))
    # within the allowed skew, and the past, are fine
    TransactionRequest(**sample_request(event_timestamp=_stamp(timedelta(seconds=200))))
    TransactionRequest(**sample_request(event_timestamp="2020-01-01T00:00:00Z"))


def test_the_skew_comes_from_the_setting_or_the_validation_context(monkeypatch):
    ahead = sample_request(event_timestamp=_stamp(timedelta(minutes=20)))
    monkeypatch.delenv("PA_MAX_EVENT_SKEW_SECONDS", raising=False)
    assert CommonSettings(_env_file=None).max_event_skew_seconds == DEFAULT_MAX_EVENT_SKEW_SECONDS == 300
    try:
        monkeypatch.setenv("PA_MAX_EVENT_SKEW_SECONDS", "3600")
        configure_max_event_skew(None)  # read the environment again
        assert TransactionRequest(**ahead).transaction_id  # 20 minutes ahead: within an hour
        configure_max_event_skew(60)  # what a service sets from its settings
        with pytest.raises(ValidationError, match="at most 60 s"):
            TransactionRequest(**ahead)
    finally:
        configure_max_event_skew(None)
    # a clock passed in the validation context wins (one reading for a whole batch)
    clock = EventClock(datetime.now(UTC) + timedelta(hours=1), 0)
    assert TransactionRequest.model_validate(ahead, context=clock.context()).transaction_id
    with pytest.raises(ValidationError, match="event_timestamp"):
        TransactionRequest.model_validate(ahead, context=EventClock(datetime.now(UTC), 0).context())


# ------------------------------------------------------------------------------------------ decision records
def _decision(**changes) -> dict:
    base = {
        "decision_id": "d1",
        "transaction_id": "txn_0123456789abcdef",
        "outcome": "approve",
        "approval_probability": 0.9,
        "risk_score": 0.1,
        "recommended_route": "standard",
        "reason_codes": [],
        "rule_set_version": "rs-1",
        "model_versions": {"approval": "1"},
        "latency_ms": 1.5,
        "decided_at": "2026-11-27T10:00:00Z",
        "source": "stream",
    }
    base.update(changes)
    return base


def test_decision_records_are_checked_against_the_contract_value_and_header():
    valid = orjson.dumps(_decision())
    context = orjson.dumps({"merchant_id": "m_1", "amount_minor": 5400, "currency": "BRL", "event_timestamp_ms": 1})
    assert isinstance(check_decision_record(valid), DecisionEvent)
    assert isinstance(check_decision_record(valid, context), DecisionEvent)
    assert isinstance(check_decision_record(valid, b'{"a_field_added_later": 1}'), DecisionEvent)
    refused = {
        b"{not json": ("$", "json_invalid"),
        orjson.dumps(_decision(outcome="steal")): ("outcome", "literal_error"),
        orjson.dumps({k: v for k, v in _decision().items() if k != "decision_id"}): ("decision_id", "missing"),
        orjson.dumps(_decision(amount=12.5)): ("amount", "extra_forbidden"),
        orjson.dumps(_decision(risk_score=1.5)): ("risk_score", "less_than_equal"),
    }
    for raw, (field, kind) in refused.items():
        reasons = check_decision_record(raw)
        assert isinstance(reasons, list) and (reasons[0].field, reasons[0].type) == (field, kind), (raw, reasons)
    assert check_decision_record(None)[0].type == "missing_value"  # type: ignore[index]
    for header, field in (
        (b'{"amount_minor": 12.5}', "pa.context.amount_minor"),  # not integer minor units
        (b'{"amount_minor": "54.00"}', "pa.context.amount_minor"),
        (b'{"currency": "XXX"}', "pa.context.currency"),
        (b"[]", "pa.context"),
    ):
        reasons = check_decision_record(valid, header)
        assert isinstance(reasons, list) and reasons[0].field == field, (header, reasons)
    assert context_header([("other", b"x"), (CONTEXT_HEADER, b"{}")]) == b"{}"
    assert context_header({CONTEXT_HEADER.encode(): None}) == b""  # type: ignore[dict-item]
    assert context_header(None) is None


def test_field_values_is_model_dump_for_every_field_kind():
    """``TransactionRequest.field_values`` (the scoring API's hot path) reads the model's ``__dict__``:
    that is ``model_dump()`` only while every field is a scalar (no nested model, list or dict, which
    model_dump would rebuild) and the model has no computed fields."""
    scalar = (str, int, float, bool, datetime, type(None))
    for name, field in TransactionRequest.model_fields.items():
        kinds = [a for a in (field.annotation, *getattr(field.annotation, "__args__", ())) if isinstance(a, type)]
        assert not any(issubclass(k, (dict, list, tuple, set)) or hasattr(k, "model_fields") for k in kinds), name
    assert not TransactionRequest.model_computed_fields
    rng = random.Random(5)
    requests = [TransactionRequest(**simulated(rng)) for _ in range(300)]
    requests.append(TransactionRequest(**sample_request(event_timestamp="2026-11-27T10:00:00+03:00")))
    requests.append(TransactionRequest.model_validate_json(orjson.dumps(sample_request(is_retry=True, retry_count=2))))
    for tx in requests:
        dumped, values = tx.model_dump(), tx.field_values()
        assert list(values.items()) == list(dumped.items())
        assert [type(v) for v in values.values()] == [type(v) for v in dumped.values()]
        assert all(isinstance(v, scalar) for v in values.values())
        assert values is not tx.field_values()  # a copy: the caller may not change the frozen model
