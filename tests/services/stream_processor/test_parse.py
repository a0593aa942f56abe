"""Contract validation of raw records: exactly the pydantic contract, reasons name the field."""

from __future__ import annotations

import base64
from datetime import UTC, datetime, timedelta

import orjson
import pyarrow as pa
import pytest
from pydantic import ValidationError

from payments_core.contract.clock import EventClock
from payments_core.contract.events import TransactionEvent
from services.stream_processor.parse import TX_ARROW_SCHEMA, DeadLetter, dead_letter, parse_array, parse_values
from tests.services.stream_processor.conftest import make_events

VALID = make_events(1, seed=3)[0]


def _without(field: str) -> dict:
    return {k: v for k, v in VALID.items() if k != field}


# (raw value, field the first reason must name, pydantic error type)
BAD = [
    (b'{"transaction_id": "txn_', "$", "json_invalid"),
    (b"\xff\xfe not utf-8", "$", "json_invalid"),
    (b"[1, 2]", "$", "model_type"),
    (None, "$", "missing_value"),
    (orjson.dumps(_without("merchant_id")), "merchant_id", "missing"),
    (orjson.dumps({**VALID, "card_network": "elo"}), "card_network", "literal_error"),
    (orjson.dumps({**VALID, "amount_minor": -5}), "amount_minor", "greater_than_equal"),
    (orjson.dumps({**VALID, "transaction_id": "TXN-1"}), "transaction_id", "string_pattern_mismatch"),
    (orjson.dumps({**VALID, "surprise": 1}), "surprise", "extra_forbidden"),
    (orjson.dumps({**VALID, "fraud_score": 1.5}), "fraud_score", "less_than_equal"),
    (orjson.dumps({**VALID, "merchant_id": 123}), "merchant_id", "string_type"),
    (orjson.dumps({**VALID, "uses_3ds": None}), "uses_3ds", "bool_type"),
    (orjson.dumps({**VALID, "schema_version": 2}), "schema_version", "literal_error"),
    # a client clock years ahead: would wipe the card's and merchant's velocity windows
    (orjson.dumps({**VALID, "event_timestamp": "2999-01-01T00:00:00Z"}), "event_timestamp", "event_in_future"),
]


def test_each_kind_of_bad_record_is_refused_with_a_reason_naming_the_field():
    values = [orjson.dumps(VALID)] + [raw for raw, _, _ in BAD]
    parsed = parse_values(values)
    assert parsed.valid_rows == [0]
    assert sorted(parsed.invalid) == list(range(1, len(values)))
    for i, (raw, field, kind) in enumerate(BAD, start=1):
        reasons = parsed.invalid[i]
        assert (reasons[0].field, reasons[0].type) == (field, kind), (raw, reasons)
        assert reasons[0].message


def test_verdicts_agree_with_the_contract_model_including_coercions():
    # What POST /score (pydantic) accepts, the stream accepts, with the same coerced values.
    # The contract is strict about JSON types (an integral 1234.0 is an integer, "1234" is not) and
    # normalises timestamps with an offset to UTC.
    coerced = {**VALID, "amount_minor": 1234.0, "uses_3ds": True, "event_timestamp": "2026-03-02T12:00:00+01:00"}
    values = [
        orjson.dumps(coerced),
        orjson.dumps({**VALID, "amount_minor": 12.5}),
        orjson.dumps({**VALID, "amount_minor": "1234"}),
        orjson.dumps({**VALID, "uses_3ds": "true"}),
    ]
    parsed = parse_values(values)
    for i, raw in enumerate(values):
        try:
            TransactionEvent.model_validate_json(raw)
            ok = True
        except ValidationError:
            ok = False
        assert (i in parsed.valid_rows) == ok
    assert list(parsed.valid_rows) == [0]
    row = parsed.table.to_pylist()[0]
    assert row["amount_minor"] == 1234 and row["uses_3ds"] is True
    assert row["event_timestamp"].isoformat() == "2026-03-02T11:00:00+00:00"  # normalised to UTC


def test_valid_rows_come_back_typed_by_the_contract():
    events = make_events(50, seed=9)
    parsed = parse_values([orjson.dumps(e) for e in events])
    assert parsed.table.schema == TX_ARROW_SCHEMA
    assert parsed.table.num_rows == 50
    assert parsed.table.column("amount_minor").type == pa.int64()
    assert parsed.table.column("transaction_id").to_pylist() == [e["transaction_id"] for e in events]
    assert parsed.table.column("antifraud_result").to_pylist() == [e["antifraud_result"] for e in events]


def test_dead_letter_keeps_the_raw_bytes_and_where_they_came_from():
    raw = b"\x00\xffbroken"
    letter = dead_letter(
        parse_values([raw]).invalid[0], raw=raw, topic="t", partition=3, offset=41, timestamp=None, key=b"card-1"
    )
    again = DeadLetter.model_validate_json(letter.model_dump_json())
    assert base64.b64decode(again.raw_base64) == raw
    assert again.raw_text is None  # not UTF-8
    assert (again.source_topic, again.source_partition, again.source_offset) == ("t", 3, 41)
    assert base64.b64decode(again.source_key_base64) == b"card-1"
    assert again.error.startswith("$: Invalid JSON")


@pytest.mark.parametrize("n", [0, 1])
def test_empty_and_single_batches(n):
    parsed = parse_values([orjson.dumps(VALID)] * n)
    assert parsed.table.num_rows == n and not parsed.invalid


def test_event_times_ahead_of_the_clock_plus_the_skew_are_refused_on_both_paths():
    now = datetime.now(UTC)
    stamps = [
        now - timedelta(days=1),
        now + timedelta(seconds=250),
        now + timedelta(seconds=400),
        now + timedelta(days=1),
    ]
    records = [orjson.dumps({**VALID, "event_timestamp": s.isoformat()}) for s in stamps]
    clock = EventClock(now, 300)
    # a batch big enough for the columnar path, the four records in it, and the small-batch path
    filler = [orjson.dumps(e) for e in make_events(300, seed=8)]
    fast = parse_array(pa.array(filler + records, pa.binary()), clock=clock)
    slow = parse_values(records, clock=clock)
    assert sorted(fast.invalid) == [302, 303] and sorted(slow.invalid) == [2, 3]
    for reasons in [*fast.invalid.values(), *slow.invalid.values()]:
        assert (reasons[0].field, reasons[0].type) == ("event_timestamp", "event_in_future")
        assert "ahead of the server clock" in reasons[0].message
    # a clock one hour later accepts all but the day-ahead one
    later = EventClock(now + timedelta(hours=1), 300)
    assert sorted(parse_array(pa.array(filler + records, pa.binary()), clock=later).invalid) == [303]
