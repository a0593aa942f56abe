"""Similar past transactions in the core: the vector (one encoding for a lakehouse row and a /score
body), the usearch index with its outcome sidecar (add, save, memory-mapped open), the neighbours' mix."""

from __future__ import annotations

import json
import random
import subprocess
import sys
from datetime import UTC, datetime

import numpy as np
import pandas as pd
import pytest

from payments_core.contract.events import TransactionEvent, TransactionRequest
from payments_core.contract.money import from_minor_units
from payments_core.features import VELOCITY_FEATURES
from payments_core.samples import sample_request, synthetic_labels
from payments_core.similarity import (
    NDIM,
    OUTCOME_DTYPE,
    SIMILARITY_FEATURES,
    IndexFormatError,
    SimilarIndex,
    meta_path,
    neighbour_mix,
    outcome_rows,
    outcomes_mix,
    transaction_id_of,
    transaction_key,
    vector_of_request,
    vectors_of_frame,
)


def _events(n: int, seed: int = 11) -> list[dict]:
    """Contract-valid events (request + outcome) as Python dicts."""
    rng = random.Random(seed)
    out = []
    for _ in range(n):
        tx = sample_request(rng)
        labels = synthetic_labels(tx, rng)
        reason = (
            None if labels["is_approved"] else rng.choice(["INSUFFICIENT_FUNDS", "DO_NOT_HONOR", "FRAUD_SUSPECTED"])
        )
        event = {**tx, **labels, "decline_reason": reason, "processing_time_ms": 150}
        out.append(TransactionEvent(**event).model_dump())
    return out


def _body(event: dict) -> dict:
    """The /score body of an event, as the API has it after validation."""
    return TransactionRequest(**{k: v for k, v in event.items() if k in TransactionRequest.model_fields}).model_dump()


def _silver_like(events: list[dict]) -> pd.DataFrame:
    """A frame as Spark's toPandas hands silver rows over: naive UTC timestamps, extra columns."""
    df = pd.DataFrame(events)
    df["event_timestamp"] = pd.to_datetime(df["event_timestamp"], utc=True).dt.tz_localize(None)
    df["amount_usd"] = 1  # silver has more columns than the contract: they are ignored
    return df


def _build(events: list[dict]) -> tuple[SimilarIndex, np.ndarray]:
    df = _silver_like(events)
    vectors = vectors_of_frame(df)
    index = SimilarIndex.empty()
    assert index.add(vectors, outcome_rows(df)) == len(events)
    return index, vectors


def test_a_silver_row_and_a_score_body_give_the_same_vector():
    events = _events(300)
    events[0].update(geo_country="JP", antifraud_result=None, previous_decline_code=None)
    rows = vectors_of_frame(_silver_like(events))
    for event, row in zip(events, rows, strict=True):
        # the body as POST /score validates it: JSON in, TransactionRequest.model_dump() out
        parsed = TransactionRequest.model_validate_json(
            TransactionRequest(**_body(event)).model_dump_json()
        ).model_dump()
        assert np.array_equal(vector_of_request(parsed), row)
    assert rows.shape == (300, NDIM) and rows.dtype == np.float32
    # velocity is left out: a lookup must not depend on (or record) the card's recent history
    assert not set(VELOCITY_FEATURES) & set(SIMILARITY_FEATURES)
    assert len(np.unique(rows, axis=0)) == 300


def test_one_attribute_apart_is_distance_one_and_hours_wrap():
    base = _body(_events(1)[0])
    v = vector_of_request(base)
    other_segment = "Travel" if base["merchant_segment"] != "Travel" else "Retail"
    assert float(((vector_of_request({**base, "merchant_segment": other_segment}) - v) ** 2).sum()) == pytest.approx(
        1.0
    )
    assert float(
        ((vector_of_request({**base, "is_recurring": not base["is_recurring"]}) - v) ** 2).sum()
    ) == pytest.approx(1.0)

    def at(hour: int, minute: int = 0) -> np.ndarray:
        return vector_of_request({**base, "event_timestamp": datetime(2026, 3, 2, hour, minute, tzinfo=UTC)})

    hour = [SIMILARITY_FEATURES.index("hour_cos"), SIMILARITY_FEATURES.index("hour_sin")]
    late, early, noon = at(23, 30)[hour], at(0, 30)[hour], at(12)[hour]
    assert ((late - early) ** 2).sum() == pytest.approx(2 * 0.25 * (1 - np.cos(2 * np.pi / 24)))  # one hour apart
    assert ((late - noon) ** 2).sum() > 0.9  # eleven hours apart: about one attribute


def test_neighbours_include_the_near_duplicate_and_never_the_transaction_itself():
    events = _events(2000)
    target = events[17]
    twin = {**target, "transaction_id": "txn_0000000000777777", "amount_minor": target["amount_minor"] + 1}
    twin["fraud_score"] = min(1.0, target["fraud_score"] + 0.01)
    index, _ = _build([*events, twin])
    row = index.row_of(target["transaction_id"])
    assert row == 17
    result = index.search(index.vector_at(row), 5, exclude_row=row)
    ids = [n.transaction_id for n in result.neighbours]
    assert ids[0] == twin["transaction_id"] and target["transaction_id"] not in ids and len(ids) == 5
    assert result.neighbours[0].distance < result.neighbours[1].distance
    # the body of the transaction finds the same twin first
    assert (
        index.search(vector_of_request(_body(target)), 1, exclude_row=row).neighbours[0].transaction_id
        == twin["transaction_id"]
    )


