"""Decisions on Databricks: the stream processor's decision log (``<catalog>.<schema>.stream_decision_log``)
read through a SQL warehouse with the Statement Execution API.

Every statement is constant text with named parameter markers: the table through ``IDENTIFIER(:table)``,
the filters and the row limit as typed parameters; what a user types never becomes SQL. Rows come back
as the live feed's entries (the ``DecisionEvent`` plus the transaction facts the log keeps, the amount
as decimal text from its minor units, never a float), so the page and the API read the same shape on
both backends. While a browser follows the stream, a thread polls for rows logged after the last one
seen (keyset on ``logged_at``, ``transaction_id``) and pushes them to the subscribers.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from datetime import UTC, datetime
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from databricks.sdk.errors import DatabricksError
from databricks.sdk.service.sql import (
    Disposition,
    ExecuteStatementRequestOnWaitTimeout,
    Format,
    StatementParameterListItem,
    StatementResponse,
    StatementState,
)
from pydantic import ValidationError

from payments_core.contract import DecisionEvent, from_minor_units
from services.control_plane.backends import BackendError, BackendUnavailable, NotConfigured
from services.control_plane.decision_feed import DecisionFilter, Subscribers, Subscription
from services.control_plane.settings import ControlPlaneSettings

if TYPE_CHECKING:
    from services.control_plane.backends.databricks import Workspace

log = logging.getLogger("control_plane.warehouse")

DECISION_LOG = "stream_decision_log"
WAIT_TIMEOUT = "30s"  # the API waits this long before answering PENDING (0 or 5-50 s)
STATEMENT_DEADLINE_S = 120.0
POLL_BATCH = 500  # new rows fetched per poll of the stream
# What the decision log keeps of the transaction (the stream processor's CONTEXT_FIELDS) and shows as facts.
FACT_COLUMNS = (
    "merchant_id",
    "merchant_segment",
    "amount_minor",
    "currency",
    "card_network",
    "payment_solution",
    "geo_country",
    "is_approved",
    "fraud_score",
    "processing_time_ms",
)
JSON_COLUMNS = ("retry", "reason_codes", "shadow_reason_codes", "model_versions")
SELECT = (
    "SELECT transaction_id, decision_id, schema_version, outcome, approval_probability, risk_score, "
    "recommended_route, to_json(retry) AS retry, to_json(reason_codes) AS reason_codes, "
    "to_json(shadow_reason_codes) AS shadow_reason_codes, challenger_outcome, rule_set_version, "
    "to_json(model_versions) AS model_versions, latency_ms, decided_at, source, event_timestamp, logged_at, "
    + ", ".join(FACT_COLUMNS)
    + " FROM IDENTIFIER(:table)"
)
# Filters: constant SQL, the value in a parameter (lower-cased by us for the substring ones)
FILTER_SQL = {
    "outcome": "outcome = :outcome",
    "source": "source = :source",
    "merchant": "contains(lower(merchant_id), :merchant)",
    "reason_code": "contains(lower(array_join(transform(reason_codes, r -> r.code), ' ')), :reason_code)",
}
ANY_DECISION = DecisionFilter()
_INTEGER_TYPES = {"BYTE", "SHORT", "INT", "LONG", "TINYINT", "SMALLINT", "BIGINT", "INTEGER"}
_FLOAT_TYPES = {"FLOAT", "DOUBLE"}


def quote_identifier(name: str) -> str:
    return "`" + name.replace("`", "``") + "`"


def convert(value: str | None, type_name: str | None) -> Any:
    """A JSON_ARRAY cell (text or null) as its Python value; DECIMAL stays exact."""
    if value is None:
        return None
    kind = (type_name or "STRING").upper()
    if kind in _INTEGER_TYPES:
        return int(value)
    if kind in _FLOAT_TYPES:
        return float(value)
    if kind == "DECIMAL":
        return Decimal(value)
    if kind == "BOOLEAN":
        return value.lower() == "true"
    return value


class Warehouse:
    """Parameterised statements on the SQL warehouse ``PA_DATABRICKS_WAREHOUSE_ID``, rows as dicts."""

    def __init__(self, workspace: Workspace, warehouse_id: str, poll_s: float):
        self.workspace = workspace
        self.warehouse_id = warehouse_id
        self.poll_s = poll_s

    def query(self, statement: str, parameters: dict[str, tuple[Any, str]], row_limit: int) -> list[dict[str, Any]]:
        """Run ``statement`` with ``parameters`` (name -> (value, SQL type)); the rows. BackendError when
        the warehouse is not configured, unreachable, or refuses the statement."""
        if not self.warehouse_id:
            raise NotConfigured(
                "the decisions view reads the decision log through a SQL warehouse on Databricks: "
                "set PA_DATABRICKS_WAREHOUSE_ID"
            )
        items = [
            StatementParameterListItem(name=name, value=None if value is None else str(value), type=sql_type)
            for name, (value, sql_type) in parameters.items()
        ]
        with self.workspace.errors("querying the SQL warehouse"):
            api = self.workspace.client().statement_execution
            response = api.execute_statement(
                statement=statement,
                warehouse_id=self.warehouse_id,
                parameters=items,
                wait_timeout=WAIT_TIMEOUT,
                on_wait_timeout=ExecuteStatementRequestOnWaitTimeout.CONTINUE,
                format=Format.JSON_ARRAY,
                disposition=Disposition.INLINE,
                row_limit=row_limit,
            )
            deadline = time.monotonic() + STATEMENT_DEADLINE_S
            while _statement_state(response) in (StatementState.PENDING, StatementState.RUNNING):
                if time.monotonic() > deadline:
                    api.cancel_execution(response.statement_id or "")
                    raise BackendUnavailable(f"the SQL warehouse did not answer within {STATEMENT_DEADLINE_S:.0f} s")
                time.sleep(self.poll_s)
                response = api.get_statement(response.statement_id or "")
            if _statement_state(response) != StatementState.SUCCEEDED:
                error = response.status.error if response.status else None
                message = error.message if error and error.message else "no message"
                raise StatementFailed(
                    f"the SQL warehouse answered {_value(_statement_state(response))}: {message}",
                    error.error_code if error and error.error_code else None,
                )
            return self._rows(response)

    def _rows(self, response: StatementResponse) -> list[dict[str, Any]]:
        columns = response.manifest.schema.columns if response.manifest and response.manifest.schema else None
        names = [(c.name or f"c{i}", _value(c.type_name)) for i, c in enumerate(columns or [])]
        data = list(response.result.data_array or []) if response.result else []
        next_chunk = response.result.next_chunk_index if response.result else None
        while next_chunk is not None:
            chunk = self.workspace.client().statement_execution.get_statement_result_chunk_n(
                response.statement_id or "", next_chunk
            )
            data += chunk.data_array or []
            next_chunk = chunk.next_chunk_index
        return [{name: convert(cell, kind) for (name, kind), cell in zip(names, row, strict=False)} for row in data]


class StatementFailed(BackendUnavailable):
    def __init__(self, message: str, error_code: Any = None):
        super().__init__(message)
        self.error_code = str(getattr(error_code, "value", error_code) or "")


def _statement_state(response: StatementResponse) -> StatementState | None:
    return response.status.state if response.status else None


def _value(enum_or_none: Any) -> str | None:
    return None if enum_or_none is None else str(getattr(enum_or_none, "value", enum_or_none))


def _iso(value: Any) -> Any:
    return value.replace(" ", "T") if isinstance(value, str) else value


def decision_entry(row: dict[str, Any]) -> dict[str, Any]:
    """A decision-log row as the feed's entry: the validated DecisionEvent, its transaction facts."""
    body: dict[str, Any] = {k: row.get(k) for k in DecisionEvent.model_fields if k in row}
    for name in JSON_COLUMNS:
        text = body.get(name)
        if isinstance(text, str):
            body[name] = json.loads(text)
    if body.get("shadow_reason_codes") is None:
        body.pop("shadow_reason_codes", None)
    body["decided_at"] = _iso(body.get("decided_at"))
    entry = DecisionEvent.model_validate(body).model_dump(mode="json")
    entry["received_at"] = _iso(row.get("logged_at"))
    facts: dict[str, Any] = {name: row.get(name) for name in FACT_COLUMNS if name in row}
    if facts.get("merchant_id") is None:
        entry["transaction"] = None
        return entry
    facts["transaction_id"] = row["transaction_id"]
    facts["event_timestamp"] = _iso(row.get("event_timestamp"))
    minor, currency = facts.get("amount_minor"), facts.get("currency")
    if minor is not None and currency:
        facts["amount"] = str(from_minor_units(int(minor), str(currency)))  # Decimal as text, never a float
    entry["transaction"] = facts
    return entry


