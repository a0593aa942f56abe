"""``approval_recommendations`` written by the agents with delta-rs and by bootstrap with Spark: either may
create the table, both keep appending, neither overwrites the other; statuses move only from proposed."""

from __future__ import annotations

import json
import threading

import pytest
from deltalake import DeltaTable

from agents import Orchestrator, RunRequest
from agents.store import COLUMNS, TABLE, RecommendationStore, StoreError
from services.control_plane.lakehouse import DeltaReader
from spark.common.tables import APPROVAL_RECOMMENDATIONS, Lakehouse
from spark.jobs.bootstrap import RECOMMENDATIONS_SCHEMA, insert_missing, recommendation_rows


@pytest.fixture(scope="module")
def retry_recs(reader):
    recs = Orchestrator(reader).run(RunRequest("specialist", agent="smart_retry")).recommendations
    assert len(recs) >= 2
    return recs


def spark_rows(spark, lh: Lakehouse) -> dict[str, dict]:
    return {r.recommendation_id: r.asDict() for r in lh.read(spark, APPROVAL_RECOMMENDATIONS).collect()}


def test_agents_and_bootstrap_share_the_table_in_either_order(spark, retry_recs, tmp_path):
    taxonomy = spark.createDataFrame(recommendation_rows(), RECOMMENDATIONS_SCHEMA)

    # the agents first: delta-rs creates the table with bootstrap's schema; bootstrap appends its rows
    first = Lakehouse(catalog="c", schema="a", warehouse_dir=tmp_path / "one")
    store = RecommendationStore(first.path(TABLE).parent, DeltaReader(tmp_path / "one", "c", "a"))
    assert store.upsert(retry_recs, run_id=1) == {"inserted": len(retry_recs), "updated": 0}
    table = DeltaTable(str(first.path(TABLE)))
    assert (table.protocol().min_reader_version, table.protocol().min_writer_version) == (1, 2)
    assert [f.name for f in table.schema().fields] == list(COLUMNS)
    added = insert_missing(spark, first, APPROVAL_RECOMMENDATIONS, taxonomy, "recommendation_id")
    assert added == len(recommendation_rows())
    rows = spark_rows(spark, first)
    assert len(rows) == len(retry_recs) + added
    for rec in retry_recs:  # Spark reads the agents' rows as written
        assert rows[rec.id]["status"] == "proposed" and json.loads(rows[rec.id]["evidence"])["run_id"] == 1
    assert {r["recommendation_id"] for r in store.list()} == {r.id for r in retry_recs}  # not bootstrap's

    # bootstrap first (Spark creates it, as on a fresh lakehouse); the agents merge into it
    second = Lakehouse(catalog="c", schema="b", warehouse_dir=tmp_path / "two")
    insert_missing(spark, second, APPROVAL_RECOMMENDATIONS, taxonomy, "recommendation_id")
    other = RecommendationStore(second.path(TABLE).parent, DeltaReader(tmp_path / "two", "c", "b"))
    assert other.upsert(retry_recs, run_id=2)["inserted"] == len(retry_recs)
    merged = DeltaReader(tmp_path / "two", "c", "b").query(f"SELECT source, status FROM {TABLE}", TABLE)
    assert merged is not None and merged.num_rows == len(retry_recs) + len(recommendation_rows())
    assert sorted(set(merged.column("source").to_pylist())) == ["agent:smart_retry", "bootstrap"]


def test_decided_recommendations_are_never_overwritten_by_a_later_run(retry_recs, tmp_path):
    store = RecommendationStore(tmp_path / "c" / "s", DeltaReader(tmp_path, "c", "s"))
    store.upsert(retry_recs, run_id=1)
    accepted, proposed = retry_recs[0], retry_recs[1]
    store.set_status(accepted.id, "accepted")
    with pytest.raises(StoreError) as twice:
        store.set_status(accepted.id, "dismissed")
    assert twice.value.status == 409 and "is accepted, not proposed" in str(twice.value)
    with pytest.raises(StoreError) as missing:
        store.set_status("agent:smart_retry:nope", "accepted")
    assert missing.value.status == 404

    assert store.upsert(retry_recs, run_id=2) == {"inserted": 0, "updated": len(retry_recs) - 1}
    rows = {r["recommendation_id"]: r for r in store.list(status=None)}
    assert rows[accepted.id]["status"] == "accepted" and rows[accepted.id]["evidence"]["run_id"] == 1
    assert rows[proposed.id]["status"] == "proposed" and rows[proposed.id]["evidence"]["run_id"] == 2
    assert [r["recommendation_id"] for r in store.list(status="accepted")] == [accepted.id]
    assert store.get(proposed.id)["agent"] == "smart_retry"


def test_two_people_deciding_at_once_one_wins(retry_recs, tmp_path):
    store = RecommendationStore(tmp_path / "c" / "s", DeltaReader(tmp_path, "c", "s"))
    store.upsert(retry_recs[:1])
    target = retry_recs[0].id
    outcomes: list[str] = []

    def decide(status: str) -> None:
        try:
            RecommendationStore(tmp_path / "c" / "s", DeltaReader(tmp_path, "c", "s")).set_status(target, status)
            outcomes.append(status)
        except StoreError as exc:
            outcomes.append(f"refused {exc.status}")

    threads = [threading.Thread(target=decide, args=(s,)) for s in ("accepted", "dismissed")]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    winners = [o for o in outcomes if not o.startswith("refused")]
    assert len(winners) == 1 and outcomes.count("refused 409") == 1
    assert store.get(target)["status"] == winners[0]
