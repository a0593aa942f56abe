"""The columnar fast path accepts only what the contract's pydantic model accepts, with the same values,
and ``parse_array`` gives exactly ``parse_values``' verdicts, reasons and table."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import orjson
import pyarrow as pa
import pytest
from pydantic import ValidationError

from payments_core.contract.clock import EventClock
from payments_core.contract.events import TransactionEvent
from services.stream_processor.columnar import SMALLEST_READ, ColumnarValidator
from services.stream_processor.parse import COLUMNAR, TX_ARROW_SCHEMA, models_table, parse_array, parse_values
from tests.services.stream_processor.conftest import make_events

BASE = make_events(1, seed=11)[0]
RAW = orjson.dumps(BASE)


def _with(**changes) -> bytes:
    return orjson.dumps({**BASE, **changes})


def _without(name: str) -> bytes:
    return orjson.dumps({k: v for k, v in BASE.items() if k != name})


def _replace(old: bytes, new: bytes) -> bytes:
    assert old in RAW
    return RAW.replace(old, new, 1)


def _variants() -> list[bytes | None]:
    """Every kind of deviation from a valid record, per field of the contract, plus raw-JSON oddities."""
    props = TransactionEvent.model_json_schema()["properties"]
    out: list[bytes | None] = []
    for name, prop in props.items():
        out += [
            _without(name),
            _with(**{name: None}),
            _with(**{name: {"x": 1}}),
            _with(**{name: [1]}),
            _with(**{name: "1"}),
            _with(**{name: 1}),
            _with(**{name: 1.0}),
            _with(**{name: 1.5}),
            _with(**{name: True}),
            _with(**{name: ""}),
        ]
        spec = prop["anyOf"][0] if "anyOf" in prop else prop
        for value in spec.get("enum", []):
            out += [_with(**{name: value}), _with(**{name: value.lower()}), _with(**{name: value + " "})]
        for key in ("minimum", "maximum"):
            if key in spec:
                bound = spec[key]
                step = 1 if spec["type"] == "integer" else 1e-9
                out += [
                    _with(**{name: bound}),
                    _with(**{name: bound - step}),
                    _with(**{name: bound + step}),
                    _with(**{name: float(bound)}),
                ]
        for key in ("minLength", "maxLength"):
            if key in spec:
                length = spec[key]
                out += [
                    _with(**{name: "é" * length}),
                    _with(**{name: "a" * (length + 1)}),
                    _with(**{name: "a" * max(0, length - 1)}),
                ]
        if "pattern" in spec:
            value = BASE[name]
            out += [
                _with(**{name: value.lower()}),
                _with(**{name: value + "0"}),
                _with(**{name: value[:-1]}),
                _with(**{name: value + "\n"}),
                _with(**{name: " " + value}),
            ]
    for stamp in (
        "2026-03-02T12:00:00Z",
        "2026-03-02T12:00:00.123456Z",
        "2026-03-02T12:00:00.1234567Z",
        "2026-03-02T12:00:00+01:00",
        "2026-03-02T12:00:00-03:30",
        "2026-03-02T12:00:00",
        "2026-03-02 12:00:00Z",
        "2026-03-02t12:00:00z",
        "2026-03-02",
        "2026-03-02T12:00Z",
        "2026-02-30T12:00:00Z",
        "2026-03-02T24:00:00Z",
        "2026-03-02T12:00:60Z",
        "0000-03-02T12:00:00Z",
        "2026-03-02T12:00:00+24:00",
        "1772452800",
        "now",
    ):
        out.append(_with(event_timestamp=stamp))
    out += [_with(event_timestamp=1772452800), _with(event_timestamp=1772452800.5)]
    # ahead of the server clock by more than the allowed skew: refused by the contract, never accepted here
    ahead = datetime.now(UTC) + timedelta(days=1)
    out += [
        _with(event_timestamp="2999-01-01T00:00:00Z"),
        _with(event_timestamp=ahead.isoformat()),
        _with(event_timestamp=ahead.strftime("%Y-%m-%dT%H:%M:%SZ")),
    ]
    out += [
        RAW,
        b"  " + RAW,
        b"\n" + RAW,
        RAW + b"\n",
        RAW + b" " + RAW,
        RAW + RAW,
        b"",
        b"   ",
        None,
        b"null",
        b"[]",
        b"{}",
        b"\xff" + RAW,
        RAW[:-1],
        RAW[:-1] + b',"surprise":1}',
        RAW[:-1] + b',"amount_minor":7}',
        RAW[:-1] + b',"\\u0061mount_minor":7}',
        _replace(b'"merchant_id"', b'"merchant\\u005fid"'),
        _replace(b'"uses_3ds":', b'"uses\\u005f3ds":null,"x":'),
        _with(merchant_id="m\\u00e9"),
        _with(merchant_id="tab\there"),
        _with(merchant_id="\ufffd"),
        _replace(b'"merchant_id":"', b'"merchant_id":"\\ud800'),  # a lone surrogate, escaped
        _replace(b'"fraud_score":', b'"fraud_score":NaN,"f":'),
        _replace(b'"fraud_score":', b'"fraud_score":Infinity,"f":'),
        _with(fraud_score=0),
        _with(fraud_score=1),
        _with(amount_minor=-0),
        _replace(b'"amount_minor":', b'"amount_minor":100000000000000000000,"a":'),
        _replace(b'"amount_minor":', b'"amount_minor":1e3,"a":'),
        _replace(b'"amount_minor":', b'"amount_minor": 0012,"a":'),
    ]
    return out


VARIANTS = _variants()


def _pydantic(raw: bytes | None) -> TransactionEvent | None:
    if raw is None:
        return None
    try:
        return TransactionEvent.model_validate_json(raw)
    except ValidationError:
        return None


def test_the_fast_path_accepts_only_what_the_contract_accepts_with_the_same_values():
    fast = []
    bound = {"event_timestamp": EventClock.current().latest}  # what parse_array passes: the contract's clock
    for raw in VARIANTS:  # one by one: a record the batch read fails on is not read at all
        table, accepted, others = COLUMNAR.validate(pa.array([raw], pa.binary()), latest=bound)
        assert len(accepted) + len(others) == 1 and table.num_rows == len(accepted)
        if len(accepted):
            model = _pydantic(raw)
            assert model is not None, raw
            assert table.equals(models_table([model])), raw
            fast.append(raw)
    # and it is the fast path for most of what the contract accepts (not everything sent to pydantic)
    valid = [raw for raw in VARIANTS if _pydantic(raw) is not None]
    assert len(fast) >= 0.6 * len(valid)


def test_parse_array_gives_parse_values_verdicts_reasons_and_table():
    # the variants one by one between valid records, so each bad record's batch read fails and is halved
    valid = [orjson.dumps(e) for e in make_events(300, seed=4)]
    values = []
    for i, raw in enumerate(VARIANTS):
        values += [valid[i % len(valid)], raw]
    values += valid
    clock = EventClock.current()  # one reading for both (the reasons of a future event time say how far ahead)
    fast, slow = parse_array(pa.array(values, pa.binary()), clock=clock), parse_values(values, clock=clock)
    assert fast.valid_rows == slow.valid_rows
    assert fast.invalid == slow.invalid
    assert fast.table.schema == TX_ARROW_SCHEMA
    assert fast.table.equals(slow.table)


def test_a_few_bad_records_do_not_send_the_rest_of_the_batch_to_pydantic():
    values = [orjson.dumps(e) for e in make_events(2_000, seed=5)]
    bad = [17, 900, 901, 1999]
    for i in bad:
        values[i] = values[i][:-1] + b',"surprise":1}'
    table, accepted, others = COLUMNAR.validate(pa.array(values, pa.binary()))
    assert set(bad) <= set(others.tolist())
    assert len(others) <= 3 * SMALLEST_READ  # three failing reads of at most SMALLEST_READ records
    assert len(accepted) == table.num_rows == 2_000 - len(others)


def test_a_stream_of_mostly_bad_records_is_not_read_record_by_record():
    values = [orjson.dumps(e) for e in make_events(1_000, seed=6)]
    for i in range(0, 1_000, 2):
        values[i] = b'{"transaction_id": '  # an object that does not end: the batch read fails
    reads = []
    original = COLUMNAR._read
    try:
        object.__setattr__(COLUMNAR, "_read", lambda subset: (reads.append(len(subset)), original(subset))[1])
        table, _accepted, others = COLUMNAR.validate(pa.array(values, pa.binary()))
    finally:
        object.__delattr__(COLUMNAR, "_read")
    assert len(others) == 1_000 and table.num_rows == 0  # every chunk of 32 has a bad record
    assert len(reads) < 2 * 1_000 / SMALLEST_READ + 2


def test_a_constraint_the_fast_path_does_not_know_stops_it_at_import():
    schema = TransactionEvent.model_json_schema()
    schema["properties"]["merchant_id"]["multipleOf"] = 3
    with pytest.raises(ValueError, match="multipleOf"):
        ColumnarValidator.from_json_schema(schema, TX_ARROW_SCHEMA)
