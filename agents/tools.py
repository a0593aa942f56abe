"""The agents' tools: parameterised queries over the dashboard tables, each a JSON-schema'd function.

The same definitions serve the deterministic specialists (``Toolbox.query``) and an LLM's function
calls (``ToolSpec.schema`` is what the model is offered; ``check_arguments`` is what its arguments must
pass). Arguments are validated before any SQL is written: unknown names, wrong types, values outside a
vocabulary or a range are refused with a message that says why (:class:`ToolRefused`), never guessed.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from jsonschema import Draft202012Validator

from agents.query import MissingTable, QueryRecord, QueryRunner, literal, plain, run_query
from dashboards import all_datasets
from payments_core.rules.language import FIELDS

DATASETS = all_datasets()  # the dashboards' datasets: the tools read their materialised tables

# The values a filter may take: the rule language's vocabularies (the contract's enumerations).
NETWORKS: tuple[str, ...] = tuple(FIELDS["card_network"].vocabulary or ())
SEGMENTS: tuple[str, ...] = tuple(FIELDS["merchant_segment"].vocabulary or ())
SOLUTIONS: tuple[str, ...] = tuple(FIELDS["payment_solution"].vocabulary or ())
DECLINE_REASONS: tuple[str, ...] = tuple(FIELDS["previous_decline_code"].vocabulary or ())
RISK_TIERS: tuple[str, ...] = tuple(FIELDS["risk_tier"].vocabulary or ())
GOLD_CATEGORIES = ("routing", "retry", "decline_recovery")
MAX_ROWS_TO_MODEL = 50  # rows of a query result shown to an LLM (the evidence keeps the count)


class ToolRefused(Exception):
    """A call that was not executed: unknown tool, arguments that are not valid. Sent back as the result."""


def enum(values: tuple[str, ...], description: str) -> dict[str, Any]:
    return {"type": "string", "enum": list(values), "description": description}


def integer(description: str, minimum: int, maximum: int, default: int) -> dict[str, Any]:
    return {"type": "integer", "minimum": minimum, "maximum": maximum, "default": default, "description": description}


def number(description: str, minimum: float, maximum: float, default: float) -> dict[str, Any]:
    return {"type": "number", "minimum": minimum, "maximum": maximum, "default": default, "description": description}


def object_schema(properties: dict[str, dict[str, Any]]) -> dict[str, Any]:
    return {"type": "object", "properties": properties, "additionalProperties": False}


def check_arguments(name: str, schema: dict[str, Any], arguments: Any) -> dict[str, Any]:
    """``arguments`` validated against ``schema`` with its defaults filled in; ToolRefused naming every problem."""
    if not isinstance(arguments, dict):
        raise ToolRefused(f"arguments of {name} must be a JSON object, not {type(arguments).__name__}")
    errors = sorted(Draft202012Validator(schema).iter_errors(arguments), key=lambda e: list(e.path))
    if errors:
        problems = "; ".join(
            (f"{'.'.join(str(p) for p in e.path)}: " if e.path else "") + e.message for e in errors[:5]
        )
        raise ToolRefused(f"invalid arguments for {name}: {problems}")
    out = dict(arguments)
    for key, spec in schema.get("properties", {}).items():
        if key not in out and "default" in spec:
            out[key] = spec["default"]
    return out


def where(conditions: list[str]) -> str:
    return (" WHERE " + " AND ".join(conditions)) if conditions else ""


def equals(column: str, value: Any) -> list[str]:
    return [] if value is None else [f"{column} = {literal(value)}"]


@dataclass(frozen=True)
class QueryTool:
    """A parameterised query over one dashboard dataset's table (``dash_<dataset>``)."""

    name: str
    description: str
    dataset: str  # a dataset of the dashboards (dashboards.definitions)
    properties: dict[str, dict[str, Any]]
    build: Callable[[dict[str, Any]], str]  # checked arguments -> SQL over {table}

    @property
    def table(self) -> str:
        return DATASETS[self.dataset].table

    @property
    def schema(self) -> dict[str, Any]:
        return object_schema(self.properties)

    def sql(self, checked: dict[str, Any]) -> str:
        return self.build(checked).replace("{table}", self.table)


def _routing(a: dict[str, Any]) -> str:
    cond = [f"transactions >= {literal(a['min_transactions'])}"]
    cond += equals("card_network", a.get("card_network")) + equals("payment_solution", a.get("payment_solution"))
    return (
        "SELECT card_network, payment_solution, transactions, approved, approval_rate, approved_value_usd, "
        "avg_latency_ms, p95_latency_ms, fraud_rate FROM {table}"
        + where(cond)
        + " ORDER BY card_network, approval_rate DESC, payment_solution"
    )