def test_the_mix_is_computed_from_the_neighbours_outcomes():
    rows = np.zeros(5, dtype=OUTCOME_DTYPE)
    rows["is_approved"] = [1, 1, 0, 0, 1]
    rows["decline_reason"] = [-1, -1, 5, 0, -1]  # DO_NOT_HONOR, INSUFFICIENT_FUNDS: a tie
    rows["is_fraud"] = [1, 0, -1, 0, 0]
    mix = neighbour_mix(rows)
    assert mix.neighbours == 5 and mix.approval_rate == 0.6 and mix.declines == 2
    assert (mix.top_decline_reason, mix.top_decline_reason_count) == ("DO_NOT_HONOR", 1)  # ties: alphabetical
    assert mix.fraud_share == 0.25 and mix.fraud_labelled == 4
    same = outcomes_mix(
        [True, True, False, False, True],
        [None, None, "DO_NOT_HONOR", "INSUFFICIENT_FUNDS", None],
        [True, False, None, False, False],
    )
    assert same == mix
    empty = neighbour_mix(np.zeros(0, dtype=OUTCOME_DTYPE))
    assert (empty.neighbours, empty.approval_rate, empty.top_decline_reason, empty.fraud_share) == (0, None, None, None)

    # over a real search: the mix is exactly the one of the neighbours returned
    index, vectors = _build(_events(1500, seed=5))
    result = index.search(vectors[3], 40, exclude_row=3)
    n = result.neighbours
    declined = [x.decline_reason for x in n if not x.is_approved]
    counts = {r: declined.count(r) for r in set(declined)}
    top = min(r for r, c in counts.items() if c == max(counts.values()))
    assert result.mix.approval_rate == round(sum(x.is_approved for x in n) / 40, 4)
    assert result.mix.top_decline_reason == top and result.mix.top_decline_reason_count == counts[top]
    assert result.mix.fraud_share == round(sum(bool(x.is_fraud) for x in n) / 40, 4)


def test_incremental_add_save_and_memory_mapped_open(tmp_path):
    events = _events(1200, seed=9)
    first, second = events[:700], events[600:]  # 100 in both
    path = tmp_path / "similar" / "index.usearch"
    index, _ = _build(first)
    index.save(path)
    assert json.loads(meta_path(path).read_text())["count"] == 700

    updated = SimilarIndex.open(path, writable=True)
    df = _silver_like(second)
    vectors = vectors_of_frame(df)
    assert updated.add(vectors, outcome_rows(df)) == 500  # the 100 already indexed are skipped
    assert updated.add(vectors, outcome_rows(df)) == 0
    updated.save(path)

    served = SimilarIndex.open(path)  # read-only: both files memory-mapped
    assert len(served) == 1200 and isinstance(served.outcomes, np.memmap)
    new = _silver_like(_events(1, seed=123))
    with pytest.raises(PermissionError):
        served.add(vectors_of_frame(new), outcome_rows(new))
    last = second[-1]["transaction_id"]
    assert served.row_of(last) == 1199 and np.array_equal(served.vector_of(last), vectors[-1])
    assert served.row_of("txn_ffffffffffffffff") is None and served.row_of("not-an-id") is None
    got = served.search(vectors[-1], 10, exclude_row=1199)
    want = updated.search(vectors[-1], 10, exclude_row=1199)
    assert [n.transaction_id for n in got.neighbours] == [n.transaction_id for n in want.neighbours]
    assert served.watermark_us == int(pd.Timestamp(max(e["event_timestamp"] for e in events)).value // 1000)
    n = got.neighbours[0]
    src = next(e for e in events if e["transaction_id"] == n.transaction_id)
    assert (n.amount_minor, n.currency, n.merchant_segment, n.is_approved, n.decline_reason) == (
        src["amount_minor"],
        src["currency"],
        src["merchant_segment"],
        src["is_approved"],
        src["decline_reason"],
    )
    assert n.as_dict()["amount"] == str(from_minor_units(src["amount_minor"], src["currency"]))  # exact text

    # a reader that opened before a save keeps its (memory-mapped) files; a new open sees the new ones
    extra = _events(50, seed=77)
    grow = SimilarIndex.open(path, writable=True)
    grow.add(vectors_of_frame(_silver_like(extra)), outcome_rows(_silver_like(extra)))
    grow.save(path)
    assert len(served) == 1200 and served.search(vectors[-1], 10, exclude_row=1199) == got
    assert len(SimilarIndex.open(path)) == 1250


def test_an_index_of_another_vector_version_is_refused(tmp_path):
    path = tmp_path / "index.usearch"
    index, _ = _build(_events(50))
    index.save(path)
    meta = json.loads(meta_path(path).read_text())
    meta_path(path).write_text(json.dumps({**meta, "vector_version": 0}))
    with pytest.raises(IndexFormatError, match="rebuild"):
        SimilarIndex.open(path)
    with pytest.raises(FileNotFoundError):
        SimilarIndex.open(tmp_path / "missing.usearch")


def test_transaction_keys_round_trip():
    assert transaction_key("txn_00c0ffee00c0ffee") == 0x00C0FFEE00C0FFEE
    assert transaction_id_of(0xFFFFFFFFFFFFFFFF) == "txn_ffffffffffffffff"
    with pytest.raises(ValueError):
        transaction_key("txn_00C0FFEE00C0FFEE")


def test_importing_the_module_first_keeps_pyarrow_timestamps_working():
    # usearch's extension loaded before pyarrow makes tz-aware to_pandas segfault: the module guards it
    code = (
        "import payments_core.similarity, pyarrow as pa, datetime;"
        "ts = pa.array([datetime.datetime(2026, 1, 1, tzinfo=datetime.UTC)], pa.timestamp('us', tz='UTC'));"
        "t = pa.table({'ts': ts});"
        "print(t.to_pandas().ts.iloc[0].year)"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0 and done.stdout.strip() == "2026", done.stderr[-2000:]
