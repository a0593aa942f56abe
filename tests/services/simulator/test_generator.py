"""The generator: contract, determinism, consistency with the taxonomy, retries."""

from __future__ import annotations

import re
from datetime import UTC, datetime

import numpy as np
import orjson
import pyarrow as pa
import pytest

from payments_core.contract.events import TransactionEvent
from payments_core.taxonomy import DECLINES, RAW_CODE_TO_REASON, SOFT_DECLINES
from services.simulator.encode import ARROW_SCHEMA
from services.simulator.generator import GeneratorConfig, TransactionGenerator
from tests.services.simulator.conftest import START

HARD = set(DECLINES) - set(SOFT_DECLINES)


def _gen(seed: int = 3, **kw) -> TransactionGenerator:
    return TransactionGenerator(GeneratorConfig(seed=seed, start=START, **kw))


def test_json_events_validate_against_the_contract_and_match_the_table():
    batch = _gen().batch(20_000)
    values = batch.json_values()
    rows = batch.to_dicts()
    assert len(values) == len(rows) == 20_000
    for value, row in zip(values[::7], rows[::7]):
        event = TransactionEvent.model_validate_json(value)
        assert event.model_dump() == TransactionEvent(**row).model_dump()
    # every field is present in the JSON (no reliance on defaults)
    assert set(orjson.loads(values[0])) == set(TransactionEvent.model_fields)


def test_arrow_table_has_exactly_the_contract_columns_and_types():
    table = _gen().batch(5_000).to_arrow()
    assert table.schema == ARROW_SCHEMA
    assert table.column_names == list(TransactionEvent.model_fields)
    assert table.schema.field("event_timestamp").type == pa.timestamp("us", tz="UTC")
    assert table.schema.field("amount_minor").type == pa.int64()
    df = table.to_pandas()
    assert str(df["event_timestamp"].dt.tz) == "UTC"
    assert df["amount_minor"].dtype == np.int64 and (df["amount_minor"] > 0).all()
    for name in ("merchant_id", "card_token_id", "transaction_id", "currency", "geo_country"):
        assert df[name].notna().all(), name


def test_transaction_ids_are_unique_and_well_formed():
    gen = _gen()
    ids = np.concatenate(
        [gen.batch(50_000).to_arrow()["transaction_id"].to_numpy(zero_copy_only=False) for _ in range(4)]
    )
    assert len(set(ids)) == ids.size == 200_000
    pattern = re.compile(r"^txn_[0-9a-f]{16}$")
    assert all(pattern.match(i) for i in ids[::97])


def test_same_seed_and_settings_give_the_same_event_sequence():
    a, b, c = _gen(seed=5), _gen(seed=5), _gen(seed=6)
    for _ in range(3):
        ba, bb, bc = a.batch(20_000), b.batch(20_000), c.batch(20_000)
        assert ba.json_values() == bb.json_values()
        assert ba.to_arrow().equals(bb.to_arrow())
    assert ba.json_values() != bc.json_values()


def test_real_time_runs_never_repeat_transaction_ids_across_restarts():
    a = TransactionGenerator(GeneratorConfig(seed=1))
    b = TransactionGenerator(GeneratorConfig(seed=1))
    ids_a = set(a.batch(1_000).to_arrow()["transaction_id"].to_pylist())
    ids_b = set(b.batch(1_000).to_arrow()["transaction_id"].to_pylist())
    assert not ids_a & ids_b
    now = datetime.now(UTC).timestamp()
    ts = a.batch(100).to_pandas()["event_timestamp"]
    assert abs(ts.max().timestamp() - now) < 60


def test_timestamps_are_ordered_and_the_clock_advances():
    gen = _gen(events_per_second=5.0)
    prev = None
    for _ in range(4):
        ts = gen.batch(10_000).to_pandas()["event_timestamp"]
        assert ts.is_monotonic_increasing
        if prev is not None:
            assert ts.iloc[0] > prev
        prev = ts.iloc[-1]
    # 40k events at 5 ev/s is about 8,000 s of simulated time
    assert 4_000 < (prev - START).total_seconds() < 16_000


def test_decline_fields_follow_the_taxonomy(week):
    approved = week["is_approved"]
    assert week.loc[approved, "decline_reason"].isna().all()
    assert week.loc[approved, "decline_code_raw"].isna().all()
    declined = week[~approved]
    assert declined["decline_reason"].notna().all()
    expected = declined["decline_reason"].map(lambda r: DECLINES[r].raw_code)
    assert (declined["decline_code_raw"] == expected).all()
    assert (declined["decline_code_raw"].map(RAW_CODE_TO_REASON) == declined["decline_reason"]).all()
    # every reason of the taxonomy shows up in a normal week
    assert set(declined["decline_reason"]) == set(DECLINES)


def test_retry_fields_are_coherent(week):
    retry = week["is_retry"]
    assert (week["retry_count"] == week["attempt_number"] - 1).all()
    assert (retry == (week["attempt_number"] > 1)).all()
    assert week.loc[retry, "previous_decline_code"].isin(SOFT_DECLINES).all()
    assert week.loc[~retry, "previous_decline_code"].isna().all()
    assert not week["previous_decline_code"].isin(HARD).any(), "hard declines are never retried"


def test_a_retry_reuses_card_merchant_and_amount_of_an_earlier_declined_attempt(generator_and_week):
    _, df = generator_and_week
    df = df.reset_index(drop=True)
    key = ["card_token_id", "merchant_id", "amount_minor"]
    retries = df[df["is_retry"]]
    assert len(retries) > 500
    originals = df[~df["is_approved"]][key + ["attempt_number", "decline_reason", "event_timestamp"]]
    merged = retries[key + ["attempt_number", "previous_decline_code", "event_timestamp"]].merge(
        originals, on=key, suffixes=("", "_prev")
    )
    merged = merged[
        (merged["attempt_number_prev"] == merged["attempt_number"] - 1)
        & (merged["decline_reason"] == merged["previous_decline_code"])
        & (merged["event_timestamp_prev"] < merged["event_timestamp"])
    ]
    matched = merged.drop_duplicates(subset=key + ["attempt_number"])
    # retries near the end of the sample may still be pending, but every retry seen has its original
    assert len(matched) == retries.drop_duplicates(subset=key + ["attempt_number"]).shape[0]


def test_some_retries_succeed_and_quick_retries_of_insufficient_funds_rarely_do(week):
    retries = week[week["is_retry"]]
    assert 0.10 < retries["is_approved"].mean() < 0.75
    by_reason = retries.groupby("previous_decline_code")["is_approved"].mean()
    assert by_reason["ISSUER_UNAVAILABLE"] > by_reason["INSUFFICIENT_FUNDS"]


def test_bad_input_is_refused_with_a_clear_error():
    with pytest.raises(ValueError, match="events_per_second"):
        GeneratorConfig(events_per_second=0)
    with pytest.raises(ValueError, match="timezone"):
        GeneratorConfig(start=datetime(2026, 1, 1))  # noqa: DTZ001 - the naive start is what is refused
    gen = _gen()
    with pytest.raises(ValueError, match="choose one of"):
        gen.set_scenario("meteor_strike")
    with pytest.raises(ValueError, match="unknown issuer"):
        gen.set_scenario("issuer_outage", "iss_xx_99")
    with pytest.raises(ValueError, match="positive"):
        gen.batch(0)