def _retry(a: dict[str, Any]) -> str:
    return (
        "SELECT decline_reason, retries, recovered, retry_success_rate, recovered_value_usd, "
        "avg_seconds_since_previous, advised_retries, advised_success_rate, early_retries, baseline_success_rate, "
        "lift_over_baseline, first_attempt_approval_rate FROM {table}"
        + where(equals("decline_reason", a.get("decline_reason")))
        + " ORDER BY retries DESC, decline_reason"
    )


def _reasons(a: dict[str, Any]) -> str:
    cond = equals("decline_reason", a.get("decline_reason"))
    if a["soft_only"]:
        cond.append("is_soft_decline")
    return (
        "SELECT decline_reason, decline_code, decline_group, is_soft_decline, recommended_action, retry_after_seconds, "
        "declines, share_of_declines, declined_value_usd, avg_declined_amount_usd, retry_success_rate, "
        "estimated_recoverable_value_usd, top_merchant_segment FROM {table}"
        + where(cond)
        + f" ORDER BY declined_value_usd DESC, decline_reason LIMIT {literal(a['limit'])}"
    )


def _hotspots(a: dict[str, Any]) -> str:
    cond = (
        equals("decline_reason", a.get("decline_reason"))
        + equals("merchant_segment", a.get("merchant_segment"))
        + equals("payment_solution", a.get("payment_solution"))
    )
    return (
        "SELECT decline_reason, merchant_segment, payment_solution, SUM(declines) AS declines, "
        "SUM(soft_declines) AS soft_declines, SUM(declined_value_usd) AS declined_value_usd, "
        "SUM(recoverable_value_usd) AS recoverable_value_usd FROM {table}"
        + where(cond)
        + " GROUP BY decline_reason, merchant_segment, payment_solution"
        + f" ORDER BY declined_value_usd DESC, decline_reason, merchant_segment, payment_solution"
        f" LIMIT {literal(a['limit'])}"
    )


def _risk(a: dict[str, Any]) -> str:
    cond = [f"transactions >= {literal(a['min_transactions'])}"]
    cond += equals("risk_tier", a.get("risk_tier")) + equals("merchant_segment", a.get("merchant_segment"))
    return (
        "SELECT risk_tier, merchant_segment, transactions, fraud_transactions, fraud_declined, fraud_approved, "
        "fraud_approved_value_usd, approval_rate, avg_fraud_score, avg_composite_risk, cross_border_share, night_share "
        "FROM {table}"
        + where(cond)
        + " ORDER BY fraud_approved_value_usd DESC, fraud_transactions DESC, risk_tier, merchant_segment"
    )


def _segments(a: dict[str, Any]) -> str:
    return (
        "SELECT merchant_segment, merchants, transactions, approved, approval_rate, total_value_usd, avg_ticket_usd, "
        "fraud_rate, avg_latency_ms, top_decline_reason FROM {table}"
        + where(equals("merchant_segment", a.get("merchant_segment")))
        + " ORDER BY transactions DESC, merchant_segment"
    )


def _gold_recommendations(a: dict[str, Any]) -> str:
    return (
        "SELECT priority, category, scope, recommendation, metric, current_value, expected_value, "
        "estimated_impact_usd, evidence_transactions FROM {table}"
        + where(equals("category", a.get("category")))
        + f" ORDER BY priority LIMIT {literal(a['limit'])}"
    )


def _daily(a: dict[str, Any]) -> str:
    return (
        "SELECT event_date, transactions, approved, declined, total_value_usd, approved_value_usd, declined_value_usd, "
        "fraud_transactions, avg_latency_ms, p95_latency_ms FROM {table}"
        f" ORDER BY event_date DESC LIMIT {literal(a['days'])}"
    )


def _three_ds(a: dict[str, Any]) -> str:
    return (
        "SELECT card_network, transactions, three_ds_requested, three_ds_routed, three_ds_challenged, "
        "three_ds_authenticated, approved_after_authentication, routing_rate, challenge_rate, authentication_rate, "
        "approval_rate_after_authentication FROM {table}"
        + where(equals("card_network", a.get("card_network")))
        + " ORDER BY transactions DESC, card_network"
    )


