"""The decision engine: features + models + rules + policy -> one ``DecisionEvent`` per transaction.

Used by the scoring API (``decide``, one row), the stream processor and the backtest
(``decide_batch``, a pandas DataFrame, in ``payments_core.batch``). Both paths give IDENTICAL
decisions for the same inputs (except ``latency_ms``, ``decided_at`` and ``source``): they read one
``EngineSnapshot`` (compiled rules, models, thresholds, scoring: ``payments_core.snapshot``) and the
policy steps of ``payments_core.policy``, where each step's one-row and vectorised forms sit side by
side. Where a decision is made: ``DecisionEngine.decide`` below (one row) and
``payments_core.batch.decide_frame`` (many); to change the policy, change ``payments_core.policy``.

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

import logging
import threading
import time
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any, Literal, overload

import orjson
import pandas as pd

from payments_core.batch import decide_frame
from payments_core.contract.events import SCHEMA_VERSION, DecisionEvent, RetryAdvice, TransactionRequest
from payments_core.features import VELOCITY_FEATURES, derive_one
from payments_core.model_features import MODEL_FEATURES, feature_vector
from payments_core.models import MODEL_KINDS, ModelBundle, ModelSource
from payments_core.policy import (
    ROUTES,
    SEVERITY,
    CompiledRule,
    PolicyConfig,
    choose_route,
    decision_id,
    eligible_routes,
    explains_with_risk,
    model_retry_advice,
    retry_need,
    top_factors,
    verdict,
)
from payments_core.rules.model import RuleSet, RuleSource
from payments_core.snapshot import EngineSnapshot, Scores

log = logging.getLogger(__name__)

Source = Literal["api", "stream", "backtest"]


class DecisionEngine:
    """Decides transactions with a rule set and a model bundle; ``refresh()`` swaps in new ones."""

    def __init__(
        self,
        rules: RuleSet,
        models: ModelBundle | None = None,
        policy: PolicyConfig | None = None,
        *,
        rule_source: RuleSource | None = None,
        model_source: ModelSource | None = None,
    ):
        self.policy = policy or PolicyConfig()
        self.rule_source = rule_source
        self.model_source = model_source
        self._lock = threading.Lock()
        self._state = EngineSnapshot.build(rules, models or ModelBundle.heuristic(), self.policy)

    # ----------------------------------------------------------------------------- construction
    @classmethod
    def from_sources(
        cls,
        rule_source: RuleSource | None = None,
        model_source: ModelSource | None = None,
        policy: PolicyConfig | None = None,
    ) -> DecisionEngine:
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

    # ----------------------------------------------------------------------------- state
    @property
    def snapshot(self) -> EngineSnapshot:
        """What decides right now (read it once per decision or batch)."""
        return self._state

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
            self._state = EngineSnapshot.build(rules, st.bundle, self.policy, st.alias_versions)

    def set_models(self, bundle: ModelBundle) -> None:
        with self._lock:
            st = self._state
            self._state = EngineSnapshot.build(st.rules, bundle, self.policy, st.alias_versions)

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
                self._state = EngineSnapshot.build(rules, bundle, self.policy, versions)
                log.info(
                    "decision engine now rules=%s models=%s", self._state.rule_set_version, self._state.model_versions
                )
        return changed

    # ----------------------------------------------------------------------------- one
    def decide(
        self,
        request: TransactionRequest | Mapping[str, Any],
        velocity: Mapping[str, Any] | None = None,
        *,
        source: Source = "api",
        started: float | None = None,
    ) -> DecisionEvent:
        """Decide one transaction. ``velocity``: VELOCITY_FEATURES values (missing = 0), e.g. from
        ``RedisVelocityStore.features``. ``started``: ``time.perf_counter()`` at request arrival,
        for ``latency_ms`` (defaults to now)."""
        started = time.perf_counter() if started is None else started
        if isinstance(request, TransactionRequest):
            tx = request.model_dump()
        else:
            tx = TransactionRequest.model_validate(
                {k: v for k, v in request.items() if k in TransactionRequest.model_fields}
            ).model_dump()
        return self.decide_dumped(tx, velocity, source=source, started=started)

    def decide_dumped(
        self,
        tx: dict[str, Any],
        velocity: Mapping[str, Any] | None = None,
        *,
        source: Source = "api",
        started: float | None = None,
    ) -> DecisionEvent:
        """``decide`` of ``TransactionRequest.model_dump()`` output (the caller validated it already)."""
        return DecisionEvent(**self._decide_fields(tx, velocity, source, started))

    def decide_json(
        self,
        tx: dict[str, Any],
        velocity: Mapping[str, Any] | None = None,
        *,
        source: Source = "api",
        started: float | None = None,
    ) -> tuple[str, bytes]:
        """(outcome, the decision's JSON) for ``decide_dumped``'s arguments: the same bytes as
        ``DecisionEvent``'s own serialiser gives for ``decide_dumped``'s event (tests hold them
        equal), without building the pydantic model (the scoring API's hot path)."""
        fields = self._decide_fields(tx, velocity, source, started)
        return fields["outcome"], orjson.dumps(fields, option=orjson.OPT_UTC_Z)

    def _decide_fields(
        self, tx: dict[str, Any], velocity: Mapping[str, Any] | None, source: Source, started: float | None
    ) -> dict[str, Any]:
        """One decision as the fields of a ``DecisionEvent``, in its field order, as plain values
        (nested models as dicts)."""
        started = time.perf_counter() if started is None else started
        st = self._state
        vel = {name: (velocity.get(name) or 0) if velocity else 0 for name in VELOCITY_FEATURES}
        derived = derive_one(tx)
        X = feature_vector(tx, derived, vel)[None, :]
        s = st.score_one(X)
        approval, risk = s.approval[0], s.risk[0]
        row = {**tx, **derived, **vel, "approval_probability": approval, "risk_score": risk}
        fired: list[CompiledRule] = []
        shadow: list[CompiledRule] = []
        for c in st.compiled:
            if c.condition.matches(row):
                (shadow if c.rule.shadow else fired).append(c)
        authenticated = bool(tx.get("three_ds_authenticated"))
        outcome, cause, code, _deciding = verdict(st.policy, st.risk_decline, approval, risk, authenticated, fired)
        kind, value = retry_need(tx, outcome, cause, fired)
        retry: RetryAdvice | None = value if kind == "fixed" else None
        if kind == "model":
            retry = model_retry_advice(st.policy, value, tx.get("retry_count"), st.retry_probabilities(X, value)[0])
        route, _rule = choose_route(tx, s.route_scores[0], fired)
        challenger_outcome = None
        if s.challenger_approval is not None and s.challenger_risk is not None:
            challenger_outcome = verdict(
                st.policy, st.risk_decline, s.challenger_approval[0], s.challenger_risk[0], authenticated, fired
            )[0]
        transaction_id = tx["transaction_id"]
        return {
            "schema_version": SCHEMA_VERSION,
            "decision_id": decision_id(transaction_id, st.rule_set_version, st.versions_json),
            "transaction_id": transaction_id,
            # the policy works on plain strings (shared with the vectorised path); DecisionEvent validates them
            "outcome": outcome,
            "approval_probability": approval,
            "risk_score": risk,
            "recommended_route": route,
            "retry": None
            if retry is None
            else {
                "should_retry": retry.should_retry,
                "retry_after_seconds": retry.retry_after_seconds,
                "max_attempts": retry.max_attempts,
            },
            "reason_codes": self._reasons(st, s, fired, outcome, cause, code),
            "shadow_reason_codes": [
                {"code": c.rule.id, "kind": "rule", "detail": f"shadow: {c.rule.name} -> {c.rule.action}"}
                for c in shadow
            ],
            "challenger_outcome": challenger_outcome,
            "rule_set_version": st.rule_set_version,
            "model_versions": st.model_versions,
            "latency_ms": round((time.perf_counter() - started) * 1000.0, 3),
            "decided_at": datetime.now(UTC),
            "source": source,
        }

    @staticmethod
    def _reasons(
        st: EngineSnapshot, s: Scores, fired: list[CompiledRule], outcome: str, cause: str, code: str
    ) -> list[dict[str, str]]:
        """Fired rules, the policy code that decided, and the top factors of the model that drove it
        (``ReasonCode`` fields)."""
        reasons = [{"code": c.rule.id, "kind": "rule", "detail": f"{c.rule.name} -> {c.rule.action}"} for c in fired]
        reasons.append(
            {
                "code": code,
                "kind": "policy",
                "detail": f"outcome {outcome}; approval {s.approval[0]:.3f}, risk {s.risk[0]:.3f}",
            }
        )
        if explains_with_risk(outcome, cause):
            which, contrib, direction = "risk", s.risk_contrib, 1.0
        else:
            which, contrib, direction = "approval", s.approval_contrib, 1.0 if outcome == "approve" else -1.0
        if contrib is not None:
            kind = st.bundle.champions[which].kind
            row = contrib[0]
            reasons += [
                {"code": MODEL_FEATURES[i], "kind": "model_factor", "detail": f"{kind} {row[i]:+.3f}"}
                for i in top_factors(row, direction, st.policy.top_factors)
            ]
        return reasons

    # ----------------------------------------------------------------------------- many
    @overload
    def decide_batch(
        self,
        df: pd.DataFrame,
        velocity: pd.DataFrame | None = None,
        *,
        source: Source = "stream",
        as_events: Literal[False] = False,
    ) -> list[dict[str, Any]]: ...

    @overload
    def decide_batch(
        self,
        df: pd.DataFrame,
        velocity: pd.DataFrame | None = None,
        *,
        source: Source = "stream",
        as_events: Literal[True],
    ) -> list[DecisionEvent]: ...

    def decide_batch(
        self,
        df: pd.DataFrame,
        velocity: pd.DataFrame | None = None,
        *,
        source: Source = "stream",
        as_events: bool = False,
    ) -> list[dict[str, Any]] | list[DecisionEvent]:
        """Decide every row of ``df`` (contract request fields; extra columns ignored).

        ``velocity``: VELOCITY_FEATURES columns aligned BY POSITION with ``df`` (e.g.
        ``RedisVelocityStore.features_frame(df)``); None = all zero. Returns one JSON-ready dict per
        row (``DecisionEvent.model_dump(mode="json")``), in order; ``as_events`` gives the models.
        """
        out = decide_frame(self._state, df, velocity, source=source)
        if as_events:
            return [DecisionEvent.model_validate(d) for d in out]
        return out


__all__ = ["MODEL_KINDS", "ROUTES", "SEVERITY", "DecisionEngine", "PolicyConfig", "decision_id", "eligible_routes"]
