"""Genie space sync: one AI/BI Genie space over the gold layer, created or brought up to date.

    python -m spark.jobs.genie_sync --catalog C --schema S --warehouse-id W [--title T] [--space-id ID]
        [--parent-path /Workspace/...] [--dry-run] [--result-json PATH]

The space holds (``serialized_space``, version 2): every gold dataset of the registry
(``spark.etl.gold.GOLD``, its description as the table's) plus ``approval_recommendations`` (the
agents' recommendations with their evidence and status) and ``gold_backtest_results``; instructions
that say how the numbers are kept (money in USD DECIMAL, rates as fractions, soft and hard declines,
statuses); sample questions; example question/SQL pairs over those views. Every id is derived from the
content, lists are sorted as the API wants them, so the same definition serialises identically.

Idempotent, through databricks-sdk's ``GenieAPI``: the space is found by ``--space-id`` or by its title;
missing, it is created; present with another definition, it is updated (with the etag it was read
with, so a concurrent edit is not overwritten); identical, nothing is written. Needs a Pro or
serverless SQL warehouse and CAN EDIT on the space (CAN MANAGE once created: the creator has it).
No Spark session: this job only calls the workspace API.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from databricks.sdk import WorkspaceClient
from databricks.sdk.service.dashboards import GenieSpace

from spark.common.cli import setup_logging
from spark.common.tables import APPROVAL_RECOMMENDATIONS, BACKTEST_RESULTS, DEFAULT_CATALOG, DEFAULT_SCHEMA
from spark.etl.gold import GOLD

log = logging.getLogger("spark.jobs.genie_sync")
DEFAULT_TITLE = "payment-analysis"
DESCRIPTION = (
    "Payment approvals, declines, retries, routing, fraud and the analyst agents' recommendations over the "
    "payment-analysis gold layer."
)
EXTRA_TABLES = {
    APPROVAL_RECOMMENDATIONS: "Recommendations with their status (proposed, accepted, dismissed; open for the decline "
    "taxonomy's starter rows) and evidence as JSON: the queries the agent ran, the figures, the expected lift. "
    "source is agent:<specialist> or bootstrap.",
    BACKTEST_RESULTS: "One row per backtest run and metric: the live and the candidate rule set's value and their "
    "delta over the same replayed history (rates as fractions, values in USD).",
}
INSTRUCTIONS = """Money: every *_usd column is US dollars, DECIMAL(18,2), converted from integer minor units; never
round it to a float. Rates and shares are fractions between 0 and 1 with 4 decimals (show them as percentages).
Latencies are milliseconds.
Declines: decline_reason is the standard reason (ISO 8583 code in decline_code). Soft declines (is_soft_decline)
may succeed on retry after the taxonomy's retry_after_seconds; hard declines never do. Recoverable value is
declined value x the reason's retry success rate.
Retries: advised retries waited as the taxonomy advises; lift_over_baseline compares them with earlier retries.
Routing: payment_solution is the route (standard, 3ds, network_token, passkey, apple_pay, google_pay).
Recommendations: approval_recommendations.status is proposed, accepted or dismissed; evidence is JSON.
Days are UTC. Prefer the v_ views over raw tables; they are computed on read."""
SAMPLE_QUESTIONS = (
    "What was the approval rate per day over the last week?",
    "Which card network and payment solution approve best?",
    "Which decline reasons have the most recoverable value?",
    "Does waiting as advised before a retry recover more payments?",
    "Where is fraud being approved, by risk tier and merchant segment?",
    "Which agent recommendations are proposed, and what lift do they expect?",
)


# (question, SQL over the views of {ref} = catalog.schema)
EXAMPLES: tuple[tuple[str, str], ...] = (
    (
        "What was the approval rate per day over the last week?",
        """SELECT event_date, transactions, approved, ROUND(approved / transactions, 4) AS approval_rate
FROM {ref}.v_approval_kpis_daily
WHERE event_date >= date_sub(current_date(), 7)
ORDER BY event_date""",
    ),
    (
        "Which decline reasons have the most recoverable value?",
        """SELECT decline_reason, declines, declined_value_usd, estimated_recoverable_value_usd, recommended_action
FROM {ref}.v_reason_code_insights
ORDER BY estimated_recoverable_value_usd DESC""",
    ),
    (
        "Which card network and payment solution approve best?",
        """SELECT card_network, payment_solution, transactions, approval_rate, p95_latency_ms
FROM {ref}.v_routing_performance
WHERE transactions >= 50
ORDER BY card_network, approval_rate DESC""",
    ),
    (
        "Which agent recommendations are proposed, and what lift do they expect?",
        """SELECT source, title, recommendation, get_json_object(evidence, '$.lift.summary') AS expected_lift
