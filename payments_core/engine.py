"""The decision engine: features + models + rules + policy -> one ``DecisionEvent`` per transaction.

Used by the scoring API (``decide``, one row), the stream processor and the backtest
(``decide_batch``, a pandas DataFrame). Both paths give IDENTICAL decisions for the same inputs
(except ``latency_ms``, ``decided_at`` and ``source``): they share the feature definitions, the model
scorers (row-independent numpy code), the rule semantics and the policy function below.

Policy (one verdict per transaction)
------------------------------------
1. Models: approval probability, risk score (rounded to 6 decimals), a routing score per eligible
   route; retry success probability for soft declines.
2. Rules (active, ``(priority, id)`` order) see request, derived, velocity fields and the two model
   scores. Shadow rules are evaluated and reported in ``shadow_reason_codes`` only.
3. Model verdict: ``risk >= risk_decline`` -> decline; ``risk >= risk_review`` -> review;
   ``risk >= risk_challenge`` and not yet 3DS-authenticated -> challenge_3ds;
   ``approval < approval_decline`` -> decline; else approve.
4. Verdict: if the first fired outcome rule is ``approve`` (allow-list) -> approve. Otherwise the most
   severe of the model verdict and every fired outcome rule (decline > review > challenge_3ds >
   approve).
5. Route: the first fired routing rule, else the eligible route with the highest routing score
   (ties: the requested route, then contract order).
6. Retry advice (declines only): risk declines (risk rule or risk threshold) are never retried; else
   the first fired retry rule; else the decline taxonomy for the reason (the transaction's own soft
   ``previous_decline_code`` or ``DO_NOT_HONOR``): retry after its ``retry_after_seconds`` when
   attempts remain and the retry model's success probability >= ``retry_min_probability``.
7. Reason codes: fired rules, the policy threshold that decided, and the top model factors of the
   model that drove the verdict. ``decision_id`` = hash(transaction_id, rule_set_version,
   model_versions).
"""
from __future__ import annotations

import hashlib
import json
import logging
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal

import numpy as np
import pandas as pd

from payments_core.contract.events import DecisionEvent, PaymentSolution, ReasonCode, RetryAdvice, TransactionRequest, \
    enum_values
from payments_core.features import VELOCITY_FEATURES, derive_one
from payments_core.model_features import MODEL_FEATURES, ROUTE_COLUMNS, feature_vector, retry_feature_vector
from payments_core.models import MODEL_KINDS, ModelBundle, ModelSource, ScoringModel
from payments_core.rules.model import Action, Rule, RuleSet, RuleSource
from payments_core.taxonomy import DECLINES, SOFT_DECLINES

log = logging.getLogger(__name__)

Source = Literal["api", "stream", "backtest"]
ROUTES: tuple[str, ...] = enum_values(PaymentSolution)
SEVERITY = {"approve": 0, "challenge_3ds": 1, "review": 2, "decline": 3}
DEFAULT_SOFT_REASON = "DO_NOT_HONOR"
_ROUTE_COLS = np.array([ROUTE_COLUMNS[r] for r in ROUTES])
_REQUEST_DEFAULTS = {name: f.default for name, f in TransactionRequest.model_fields.items() if not f.is_required()}


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


def eligible_routes(tx: Mapping[str, Any]) -> list[str]:
    """Routes a transaction can take: the requested one, standard and 3DS always; network token for
    tokenised cards, passkey when enrolled, wallets on non-desktop devices."""
    mobile = tx.get("device_type") != "desktop"
    ok = {"standard": True, "3ds": True, "network_token": bool(tx.get("is_network_token")),
          "passkey": bool(tx.get("has_passkey")), "apple_pay": mobile, "google_pay": mobile}
    ok[tx["payment_solution"]] = True
    return [r for r in ROUTES if ok[r]]


def decision_id(transaction_id: str, rule_set_version: str, model_versions: Mapping[str, str] | str) -> str:
    """``dec_`` + 24 hex of sha256(transaction_id | rule_set_version | sorted model_versions JSON)."""
    versions = model_versions if isinstance(model_versions, str) else json.dumps(dict(model_versions), sort_keys=True)
    return "dec_" + hashlib.sha256(f"{transaction_id}|{rule_set_version}|{versions}".encode()).hexdigest()[:24]