class WarehouseDecisions(Subscribers):
    """The decisions view's source on Databricks (the ``DecisionSource`` protocol)."""

    def __init__(self, workspace: Workspace, settings: ControlPlaneSettings):
        self.settings = settings
        self.warehouse = Warehouse(workspace, settings.databricks_warehouse_id, settings.databricks_poll_seconds)
        self.table = ".".join(quote_identifier(p) for p in (settings.catalog, settings.lakehouse_schema, DECISION_LOG))
        self.poll_s = settings.databricks_poll_seconds
        self._lock = threading.Lock()
        self._subscribers: set[Subscription] = set()
        self._cursor: tuple[str, str] | None = None  # (logged_at, transaction_id) of the newest row pushed
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._state = "stopped"
        self._error: str | None = None
        self._counts = {"decisions": 0, "invalid": 0, "dropped_for_subscribers": 0}
        self._last_message_at: str | None = None

    # ------------------------------------------------------------------------------ reading
    def _select(self, clauses: list[str], params: dict[str, tuple[Any, str]], order: str, limit: int) -> list[dict]:
        statement = SELECT + (" WHERE " + " AND ".join(clauses) if clauses else "") + f" ORDER BY {order}"
        statement += " LIMIT :row_limit"
        params = {"table": (self.table, "STRING"), **params, "row_limit": (limit, "INT")}
        try:
            rows = self.warehouse.query(statement, params, limit)
        except StatementFailed as exc:
            if "TABLE_OR_VIEW_NOT_FOUND" in str(exc) or exc.error_code == "NOT_FOUND":
                self._state, self._error = (
                    "connected",
                    f"no decision log yet ({self.table}): start the stream processor",
                )
                return []
            self._state, self._error = "error", str(exc)
            raise
        except BackendError as exc:
            self._state, self._error = "error", str(exc)
            raise
        self._state, self._error = "connected", None
        return rows

    def _entries(self, rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
        out = []
        for row in rows:
            try:
                out.append(decision_entry(row))
            except (ValidationError, ValueError, TypeError) as exc:
                with self._lock:
                    self._counts["invalid"] += 1
                log.debug("invalid decision-log row %s: %s", row.get("transaction_id"), exc)
        with self._lock:
            self._counts["decisions"] += len(out)
        return out

    def recent(self, decision_filter: DecisionFilter = ANY_DECISION, limit: int = 100) -> list[dict[str, Any]]:
        clauses, params = [], {}
        for name, sql in FILTER_SQL.items():
            value = getattr(decision_filter, name)
            if value:
                clauses.append(sql)
                lowered = name in ("merchant", "reason_code")
                params[name] = (value.lower() if lowered else value, "STRING")
        return self._entries(self._select(clauses, params, "decided_at DESC, transaction_id DESC", limit))

    def get(self, transaction_id: str) -> dict[str, Any] | None:
        rows = self._select(
            ["transaction_id = :transaction_id"],
            {"transaction_id": (transaction_id, "STRING")},
            "decided_at DESC",
            1,
        )
        entries = self._entries(rows)
        return entries[0] if entries else None

    def status(self) -> dict[str, Any]:
        with self._lock:
            counts, subscribers = dict(self._counts), len(self._subscribers)
        state = self._state
        if state == "stopped" and not self.settings.decision_feed:
            state = "disabled"
        return {
            "status": state,
            "connected": state == "connected",
            "error": self._error,
            "source": "sql_warehouse",
            "warehouse_id": self.warehouse.warehouse_id or None,
            "table": self.table,
            "consumed": {"decisions": counts["decisions"], "transactions": 0},
            "invalid": {"decisions": counts["invalid"], "transactions": 0},
            "dropped_for_subscribers": counts["dropped_for_subscribers"],
            "buffered": 0,
            "buffer_size": self.settings.decision_buffer,
            "subscribers": subscribers,
            "poll_seconds": self.poll_s,
            "last_message_at": self._last_message_at,
        }

    # ------------------------------------------------------------------------------ the stream

    def start(self) -> None:
        if self._thread is not None:
            return
        self._stop.clear()
        self._state = "starting"
        self._thread = threading.Thread(target=self._run, name="warehouse-decisions", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        thread, self._thread = self._thread, None
        if thread is None:
            return
        self._stop.set()
        thread.join(timeout=10)
        self._state = "stopped"

    def _run(self) -> None:
        while not self._stop.wait(self.poll_s):
            with self._lock:
                watched = bool(self._subscribers)
            if not watched:
                self._cursor = None  # the next viewer starts from what is new then
                continue
            try:
                self.poll()
            except (BackendError, DatabricksError) as exc:
                log.debug("decision poll failed: %s", exc)

    def poll(self) -> list[dict[str, Any]]:
        """Rows logged after the cursor, oldest first, pushed to the subscribers. The first poll only
        places the cursor at the newest row (the stream's backlog came from ``recent``)."""
        order = "logged_at ASC, transaction_id ASC"
        if self._cursor is None:
            newest = self._select([], {}, "logged_at DESC, transaction_id DESC", 1)
            self._cursor = (
                (str(newest[0]["logged_at"]), str(newest[0]["transaction_id"]))
                if newest
                else (datetime.now(UTC).isoformat(), "")
            )
            return []
        since, after = self._cursor
        rows = self._select(
            ["(logged_at > :since OR (logged_at = :since AND transaction_id > :after_id))"],
            {"since": (since, "TIMESTAMP"), "after_id": (after, "STRING")},
            order,
            POLL_BATCH,
        )
        if rows:
            self._cursor = (str(rows[-1]["logged_at"]), str(rows[-1]["transaction_id"]))
            self._last_message_at = datetime.now(UTC).isoformat().replace("+00:00", "Z")
        entries = self._entries(rows)
        for entry in entries:
            self._publish(entry)
        return entries

    def _publish(self, entry: dict[str, Any]) -> None:
        with self._lock:
            targets = [s for s in self._subscribers if s.filter.matches(entry)]
        for subscription in targets:
            try:
                subscription.loop.call_soon_threadsafe(subscription.offer, dict(entry))
            except RuntimeError:  # its event loop is closed: the browser is gone
                self.unsubscribe(subscription)
