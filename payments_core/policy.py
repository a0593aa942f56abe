"""The decision policy: how model scores and fired rules become one verdict, a route, retry advice and
reason codes. Each step is written once; where the one-row path (``DecisionEngine.decide``, the
scoring API) and the vectorised path (``payments_core.batch``, the stream and the backtest) need
different forms, both sit side by side here, and ``tests/payments_core/test_policy.py`` proves they
agree on random transactions.

Steps (the engine's docstring tells the policy in words):

* ``model_verdict`` / ``model_verdicts``: risk and approval thresholds -> outcome, cause, policy code;
* ``verdict`` / ``verdicts``: the allow-list, then the most severe of the model verdict and the fired
  outcome rules;
* ``retry_need`` + ``model_retry_advice`` / ``retry_advice_batch``: advice for declines;
* ``choose_route`` / ``choose_routes``: a routing rule, else the best eligible route;
* ``top_factors`` / ``top_factors_batch``: the model features that pushed hardest.

Outcomes are severities in the vectorised forms (``OUTCOMES[severity]``) and causes are indices of
``CAUSES``.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from payments_core.contract.events import PaymentSolution, RetryAdvice, enum_values
from payments_core.rules.language import Condition
from payments_core.rules.model import Action, Rule
from payments_core.taxonomy import DECLINES, SOFT_DECLINES

ROUTES: tuple[str, ...] = enum_values(PaymentSolution)
ROUTE_INDEX: dict[str, int] = {r: i for i, r in enumerate(ROUTES)}
OUTCOMES: tuple[str, ...] = ("approve", "challenge_3ds", "review", "decline")  # by severity
SEVERITY: dict[str, int] = {o: i for i, o in enumerate(OUTCOMES)}
APPROVE, CHALLENGE, REVIEW, DECLINE = range(4)
CAUSES: tuple[str, ...] = ("risk", "approval", "rule_risk", "rule", "allow_list")
RISK, APPROVAL, RULE_RISK, RULE, ALLOW_LIST = range(5)
DEFAULT_SOFT_REASON = "DO_NOT_HONOR"
NO_RETRY: dict[str, Any] = {"should_retry": False, "retry_after_seconds": None, "max_attempts": 0}


@dataclass(frozen=True)
class PolicyConfig:
    risk_decline: float = 0.80
    risk_review: float = 0.60
    risk_challenge: float = 0.40
    approval_decline: float = 0.15
    retry_min_probability: float = 0.25
    top_factors: int = 3
    # take ``risk_decline`` from the risk champion's operating threshold (``pa.threshold``) when set
    use_model_thresholds: bool = True


@dataclass(frozen=True)
class CompiledRule:
    """An active rule with its parsed action and compiled condition (done once per rule set)."""

    rule: Rule
    action: Action
    condition: Condition

    @classmethod
    def of(cls, rule: Rule) -> CompiledRule:
        return cls(rule, rule.parsed_action, rule.compiled)


def decision_id(transaction_id: str, rule_set_version: str, model_versions: Mapping[str, str] | str) -> str:
    """``dec_`` + 24 hex of sha256(transaction_id | rule_set_version | sorted model_versions JSON)."""
    versions = model_versions if isinstance(model_versions, str) else json.dumps(dict(model_versions), sort_keys=True)
    return "dec_" + hashlib.sha256(f"{transaction_id}|{rule_set_version}|{versions}".encode()).hexdigest()[:24]


def truthy(values: Sequence[Any]) -> np.ndarray:
    """Python truthiness per value (None -> False, NaN -> True), as the one-row path's ``tx.get(...)``."""
    return np.fromiter((bool(v) for v in values), dtype=bool, count=len(values))


# ------------------------------------------------------------------------------------ model verdict
def model_verdict(
    policy: PolicyConfig, risk_decline: float, approval: float, risk: float, authenticated: bool
) -> tuple[str, str, str]:
    """(outcome, cause, policy code) from the two model scores."""
    if risk >= risk_decline:
        return "decline", "risk", f"risk_score>={risk_decline:g}"
    if risk >= policy.risk_review:
        return "review", "risk", f"risk_score>={policy.risk_review:g}"
    if risk >= policy.risk_challenge and not authenticated:
        return "challenge_3ds", "risk", f"risk_score>={policy.risk_challenge:g}"
    if approval < policy.approval_decline:
        return "decline", "approval", f"approval_probability<{policy.approval_decline:g}"
    return "approve", "approval", "models_approve"


