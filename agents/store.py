"""Recommendations in the lakehouse table ``approval_recommendations`` (created by ``spark.jobs.bootstrap``
with these eight string columns; bootstrap only ever appends the taxonomy rows it misses, so rows the
agents or the control plane write or edit are never overwritten).

Locally the table is a Delta folder; it is written here with delta-rs (``deltalake``), as the dashboard
tables are: a MERGE on ``recommendation_id`` that inserts new recommendations and refreshes the evidence
of those still ``proposed``, never touching one a person accepted or dismissed; status changes are
conditional UPDATEs (``proposed`` -> ``accepted`` | ``dismissed``), so two people cannot both decide one.
Why this is safe on a table Spark created: its protocol is reader 1 / writer 2 (no deletion vectors, no
column mapping: nothing delta-rs cannot write), and both engines commit by atomically creating the next
log entry, so a concurrent bootstrap append and an agent MERGE cannot overwrite each other (the loser of
the race retries, here up to ``COMMIT_ATTEMPTS`` times). Reads go through the host's reader (DataFusion,
which honours deletion vectors should Spark ever add them). When the table does not exist yet it is
created with bootstrap's exact schema, and bootstrap then appends to it.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pyarrow as pa
from deltalake import DeltaTable, write_deltalake
from deltalake.exceptions import CommitFailedError

from agents.model import STATUSES, Recommendation
from agents.query import QueryRunner, literal

TABLE = "approval_recommendations"
COLUMNS = ("recommendation_id", "category", "scope", "title", "recommendation", "evidence", "source", "status")
SCHEMA = pa.schema([pa.field(c, pa.string()) for c in COLUMNS])  # bootstrap's RECOMMENDATIONS_SCHEMA
AGENT_SOURCE_PREFIX = "agent:"
COMMIT_ATTEMPTS = 5
log = logging.getLogger("agents.store")
_locks: dict[Path, threading.Lock] = {}
_locks_guard = threading.Lock()


class StoreError(Exception):
    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status


def _lock_for(path: Path) -> threading.Lock:
    with _locks_guard:
        return _locks.setdefault(path.resolve(), threading.Lock())


class RecommendationStore:
    """``approval_recommendations`` of one schema folder."""

    def __init__(self, folder: Path, reader: QueryRunner):
        self.path = Path(folder) / TABLE
        self.reader = reader
        self._lock = _lock_for(self.path)

    # ------------------------------------------------------------------------------ writes
    def _table(self) -> DeltaTable | None:
        if not (self.path / "_delta_log").is_dir():
            return None
        return DeltaTable(str(self.path))

    def _retry(self, what: str, fn):
        for attempt in range(1, COMMIT_ATTEMPTS + 1):
            try:
                return fn()
            except CommitFailedError as exc:  # another writer committed that version first
                if attempt == COMMIT_ATTEMPTS:
                    raise StoreError(503, f"{what}: {TABLE} kept changing underneath ({exc})") from None
                log.warning("%s: concurrent commit on %s (attempt %d), retrying", what, TABLE, attempt)
                time.sleep(0.05 * attempt)
        raise AssertionError("unreachable")

    def upsert(self, recommendations: list[Recommendation], run_id: int | None = None) -> dict[str, int]:
        """Insert new recommendations; refresh the evidence of those still proposed. Returns counts."""
        if not recommendations:
            return {"inserted": 0, "updated": 0}
        now = datetime.now(UTC)
        rows = [r.row("proposed", run_id, now) for r in recommendations]
        source = pa.Table.from_pylist(rows, SCHEMA)
        with self._lock:

            def merge() -> dict[str, int]:
                table = self._table()
                if table is None:
                    self.path.parent.mkdir(parents=True, exist_ok=True)
                    write_deltalake(str(self.path), source, mode="append")
                    return {"inserted": len(rows), "updated": 0}
                metrics = (
                    table.merge(
                        source,
                        predicate="t.recommendation_id = s.recommendation_id",
                        source_alias="s",
                        target_alias="t",
                    )
                    .when_matched_update(
                        {c: f"s.{c}" for c in COLUMNS if c not in ("recommendation_id", "status")},
                        predicate="t.status = 'proposed'",
                    )
                    .when_not_matched_insert({c: f"s.{c}" for c in COLUMNS})
                    .execute()
                )
                return {
                    "inserted": int(metrics.get("num_target_rows_inserted", 0)),
                    "updated": int(metrics.get("num_target_rows_updated", 0)),
                }

            return self._retry("saving recommendations", merge)

    def set_status(self, recommendation_id: str, status: str, expected: str = "proposed") -> None:
        """``expected`` -> ``status``; StoreError 409 when the recommendation is no longer ``expected``."""
        if status not in STATUSES or expected not in STATUSES:
            raise StoreError(422, f"status must be one of {', '.join(STATUSES)}")
        with self._lock:
            table = self._table()
            if table is None:
                raise StoreError(404, f"no recommendation {recommendation_id!r}: {TABLE} does not exist")

            def update() -> int:
                current = DeltaTable(str(self.path))
                metrics = current.update(
                    predicate=f"recommendation_id = {literal(recommendation_id)} AND status = {literal(expected)}",
                    updates={"status": literal(status)},
                )
                return int(metrics.get("num_updated_rows", 0))

            updated = self._retry(f"setting {recommendation_id} to {status}", update)
        if not updated:
            found = self.get(recommendation_id)
            if found is None:
                raise StoreError(404, f"no recommendation {recommendation_id!r}")
            raise StoreError(409, f"{recommendation_id} is {found['status']}, not {expected}")

    # ------------------------------------------------------------------------------ reads
    def list(
        self, status: str | None = None, agent: str | None = None, limit: int = 200, ids: list[str] | None = None
    ) -> list[dict[str, Any]]:
        """The agents' recommendations (bootstrap's taxonomy rows are not theirs), newest evidence first."""
        conditions = [f"source LIKE {literal(AGENT_SOURCE_PREFIX + '%')}"]
        if status:
            conditions.append(f"status = {literal(status)}")
        if agent:
            conditions.append(f"source = {literal(AGENT_SOURCE_PREFIX + agent)}")
        if ids is not None:
            if not ids:
                return []
            conditions.append("recommendation_id IN (" + ", ".join(literal(i) for i in ids) + ")")
        result = self.reader.query(
            f"SELECT {', '.join(COLUMNS)} FROM {TABLE} WHERE {' AND '.join(conditions)}",
            TABLE,
        )
        if result is None:
            return []
        rows = [self.parse(r) for r in result.to_pylist()]
        rows.sort(key=lambda r: (r["evidence"].get("created_at") or "", r["recommendation_id"]), reverse=True)
        return rows[:limit]

    def get(self, recommendation_id: str) -> dict[str, Any] | None:
        rows = self.list(ids=[recommendation_id], limit=1)
        return rows[0] if rows else None

    @staticmethod
    def parse(row: dict[str, Any]) -> dict[str, Any]:
        out = dict(row)
        try:
            out["evidence"] = json.loads(row["evidence"] or "{}")
        except ValueError:
            out["evidence"] = {"text": row["evidence"]}
        out["agent"] = (row["source"] or "").removeprefix(AGENT_SOURCE_PREFIX)
        return out
