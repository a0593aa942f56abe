"""Silver transformations on small hand-made frames with known answers."""

from __future__ import annotations

from datetime import timedelta

import numpy as np
import pandas as pd
from pyspark.sql import functions as F

from payments_core.taxonomy import DECLINES
from spark.etl import silver
from tests.spark.factories import T0, as_json, bronze_frame, event


def _bad_records():
    good = event(1)
    missing = dict(good, transaction_id="txn_00000000000000a2")
    del missing["merchant_id"]
    return {
        "malformed_json": "{not json",
        "missing:merchant_id": as_json(missing),
        "invalid_enum:card_network": as_json(dict(good, transaction_id="txn_00000000000000a3", card_network="diners")),
        "invalid_pattern:transaction_id": as_json(dict(good, transaction_id="TX-1")),
        "above_max:fraud_score": as_json(dict(good, transaction_id="txn_00000000000000a5", fraud_score=1.5)),
        "unknown_field:colour": as_json(dict(good, transaction_id="txn_00000000000000a6", colour="red")),
        "approved_with_decline": as_json(
            dict(good, transaction_id="txn_00000000000000a7", decline_reason="DO_NOT_HONOR")
        ),
        "invalid_type:amount_minor": as_json(dict(good, transaction_id="txn_00000000000000a8", amount_minor="lots")),
        "unsupported_schema_version": as_json(dict(good, transaction_id="txn_00000000000000a9", schema_version=7)),
        "declined_without_reason": as_json(dict(good, transaction_id="txn_00000000000000aa", is_approved=False)),
    }


def test_parse_quarantine_and_dedup(spark):
    good = [event(1), event(2, is_approved=False, decline_reason=None, decline_code_raw="91")]
    minimal = event(3)
    for optional in ("uses_3ds", "retry_count", "attempt_number", "schema_version", "is_fraud"):
        minimal.pop(optional)
    bad = _bad_records()
    bronze = bronze_frame(spark, [*good, good[0], minimal, *bad.values()])  # good[0] twice
    parsed = silver.parse(bronze).cache()
    rows = silver.deduplicate(silver.valid(parsed)).orderBy("transaction_id").collect()
    assert [r.transaction_id for r in rows] == [f"txn_{i:016x}" for i in (1, 2, 3)]
    # defaults of absent optional fields are filled from the contract
    m = rows[2]
    assert (m.uses_3ds, m.retry_count, m.attempt_number, m.schema_version, m.is_fraud) == (False, 0, 1, 1, False)
    assert rows[0].event_timestamp.replace(tzinfo=None) == (T0 + timedelta(minutes=1)).replace(tzinfo=None)

    q = {r.quarantine_reason: r for r in silver.quarantine(parsed).collect()}
    assert set(q) == set(bad)
    assert q["malformed_json"].record_value == "{not json"
    assert q["missing:merchant_id"].transaction_id == "txn_00000000000000a2"
    assert q["missing:merchant_id"].quarantine_check == "missing"
    assert q["unknown_field:colour"].validation_errors == ["unknown_field:colour"]
    assert q["above_max:fraud_score"].kafka_offset == 4 + list(bad).index("above_max:fraud_score")
    parsed.unpersist()


def _retry_events():
    d = timedelta
    return [  # card A at merchant M: declined, declined (retry after 90 s), approved (retry after 6 h)
        event(
            10,
            card_token_id="tok_A",
            merchant_id="m_M",
            is_approved=False,
            decline_reason="INSUFFICIENT_FUNDS",
            event_timestamp=T0,
        ),
        event(
            11,
            card_token_id="tok_A",
            merchant_id="m_M",
            is_approved=False,
            decline_reason="INSUFFICIENT_FUNDS",
            is_retry=True,
            retry_count=1,
            attempt_number=2,
            previous_decline_code="INSUFFICIENT_FUNDS",
            event_timestamp=T0 + d(seconds=90),
        ),
        event(
            12,
            card_token_id="tok_A",
            merchant_id="m_M",
            is_retry=True,
            retry_count=2,
            attempt_number=3,
            previous_decline_code="INSUFFICIENT_FUNDS",
            event_timestamp=T0 + d(seconds=90 + 6 * 3600),
        ),
        # card A at another merchant, card B at M: their own sequences
        event(13, card_token_id="tok_A", merchant_id="m_N", event_timestamp=T0 + d(seconds=30)),
        event(14, card_token_id="tok_B", merchant_id="m_M", event_timestamp=T0 + d(seconds=60)),
        event(15, card_token_id="tok_B", merchant_id="m_M", event_timestamp=T0 + d(days=1)),
    ]


