"""Backtest: replay a candidate rule set and/or model version over silver history against the live set.

    python -m spark.jobs.backtest --candidate-rules path/to/ruleset.json
    python -m spark.jobs.backtest --candidate-rules table            # approval_rules (active rows)
    python -m spark.jobs.backtest --candidate-model risk=3 --candidate-model approval@challenger
    python -m spark.jobs.backtest --start 2026-11-01 --end 2026-11-08 --max-rows 100000

Both sets decide every transaction of the range with the SHARED decision core
(``payments_core.engine.DecisionEngine.decide_batch``, ``source="backtest"``), on the same features as
online (contract fields, derived features and velocity over the history with the online semantics).
The live set is the published rule set (``$PA_DATA_DIR/rules/ruleset.json``, else the starter set) and
the ``champion`` models; the candidate replaces the rules and/or the given model versions.

Reported per set and as candidate - live deltas (ground truth: ``is_fraud`` of silver): transactions,
approval / challenge / review / decline rates, fraud caught (declined or sent to review) in count,
rate and USD, fraud approved (missed) USD, false declines (legitimate transactions declined) in count,
rate and USD, approved value USD. Written to ``gold_backtest_results`` (one row per metric, appended,
keyed by ``backtest_id``) for the control plane.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import numpy as np
import pandas as pd
from pyspark.sql import functions as F
from pyspark.sql import types as T

from payments_core.engine import DecisionEngine
from payments_core.features import VELOCITY_FEATURES
from payments_core.models import CHALLENGER, ModelBundle, ModelSource
from payments_core.rules.model import Rule, RuleSet, RuleSource
from spark.common.cli import add_lakehouse_args, lakehouse_from_args, setup_logging
from spark.common.session import get_spark
from spark.common.tables import APPROVAL_RULES, BACKTEST_RESULTS, SILVER_TRANSACTIONS, Lakehouse
from spark.jobs.train import default_tracking_uri
from spark.ml.dataset import load_history, utc_timestamp

log = logging.getLogger("spark.jobs.backtest")
DEFAULT_DAYS = 7
DEFAULT_MAX_ROWS = 100_000
BLOCKING = ("decline", "review")


@dataclass(frozen=True)
class DecisionSet:
    label: str
    rules: RuleSet
    models: ModelBundle


@dataclass(frozen=True)
class BacktestSettings:
    lakehouse: Lakehouse
    start: datetime | None = None
    end: datetime | None = None
    days: int = DEFAULT_DAYS
    max_rows: int = DEFAULT_MAX_ROWS
    candidate_rules: str | None = None  # JSON file, or "table"
    candidate_models: tuple[str, ...] = field(default_factory=tuple)  # "kind=version" | "kind@challenger"
    tracking_uri: str | None = None


# ------------------------------------------------------------------------------------------ metrics
def outcome_metrics(history: pd.DataFrame, outcomes: np.ndarray) -> dict[str, float]:
    """Business metrics of one set of outcomes over ``history`` (ground truth ``is_fraud``)."""
    n = len(history)
    fraud = history["is_fraud"].fillna(False).to_numpy(bool)
    usd = history["amount_usd"].map(lambda v: Decimal(0) if v is None else Decimal(v)).to_numpy()
    approve = outcomes == "approve"
    challenge = outcomes == "challenge_3ds"
    review = outcomes == "review"
    decline = outcomes == "decline"
    blocked = review | decline
    passed = approve | challenge

    def usd_sum(mask: np.ndarray) -> float:
        return float(sum(usd[mask], Decimal(0)))

    return {
        "transactions": float(n),
        "approval_rate": float(approve.mean()) if n else 0.0,
        "challenge_rate": float(challenge.mean()) if n else 0.0,
        "review_rate": float(review.mean()) if n else 0.0,
        "decline_rate": float(decline.mean()) if n else 0.0,
        "declines": float(decline.sum()),
        "fraud_transactions": float(fraud.sum()),
        "fraud_caught": float((fraud & blocked).sum()),
        "fraud_caught_rate": float((fraud & blocked).sum() / fraud.sum()) if fraud.any() else 0.0,
        "fraud_caught_value_usd": usd_sum(fraud & blocked),
        "fraud_approved_value_usd": usd_sum(fraud & passed),
        "false_declines": float((~fraud & decline).sum()),
        "false_decline_rate": float((~fraud & decline).sum() / (~fraud).sum()) if (~fraud).any() else 0.0,
        "false_decline_value_usd": usd_sum(~fraud & decline),
        "approved_value_usd": usd_sum(passed),
    }


def decide(history: pd.DataFrame, decision_set: DecisionSet) -> np.ndarray:
    """Outcomes of ``decision_set`` for every row, by the shared decision core."""
    engine = DecisionEngine(decision_set.rules, decision_set.models)
    velocity = history[list(VELOCITY_FEATURES)]
    decisions = engine.decide_batch(history, velocity, source="backtest")
    return np.array([d["outcome"] for d in decisions], dtype=object)


def compare(history: pd.DataFrame, live: DecisionSet, candidate: DecisionSet) -> pd.DataFrame:
    """One row per metric: live, candidate, delta (candidate - live)."""
    a = outcome_metrics(history, decide(history, live))
    b = outcome_metrics(history, decide(history, candidate))
    return pd.DataFrame(
        {
            "metric": list(a),
            "live_value": list(a.values()),
            "candidate_value": [b[k] for k in a],
            "delta": [b[k] - a[k] for k in a],
        }
    )


# ------------------------------------------------------------------------------------------ sets
def rules_from_table(spark, lakehouse: Lakehouse) -> RuleSet:
    rows = lakehouse.read(spark, APPROVAL_RULES).collect()
    fields = set(Rule.model_fields)
    rules = [Rule(**{k: v for k, v in r.asDict().items() if k in fields}) for r in rows]
    return RuleSet(version="approval_rules-table", rules=[r for r in rules if r.active or r.shadow])


def candidate_bundle(source: ModelSource, live: ModelBundle, specs: tuple[str, ...]) -> ModelBundle:
    champions = dict(live.champions)
    for spec in specs:
        if "@" in spec:
            kind, alias = spec.split("@", 1)
            version = source.alias_versions().get((kind, alias))
            if version is None:
                raise SystemExit(f"no {alias} version of the {kind} model")
        elif "=" in spec:
            kind, version = spec.split("=", 1)
        else:
            raise SystemExit(f"--candidate-model {spec!r}: expected kind=version or kind@alias")
        champions[kind] = source.load(kind, version, CHALLENGER)
    return ModelBundle(champions)


def run(
    spark, settings: BacktestSettings, *, live_rules: RuleSet | None = None, candidate_rules: RuleSet | None = None
) -> tuple[str, pd.DataFrame]:

    lh = settings.lakehouse
    end = settings.end
    if end is None:
        latest = lh.read(spark, SILVER_TRANSACTIONS).agg(F.max("event_timestamp")).first()[0]
        if latest is None:
            raise SystemExit("silver_transactions is empty: nothing to replay")
        end = utc_timestamp(latest).to_pydatetime() + timedelta(microseconds=1)
    start = settings.start or end - timedelta(days=settings.days)
    history = load_history(spark, lh, start=start, end=end)
    if settings.max_rows and len(history) > settings.max_rows:
        history = history.tail(settings.max_rows).reset_index(drop=True)  # the most recent rows
    if history.empty:
        raise SystemExit(f"no silver transactions between {start} and {end}")

    live_rules = live_rules or RuleSource.from_env().current()
    if candidate_rules is None:
        if settings.candidate_rules == "table":
            candidate_rules = rules_from_table(spark, lh)
        elif settings.candidate_rules:
            candidate_rules = RuleSet.from_json(Path(settings.candidate_rules).read_text())
        else:
            candidate_rules = live_rules
    uri = settings.tracking_uri or default_tracking_uri()
    source = ModelSource(uri)
    live_models = source.load_bundle()
    cand_models = (
        candidate_bundle(source, live_models, settings.candidate_models) if settings.candidate_models else live_models
    )
    live = DecisionSet("live", live_rules, live_models)
    candidate = DecisionSet("candidate", candidate_rules, cand_models)
    table = compare(history, live, candidate)

    backtest_id = uuid.uuid4().hex[:16]
    meta = {
        "backtest_id": backtest_id,
        "run_at": datetime.now(UTC),
        "range_start": history["event_timestamp"].min().to_pydatetime(),
        "range_end": history["event_timestamp"].max().to_pydatetime(),
        "rows": len(history),
        "live_rule_set_version": live.rules.full_version,
        "candidate_rule_set_version": candidate.rules.full_version,
        "live_model_versions": json.dumps(live.models.versions(), sort_keys=True),
        "candidate_model_versions": json.dumps(candidate.models.versions(), sort_keys=True),
    }
    out = table.assign(**{k: [v] * len(table) for k, v in meta.items()})
    write_results(spark, lh, out)
    return backtest_id, out


def write_results(spark, lakehouse: Lakehouse, out: pd.DataFrame) -> None:
    schema = T.StructType(
        [
            T.StructField(n, t)
            for n, t in (
                ("backtest_id", T.StringType()),
                ("run_at", T.TimestampType()),
                ("range_start", T.TimestampType()),
                ("range_end", T.TimestampType()),
                ("rows", T.LongType()),
                ("live_rule_set_version", T.StringType()),
                ("candidate_rule_set_version", T.StringType()),
                ("live_model_versions", T.StringType()),
                ("candidate_model_versions", T.StringType()),
                ("metric", T.StringType()),
                ("live_value", T.DoubleType()),
                ("candidate_value", T.DoubleType()),
                ("delta", T.DoubleType()),
            )
        ]
    )

    def plain(v):
        if isinstance(v, pd.Timestamp):
            return v.to_pydatetime()
        return v.item() if isinstance(v, np.generic) else v

    rows = [tuple(plain(r[f.name]) for f in schema.fields) for r in out.to_dict("records")]
    lakehouse.write(spark.createDataFrame(rows, schema), BACKTEST_RESULTS, mode="append")


def main(argv: list[str] | None = None) -> int:
    setup_logging()
    p = argparse.ArgumentParser(
        prog="python -m spark.jobs.backtest", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    add_lakehouse_args(p)
    p.add_argument("--start", type=datetime.fromisoformat, default=None, help="ISO date/time (UTC)")
    p.add_argument("--end", type=datetime.fromisoformat, default=None, help="ISO date/time (UTC), exclusive")
    p.add_argument("--days", type=int, default=DEFAULT_DAYS, help="range length when --start is not given")
    p.add_argument("--max-rows", type=int, default=DEFAULT_MAX_ROWS, help="most recent rows of the range (0 = all)")
    p.add_argument("--candidate-rules", default=None, help="rule-set JSON file, or 'table' for approval_rules")
    p.add_argument("--candidate-model", action="append", default=[], help="kind=version or kind@alias (repeat)")
    p.add_argument("--tracking-uri", default=None)
    p.add_argument(
        "--result-json",
        type=Path,
        default=None,
        help="also write the comparison as JSON here (the control plane reads it)",
    )
    args = p.parse_args(argv)

    def utc(d: datetime | None) -> datetime | None:
        return d.replace(tzinfo=UTC) if d is not None and d.tzinfo is None else d

    settings = BacktestSettings(
        lakehouse_from_args(args),
        utc(args.start),
        utc(args.end),
        args.days,
        args.max_rows,
        args.candidate_rules,
        tuple(args.candidate_model),
        args.tracking_uri,
    )

    spark = get_spark("backtest", warehouse_dir=settings.lakehouse.warehouse_dir)
    backtest_id, out = run(spark, settings)
    print(
        f"backtest {backtest_id}: {int(out['rows'].iloc[0])} transactions "
        f"{out['range_start'].iloc[0]} .. {out['range_end'].iloc[0]}"
    )
    print(out[["metric", "live_value", "candidate_value", "delta"]].to_string(index=False))
    if args.result_json is not None:
        write_result_json(args.result_json, backtest_id, out)
    return 0


def write_result_json(path: Path, backtest_id: str, out: pd.DataFrame) -> None:
    """The comparison as JSON: the run's metadata and one entry per metric (live, candidate, delta)."""

    def number(v) -> float | None:
        return None if v is None or pd.isna(v) else float(v)

    first = out.iloc[0]
    body = {
        "backtest_id": backtest_id,
        "rows": int(first["rows"]),
        "range_start": str(first["range_start"]),
        "range_end": str(first["range_end"]),
        "live_rule_set_version": first["live_rule_set_version"],
        "candidate_rule_set_version": first["candidate_rule_set_version"],
        "live_model_versions": json.loads(first["live_model_versions"]),
        "candidate_model_versions": json.loads(first["candidate_model_versions"]),
        "metrics": [
            {
                "metric": r["metric"],
                "live": number(r["live_value"]),
                "candidate": number(r["candidate_value"]),
                "delta": number(r["delta"]),
            }
            for r in out.to_dict("records")
        ],
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(body, indent=2))


if __name__ == "__main__":
    sys.exit(main())
