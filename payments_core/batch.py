"""The decision engine's batch path, vectorised: numpy over columns instead of Python per row.

``DecisionEngine.decide_batch`` (the stream processor, the backtest) calls ``decide_frame`` with the
engine's current ``EngineSnapshot``. Features, model scores and rule masks come from the same
definitions as the one-row path (``derive_frame``, ``feature_matrix``, ``EngineSnapshot.score``,
``Condition.matches_frame``); every policy step is the vectorised form written beside its one-row
form in ``payments_core.policy``. The decision records are plain dicts in
``DecisionEvent.model_dump(mode="json")`` form, built without a pydantic model per row.

``tests/payments_core/test_engine.py`` proves the two paths row-for-row (every outcome, rules of
every kind, shadow rules, challengers, model and fixed retry advice, routing rules) and
``tests/payments_core/test_policy.py`` each policy step on random transactions.
"""

from __future__ import annotations

import hashlib
import time
from datetime import UTC, datetime
from typing import Any

import numpy as np
import pandas as pd
from pydantic import TypeAdapter

from payments_core.contract.events import TransactionRequest
from payments_core.features import VELOCITY_FEATURES, derive_frame
from payments_core.model_features import MODEL_FEATURES, feature_matrix
from payments_core.policy import (
    APPROVE,
    CHALLENGE,
    OUTCOMES,
    REVIEW,
    RISK,
    RULE,
    RULE_RISK,
    choose_routes,
    eligible_route_mask,
    first_fired,
    retry_advice_batch,
    top_factors_batch,
    truthy,
    verdicts,
)
from payments_core.snapshot import EngineSnapshot

REQUEST_DEFAULTS: dict[str, Any] = {
    name: f.default for name, f in TransactionRequest.model_fields.items() if not f.is_required()
}
_DATETIME = TypeAdapter(datetime)
_OUTCOME_NAMES = np.array(OUTCOMES, dtype=object)

# kept for callers of the former private helper
_top_factors = top_factors_batch