EXPECTED_RETRY = {  # id -> (attempt_sequence, seconds_since_previous, previous_approved, prior_approvals, waited)
    10: (1, None, None, 0, None),
    11: (2, 90.0, False, 0, False),
    12: (3, 6 * 3600.0, False, 0, True),
    13: (1, None, None, 0, None),
    14: (1, None, None, 0, None),
    15: (2, 86400.0 - 60.0, True, 1, None),
}


def _retry_tuple(r):
    return (
        r.attempt_sequence,
        r.seconds_since_previous_attempt,
        r.previous_attempt_approved,
        r.prior_approvals_card_merchant,
        r.retry_waited_as_advised,
    )


def test_retry_features_and_enrichment_batch(spark):
    bronze = bronze_frame(spark, _retry_events())
    rows = {int(r.transaction_id[4:], 16): r for r in silver.silver_transactions(bronze).collect()}
    assert {k: _retry_tuple(r) for k, r in rows.items()} == EXPECTED_RETRY
    r10 = rows[10]
    ins = DECLINES["INSUFFICIENT_FUNDS"]
    assert (r10.decline_reason_std, r10.decline_group, r10.is_soft_decline, r10.recommended_action) == (
        "INSUFFICIENT_FUNDS",
        ins.group,
        True,
        ins.recommended_action,
    )
    assert rows[13].decline_group is None
    assert str(r10.amount_usd) == "10.26"  # 54.00 BRL * 0.19
    assert (r10.merchant_mcc, r10.merchant_segment_risk) == ("5311", "low")
    assert r10.service_path == "CHECKOUT/standard_ecom/standard"
    assert str(r10.event_date) == "2026-11-02" and r10.hour_of_day == 12 and r10.day_of_week == 0


def test_streaming_silver_equals_batch(spark, tmp_path):
    """The streaming path (dedup with watermark, retry state across two micro-batches) gives the batch
    path's numbers."""
    events = _retry_events()
    first, second = [events[i] for i in (0, 1, 3, 4)], [events[i] for i in (2, 5)]
    src = str(tmp_path / "bronze")
    bronze_frame(spark, first + [first[0]]).coalesce(1).write.format("delta").save(src)  # with a duplicate
    bronze_frame(spark, second + [first[1]], start=T0 + timedelta(hours=1)).coalesce(1).write.format("delta").mode(
        "append"
    ).save(src)
    stream = spark.readStream.format("delta").option("maxFilesPerTrigger", 1).load(src)
    q = (
        silver.silver_transactions(stream, streaming=True, buckets=4)
        .writeStream.format("delta")
        .option("checkpointLocation", str(tmp_path / "ckpt"))
        .trigger(availableNow=True)
        .start(str(tmp_path / "silver"))
    )
    q.awaitTermination(180)
    assert q.exception() is None
    assert len([p for p in q.recentProgress if p["numInputRows"] > 0]) == 2  # two micro-batches
    out = spark.read.format("delta").load(str(tmp_path / "silver"))
    assert out.count() == 6  # duplicates dropped across batches
    rows = {int(r.transaction_id[4:], 16): r for r in out.collect()}
    assert {k: _retry_tuple(r) for k, r in rows.items()} == EXPECTED_RETRY
    assert out.where(F.col("amount_usd").isNull()).count() == 0


