"""What an agent produces: a recommendation with its evidence (the queries it ran, the figures, the
expected lift) and the action it proposes (a rule for the draft, or a configuration change).

Money is never a float: values read from gold are DECIMAL(18,2) and stay ``Decimal``; estimates are
computed in ``Decimal`` and rounded to cents; evidence JSON carries them as strings. Rates (fractions in
[0, 1] rounded to 4 places by gold) are plain numbers.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from datetime import date, datetime
from decimal import ROUND_HALF_UP, Decimal
from typing import Any, Literal

from agents.query import QueryRecord

CENT = Decimal("0.01")
STATUSES = ("proposed", "accepted", "dismissed")
LiftMethod = Literal["backtest", "gold_estimate", "none"]
LiftStatus = Literal["estimated", "not_run", "failed", "not_applicable"]


# ------------------------------------------------------------------------------------------ numbers
def decimal(value: Any) -> Decimal:
    """A figure as Decimal: Decimals as they are, ints exactly, floats through their shortest repr."""
    if isinstance(value, Decimal):
        return value
    if isinstance(value, bool) or value is None:
        raise TypeError(f"not a number: {value!r}")
    return Decimal(str(value))


def cents(value: Any) -> Decimal:
    return decimal(value).quantize(CENT, rounding=ROUND_HALF_UP)


def usd_text(value: Decimal) -> str:
    return f"{value:,.2f} USD"


def pct_text(rate: float | Decimal | None, digits: int = 1) -> str:
    return "n/a" if rate is None else f"{float(rate) * 100:.{digits}f}%"


def pp_text(delta: float | Decimal) -> str:
    return f"{float(delta) * 100:+.2f} pp"


def json_default(value: Any) -> Any:
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, datetime | date):
        return value.isoformat()
    if hasattr(value, "as_dict"):
        return value.as_dict()
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")


def to_json(value: Any) -> str:
    return json.dumps(value, default=json_default, sort_keys=True)


def jsonable(value: Any) -> Any:
    """``value`` with Decimals as strings (what the evidence JSON holds)."""
    return json.loads(to_json(value))


def short_hash(*parts: str, length: int = 12) -> str:
    return hashlib.sha256("|".join(parts).encode()).hexdigest()[:length]


# ------------------------------------------------------------------------------------------ actions
@dataclass(frozen=True)
class RuleProposal:
    """A rule for the draft rule set (accepted: added in shadow, so it is logged before it decides)."""

    name: str
    type: Literal["risk", "authentication", "routing", "retry"]
    condition: str
    action: str
    priority: int
    description: str = ""

    kind = "rule"

    @property
    def backtestable(self) -> bool:
        """Whether the backtest can measure it: it replays outcomes, which risk and authentication rules
        change; routing and retry rules change the advice, never the outcome."""
        return self.type in ("risk", "authentication")

    def rule_id(self, recommendation_id: str) -> str:
        return "AG_" + short_hash(recommendation_id, length=8).upper()

    def as_dict(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "name": self.name,
            "type": self.type,
            "condition": self.condition,
            "action": self.action,
            "priority": self.priority,
            "description": self.description,
        }

    def rule_body(self, rule_id: str, *, shadow: bool) -> dict[str, Any]:
        """The rule as the rule store and ``payments_core.rules.model.Rule`` take it."""
        return {
            "id": rule_id,
            "name": self.name[:200],
            "type": self.type,
            "condition": self.condition,
            "action": self.action,
            "priority": self.priority,
            "active": True,
            "shadow": shadow,
            "description": self.description[:2000],
        }

    @property
    def signature(self) -> str:
        return f"{self.type}|{self.condition}|{self.action}"


@dataclass(frozen=True)
class ConfigProposal:
    """A configuration change for a person to make (accepting records it; nothing is applied)."""

    key: str
    current: Any
    proposed: Any
    note: str = ""

    kind = "config"

    def as_dict(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "key": self.key,
            "current": self.current,
            "proposed": self.proposed,
            "note": self.note,
        }

    @property
    def signature(self) -> str:
        return f"config|{self.key}|{self.proposed}"


Action = RuleProposal | ConfigProposal


@dataclass
class Lift:
    """The expected effect: by a backtest of the rule against the live set where one applies, else an
    estimate from the gold figures (its formula given), or why there is none."""

    method: LiftMethod
    status: LiftStatus
    summary: str
    figures: dict[str, Any] = field(default_factory=dict)
    formula: str | None = None
    backtest: dict[str, Any] | None = None  # run id, rows, range, the job's metrics
    value_usd: Decimal | None = None  # the headline value (ranks recommendations)

    def as_dict(self) -> dict[str, Any]:
        return {
            "method": self.method,
            "status": self.status,
            "summary": self.summary,
            "figures": self.figures,
            "formula": self.formula,
            "backtest": self.backtest,
            "value_usd": self.value_usd,
        }


@dataclass
class Recommendation:
    agent: str
    category: str  # routing | retry | decline_handling | risk | performance
    scope: str
    title: str
    text: str
    figures: dict[str, Any]
    queries: list[QueryRecord]
    action: Action
    lift: Lift

    @property
    def id(self) -> str:
        """Stable over runs: the same finding for the same scope and action is the same recommendation."""
        return f"agent:{self.agent}:{short_hash(self.agent, self.scope, self.action.signature)}"

    @property
    def rule_id(self) -> str | None:
        return self.action.rule_id(self.id) if isinstance(self.action, RuleProposal) else None

    @property
    def rank_value(self) -> Decimal:
        return self.lift.value_usd if self.lift.value_usd is not None else Decimal(0)

    def evidence(self, run_id: int | None = None, created_at: datetime | None = None) -> dict[str, Any]:
        action = self.action.as_dict()
        if isinstance(self.action, RuleProposal):
            action["rule_id"] = self.rule_id
        return jsonable(
            {
                "agent": self.agent,
                "run_id": run_id,
                "created_at": created_at,
                "queries": [q.as_dict() for q in self.queries],
                "figures": self.figures,
                "lift": self.lift.as_dict(),
                "action": action,
            }
        )

    def row(self, status: str = "proposed", run_id: int | None = None, created_at: datetime | None = None) -> dict:
        """The row of ``approval_recommendations`` (the columns bootstrap creates; evidence as JSON)."""
        return {
            "recommendation_id": self.id,
            "category": self.category,
            "scope": self.scope,
            "title": self.title,
            "recommendation": self.text,
            "evidence": to_json(self.evidence(run_id, created_at)),
            "source": f"agent:{self.agent}",
            "status": status,
        }

    def summary(self) -> dict[str, Any]:
        """What a model (or a log line) is told about the recommendation."""
        return jsonable(
            {
                "id": self.id,
                "title": self.title,
                "text": self.text,
                "figures": self.figures,
                "lift": {"method": self.lift.method, "status": self.lift.status, "summary": self.lift.summary},
                "action": self.action.as_dict(),
            }
        )