def decide_frame(
    st: EngineSnapshot, df: pd.DataFrame, velocity: pd.DataFrame | None = None, *, source: str = "stream"
) -> list[dict[str, Any]]:
    """``DecisionEngine.decide_batch`` (see there): one JSON-ready decision dict per row, in order."""
    started = time.perf_counter()
    n = len(df)
    if n == 0:
        return []
    policy = st.policy
    frame = df.reset_index(drop=True)
    missing = {name: [default] * n for name, default in REQUEST_DEFAULTS.items() if name not in frame.columns}
    frame = frame.assign(**missing, event_timestamp=pd.to_datetime(frame["event_timestamp"], utc=True))
    derived = derive_frame(frame)
    if velocity is None:
        vel = pd.DataFrame(0, index=frame.index, columns=list(VELOCITY_FEATURES), dtype="int64")
    else:
        vel = velocity.reset_index(drop=True).reindex(columns=list(VELOCITY_FEATURES)).fillna(0)
    X = feature_matrix(frame, derived, vel)
    s = st.score_chunked(X)

    # --- rules: one mask per compiled rule over request, derived, velocity fields and the scores --
    rule_frame = pd.concat(
        [frame[[c for c in frame.columns if c not in derived.columns and c not in vel.columns]], derived, vel], axis=1
    )
    rule_frame["approval_probability"] = s.approval
    rule_frame["risk_score"] = s.risk
    compiled = st.compiled
    masks = [np.asarray(c.condition.matches_frame(rule_frame), dtype=bool) for c in compiled]
    live = [(k, c) for k, c in enumerate(compiled) if not c.rule.shadow]
    outcome_rules = [(k, c) for k, c in live if c.action.kind == "outcome"]

    # --- verdicts of the champions and of the challengers ------------------------------------------
    authenticated = truthy(frame["three_ds_authenticated"].tolist())
    severity, cause, code = verdicts(
        policy,
        st.risk_decline,
        np.asarray(s.approval, dtype=np.float64),
        np.asarray(s.risk, dtype=np.float64),
        authenticated,
        outcome_rules,
        masks,
    )
    challenger = None
    if s.challenger_approval is not None and s.challenger_risk is not None:
        challenger_severity, _, _ = verdicts(
            policy,
            st.risk_decline,
            np.asarray(s.challenger_approval, dtype=np.float64),
            np.asarray(s.challenger_risk, dtype=np.float64),
            authenticated,
            outcome_rules,
            masks,
        )
        challenger = _OUTCOME_NAMES[challenger_severity].tolist()

    # --- retry advice and route ------------------------------------------------------------------
    retry = retry_advice_batch(
        policy,
        severity,
        cause,
        frame["previous_decline_code"].tolist(),
        frame["retry_count"].tolist(),
        first_fired("retry", live, masks, n),
        compiled,
        lambda rows, reason: st.retry_probabilities(X[rows], reason),
    )
    solutions = frame["payment_solution"].tolist()
    eligible = eligible_route_mask(
        solutions, frame["device_type"].tolist(), frame["is_network_token"].tolist(), frame["has_passkey"].tolist()
    )
    route = choose_routes(
        solutions, eligible, np.asarray(s.route_scores), first_fired("route", live, masks, n), compiled
    )

    # --- reason codes: fired rules, the policy code, the top factors of the deciding model ------
    fired_rows: list[list[int]] = [[] for _ in range(n)]
    shadow_rows: list[list[int]] = [[] for _ in range(n)]
    for k, c in enumerate(compiled):
        target = shadow_rows if c.rule.shadow else fired_rows
        for i in np.flatnonzero(masks[k]).tolist():
            target[i].append(k)
    rule_reason = [{"code": c.rule.id, "kind": "rule", "detail": f"{c.rule.name} -> {c.rule.action}"} for c in compiled]
    shadow_reason = [
        {"code": c.rule.id, "kind": "rule", "detail": f"shadow: {c.rule.name} -> {c.rule.action}"} for c in compiled
    ]
    # ``policy.explains_with_risk`` for every row
    use_risk = (
        (cause == RISK) | (cause == RULE_RISK) | (((severity == REVIEW) | (severity == CHALLENGE)) & (cause == RULE))
    )
    factors: list[list[dict[str, str]]] = [[] for _ in range(n)]
    for which, contrib, rows_sel in (("risk", s.risk_contrib, use_risk), ("approval", s.approval_contrib, ~use_risk)):
        sel = np.flatnonzero(rows_sel)
        if contrib is None or not len(sel) or policy.top_factors <= 0:
            continue
        direction = np.ones(len(sel)) if which == "risk" else np.where(severity[sel] == APPROVE, 1.0, -1.0)
        sub = contrib[sel]
        idx, ok = top_factors_batch(sub, direction, policy.top_factors)
        kind = st.bundle.champions[which].kind
        for r, i in enumerate(sel.tolist()):
            row_factors = factors[i]
            for j, good in zip(idx[r].tolist(), ok[r].tolist(), strict=True):
                if not good:
                    break
                row_factors.append(
                    {"code": MODEL_FEATURES[j], "kind": "model_factor", "detail": f"{kind} {sub[r, j]:+.3f}"}
                )

    # --- the records -------------------------------------------------------------------------------
    decided_at = _DATETIME.dump_python(datetime.now(UTC), mode="json")
    versions = st.model_versions
    rsv = st.rule_set_version
    suffix = f"|{rsv}|{st.versions_json}".encode()  # ``policy.decision_id``, the hash prefix shared
    out: list[dict[str, Any]] = []
    for i, (tid, outcome, a, r, c, rt) in enumerate(
        zip(
            frame["transaction_id"].tolist(),
            _OUTCOME_NAMES[severity].tolist(),
            s.approval,
            s.risk,
            code.tolist(),
            route,
            strict=True,
        )
    ):
        reasons_i = [dict(rule_reason[k]) for k in fired_rows[i]]
        reasons_i.append({"code": c, "kind": "policy", "detail": f"outcome {outcome}; approval {a:.3f}, risk {r:.3f}"})
        reasons_i += factors[i]
        out.append(
            {
                "schema_version": 1,
                "decision_id": "dec_" + hashlib.sha256(tid.encode() + suffix).hexdigest()[:24],
                "transaction_id": tid,
                "outcome": outcome,
                "approval_probability": a,
                "risk_score": r,
                "recommended_route": rt,
                "retry": retry[i],
                "reason_codes": reasons_i,
                "shadow_reason_codes": [dict(shadow_reason[k]) for k in shadow_rows[i]],
                "challenger_outcome": challenger[i] if challenger is not None else None,
                "rule_set_version": rsv,
                "model_versions": dict(versions),
                "latency_ms": 0.0,
                "decided_at": decided_at,
                "source": source,
            }
        )
    per_row = round((time.perf_counter() - started) * 1000.0 / n, 3)
    for item in out:  # the batch's latency, shared per row
        item["latency_ms"] = per_row
    return out