QUERY_TOOLS: tuple[QueryTool, ...] = (
    QueryTool(
        "routing_performance",
        "Approval rate, approved value (USD), p95 latency and fraud rate per card network and payment solution "
        "(dashboards 3, 6, 10).",
        "routing",
        {
            "card_network": enum(NETWORKS, "only this card network"),
            "payment_solution": enum(SOLUTIONS, "only this payment solution (route)"),
            "min_transactions": integer("routes with at least this many transactions", 1, 10_000_000, 1),
        },
        _routing,
    ),
    QueryTool(
        "retry_performance",
        "Retries per previous decline reason: success rate, recovered value (USD), success after the taxonomy's "
        "advised wait vs earlier retries (lift_over_baseline) (dashboards 2, 6).",
        "retry_performance",
        {"decline_reason": enum(DECLINE_REASONS, "only this decline reason")},
        _retry,
    ),
    QueryTool(
        "decline_reasons",
        "Declines per standard reason: count, share, declined value and estimated recoverable value (USD), "
        "recommended action, top merchant segment (dashboards 1, 2).",
        "reason_codes",
        {
            "decline_reason": enum(DECLINE_REASONS, "only this decline reason"),
            "soft_only": {"type": "boolean", "default": False, "description": "only soft (retryable) declines"},
            "limit": integer("at most this many reasons, largest declined value first", 1, 50, 10),
        },
        _reasons,
    ),
    QueryTool(
        "decline_hotspots",
        "Where declines concentrate: declines and declined / recoverable value (USD) per reason, merchant segment "
        "and payment solution (dashboards 2, 9).",
        "decline_patterns",
        {
            "decline_reason": enum(DECLINE_REASONS, "only this decline reason"),
            "merchant_segment": enum(SEGMENTS, "only this merchant segment"),
            "payment_solution": enum(SOLUTIONS, "only this payment solution"),
            "limit": integer("at most this many rows, largest declined value first", 1, 100, 10),
        },
        _hotspots,
    ),
    QueryTool(
        "risk_signals",
        "Per risk tier and merchant segment: transactions, fraud caught and approved (count, USD), approval rate, "
        "average scores (dashboard 4).",
        "risk_signals",
        {
            "risk_tier": enum(RISK_TIERS, "only this risk tier"),
            "merchant_segment": enum(SEGMENTS, "only this merchant segment"),
            "min_transactions": integer("cells with at least this many transactions", 1, 10_000_000, 1),
        },
        _risk,
    ),
    QueryTool(
        "segment_performance",
        "KPIs per merchant segment: approval rate, value and average ticket (USD), fraud rate, latency, top decline "
        "reason (dashboard 5).",
        "segments",
        {"merchant_segment": enum(SEGMENTS, "only this merchant segment")},
        _segments,
    ),
    QueryTool(
        "gold_recommendations",
        "The gold layer's ranked recommendations (routing, retry timing, decline recovery) with current and "
        "expected values and estimated impact in USD (dashboards 6, 9).",
        "recommendations",
        {
            "category": enum(GOLD_CATEGORIES, "only this category"),
            "limit": integer("at most this many, highest priority first", 1, 50, 10),
        },
        _gold_recommendations,
    ),
    QueryTool(
        "daily_kpis",
        "Daily approval KPIs, newest day first: transactions, approved, declined, values in USD, fraud, latency "
        "(dashboards 1, 4, 9).",
        "daily_kpis",
        {"days": integer("the most recent days", 1, 366, 7)},
        _daily,
    ),
    QueryTool(
        "three_ds_funnel",
        "3DS funnel per card network: requested, routed, challenged, authenticated, approved after authentication "
        "(dashboard 8).",
        "three_ds_funnel",
        {"card_network": enum(NETWORKS, "only this card network")},
        _three_ds,
    ),
)
QUERY_TOOLS_BY_NAME: dict[str, QueryTool] = {t.name: t for t in QUERY_TOOLS}


@dataclass
class Toolbox:
    """The query tools bound to a reader for one run; every query run is recorded for the evidence."""

    runner: QueryRunner
    records: list[QueryRecord] = field(default_factory=list)

    def query(self, name: str, **arguments: Any) -> tuple[list[dict[str, Any]], QueryRecord]:
        """Rows (values as read: money stays Decimal) and the record of the query. ToolRefused on bad
        arguments, MissingTable when the table is not there yet."""
        tool = QUERY_TOOLS_BY_NAME.get(name)
        if tool is None:
            raise ToolRefused(f"unknown tool {name!r}")
        checked = check_arguments(name, tool.schema, {k: v for k, v in arguments.items() if v is not None})
        result = run_query(self.runner, name, tool.table, tool.sql(checked), checked)
        self.records.append(result.record)
        return result.rows, result.record

    def for_model(self, name: str, arguments: Any) -> dict[str, Any]:
        """A query as an LLM's function call: the result as JSON (money as strings), at most
        ``MAX_ROWS_TO_MODEL`` rows."""
        tool = QUERY_TOOLS_BY_NAME[name]
        checked = check_arguments(name, tool.schema, arguments)
        try:
            result = run_query(self.runner, name, tool.table, tool.sql(checked), checked)
        except MissingTable as exc:
            return {"error": str(exc)}
        self.records.append(result.record)
        rows = [{k: plain(v) for k, v in r.items()} for r in result.rows]
        return {
            "table": tool.table,
            "sql": result.record.sql,
            "row_count": len(rows),
            "rows": rows[:MAX_ROWS_TO_MODEL],
            "truncated": len(rows) > MAX_ROWS_TO_MODEL,
        }