def model_verdicts(
    policy: PolicyConfig, risk_decline: float, approval: np.ndarray, risk: np.ndarray, authenticated: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``model_verdict`` for every row: (severity int8, cause int8, policy code object)."""
    conds = [
        risk >= risk_decline,
        risk >= policy.risk_review,
        (risk >= policy.risk_challenge) & ~authenticated,
        approval < policy.approval_decline,
    ]
    severity = np.select(conds, [DECLINE, REVIEW, CHALLENGE, DECLINE], APPROVE).astype(np.int8)
    cause = np.select(conds, [RISK, RISK, RISK, APPROVAL], APPROVAL).astype(np.int8)
    code = np.select(
        conds,
        [
            f"risk_score>={risk_decline:g}",
            f"risk_score>={policy.risk_review:g}",
            f"risk_score>={policy.risk_challenge:g}",
            f"approval_probability<{policy.approval_decline:g}",
        ],
        "models_approve",
    ).astype(object)
    return severity, cause, code


# ------------------------------------------------------------------------------------ verdict
def verdict(
    policy: PolicyConfig,
    risk_decline: float,
    approval: float,
    risk: float,
    authenticated: bool,
    fired: Sequence[CompiledRule],
) -> tuple[str, str, str, list[CompiledRule]]:
    """(outcome, cause, policy code, deciding rules): the first fired outcome rule approving is an
    allow-list; otherwise the most severe of the model verdict and every fired outcome rule."""
    outcome, cause, code = model_verdict(policy, risk_decline, approval, risk, authenticated)
    outcome_rules = [c for c in fired if c.action.kind == "outcome"]
    if outcome_rules and outcome_rules[0].action.value == "approve":
        return "approve", "allow_list", f"allow_list:{outcome_rules[0].rule.id}", [outcome_rules[0]]
    deciding: list[CompiledRule] = []
    for c in outcome_rules:
        value = str(c.action.value)
        if value != "approve" and SEVERITY[value] > SEVERITY[outcome]:
            outcome, deciding = value, [c]
            cause = "rule_risk" if c.rule.type == "risk" else "rule"
            code = f"rule:{c.rule.id}"
    return outcome, cause, code, deciding


def verdicts(
    policy: PolicyConfig,
    risk_decline: float,
    approval: np.ndarray,
    risk: np.ndarray,
    authenticated: np.ndarray,
    outcome_rules: Sequence[tuple[int, CompiledRule]],
    masks: Sequence[np.ndarray],
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``verdict`` for every row. ``outcome_rules``: (index into ``masks``, rule) of the live outcome
    rules in evaluation order; ``masks[k]``: where rule ``k`` fired."""
    severity, cause, code = model_verdicts(policy, risk_decline, approval, risk, authenticated)
    if not outcome_rules:
        return severity, cause, code
    first = np.full(len(approval), -1, dtype=np.int64)  # the first fired outcome rule
    for k, _c in outcome_rules:
        first[(first < 0) & masks[k]] = k
    for k, c in outcome_rules:
        value = str(c.action.value)
        if value == "approve":
            continue
        stronger = masks[k] & (SEVERITY[value] > severity)
        if stronger.any():
            severity[stronger] = SEVERITY[value]
            cause[stronger] = RULE_RISK if c.rule.type == "risk" else RULE
            code[stronger] = f"rule:{c.rule.id}"
    for k, c in outcome_rules:
        if str(c.action.value) == "approve":
            allow = first == k
            if allow.any():
                severity[allow] = APPROVE
                cause[allow] = ALLOW_LIST
                code[allow] = f"allow_list:{c.rule.id}"
    return severity, cause, code


def first_fired(
    kind: str, rules: Sequence[tuple[int, CompiledRule]], masks: Sequence[np.ndarray], n: int
) -> np.ndarray:
    """Per row the index of the first fired rule whose action is of ``kind`` (-1: none)."""
    first = np.full(n, -1, dtype=np.int64)
    for k, c in rules:
        if c.action.kind == kind:
            first[(first < 0) & masks[k]] = k
    return first


# ------------------------------------------------------------------------------------ retry advice
def soft_reason(previous_decline_code: Any) -> str:
    """The decline reason retry advice is judged on: the transaction's own soft decline, else the default."""
    return previous_decline_code if previous_decline_code in SOFT_DECLINES else DEFAULT_SOFT_REASON


def attempts_left(reason: str, retry_count: Any) -> int:
    return max(0, DECLINES[reason].max_attempts - int(retry_count or 0))


def retry_need(tx: Mapping[str, Any], outcome: str, cause: str, fired: Sequence[CompiledRule]) -> tuple[str, Any]:
    """What one decision's retry advice needs: ('none', None) | ('fixed', RetryAdvice) | ('model', reason).
    Risk declines are never retried; else the first retry rule; else the taxonomy and the retry model."""
    if outcome != "decline":
        return "none", None
    if cause in ("risk", "rule_risk"):
        return "fixed", RetryAdvice(**NO_RETRY)
    reason = soft_reason(tx.get("previous_decline_code"))
    remaining = attempts_left(reason, tx.get("retry_count"))
    for c in fired:
        if c.action.kind == "retry":
            if c.action.value is None:
                return "fixed", RetryAdvice(**NO_RETRY)
            return "fixed", RetryAdvice(
                should_retry=True, retry_after_seconds=int(c.action.value), max_attempts=max(1, remaining)
            )
    if remaining <= 0:
        return "fixed", RetryAdvice(**NO_RETRY)
    return "model", reason


def model_retry_advice(policy: PolicyConfig, reason: str, retry_count: Any, p_retry: float) -> RetryAdvice:
    """Retry advice from the retry model's success probability for ``reason``."""
    if p_retry >= policy.retry_min_probability:
        return RetryAdvice(
            should_retry=True,
            retry_after_seconds=DECLINES[reason].retry_after_seconds,
            max_attempts=attempts_left(reason, retry_count),
        )
    return RetryAdvice(**NO_RETRY)


def retry_advice_batch(
    policy: PolicyConfig,
    severity: np.ndarray,
    cause: np.ndarray,
    previous_decline_codes: Sequence[Any],
    retry_counts: Sequence[Any],
    first_retry_rule: np.ndarray,
    compiled: Sequence[CompiledRule],
    retry_probabilities: Callable[[np.ndarray, str], list[float]],
) -> list[dict[str, Any] | None]:
    """``retry_need`` + ``model_retry_advice`` for every row, as ``RetryAdvice`` dicts (None: not a
    decline). ``retry_probabilities(rows, reason)``: the retry model's probabilities for those rows."""
    n = len(severity)
    decline = severity == DECLINE
    reasons = np.array([soft_reason(r) for r in previous_decline_codes], dtype=object)
    remaining = np.fromiter(
        (attempts_left(r, c) for r, c in zip(reasons.tolist(), retry_counts, strict=True)), dtype=np.int64, count=n
    )
    risk_decline = decline & ((cause == RISK) | (cause == RULE_RISK))
    by_rule = decline & ~risk_decline & (first_retry_rule >= 0)
    exhausted = decline & ~risk_decline & ~by_rule & (remaining <= 0)
    by_model = decline & ~risk_decline & ~by_rule & ~exhausted
    advice: list[dict[str, Any] | None] = [None] * n
    for i in np.flatnonzero(risk_decline | exhausted).tolist():
        advice[i] = dict(NO_RETRY)
    for i in np.flatnonzero(by_rule).tolist():
        seconds = compiled[first_retry_rule[i]].action.value
        advice[i] = (
            dict(NO_RETRY)
            if seconds is None
            else {"should_retry": True, "retry_after_seconds": int(seconds), "max_attempts": max(1, int(remaining[i]))}
        )
    model_rows = np.flatnonzero(by_model)
    row_reasons = reasons[model_rows]
    for reason in sorted(set(row_reasons.tolist())):
        rows = model_rows[row_reasons == reason]
        for i, p in zip(rows.tolist(), retry_probabilities(rows, reason), strict=True):
            advice[i] = (
                {
                    "should_retry": True,
                    "retry_after_seconds": DECLINES[reason].retry_after_seconds,
                    "max_attempts": int(remaining[i]),
                }
                if p >= policy.retry_min_probability
                else dict(NO_RETRY)
            )
    return advice


# ------------------------------------------------------------------------------------ route
def eligible_routes(tx: Mapping[str, Any]) -> list[str]:
    """Routes a transaction can take: the requested one, standard and 3DS always; network token for
    tokenised cards, passkey when enrolled, wallets on non-desktop devices."""
    mobile = tx.get("device_type") != "desktop"
    ok = {
        "standard": True,
        "3ds": True,
        "network_token": bool(tx.get("is_network_token")),
        "passkey": bool(tx.get("has_passkey")),
        "apple_pay": mobile,
        "google_pay": mobile,
    }
    ok[tx["payment_solution"]] = True
    return [r for r in ROUTES if ok[r]]


def eligible_route_mask(
    payment_solution: Sequence[str],
    device_type: Sequence[Any],
    is_network_token: Sequence[Any],
    has_passkey: Sequence[Any],
) -> np.ndarray:
    """``eligible_routes`` for every row: (n, len(ROUTES)) booleans in ROUTES order."""
    n = len(payment_solution)
    mobile = np.fromiter((d != "desktop" for d in device_type), dtype=bool, count=n)
    eligible = np.ones((n, len(ROUTES)), dtype=bool)
    eligible[:, ROUTE_INDEX["network_token"]] = truthy(is_network_token)
    eligible[:, ROUTE_INDEX["passkey"]] = truthy(has_passkey)
    eligible[:, ROUTE_INDEX["apple_pay"]] = mobile
    eligible[:, ROUTE_INDEX["google_pay"]] = mobile
    eligible[np.arange(n), [ROUTE_INDEX[r] for r in payment_solution]] = True
    return eligible


def choose_route(
    tx: Mapping[str, Any], route_scores: Sequence[float] | np.ndarray, fired: Sequence[CompiledRule]
) -> tuple[str, CompiledRule | None]:
    """The first fired routing rule's route, else the eligible route with the highest score (ties:
    the requested route, then ROUTES order)."""
    for c in fired:
        if c.action.kind == "route":
            return str(c.action.value), c
    eligible = set(eligible_routes(tx))
    best = tx["payment_solution"]
    best_score = route_scores[ROUTE_INDEX[best]]
    for i, r in enumerate(ROUTES):
        if r in eligible and route_scores[i] > best_score:
            best, best_score = r, route_scores[i]
    return best, None


def choose_routes(
    payment_solution: Sequence[str],
    eligible: np.ndarray,
    route_scores: np.ndarray,
    first_route_rule: np.ndarray,
    compiled: Sequence[CompiledRule],
) -> list[str]:
    """``choose_route`` for every row."""
    n = len(payment_solution)
    rows = np.arange(n)
    best = np.fromiter((ROUTE_INDEX[r] for r in payment_solution), dtype=np.int64, count=n)
    best_score = route_scores[rows, best]
    for i in range(len(ROUTES)):
        better = eligible[:, i] & (route_scores[:, i] > best_score)
        best[better] = i
        best_score = np.where(better, route_scores[:, i], best_score)
    routes = np.array(ROUTES, dtype=object)[best]
    for i in np.flatnonzero(first_route_rule >= 0).tolist():
        routes[i] = str(compiled[first_route_rule[i]].action.value)
    return routes.tolist()


# ------------------------------------------------------------------------------------ model factors
def explains_with_risk(outcome: str, cause: str) -> bool:
    """Whether the risk model (else the approval model) explains the verdict."""
    return cause in ("risk", "rule_risk") or (outcome in ("review", "challenge_3ds") and cause == "rule")


def top_factors(contrib: np.ndarray, direction: float, k: int) -> list[int]:
    """Feature indices of the ``k`` largest ``contrib * direction`` (``direction`` +1 or -1; stable:
    ties by lower index), while positive."""
    # descending by contrib * direction is ascending by -contrib (+1) or contrib (-1): negation is
    # exact, so the same order without the product
    order = np.argsort(-contrib if direction > 0 else contrib, kind="stable")[:k].tolist()
    out = []
    for i in order:
        if contrib[i] * direction <= 0:
            break
        out.append(i)
    return out


def top_factors_batch(contrib: np.ndarray, direction: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """``top_factors`` for every row: (indices (n, k), valid (n, k))."""
    signed = contrib * direction[:, None]
    n = signed.shape[0]
    rows = np.arange(n)
    idx = np.zeros((n, k), dtype=np.int64)
    ok = np.zeros((n, k), dtype=bool)
    alive = np.ones(n, dtype=bool)
    for r in range(k):
        j = signed.argmax(axis=1)
        alive &= signed[rows, j] > 0
        idx[:, r], ok[:, r] = j, alive
        signed[rows, j] = -np.inf
    return idx, ok
