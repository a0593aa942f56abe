"""Read the lakehouse's Delta tables without a JVM: the dashboard's KPIs and the stream's alerts.

The stream processor writes, under ``<lakehouse_dir>/<catalog>/<lakehouse_schema>/`` (its
``services/stream_processor/metrics.py`` and ``tables.py``, which the control plane must not import):

* ``stream_metrics_1m``: one row per minute of ``decided_at`` (transactions, outcome counts, approval
  rates, high-risk share, latency percentiles), recomputed from the log, so exact and idempotent;
* ``stream_alerts``: one row per minute and alert type (``approval_drop``, ``fraud_spike``,
  ``latency``) with ``active``, the metric, its value, the threshold and the baseline;
* ``stream_decision_log``: one row per transaction (amount, currency, outcome, latencies).

The ETL writes ``bronze_dead_letters`` (records of the dead-letter topic) in the same folder.

Reads go through delta-rs's DataFusion engine (``deltalake.QueryBuilder``), not
``DeltaTable.to_pyarrow_table``: only the former honours the deletion vectors a Spark ``MERGE`` or
``DELETE`` may leave, and it aggregates in SQL (multi-threaded, pruning files by statistics)
instead of materialising the rows in Python. A missing table is not an error: the result is empty
and says what to start. Results are cached per table version, so the pages' polling costs nothing
while the stream has not committed.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson
import pyarrow as pa
from deltalake import DeltaTable, QueryBuilder

from payments_core.contract.money import from_minor_units

METRICS_1M = "stream_metrics_1m"
ALERTS = "stream_alerts"
DECISION_LOG = "stream_decision_log"
BRONZE_DEAD_LETTERS = "bronze_dead_letters"

NO_STREAM_DATA = "no data yet: start the stream processor (Setup & Run, Services)"
OUTCOMES = ("approve", "challenge_3ds", "review", "decline")
# Exact percentiles (percentile_cont keeps every value) up to this many rows in the window, t-digest above.
EXACT_PERCENTILE_MAX_ROWS = 2_000_000
# An alert streak continues over minutes without any row (no traffic) up to this gap.
ALERT_MAX_GAP = timedelta(minutes=5)
# An active alert whose latest minute is older than this is flagged stale (the stream stopped writing).
ALERT_STALE_AFTER = timedelta(minutes=5)
SEVERITY_RANK = {"warning": 1, "critical": 2}
_CACHE_SIZE = 64


def commit_time(commit_file: Path) -> datetime | None:
    """When a Delta commit was made: its ``commitInfo.timestamp`` (the file's time if it has none)."""
    with commit_file.open("rb") as lines:
        for line in lines:
            if line.startswith(b'{"commitInfo"'):
                stamp = orjson.loads(line)["commitInfo"].get("timestamp")
                if stamp:
                    return datetime.fromtimestamp(stamp / 1000, UTC)
    return datetime.fromtimestamp(commit_file.stat().st_mtime, UTC)


def minute_floor(ts: datetime) -> datetime:
    return ts.astimezone(UTC).replace(second=0, microsecond=0)


def window_since(now: datetime, minutes: int) -> datetime:
    """Start of a window of the last ``minutes`` one-minute windows, the current (filling) one included."""
    return minute_floor(now) - timedelta(minutes=minutes - 1)


def sql_ts(ts: datetime) -> str:
    """A UTC timestamp literal for DataFusion SQL."""
    return f"TIMESTAMP '{ts.astimezone(UTC).strftime('%Y-%m-%dT%H:%M:%S.%fZ')}'"


def iso(ts: datetime | None) -> str | None:
    if ts is None:
        return None
    return (ts if ts.tzinfo else ts.replace(tzinfo=UTC)).astimezone(UTC).isoformat()


@dataclass(frozen=True)
class TableInfo:
    name: str
    path: Path
    version: int | None  # None: the table does not exist (yet)
    updated_at: datetime | None  # time of the table's latest Delta commit

    @property
    def exists(self) -> bool:
        return self.version is not None

    def as_dict(self) -> dict[str, Any]:
        return {"table": self.name, "exists": self.exists, "version": self.version, "updated_at": iso(self.updated_at)}


class DeltaReader:
    """The Delta tables of one schema folder, opened once and refreshed incrementally."""

    def __init__(self, root: Path, catalog: str, schema: str):
        self.folder = Path(root) / catalog / schema
        self._tables: dict[str, DeltaTable] = {}
        self._commit_times: dict[str, tuple[int, datetime | None]] = {}  # name -> (version, its commit time)
        self._results: OrderedDict[tuple, pa.Table] = OrderedDict()
        self._lock = threading.RLock()

    def path(self, name: str) -> Path:
        return self.folder / name

    def _open(self, name: str) -> DeltaTable | None:
        """The table at its newest version, or None when it is not there (yet)."""
        table = self._tables.get(name)
        if table is not None:
            try:
                table.update_incremental()
                return table
            except Exception:  # replaced or deleted underneath us: open it again
                self._tables.pop(name, None)
        path = self.path(name)
        if not (path / "_delta_log").is_dir() or not DeltaTable.is_deltatable(str(path)):
            return None
        table = self._tables[name] = DeltaTable(str(path))
        return table

    def info(self, name: str) -> TableInfo:
        """The table's newest version and commit time, from its transaction log alone: opening the
        table would parse its schema, which delta-rs refuses for some types Spark writes (e.g. the
        collated strings of a Lakeflow pipeline's tables) that no query here reads."""
        with self._lock:
            log_dir = self.path(name) / "_delta_log"
            commits = sorted(log_dir.glob("[0-9]*.json")) if log_dir.is_dir() else []
            if not commits:
                return TableInfo(name, self.path(name), None, None)
            newest = commits[-1]
            version = int(newest.name.split(".", 1)[0])
            known = self._commit_times.get(name)
            if known is None or known[0] != version:
                known = self._commit_times[name] = (version, commit_time(newest))
            return TableInfo(name, self.path(name), version, known[1])

    def query(self, sql: str, *names: str) -> pa.Table | None:
        """Run ``sql`` over the tables ``names`` (registered under those names); None if one is missing.
        Cached per (sql, table versions)."""
        with self._lock:
            opened = {name: self._open(name) for name in names}
            tables = {name: t for name, t in opened.items() if t is not None}
            if len(tables) < len(opened):
                return None
            key = (sql, *((name, t.version()) for name, t in tables.items()))
            cached = self._results.get(key)
            if cached is not None:
                self._results.move_to_end(key)
                return cached
            builder = QueryBuilder()
            for name, table in tables.items():
                builder = builder.register(name, table)
            result = pa.table(builder.execute(sql).read_all())
            self._results[key] = result
            if len(self._results) > _CACHE_SIZE:
                self._results.popitem(last=False)
            return result


# ---------------------------------------------------------------------------------------- dashboard
def _sum(rows: list[dict], column: str) -> int:
    return sum(r[column] or 0 for r in rows)


def _weighted(rows: list[dict], column: str) -> float | None:
    """Mean of a per-minute value weighted by the minute's transactions (minutes where it is known)."""
    known = [(r[column], r["transactions"] or 0) for r in rows if r[column] is not None]
    weight = sum(n for _, n in known)
    return sum(v * n for v, n in known) / weight if weight else None


def _max(rows: list[dict], column: str) -> float | None:
    values = [r[column] for r in rows if r[column] is not None]
    return max(values) if values else None


def _ratio(numerator: float, denominator: float) -> float | None:
    return numerator / denominator if denominator else None


METRIC_COLUMNS = (
    "window_start",
    "transactions",
    *OUTCOMES,
    "decision_approval_rate",
    "processor_approvals",
    "processor_approval_rate",
    "avg_risk_score",
    "high_risk",
    "high_risk_share",
    "avg_fraud_score",
    "e2e_latency_p50_ms",
    "e2e_latency_p99_ms",
    "decision_latency_p99_ms",
    "processing_time_p99_ms",
)


def minute_rows(reader: DeltaReader, since: datetime) -> list[dict] | None:
    """The one-minute metrics from ``since`` on, oldest first (None: no metrics table)."""
    table = reader.query(
        f"SELECT {', '.join(METRIC_COLUMNS)} FROM {METRICS_1M} "
        f"WHERE window_start >= {sql_ts(since)} ORDER BY window_start",
        METRICS_1M,
    )
    return None if table is None else table.to_pylist()


def window_kpis(rows: list[dict]) -> dict[str, Any]:
    """KPIs of a window from its minutes' metrics (counts summed, rates over the summed counts)."""
    n = _sum(rows, "transactions")
    with_processor = [r for r in rows if r["processor_approval_rate"] is not None]
    return {
        "transactions": n,
        "outcomes": {o: _sum(rows, o) for o in OUTCOMES},
        "decision_approval_rate": _ratio(_sum(rows, "approve"), n),
        # processor_approvals counts the transactions the processor approved among those with an outcome
        "processor_approval_rate": _ratio(
            _sum(with_processor, "processor_approvals"), _sum(with_processor, "transactions")
        ),
        "high_risk": _sum(rows, "high_risk"),
        "high_risk_share": _ratio(_sum(rows, "high_risk"), n),
        "avg_fraud_score": _weighted(rows, "avg_fraud_score"),
        "avg_risk_score": _weighted(rows, "avg_risk_score"),
    }


def metrics_latency(rows: list[dict]) -> dict[str, Any]:
    """Window latency from per-minute percentiles: a percentile of a window is not a function of its
    minutes' percentiles, so these are the transaction-weighted means and the worst minute."""
    return {
        "source": METRICS_1M,
        "exact": False,
        "e2e_p50_ms": _weighted(rows, "e2e_latency_p50_ms"),
        "e2e_p99_ms": _weighted(rows, "e2e_latency_p99_ms"),
        "decision_p50_ms": None,
        "decision_p99_ms": _weighted(rows, "decision_latency_p99_ms"),
        "worst_minute_e2e_p99_ms": _max(rows, "e2e_latency_p99_ms"),
        "worst_minute_decision_p99_ms": _max(rows, "decision_latency_p99_ms"),
        "note": "means of the minutes' percentiles (the decision log is not readable)",
    }


def log_latency(reader: DeltaReader, since: datetime, rows_in_window: int) -> dict[str, Any] | None:
    """Latency percentiles of the window over the decision log's rows (None: no log)."""
    function = "percentile_cont" if rows_in_window <= EXACT_PERCENTILE_MAX_ROWS else "approx_percentile_cont"

    def pct(q: float, col: str) -> str:
        return f"{function}({q}) WITHIN GROUP (ORDER BY {col})"

    table = reader.query(
        f"SELECT count(*) AS n, {pct(0.5, 'e2e_latency_ms')} AS e2e_p50_ms, "
        f"{pct(0.99, 'e2e_latency_ms')} AS e2e_p99_ms, "
        f"{pct(0.5, 'latency_ms')} AS decision_p50_ms, {pct(0.99, 'latency_ms')} AS decision_p99_ms "
        f"FROM {DECISION_LOG} WHERE decided_at >= {sql_ts(since)}",
        DECISION_LOG,
    )
    if table is None:
        return None
    out = table.to_pylist()[0]
    return {
        "source": DECISION_LOG,
        "exact": rows_in_window <= EXACT_PERCENTILE_MAX_ROWS,
        "rows": out.pop("n"),
        **out,
        "note": "percentiles over every decision of the window",
    }


def log_value(reader: DeltaReader, since: datetime) -> dict[str, Any]:
    """Transaction value of the window per currency (Decimal strings in major units) from the log."""
    table = reader.query(
        "SELECT currency, count(*) AS transactions, sum(amount_minor) AS total_minor, "
        "sum(CASE WHEN outcome = 'approve' THEN amount_minor ELSE 0 END) AS approved_minor, "
        "sum(CASE WHEN outcome = 'decline' THEN amount_minor ELSE 0 END) AS declined_minor "
        f"FROM {DECISION_LOG} WHERE decided_at >= {sql_ts(since)} AND amount_minor IS NOT NULL "
        "GROUP BY currency ORDER BY sum(amount_minor) DESC",
        DECISION_LOG,
    )
    if table is None:
        return {
            "available": False,
            "source": None,
            "by_currency": [],
            "message": f"value is not available: the decision log ({DECISION_LOG}) is not there yet",
        }

    def money(minor: int | None, currency: str) -> str | None:
        try:
            return str(from_minor_units(minor or 0, currency))
        except KeyError:  # a currency without a known exponent: show minor units, never guess
            return None

    by_currency = [
        {
            "currency": r["currency"],
            "transactions": r["transactions"],
            "total": money(r["total_minor"], r["currency"]),
            "approved": money(r["approved_minor"], r["currency"]),
            "declined": money(r["declined_minor"], r["currency"]),
            "total_minor": r["total_minor"],
            "approved_minor": r["approved_minor"],
            "declined_minor": r["declined_minor"],
        }
        for r in table.to_pylist()
    ]
    return {
        "available": True,
        "source": DECISION_LOG,
        "by_currency": by_currency,
        "message": None if by_currency else "no decisions in the window",
    }


def series(rows: list[dict]) -> list[dict[str, Any]]:
    return [
        {**{k: r[k] for k in METRIC_COLUMNS if k != "window_start"}, "minute": iso(r["window_start"])} for r in rows
    ]


def bronze_dead_letters(reader: DeltaReader, since: datetime) -> int | None:
    table = reader.query(
        f"SELECT count(*) AS n FROM {BRONZE_DEAD_LETTERS} WHERE kafka_timestamp >= {sql_ts(since)}", BRONZE_DEAD_LETTERS
    )
    return None if table is None else int(table.column("n")[0].as_py())


def dashboard(reader: DeltaReader, minutes: int, now: datetime | None = None) -> dict[str, Any]:
    """KPIs and per-minute series of the last ``minutes`` one-minute windows (the current one included)."""
    now = now or datetime.now(UTC)
    since = window_since(now, minutes)
    metrics_info = reader.info(METRICS_1M)
    log_info = reader.info(DECISION_LOG)
    result: dict[str, Any] = {
        "window_minutes": minutes,
        "from": iso(since),
        "to": iso(now),
        "updated_at": iso(metrics_info.updated_at),
        "sources": {i.name: i.as_dict() for i in (metrics_info, log_info)},
        "message": None,
    }
    rows = minute_rows(reader, since)
    if rows is None:
        return {
            **result,
            "message": NO_STREAM_DATA,
            "kpis": None,
            "latency": None,
            "value": log_value(reader, since),
            "series": [],
            "latest_minute": None,
        }
    kpis = window_kpis(rows)
    kpis["transactions_per_minute"] = kpis["transactions"] / minutes
    latency = (log_latency(reader, since, kpis["transactions"]) if log_info.exists else None) or metrics_latency(rows)
    if latency["source"] == DECISION_LOG:
        # the log holds each decision; its window percentiles are exact, the worst minutes come from the metrics
        latency["worst_minute_e2e_p99_ms"] = _max(rows, "e2e_latency_p99_ms")
        latency["worst_minute_decision_p99_ms"] = _max(rows, "decision_latency_p99_ms")
    latest = reader.query(f"SELECT max(window_start) AS latest FROM {METRICS_1M}", METRICS_1M)
    latest_minute = latest.column("latest")[0].as_py() if latest is not None else None
    if not rows:
        result["message"] = f"no decisions in the last {minutes} min" + (
            f"; the latest minute with data is {iso(latest_minute)}: is the stream processor running?"
            if latest_minute
            else f": {NO_STREAM_DATA}"
        )
    return {
        **result,
        "kpis": kpis,
        "latency": latency,
        "value": log_value(reader, since),
        "series": series(rows),
        "latest_minute": iso(latest_minute),
    }


# ------------------------------------------------------------------------------------------- alerts
def _worse(a: dict, b: dict) -> dict:
    """The row of an alert streak that is further past its threshold."""
    if a["alert_type"] == "approval_drop":  # lower approval is worse
        return (
            a
            if (a["value"] if a["value"] is not None else 1.0) <= (b["value"] if b["value"] is not None else 1.0)
            else b
        )
    return a if (a["value"] or 0.0) >= (b["value"] or 0.0) else b


def _episodes(rows: list[dict]) -> list[dict]:
    """Streaks of active minutes of one alert type (rows oldest first)."""
    episodes: list[dict] = []
    current: dict | None = None
    previous_start: datetime | None = None
    for row in rows:
        gap_ok = previous_start is not None and row["window_start"] - previous_start <= ALERT_MAX_GAP
        if row["active"]:
            if current is not None and gap_ok:
                current["rows"].append(row)
            else:
                current = {"rows": [row]}
                episodes.append(current)
        else:
            current = None
        previous_start = row["window_start"]
    return episodes


def _describe(episode: dict, latest_row: dict, now: datetime) -> dict[str, Any]:
    rows = episode["rows"]
    first, last = rows[0], rows[-1]
    peak = rows[0]
    for row in rows[1:]:
        peak = _worse(peak, row)
    ongoing = last is latest_row
    severity = max((r["severity"] or "warning" for r in rows), key=lambda s: SEVERITY_RANK.get(s, 0))
    return {
        "alert_type": first["alert_type"],
        "ongoing": ongoing,
        "stale": ongoing and now - last["window_start"] > ALERT_STALE_AFTER,
        "started_at": iso(first["window_start"]),
        "last_minute": iso(last["window_start"]),
        "ended_at": None if ongoing else iso(last["window_start"] + timedelta(minutes=1)),
        "minutes": len(rows),
        "severity": last["severity"],
        "worst_severity": severity,
        "metric": last["metric"],
        "value": last["value"],
        "threshold": last["threshold"],
        "baseline": last["baseline"],
        "transactions": last["transactions"],
        "message": last["message"],
        "peak_value": peak["value"],
        "peak_minute": iso(peak["window_start"]),
        "peak_message": peak["message"],
    }


def alerts(
    reader: DeltaReader,
    history_hours: float = 24.0,
    active_only: bool = False,
    now: datetime | None = None,
    history_limit: int = 200,
) -> dict[str, Any]:
    """Active alerts (the latest minute of their type is active) with the minute their current streak
    started, and the recent episodes of every type (newest first)."""
    now = now or datetime.now(UTC)
    since = minute_floor(now) - timedelta(hours=history_hours)
    info = reader.info(ALERTS)
    result: dict[str, Any] = {
        "updated_at": iso(info.updated_at),
        "since": iso(since),
        "active": [],
        "history": [],
        "latest_minute": None,
        "message": None,
        "source": info.as_dict(),
    }
    table = reader.query(
        "SELECT window_start, alert_type, active, severity, metric, value, threshold, baseline, transactions, "
        f"message FROM {ALERTS} WHERE window_start >= {sql_ts(since)} ORDER BY alert_type, window_start",
        ALERTS,
    )
    if table is None:
        return {**result, "message": NO_STREAM_DATA}
    by_type: dict[str, list[dict]] = {}
    for row in table.to_pylist():
        by_type.setdefault(row["alert_type"], []).append(row)
    if not by_type:
        return {**result, "message": f"no minute judged in the last {history_hours:g} h: {NO_STREAM_DATA}"}
    described: list[dict] = []
    for rows in by_type.values():
        described.extend(_describe(e, rows[-1], now) for e in _episodes(rows))
    result["latest_minute"] = iso(max(rows[-1]["window_start"] for rows in by_type.values()))
    result["active"] = sorted(
        (e for e in described if e["ongoing"]), key=lambda e: (-SEVERITY_RANK.get(e["severity"], 0), e["started_at"])
    )
    if not active_only:
        result["history"] = sorted(described, key=lambda e: e["started_at"], reverse=True)[:history_limit]
    return result


_readers: dict[Path, DeltaReader] = {}
_readers_lock = threading.Lock()


def reader_for(root: Path, catalog: str, schema: str) -> DeltaReader:
    """One reader per schema folder for the process (its opened tables and result cache are shared)."""
    key = (Path(root) / catalog / schema).resolve()
    with _readers_lock:
        if key not in _readers:
            _readers[key] = DeltaReader(root, catalog, schema)
        return _readers[key]
