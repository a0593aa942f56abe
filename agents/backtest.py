"""Expected lift by backtest: the host replays the live rule set plus a candidate rule over silver history
(``spark.jobs.backtest``, run as the control plane's backtest step) and hands back the job's comparison
(the ``--result-json`` body: one entry per metric with live, candidate and delta).

The agents never start a job themselves: the host passes a :class:`BacktestRunner` callable. A run has a
budget of backtests (each is a Spark job), and may be told not to backtest at all; either way the
recommendation says why its lift was not measured.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from decimal import Decimal
from typing import Any, Protocol

from agents.model import Lift, RuleProposal, cents, pp_text, usd_text

log = logging.getLogger("agents.backtest")

# metrics shown as the lift, in this order: (metric, kind)
LIFT_METRICS: tuple[tuple[str, str], ...] = (
    ("approval_rate", "rate"),
    ("fraud_caught", "count"),
    ("fraud_caught_value_usd", "usd"),
    ("fraud_approved_value_usd", "usd"),
    ("false_declines", "count"),
    ("false_decline_value_usd", "usd"),
    ("approved_value_usd", "usd"),
    ("review_rate", "rate"),
    ("challenge_rate", "rate"),
    ("decline_rate", "rate"),
)


class BacktestUnavailable(Exception):
    """The host could not backtest (no backtest step, one already running, the run failed or timed out)."""


class BacktestRunner(Protocol):
    """Replay the live rule set with ``rules`` added (active, not shadow) against the live set alone;
    returns the job's result JSON as a dict (with ``run_id`` when the host ran it as a step)."""

    def __call__(self, rules: list[dict[str, Any]], note: str) -> dict[str, Any]: ...


COUNT_METRICS = frozenset({"transactions", "declines", "fraud_transactions", "fraud_caught", "false_declines"})


def metric_kind(name: str) -> str:
    if name.endswith("_usd"):
        return "usd"
    return "count" if name in COUNT_METRICS else "rate"


def metric_value(kind: str, value: Any) -> Any:
    if value is None:
        return None
    if kind == "usd":
        return cents(value)  # the job reports USD as float: rounded to cents, kept as Decimal
    if kind == "count":
        return round(float(value))
    return round(float(value), 6)


def lift_from_result(result: dict[str, Any]) -> Lift:
    """The lift of a candidate from the backtest job's comparison."""
    by_name = {m["metric"]: m for m in result.get("metrics", [])}
    figures: dict[str, Any] = {}
    for name, kind in LIFT_METRICS:
        assert kind == metric_kind(name), name
        m = by_name.get(name)
        if m is None:
            continue
        figures[name] = {
            "live": metric_value(kind, m.get("live")),
            "candidate": metric_value(kind, m.get("candidate")),
            "delta": metric_value(kind, m.get("delta")),
        }
    if not figures:
        return Lift("backtest", "failed", "the backtest reported no metrics", backtest=_meta(result))
    parts = []
    if "fraud_caught_value_usd" in figures:
        parts.append(f"fraud caught {_signed_usd(figures['fraud_caught_value_usd']['delta'])}")
    if "approval_rate" in figures:
        parts.append(f"approval rate {pp_text(figures['approval_rate']['delta'] or 0)}")
    if "false_declines" in figures:
        fd, fv = figures["false_declines"]["delta"], figures.get("false_decline_value_usd", {}).get("delta")
        parts.append(f"false declines {fd:+d}" + (f" ({_signed_usd(fv)})" if fv is not None else ""))
    rows = result.get("rows")
    summary = f"backtest over {rows:,} transactions: " + ", ".join(parts) if rows else ", ".join(parts)
    value = figures.get("fraud_caught_value_usd", {}).get("delta")
    false_value = figures.get("false_decline_value_usd", {}).get("delta")
    net = None
    if value is not None:
        net = value - (false_value or Decimal(0))  # fraud stopped minus legitimate value declined
    return Lift(
        "backtest",
        "estimated",
        summary,
        figures=figures,
        formula="candidate minus live over the same replayed history; value = fraud caught (USD) minus "
        "legitimate value declined (USD)",
        backtest=_meta(result),
        value_usd=net,
    )


def _signed_usd(value: Decimal | None) -> str:
    if value is None:
        return "n/a"
    return ("+" if value >= 0 else "-") + usd_text(abs(value))


def _meta(result: dict[str, Any]) -> dict[str, Any]:
    return {
        "run_id": result.get("run_id"),
        "backtest_id": result.get("backtest_id"),
        "rows": result.get("rows"),
        "range_start": result.get("range_start"),
        "range_end": result.get("range_end"),
        "live_rule_set_version": result.get("live_rule_set_version"),
        "candidate_rule_set_version": result.get("candidate_rule_set_version"),
        # every metric of the job, money in Decimal cents (the job's JSON has floats)
        "metrics": [
            {
                "metric": m["metric"],
                **{k: metric_value(metric_kind(m["metric"]), m.get(k)) for k in ("live", "candidate", "delta")},
            }
            for m in result.get("metrics", [])
        ],
    }


class Backtester:
    """A run's access to backtests: whether it may, how many it has left, and the events it logs."""

    def __init__(
        self,
        runner: BacktestRunner | None,
        *,
        enabled: bool = True,
        max_runs: int = 3,
        emit: Callable[..., None] | None = None,
    ):
        self.runner = runner
        self.enabled = enabled
        self.max_runs = max_runs
        self.used = 0
        self.emit = emit or (lambda *a, **k: None)

    def why_not(self) -> str | None:
        if self.runner is None:
            return "no backtest step is available on this control plane"
        if not self.enabled:
            return "backtests were not requested for this run"
        if self.max_runs <= 0:
            return "backtests are turned off (PA_AGENTS_MAX_BACKTESTS=0)"
        if self.used >= self.max_runs:
            return f"this run's backtest budget ({self.max_runs}) is used up"
        return None

    def lift(self, proposal: RuleProposal, rule_id: str) -> Lift:
        """The rule's lift measured by a backtest, or why it was not measured."""
        if not proposal.backtestable:
            return Lift(
                "none",
                "not_applicable",
                f"a {proposal.type} rule changes the advice, not the outcome the backtest replays",
            )
        reason = self.why_not()
        if reason:
            return Lift("backtest", "not_run", f"not backtested: {reason}")
        assert self.runner is not None
        self.used += 1
        body = proposal.rule_body(rule_id, shadow=False)
        self.emit("backtest", rule_id=rule_id, condition=proposal.condition, action=proposal.action, status="started")
        try:
            result = self.runner([body], f"agents {rule_id}")
        except BacktestUnavailable as exc:
            log.warning("backtest of %s not available: %s", rule_id, exc)
            self.emit("backtest", rule_id=rule_id, status="failed", message=str(exc))
            return Lift("backtest", "failed", f"the backtest did not give a result: {exc}")
        lift = lift_from_result(result)
        self.emit("backtest", rule_id=rule_id, status=lift.status, run_id=result.get("run_id"), summary=lift.summary)
        return lift