def test_retry_state_over_many_batches_equals_full_history():
    """The streaming state step (no Spark): four batches give the numbers of the whole history."""
    rng = np.random.default_rng(0)
    n = 3000
    df = pd.DataFrame(
        {
            "transaction_id": [f"t{i:06d}" for i in range(n)],
            "event_timestamp": pd.to_datetime(np.sort(rng.integers(0, 10**12, n)), unit="us", utc=True),
            "_pair": rng.integers(0, 200, n).astype(np.int64) * 7919 - 500_000,
            "is_approved": rng.random(n) < 0.7,
        }
    )
    g = df.groupby("_pair")
    state, parts = silver._empty_state(), []
    for idx in np.array_split(np.arange(n), 4):
        out, state = silver.advance_retry_state(df.iloc[idx], state)
        parts.append(out)
    out = pd.concat(parts, ignore_index=True)
    assert (out["transaction_id"] == df["transaction_id"]).all()
    assert (out["attempt_sequence"] == g.cumcount() + 1).all()
    np.testing.assert_allclose(
        out["seconds_since_previous_attempt"].to_numpy(float),
        (df["event_timestamp"] - g["event_timestamp"].shift(1)).dt.total_seconds().to_numpy(float),
    )
    assert [None if v is None else bool(v) for v in out["previous_attempt_approved"]] == [
        None if pd.isna(v) else bool(v) for v in g["is_approved"].shift(1)
    ]
    assert (out["prior_approvals_card_merchant"] == g["is_approved"].cumsum() - df["is_approved"]).all()
    assert len(state) == df["_pair"].nunique() and (np.diff(state[:, 0]) > 0).all()


def test_streaming_dedup_state_keeps_first_within_horizon():
    """``drop_seen`` (no Spark): first row per transaction in arrival order, duplicates dropped within
    the horizon across batches, a key seen again after its expiry kept."""
    hour_us = 3_600_000_000

    def batch(rows):  # (key, kafka time in hours, partition, offset)
        return pd.DataFrame(
            {
                "_txn": [r[0] for r in rows],
                "kafka_partition": [r[2] for r in rows],
                "kafka_offset": [r[3] for r in rows],
                "kafka_timestamp": pd.to_datetime([r[1] * hour_us for r in rows], unit="us", utc=True),
            }
        )

    horizon = 24 * hour_us
    # key 2 twice in one batch (the later offset is listed first); key -1 is txn_ffffffffffffffff
    kept, seen = silver.drop_seen(
        batch([(1, 0, 0, 0), (2, 1, 0, 5), (2, 1, 0, 2), (-1, 2, 1, 0)]), silver._empty_seen(), horizon
    )
    assert list(kept["_txn"]) == [1, 2, -1] and list(kept["kafka_offset"]) == [0, 2, 0]
    assert [list(r) for r in seen] == [[-1, 26 * hour_us], [1, 24 * hour_us], [2, 25 * hour_us]]
    kept, seen = silver.drop_seen(batch([(2, 10, 0, 9), (4, 10, 1, 1)]), seen, horizon)
    assert list(kept["_txn"]) == [4]  # 2 seen 9 hours ago
    # at 40 h the watermark is 40 - 24 = 16 h, before key 1's expiry (24 h): still a duplicate;
    # at 60 h the watermark (36 h) is past every expiry (the latest, key 4's, is 34 h): all kept
    kept, seen = silver.drop_seen(batch([(1, 40, 0, 20)]), seen, horizon)
    assert list(kept["_txn"]) == []
    kept, seen = silver.drop_seen(batch([(1, 60, 0, 21), (2, 60, 0, 22), (4, 60, 1, 2)]), seen, horizon)
    assert list(kept["_txn"]) == [1, 2, 4] and len(seen) == 3 and (np.diff(seen[:, 0]) > 0).all()


def test_transaction_key_is_the_hex_value(spark):
    ids = [
        "txn_00000000000000a2",
        "txn_ffffffffffffffff",
        "txn_8000000000000000",
        "txn_7fffffffffffffff",
        "txn_00c0ffee00c0ffee",
    ]
    df = spark.createDataFrame([(i,) for i in ids], "transaction_id string")
    got = [r.k for r in df.select(silver.transaction_key(F.col("transaction_id")).alias("k")).collect()]
    assert got == [int.from_bytes(bytes.fromhex(i[4:]), "big", signed=True) for i in ids]