FROM {ref}.approval_recommendations
WHERE status = 'proposed' AND source LIKE 'agent:%'""",
    ),
)


def examples(schema_ref: str) -> tuple[tuple[str, str], ...]:
    """(question, SQL) pairs over the views of ``catalog.schema``."""
    return tuple((q, sql.replace("{ref}", schema_ref)) for q, sql in EXAMPLES)


def content_id(*parts: str) -> str:
    """A 32-character lowercase hex id derived from the content (stable across syncs)."""
    return hashlib.md5("\x1f".join(parts).encode(), usedforsecurity=False).hexdigest()


def serialized_space(catalog: str, schema: str) -> dict[str, Any]:
    """The space's definition (``serialized_space`` version 2) for ``catalog.schema``."""
    ref = f"{catalog}.{schema}"
    tables = [(d.name, d.description) for d in GOLD] + sorted(EXTRA_TABLES.items())
    return {
        "version": 2,
        "config": {
            "sample_questions": sorted(
                ({"id": content_id("q", q), "question": [q]} for q in SAMPLE_QUESTIONS), key=lambda x: x["id"]
            )
        },
        "data_sources": {
            "tables": sorted(
                ({"identifier": f"{ref}.{name}", "description": [text]} for name, text in tables),
                key=lambda t: t["identifier"],
            )
        },
        "instructions": {
            "text_instructions": [{"id": content_id("i", INSTRUCTIONS), "content": [INSTRUCTIONS]}],
            "example_question_sqls": sorted(
                (
                    {"id": content_id("x", q, sql), "question": [q], "sql": [line + "\n" for line in sql.split("\n")]}
                    for q, sql in examples(ref)
                ),
                key=lambda x: x["id"],
            ),
        },
    }


def project(value: Any, like: Any) -> Any:
    """``value`` reduced to the keys ``like`` has (the API may add fields of its own to a space it returns)."""
    if isinstance(like, dict) and isinstance(value, dict):
        return {k: project(value.get(k), v) for k, v in like.items()}
    if isinstance(like, list) and isinstance(value, list) and like and isinstance(like[0], dict):
        keys: dict[str, Any] = {}
        for item in like:
            keys.update(item)
        return [project(v, {k: keys[k] for k in keys if k in v}) if isinstance(v, dict) else v for v in value]
    return value


@dataclass(frozen=True)
class SyncResult:
    action: str  # created | updated | unchanged
    space_id: str
    title: str
    tables: int

    def as_dict(self) -> dict[str, Any]:
        return {"action": self.action, "space_id": self.space_id, "title": self.title, "tables": self.tables}


def find_space(w: WorkspaceClient, title: str) -> GenieSpace | None:
    """The space titled ``title`` (the first one, oldest pages first), or None."""
    token: str | None = None
    while True:
        page = w.genie.list_spaces(page_size=100, page_token=token)
        for space in page.spaces or []:
            if space.title == title:
                return space
        token = page.next_page_token
        if not token:
            return None


def sync(
    w: WorkspaceClient,
    catalog: str,
    schema: str,
    warehouse_id: str,
    title: str = DEFAULT_TITLE,
    space_id: str | None = None,
    parent_path: str | None = None,
) -> SyncResult:
    wanted = serialized_space(catalog, schema)
    tables = len(wanted["data_sources"]["tables"])
    body = json.dumps(wanted, sort_keys=True)
    if space_id is None:
        found = find_space(w, title)
        space_id = found.space_id if found else None
    if space_id is None:
        created = w.genie.create_space(
            warehouse_id, body, title=title, description=DESCRIPTION, parent_path=parent_path
        )
        log.info(
            "created Genie space %s (%s) over %d tables of %s.%s", created.space_id, title, tables, catalog, schema
        )
        return SyncResult("created", created.space_id, title, tables)
    current = w.genie.get_space(space_id, include_serialized_space=True)
    have = json.loads(current.serialized_space) if current.serialized_space else None
    if (
        project(have, wanted) == wanted
        and current.title == title
        and current.description == DESCRIPTION
        and current.warehouse_id == warehouse_id
    ):
        log.info("Genie space %s (%s) is up to date", space_id, title)
        return SyncResult("unchanged", space_id, title, tables)
    w.genie.update_space(
        space_id,
        serialized_space=body,
        title=title,
        description=DESCRIPTION,
        warehouse_id=warehouse_id,
        etag=current.etag,
    )
    log.info("updated Genie space %s (%s) over %d tables of %s.%s", space_id, title, tables, catalog, schema)
    return SyncResult("updated", space_id, title, tables)


def main(argv: list[str] | None = None, client: WorkspaceClient | None = None) -> int:
    setup_logging()
    p = argparse.ArgumentParser(
        prog="python -m spark.jobs.genie_sync",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--catalog", default=DEFAULT_CATALOG, help=f"catalog of the gold views (default {DEFAULT_CATALOG})")
    p.add_argument("--schema", default=DEFAULT_SCHEMA, help=f"schema of the gold views (default {DEFAULT_SCHEMA})")
    p.add_argument("--warehouse-id", default=None, help="Pro or serverless SQL warehouse the space queries through")
    p.add_argument("--title", default=DEFAULT_TITLE, help="the space's title (how it is found again)")
    p.add_argument("--space-id", default=None, help="update this space (default: the one with the title)")
    p.add_argument("--parent-path", default=None, help="workspace folder of a new space")
    p.add_argument("--dry-run", action="store_true", help="print the space definition and exit (no workspace)")
    p.add_argument("--result-json", type=Path, default=None, help="also write the outcome as JSON here")
    args = p.parse_args(argv)
    if args.dry_run:
        print(json.dumps(serialized_space(args.catalog, args.schema), indent=2, sort_keys=True))
        return 0
    if not args.warehouse_id:
        p.error("--warehouse-id is required (a Genie space answers through a SQL warehouse)")
    w = client or WorkspaceClient()  # databricks-sdk's default authentication chain
    result = sync(w, args.catalog, args.schema, args.warehouse_id, args.title, args.space_id, args.parent_path)
    print(json.dumps(result.as_dict()))
    if args.result_json is not None:
        args.result_json.parent.mkdir(parents=True, exist_ok=True)
        args.result_json.write_text(json.dumps(result.as_dict(), indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
