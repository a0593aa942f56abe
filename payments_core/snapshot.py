"""One immutable view of what decides: compiled rules, models, thresholds and their versions, and the
model scoring both decision paths share.

``DecisionEngine`` swaps its snapshot atomically when rules or model aliases change; a decision (or
a batch) reads one snapshot from start to end, so it never mixes two rule sets or two models.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field

import numpy as np

from payments_core.fastpath import LinearModel, sigmoid_one
from payments_core.model_features import ROUTE_COLUMNS, retry_feature_vector
from payments_core.models import ModelBundle
from payments_core.policy import ROUTES, CompiledRule, PolicyConfig
from payments_core.rules.model import RuleSet

ROUTE_FEATURE_COLUMNS = np.array([ROUTE_COLUMNS[r] for r in ROUTES])
SCORE_CHUNK = 2048  # rows per model call in batches: same numbers per row, less memory traffic


def round6(values: np.ndarray) -> list[float]:
    """Scores are reported with 6 decimals; both paths round the same floats the same way."""
    return [round(v * 1e6) / 1e6 for v in values.tolist()]


def round6_one(value: float) -> float:
    """``round6`` of one float."""
    return round(value * 1e6) / 1e6


@dataclass
class Scores:
    """Model outputs for n rows."""

    approval: list[float]
    risk: list[float]
    approval_contrib: np.ndarray | None
    risk_contrib: np.ndarray | None
    route_scores: np.ndarray | list[list[float]]  # (n, len(ROUTES)); score_one's one row: a list
    challenger_approval: list[float] | None = None
    challenger_risk: list[float] | None = None

    @classmethod
    def concat(cls, parts: list[Scores]) -> Scores:
        def joined_list(name: str) -> list[float]:
            return [v for p in parts for v in getattr(p, name)]

        def joined_array(name: str) -> np.ndarray:
            return np.concatenate([getattr(p, name) for p in parts])

        def optional_list(name: str) -> list[float] | None:
            return None if getattr(parts[0], name) is None else joined_list(name)

        def optional_array(name: str) -> np.ndarray | None:
            return None if getattr(parts[0], name) is None else joined_array(name)

        return cls(
            joined_list("approval"),
            joined_list("risk"),
            optional_array("approval_contrib"),
            optional_array("risk_contrib"),
            joined_array("route_scores"),
            optional_list("challenger_approval"),
            optional_list("challenger_risk"),
        )


@dataclass
class EngineSnapshot:
    rules: RuleSet
    compiled: list[CompiledRule]  # active rules in evaluation order, shadow ones included
    bundle: ModelBundle
    policy: PolicyConfig
    risk_decline: float  # the policy's, or the risk champion's operating threshold
    alias_versions: dict[tuple[str, str], str | None] = field(default_factory=dict)
    rule_set_version: str = ""
    model_versions: dict[str, str] = field(default_factory=dict)
    versions_json: str = ""
    # approval, risk and routing champions stacked (``_stack``: centres, weights, intercepts, route cells
    # and block) when all three are linear and there is no challenger: ``score_one`` scores one row in
    # one pass (same numbers)
    stacked: tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray] | None = None

    @classmethod
    def build(
        cls,
        rules: RuleSet,
        bundle: ModelBundle,
        policy: PolicyConfig,
        alias_versions: dict[tuple[str, str], str | None] | None = None,
    ) -> EngineSnapshot:
        compiled = [CompiledRule.of(r) for r in rules.ordered() if r.active]
        risk = bundle.champions["risk"]
        risk_decline = policy.risk_decline
        if policy.use_model_thresholds and risk.threshold is not None and not risk.is_heuristic:
            risk_decline = float(risk.threshold)
        versions = bundle.versions()
        return cls(
            rules,
            compiled,
            bundle,
            policy,
            risk_decline,
            dict(alias_versions or {}),
            rules.full_version,
            versions,
            json.dumps(dict(versions), sort_keys=True),
            _stack(bundle),
        )

    def score_one(self, X: np.ndarray) -> Scores:
        """``score`` of one row (``X``: shape (1, F)), with the same numbers. With linear approval,
        risk and routing champions, the eight logits (approval, risk, one per route) come from one
        (8, F) pass: the same float64 operations per element and per row as each model's own
        ``LinearModel.predict``, so the same bits as ``score`` (and as a row of a batch)."""
        if self.stacked is None:
            return self.score(X)
        centre, weights, intercept, route_cells, route_block = self.stacked
        # the row broadcast against the eight models' centres and weights (float32 -> float64 inside
        # the subtraction, as astype then subtract); the route rows' route columns (the one-hot of each
        # route) are the same for every transaction: worked out once, written by flat index
        contrib = np.subtract(X, centre, dtype=np.float64)
        np.multiply(contrib, weights, out=contrib)
        contrib.flat[route_cells] = route_block
        # np.add.reduce is what ndarray.sum calls (the same pairwise sums), without its Python wrapper
        p = [round6_one(sigmoid_one(z)) for z in (np.add.reduce(contrib, axis=1) + intercept).tolist()]
        # route scores as a plain list: choose_route reads them one by one
        return Scores(p[:1], p[1:2], contrib[:1], contrib[1:2], [p[2:]])

    def score(self, X: np.ndarray, want_challenger: bool = True) -> Scores:
        """Approval and risk (with per-feature contributions), every route's routing score, and the
        challengers' scores when there are challengers."""
        champions = self.bundle.champions
        n = X.shape[0]
        approval, approval_contrib = champions["approval"].predict(X)
        risk, risk_contrib = champions["risk"].predict(X)
        # every route for every row: (n * R, F), row-major by transaction
        XR = np.repeat(X, len(ROUTES), axis=0)
        XR[:, ROUTE_FEATURE_COLUMNS] = 0.0
        XR[np.arange(n * len(ROUTES)), np.tile(ROUTE_FEATURE_COLUMNS, n)] = 1.0
        routes, _ = champions["routing"].predict(XR)
        scores = Scores(
            round6(approval),
            round6(risk),
            approval_contrib,
            risk_contrib,
            np.asarray(round6(routes)).reshape(n, len(ROUTES)),
        )
        if want_challenger and self.bundle.challengers:
            challenger_approval = self.bundle.challengers.get("approval")
            challenger_risk = self.bundle.challengers.get("risk")
            scores.challenger_approval = (
                round6(challenger_approval.predict(X)[0]) if challenger_approval else scores.approval
            )
            scores.challenger_risk = round6(challenger_risk.predict(X)[0]) if challenger_risk else scores.risk
        return scores

    def score_chunked(self, X: np.ndarray) -> Scores:
        if X.shape[0] <= SCORE_CHUNK:
            return self.score(X)
        return Scores.concat([self.score(X[a : a + SCORE_CHUNK]) for a in range(0, X.shape[0], SCORE_CHUNK)])

    def retry_probabilities(self, X: np.ndarray, decline_reason: str) -> list[float]:
        """The retry model's success probability of retrying each row after ``decline_reason``."""
        if not len(X):
            return []
        return round6(self.bundle.champions["retry"].predict(retry_feature_vector(X, decline_reason))[0])