@dataclass(frozen=True)
class _CompiledRule:
    rule: Rule
    action: Action
    fn: Any  # Condition


@dataclass
class _State:
    rules: RuleSet
    rule_set_version: str
    compiled: list[_CompiledRule]
    bundle: ModelBundle
    model_versions: dict[str, str]
    risk_decline: float
    alias_versions: dict[tuple[str, str], str | None] = field(default_factory=dict)
    versions_json: str = ""

    def __post_init__(self) -> None:
        self.versions_json = json.dumps(dict(self.model_versions), sort_keys=True)


def _round6(values: np.ndarray) -> list[float]:
    return [round(v * 1e6) / 1e6 for v in values.tolist()]


@dataclass
class _Scores:
    """Model outputs for n rows (numpy)."""

    approval: list[float]
    risk: list[float]
    approval_contrib: np.ndarray | None
    risk_contrib: np.ndarray | None
    route_scores: np.ndarray  # (n, len(ROUTES))
    ch_approval: list[float] | None = None
    ch_risk: list[float] | None = None


class DecisionEngine:
    """Decides transactions with a rule set and a model bundle; ``refresh()`` swaps in new ones."""

    def __init__(self, rules: RuleSet, models: ModelBundle | None = None, policy: PolicyConfig | None = None, *,
                 rule_source: RuleSource | None = None, model_source: ModelSource | None = None):
        self.policy = policy or PolicyConfig()
        self.rule_source = rule_source
        self.model_source = model_source
        self._lock = threading.Lock()
        self._state = self._build_state(rules, models or ModelBundle.heuristic())

    # ----------------------------------------------------------------------------- construction
    @classmethod
    def from_sources(cls, rule_source: RuleSource | None = None, model_source: ModelSource | None = None,
                     policy: PolicyConfig | None = None) -> DecisionEngine:
        """Rules from ``rule_source`` (starter set when None), models from ``model_source``
        (heuristic when None or when nothing is registered)."""
        rule_source = rule_source or RuleSource(None)
        versions: dict[tuple[str, str], str | None] = {}
        bundle = None
        if model_source is not None:
            try:
                versions = model_source.alias_versions()
                bundle = model_source.load_bundle(versions)
            except Exception as exc:  # registry unreachable: decide with the heuristic, retry on refresh
                log.error("model registry unavailable, using heuristic models: %s", exc)
                versions = {}
        engine = cls(rule_source.current(), bundle, policy, rule_source=rule_source, model_source=model_source)
        engine._state.alias_versions = versions
        return engine

    @classmethod
    def from_env(cls, policy: PolicyConfig | None = None) -> DecisionEngine:
        """``$PA_DATA_DIR/rules/ruleset.json`` (else starter) and ``$PA_MLFLOW_TRACKING_URI``."""
        return cls.from_sources(RuleSource.from_env(), ModelSource.from_env(), policy)

    def _build_state(self, rules: RuleSet, bundle: ModelBundle,
                     alias_versions: dict[tuple[str, str], str | None] | None = None) -> _State:
        compiled = [_CompiledRule(r, r.parsed_action, r.compiled) for r in rules.ordered() if r.active]
        risk = bundle.champions["risk"]
        risk_decline = self.policy.risk_decline
        if self.policy.use_model_thresholds and risk.threshold is not None and not risk.is_heuristic:
            risk_decline = float(risk.threshold)
        return _State(rules, rules.full_version, compiled, bundle, bundle.versions(), risk_decline,
                      alias_versions or {})

    # ----------------------------------------------------------------------------- refresh
    @property
    def rule_set_version(self) -> str:
        return self._state.rule_set_version

    @property
    def model_versions(self) -> dict[str, str]:
        return dict(self._state.model_versions)

    @property
    def bundle(self) -> ModelBundle:
        return self._state.bundle

    @property
    def rules(self) -> RuleSet:
        return self._state.rules

    def set_rules(self, rules: RuleSet) -> None:
        with self._lock:
            st = self._state
            self._state = self._build_state(rules, st.bundle, st.alias_versions)

    def set_models(self, bundle: ModelBundle) -> None:
        with self._lock:
            st = self._state
            self._state = self._build_state(st.rules, bundle, st.alias_versions)

    def refresh(self, models: bool = True, alias_versions: dict[tuple[str, str], str | None] | None = None) -> bool:
        """Pick up a new rule-set file and moved model aliases; returns True when anything changed.
        Cheap when nothing changed (a file stat and a few registry lookups). Never raises: on error
        the current rules/models stay live."""
        changed = False
        with self._lock:
            st = self._state
            rules, bundle, versions = st.rules, st.bundle, st.alias_versions
            if self.rule_source is not None:
                new_rules = self.rule_source.current()
                if new_rules is not rules and new_rules.full_version != st.rule_set_version:
                    rules, changed = new_rules, True
            if models and self.model_source is not None:
                try:
                    # ``alias_versions``: already asked by the caller (e.g. in another process)
                    new_versions = alias_versions if alias_versions is not None else self.model_source.alias_versions()
                    if new_versions != versions:
                        bundle = self.model_source.load_bundle(new_versions, previous=st.bundle)
                        versions, changed = new_versions, True
                except Exception as exc:
                    log.error("model refresh failed, keeping current models: %s", exc)
            if changed:
                self._state = self._build_state(rules, bundle, versions)
                log.info("decision engine now rules=%s models=%s", self._state.rule_set_version,
                         self._state.model_versions)
        return changed

    # ----------------------------------------------------------------------------- scoring
    def _score(self, st: _State, X: np.ndarray, want_challenger: bool = True) -> _Scores:
        b = st.bundle
        n = X.shape[0]
        a, a_c = b.champions["approval"].predict(X)
        r, r_c = b.champions["risk"].predict(X)
        # every route for every row: (n * R, F), row-major by transaction
        XR = np.repeat(X, len(ROUTES), axis=0)
        XR[:, _ROUTE_COLS] = 0.0
        XR[np.arange(n * len(ROUTES)), np.tile(_ROUTE_COLS, n)] = 1.0
        routes, _ = b.champions["routing"].predict(XR)
        s = _Scores(_round6(a), _round6(r), a_c, r_c, np.asarray(_round6(routes)).reshape(n, len(ROUTES)))
        if want_challenger and b.challengers:
            ca = b.challengers.get("approval")
            cr = b.challengers.get("risk")
            s.ch_approval = _round6(ca.predict(X)[0]) if ca else s.approval
            s.ch_risk = _round6(cr.predict(X)[0]) if cr else s.risk
        return s

    def _retry_probability(self, st: _State, X: np.ndarray, reasons: list[str]) -> list[float]:
        rows = np.stack([retry_feature_vector(X[i], reasons[i]) for i in range(len(reasons))]) if reasons else \
            np.zeros((0, X.shape[1]), dtype=np.float32)
        if not len(rows):
            return []
        return _round6(st.bundle.champions["retry"].predict(rows)[0])

    # ----------------------------------------------------------------------------- policy
    def _model_verdict(self, st: _State, tx: Mapping[str, Any], approval: float, risk: float) -> tuple[str, str, str]:
        """(outcome, cause, policy code)"""
        p = self.policy
        if risk >= st.risk_decline:
            return "decline", "risk", f"risk_score>={st.risk_decline:g}"
        if risk >= p.risk_review:
            return "review", "risk", f"risk_score>={p.risk_review:g}"
        if risk >= p.risk_challenge and not tx.get("three_ds_authenticated"):
            return "challenge_3ds", "risk", f"risk_score>={p.risk_challenge:g}"
        if approval < p.approval_decline:
            return "decline", "approval", f"approval_probability<{p.approval_decline:g}"
        return "approve", "approval", "models_approve"

    def _verdict(self, st: _State, tx: Mapping[str, Any], approval: float, risk: float,
                 fired: list[_CompiledRule]) -> tuple[str, str, str, list[_CompiledRule]]:
        """(outcome, cause: risk|approval|rule_risk|rule|allow_list, policy code, deciding rules)"""
        model_outcome, cause, code = self._model_verdict(st, tx, approval, risk)
        outcome_rules = [c for c in fired if c.action.kind == "outcome"]
        if outcome_rules and outcome_rules[0].action.value == "approve":
            return "approve", "allow_list", f"allow_list:{outcome_rules[0].rule.id}", [outcome_rules[0]]
        best, best_cause, best_code, deciding = model_outcome, cause, code, []
        for c in outcome_rules:
            v = str(c.action.value)
            if v == "approve":
                continue
            if SEVERITY[v] > SEVERITY[best]:
                best, deciding = v, [c]
                best_cause = "rule_risk" if c.rule.type == "risk" else "rule"
                best_code = f"rule:{c.rule.id}"
        return best, best_cause, best_code, deciding

    def _retry_need(self, tx: Mapping[str, Any], outcome: str, cause: str,
                    fired: list[_CompiledRule]) -> tuple[str, Any]:
        """What retry advice needs: ('none', None) | ('fixed', RetryAdvice) | ('model', reason)."""
        if outcome != "decline":
            return "none", None
        if cause in ("risk", "rule_risk"):
            return "fixed", RetryAdvice(should_retry=False, retry_after_seconds=None, max_attempts=0)
        reason = tx.get("previous_decline_code")
        reason = reason if reason in SOFT_DECLINES else DEFAULT_SOFT_REASON
        cls = DECLINES[reason]
        remaining = max(0, cls.max_attempts - int(tx.get("retry_count") or 0))
        for c in fired:
            if c.action.kind == "retry":
                if c.action.value is None:
                    return "fixed", RetryAdvice(should_retry=False, retry_after_seconds=None, max_attempts=0)
                return "fixed", RetryAdvice(should_retry=True, retry_after_seconds=int(c.action.value),
                                            max_attempts=max(1, remaining))
        if remaining <= 0:
            return "fixed", RetryAdvice(should_retry=False, retry_after_seconds=None, max_attempts=0)
        return "model", reason

    def _model_retry_advice(self, reason: str, tx: Mapping[str, Any], p_retry: float) -> RetryAdvice:
        cls = DECLINES[reason]
        remaining = max(0, cls.max_attempts - int(tx.get("retry_count") or 0))
        if p_retry >= self.policy.retry_min_probability:
            return RetryAdvice(should_retry=True, retry_after_seconds=cls.retry_after_seconds, max_attempts=remaining)
        return RetryAdvice(should_retry=False, retry_after_seconds=None, max_attempts=0)

    def _route(self, tx: Mapping[str, Any], route_scores: np.ndarray, fired: list[_CompiledRule]) -> tuple[str, Any]:
        for c in fired:
            if c.action.kind == "route":
                return str(c.action.value), c
        eligible = set(eligible_routes(tx))
        current = tx["payment_solution"]
        best, best_score = current, route_scores[ROUTES.index(current)]
        for i, r in enumerate(ROUTES):
            if r in eligible and route_scores[i] > best_score:
                best, best_score = r, route_scores[i]
        return best, None

    def _factors(self, contrib: np.ndarray | None, model: ScoringModel, direction: float) -> list[ReasonCode]:
        if contrib is None:
            return []
        signed = contrib * direction
        order = np.argsort(-signed, kind="stable")[: self.policy.top_factors]
        out = []
        for i in order.tolist():
            if signed[i] <= 0:
                break
            out.append(ReasonCode(code=MODEL_FEATURES[i], kind="model_factor",
                                  detail=f"{model.kind} {contrib[i]:+.3f}"))
        return out

    def _assemble(self, st: _State, tx: Mapping[str, Any], i: int, s: _Scores, fired: list[_CompiledRule],
                  shadow: list[_CompiledRule], retry: RetryAdvice | None, outcome: str, cause: str, code: str,
                  deciding: list[_CompiledRule], source: str, started: float, decided_at: datetime | None) -> dict:
        approval, risk = s.approval[i], s.risk[i]
        route, route_rule = self._route(tx, s.route_scores[i], fired)
        reasons = [ReasonCode(code=c.rule.id, kind="rule", detail=f"{c.rule.name} -> {c.rule.action}") for c in fired]
        reasons.append(ReasonCode(code=code, kind="policy",
                                  detail=f"outcome {outcome}; approval {approval:.3f}, risk {risk:.3f}"))
        b = st.bundle
        if cause in ("risk", "rule_risk") or (outcome in ("review", "challenge_3ds") and cause == "rule"):
            reasons += self._factors(None if s.risk_contrib is None else s.risk_contrib[i], b.champions["risk"], 1.0)
        else:
            direction = 1.0 if outcome == "approve" else -1.0
            reasons += self._factors(None if s.approval_contrib is None else s.approval_contrib[i],
                                     b.champions["approval"], direction)
        shadow_codes = [ReasonCode(code=c.rule.id, kind="rule", detail=f"shadow: {c.rule.name} -> {c.rule.action}")
                        for c in shadow]
        challenger_outcome = None
        if s.ch_approval is not None and s.ch_risk is not None:
            challenger_outcome = self._verdict(st, tx, s.ch_approval[i], s.ch_risk[i], fired)[0]
        return {
            "decision_id": decision_id(tx["transaction_id"], st.rule_set_version, st.versions_json),
            "transaction_id": tx["transaction_id"],
            "outcome": outcome,
            "approval_probability": approval,
            "risk_score": risk,
            "recommended_route": route,
            "retry": retry,
            "reason_codes": reasons,
            "shadow_reason_codes": shadow_codes,
            "challenger_outcome": challenger_outcome,
            "rule_set_version": st.rule_set_version,
            "model_versions": st.model_versions,
            "latency_ms": round((time.perf_counter() - started) * 1000.0, 3),
            "decided_at": decided_at or datetime.now(UTC),
            "source": source,
        }

    # ----------------------------------------------------------------------------- one
    def decide(self, request: TransactionRequest | Mapping[str, Any], velocity: Mapping[str, Any] | None = None, *,
               source: Source = "api", started: float | None = None) -> DecisionEvent:
        """Decide one transaction. ``velocity``: VELOCITY_FEATURES values (missing = 0), e.g. from
        ``RedisVelocityStore.features``. ``started``: ``time.perf_counter()`` at request arrival,
        for ``latency_ms`` (defaults to now)."""
        started = time.perf_counter() if started is None else started
        if isinstance(request, TransactionRequest):
            tx = request.model_dump()
        else:
            tx = TransactionRequest.model_validate(
                {k: v for k, v in request.items() if k in TransactionRequest.model_fields}).model_dump()
        return self.decide_dumped(tx, velocity, source=source, started=started)

    def decide_dumped(self, tx: dict[str, Any], velocity: Mapping[str, Any] | None = None, *,
                      source: Source = "api", started: float | None = None) -> DecisionEvent:
        """``decide`` of ``TransactionRequest.model_dump()`` output (the caller validated it already)."""
        started = time.perf_counter() if started is None else started
        st = self._state
        vel = {name: (velocity.get(name) or 0) if velocity else 0 for name in VELOCITY_FEATURES}
        derived = derive_one(tx)
        x = feature_vector(tx, derived, vel)
        X = x[None, :]
        s = self._score(st, X)
        row = {**tx, **derived, **vel, "approval_probability": s.approval[0], "risk_score": s.risk[0]}
        fired, shadow = [], []
        for c in st.compiled:
            if c.fn.matches(row):
                (shadow if c.rule.shadow else fired).append(c)
        outcome, cause, code, deciding = self._verdict(st, tx, s.approval[0], s.risk[0], fired)
        kind, value = self._retry_need(tx, outcome, cause, fired)
        retry = value if kind == "fixed" else None
        if kind == "model":
            p = self._retry_probability(st, X, [value])[0]
            retry = self._model_retry_advice(value, tx, p)
        fields = self._assemble(st, tx, 0, s, fired, shadow, retry, outcome, cause, code, deciding, source,
                                started, None)
        return DecisionEvent(**fields)

    # ----------------------------------------------------------------------------- many
    def decide_batch(self, df: pd.DataFrame, velocity: pd.DataFrame | None = None, *, source: Source = "stream",
                     as_events: bool = False) -> list[dict[str, Any]] | list[DecisionEvent]:
        """Decide every row of ``df`` (contract request fields; extra columns ignored).

        ``velocity``: VELOCITY_FEATURES columns aligned BY POSITION with ``df`` (e.g.
        ``RedisVelocityStore.features_frame(df)``); None = all zero. Returns one JSON-ready dict per
        row (``DecisionEvent.model_dump(mode="json")``), in order; ``as_events`` gives the models.
        """
        from payments_core.batch import decide_frame  # the vectorised batch path

        out = decide_frame(self, df, velocity, source=source)
        if as_events:
            return [DecisionEvent.model_validate(d) for d in out]
        return out


__all__ = ["DecisionEngine", "PolicyConfig", "decision_id", "eligible_routes", "MODEL_KINDS"]
