"""The similar-transaction index job over a small silver: an empty index before silver exists, a first
build, then runs that add only the rows not indexed yet (watermark on ingestion time, ids skipped)."""

from __future__ import annotations

from datetime import timedelta

import numpy as np

from payments_core.contract.events import TransactionRequest
from payments_core.similarity import SimilarIndex, vector_of_request
from spark.common.tables import Lakehouse
from spark.etl import silver
from spark.jobs import etl, similar_index
from tests.spark.factories import T0, bronze_frame, event

REASONS = ("INSUFFICIENT_FUNDS", "DO_NOT_HONOR", "EXPIRED_CARD")


def _events(first: int, n: int) -> list[dict]:
    out = []
    for i in range(first, first + n):
        approved = i % 3 != 0
        out.append(
            event(
                i,
                amount_minor=1000 + 137 * i,
                fraud_score=round((i % 10) / 10, 2),
                merchant_segment=("Retail", "Travel", "Gaming")[i % 3],
                card_token_id=f"tok_{i % 7}",
                is_approved=approved,
                decline_reason=None if approved else REASONS[i % len(REASONS)],
                is_fraud=i % 11 == 0,
            )
        )
    return out


def _body(ev: dict) -> dict:
    return TransactionRequest(**{k: v for k, v in ev.items() if k in TransactionRequest.model_fields}).model_dump()


def test_builds_the_index_from_silver_then_adds_only_new_rows(spark, tmp_path):
    lh = Lakehouse(catalog="c", schema="similar", warehouse_dir=tmp_path / "wh")
    path = tmp_path / "data" / "similar" / "index.usearch"

    # no silver yet: an empty index is written, so the scoring API has one to serve
    empty = similar_index.run(spark, lh, path)
    assert (empty.indexed, empty.read, empty.from_scratch) == (0, 0, True) and path.exists()
    assert len(SimilarIndex.open(path)) == 0

    first = _events(0, 30)
    lh.write(silver.silver_transactions(bronze_frame(spark, first, start=T0)), "silver_transactions")
    built = similar_index.run(spark, lh, path)
    assert (built.indexed_before, built.read, built.added, built.indexed) == (0, 30, 30, 30)
    assert built.watermark == "2026-11-02T12:00:29Z"  # ingested_at of the last bronze row

    served = SimilarIndex.open(path)
    # a silver row's vector is the one POST /similar computes from the same transaction's body
    for ev in (first[0], first[13], first[29]):
        assert np.array_equal(served.vector_of(ev["transaction_id"]), vector_of_request(_body(ev)))
    declined = first[3]
    row = served.row_of(declined["transaction_id"])
    result = served.search(served.vector_at(row), 29, exclude_row=row)
    assert {n.transaction_id for n in result.neighbours} == {e["transaction_id"] for e in first} - {
        declined["transaction_id"]
    }
    facts = {n.transaction_id: n for n in result.neighbours}
    for ev in first:
        if ev["transaction_id"] in facts:
            n = facts[ev["transaction_id"]]
            assert (n.is_approved, n.decline_reason, n.is_fraud, n.amount_minor) == (
                ev["is_approved"],
                ev["decline_reason"],
                ev["is_fraud"],
                ev["amount_minor"],
            )
    assert result.mix.approval_rate == round(sum(n.is_approved for n in result.neighbours) / 29, 4)

    # new rows ingested two hours later (and a replayed old one): only the new ones are added; the
    # lookback re-reads the first batch, which is skipped as already indexed
    later = T0 + timedelta(hours=2)
    second = _events(30, 10)
    lh.write(
        silver.silver_transactions(bronze_frame(spark, [*second, first[5]], start=later)),
        "silver_transactions",
        mode="append",
    )
    grown = similar_index.run(spark, lh, path)
    assert (grown.indexed_before, grown.read, grown.added, grown.already_indexed, grown.indexed) == (30, 41, 10, 31, 40)
    assert grown.from_scratch is False
    nothing = similar_index.run(spark, lh, path)
    assert (nothing.added, nothing.indexed) == (0, 40)

    # the command line, with no lookback: only the rows after the watermark are read
    third = _events(40, 5)
    lh.write(
        silver.silver_transactions(bronze_frame(spark, third, start=later + timedelta(hours=1))),
        "silver_transactions",
        mode="append",
    )
    argv = ["--catalog", "c", "--schema", "similar", "--warehouse-dir", str(tmp_path / "wh")]
    assert similar_index.main([*argv, "--index-path", str(path), "--lookback-minutes", "0"]) == 0
    final = SimilarIndex.open(path)
    assert len(final) == 45 and final.row_of(third[-1]["transaction_id"]) == 44
    assert final.row_of(first[5]["transaction_id"]) == 5  # the replay did not add a second row

    # --rebuild starts over from all of silver, newest --max-rows first
    rebuilt = similar_index.run(spark, lh, path, rebuild=True, max_rows=20)
    assert (rebuilt.from_scratch, rebuilt.read, rebuilt.indexed) == (True, 20, 20)
    assert SimilarIndex.open(path).row_of(third[-1]["transaction_id"]) is not None
    assert SimilarIndex.open(path).row_of(first[0]["transaction_id"]) is None


def test_a_one_shot_etl_run_then_updates_the_index(spark, tmp_path, monkeypatch):
    """What ``python -m spark.jobs.etl`` runs after a successful update: the job, in its own process,
    on the same lakehouse, writing where the scoring API reads (``PA_DATA_DIR``)."""
    lh = Lakehouse(catalog="c", schema="after_etl", warehouse_dir=tmp_path / "wh")
    rows = _events(100, 12)
    lh.write(silver.silver_transactions(bronze_frame(spark, rows, start=T0)), "silver_transactions")
    monkeypatch.setenv("PA_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.delenv("PA_SIMILAR_INDEX_PATH", raising=False)

    assert etl.update_similar_index(lh) == 0
    index = SimilarIndex.open(tmp_path / "data" / "similar" / "index.usearch")
    assert len(index) == 12 and index.row_of(rows[-1]["transaction_id"]) is not None
    assert etl.EtlJobSettings.from_args([])[0].similar_index
    assert not etl.EtlJobSettings.from_args(["--no-similar-index"])[0].similar_index