def _stack(bundle: ModelBundle) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray] | None:
    """(centres, weights, intercepts, route cells, route block) of the stacked linear champions, or None. The route
    block is what the route rows' route columns contribute: ``(onehot - centre) * weight``, each route
    row with its own route's column at 1 and the others at 0, as ``score`` sets them."""
    if bundle.challengers:
        return None
    models = [bundle.champions[k].fast for k in ("approval", "risk", "routing")]
    if not all(type(m) is LinearModel for m in models):
        return None
    linear = [m for m in models if isinstance(m, LinearModel)]
    rows = [linear[0], linear[1]] + [linear[2]] * len(ROUTES)
    centre = np.array([m.centre for m in rows], dtype=np.float64)
    weights = np.array([m.weights for m in rows], dtype=np.float64)
    onehot = np.eye(len(ROUTES), dtype=np.float32).astype(np.float64)
    route_block = (onehot - centre[2:, ROUTE_FEATURE_COLUMNS]) * weights[2:, ROUTE_FEATURE_COLUMNS]
    # the flat positions of contrib[2:, ROUTE_FEATURE_COLUMNS] in an (8, F) C-ordered array, row by row
    route_cells = (np.arange(2, len(rows))[:, None] * centre.shape[1] + ROUTE_FEATURE_COLUMNS[None, :]).ravel()
    intercepts = np.array([m.intercept for m in rows], dtype=np.float64)
    return centre, weights, intercepts, route_cells, route_block.ravel()
