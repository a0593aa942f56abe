"""The decision engine's batch path, vectorised: numpy over columns instead of Python per row.

``DecisionEngine.decide_batch`` (the stream processor, the backtest) delegates here. The policy is
the one documented in ``payments_core.engine`` and implemented there for one row (``decide``);
this module evaluates the very same steps as array operations over the batch:

* features, model scores and rule masks: the engine's own functions (``derive_frame``,
  ``feature_matrix``, ``DecisionEngine._score``, ``Condition.matches_frame``), the models in
  chunks of ``SCORE_CHUNK`` rows (identical numbers per row, far less memory traffic: the routing
  model scores every route of every row);
* model verdict, rule verdict (allow-list, most severe outcome), retry advice, route choice and the
  top model factors: numpy selections with the same comparisons on the same floats, ties broken the
  same way (first rule in ``(priority, id)`` order, first route in contract order, first feature);
* the decision records: plain dicts in ``DecisionEvent.model_dump(mode="json")`` form, built
  without a pydantic model per row.

``tests/payments_core/test_engine.py`` proves it row-for-row against ``decide`` (every outcome,
rules of every kind, shadow rules, challengers, model and fixed retry advice, routing rules).
"""
from __future__ import annotations

import hashlib
import time
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
from pydantic import TypeAdapter

from payments_core.features import VELOCITY_FEATURES, derive_frame
from payments_core.model_features import _ONEHOT_INDEX, FEATURE_INDEX, MODEL_FEATURES, feature_matrix
from payments_core.taxonomy import DECLINES, SOFT_DECLINES

if TYPE_CHECKING:
    from payments_core.engine import DecisionEngine, _Scores, _State

SCORE_CHUNK = 2048
_APPROVE, _CHALLENGE, _REVIEW, _DECLINE = 0, 1, 2, 3
_OUTCOMES = np.array(["approve", "challenge_3ds", "review", "decline"], dtype=object)
_SEVERITY = {"approve": _APPROVE, "challenge_3ds": _CHALLENGE, "review": _REVIEW, "decline": _DECLINE}
# causes
_RISK, _APPROVAL, _RULE_RISK, _RULE, _ALLOW = 0, 1, 2, 3, 4
_NO_RETRY = {"should_retry": False, "retry_after_seconds": None, "max_attempts": 0}
_DATETIME = TypeAdapter(datetime)


def _score_chunked(engine: DecisionEngine, st: _State, X: np.ndarray) -> _Scores:
    from payments_core.engine import _Scores

    n = X.shape[0]
    if n <= SCORE_CHUNK:
        return engine._score(st, X)
    parts = [engine._score(st, X[a:a + SCORE_CHUNK]) for a in range(0, n, SCORE_CHUNK)]

    def cat_list(name: str) -> list[float] | None:
        if getattr(parts[0], name) is None:
            return None
        return [v for p in parts for v in getattr(p, name)]

    def cat_array(name: str) -> np.ndarray | None:
        if getattr(parts[0], name) is None:
            return None
        return np.concatenate([getattr(p, name) for p in parts])

    return _Scores(cat_list("approval"), cat_list("risk"), cat_array("approval_contrib"), cat_array("risk_contrib"),
                   cat_array("route_scores"), cat_list("ch_approval"), cat_list("ch_risk"))


def _truthy(values: pd.Series) -> np.ndarray:
    # Python truthiness per value (None -> False, NaN -> True), as ``decide``'s ``tx.get(...)``
    return np.fromiter((bool(v) for v in values.tolist()), dtype=bool, count=len(values))


def _verdicts(engine: DecisionEngine, st: _State, approval: np.ndarray, risk: np.ndarray, authenticated: np.ndarray,
              outcome_rules: list[tuple[int, Any]],
              masks: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(outcome severity int, cause int, policy code object) per row: ``DecisionEngine._verdict``."""
    p = engine.policy
    n = len(approval)
    c_decline = risk >= st.risk_decline
    c_review = risk >= p.risk_review
    c_challenge = (risk >= p.risk_challenge) & ~authenticated
    c_low = approval < p.approval_decline
    conds = [c_decline, c_review, c_challenge, c_low]
    sev = np.select(conds, [_DECLINE, _REVIEW, _CHALLENGE, _DECLINE], _APPROVE).astype(np.int8)
    cause = np.select(conds, [_RISK, _RISK, _RISK, _APPROVAL], _APPROVAL).astype(np.int8)
    code = np.select(conds, [f"risk_score>={st.risk_decline:g}", f"risk_score>={p.risk_review:g}",
                             f"risk_score>={p.risk_challenge:g}", f"approval_probability<{p.approval_decline:g}"],
                     "models_approve").astype(object)
    if not outcome_rules:
        return sev, cause, code
    first = np.full(n, -1, dtype=np.int64)  # first fired outcome rule
    for k, c in outcome_rules:
        first[(first < 0) & masks[k]] = k
    for k, c in outcome_rules:
        v = str(c.action.value)
        if v == "approve":
            continue
        upd = masks[k] & (_SEVERITY[v] > sev)
        if upd.any():
            sev[upd] = _SEVERITY[v]
            cause[upd] = _RULE_RISK if c.rule.type == "risk" else _RULE
            code[upd] = f"rule:{c.rule.id}"
    for k, c in outcome_rules:
        if str(c.action.value) == "approve":
            allow = first == k
            if allow.any():
                sev[allow] = _APPROVE
                cause[allow] = _ALLOW
                code[allow] = f"allow_list:{c.rule.id}"
    return sev, cause, code


def _first_fired(kind: str, rules: list[tuple[int, Any]], masks: list[np.ndarray], n: int) -> np.ndarray:
    first = np.full(n, -1, dtype=np.int64)
    for k, c in rules:
        if c.action.kind == kind:
            first[(first < 0) & masks[k]] = k
    return first


def _top_factors(contrib: np.ndarray, direction: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Per row the first ``k`` features by ``contrib * direction`` descending (ties: lower index),
    while positive: (indices (n, k), valid (n, k)) -- ``np.argsort(-signed, kind="stable")`` order."""
    signed = contrib * direction[:, None]
    n = signed.shape[0]
    rows = np.arange(n)
    idx = np.zeros((n, k), dtype=np.int64)
    ok = np.zeros((n, k), dtype=bool)
    alive = np.ones(n, dtype=bool)
    for r in range(k):
        j = signed.argmax(axis=1)
        v = signed[rows, j]
        alive &= v > 0
        idx[:, r], ok[:, r] = j, alive
        signed[rows, j] = -np.inf
    return idx, ok


def decide_frame(engine: DecisionEngine, df: pd.DataFrame, velocity: pd.DataFrame | None = None, *,
                 source: str = "stream") -> list[dict[str, Any]]:
    """``DecisionEngine.decide_batch`` (see there): one JSON-ready decision dict per row, in order."""
    from payments_core.contract.events import TransactionRequest
    from payments_core.engine import _REQUEST_DEFAULTS, DEFAULT_SOFT_REASON, ROUTES, decision_id  # noqa: F401

    started = time.perf_counter()
    st = engine._state
    n = len(df)
    if n == 0:
        return []
    frame = df.reset_index(drop=True)
    missing = {name: [default] * n for name, default in _REQUEST_DEFAULTS.items() if name not in frame.columns}
    frame = frame.assign(**missing, event_timestamp=pd.to_datetime(frame["event_timestamp"], utc=True))
    derived = derive_frame(frame)
    if velocity is None:
        vel = pd.DataFrame(0, index=frame.index, columns=list(VELOCITY_FEATURES), dtype="int64")
    else:
        vel = velocity.reset_index(drop=True).reindex(columns=list(VELOCITY_FEATURES)).fillna(0)
    X = feature_matrix(frame, derived, vel)
    s = _score_chunked(engine, st, X)
    rule_frame = pd.concat([frame[[c for c in frame.columns if c not in derived.columns and c not in vel.columns]],
                            derived, vel], axis=1)
    rule_frame["approval_probability"] = s.approval
    rule_frame["risk_score"] = s.risk
    compiled = st.compiled
    masks = [np.asarray(c.fn.matches_frame(rule_frame), dtype=bool) for c in compiled]
    live = [(k, c) for k, c in enumerate(compiled) if not c.rule.shadow]
    outcome_rules = [(k, c) for k, c in live if c.action.kind == "outcome"]

    approval = np.asarray(s.approval, dtype=np.float64)
    risk = np.asarray(s.risk, dtype=np.float64)
    authenticated = _truthy(frame["three_ds_authenticated"])
    sev, cause, code = _verdicts(engine, st, approval, risk, authenticated, outcome_rules, masks)
    challenger = None
    if s.ch_approval is not None and s.ch_risk is not None:
        ch_sev, _, _ = _verdicts(engine, st, np.asarray(s.ch_approval, dtype=np.float64),
                                 np.asarray(s.ch_risk, dtype=np.float64), authenticated, outcome_rules, masks)
        challenger = _OUTCOMES[ch_sev].tolist()

    # --- retry advice (declines): fixed, by rule, or by the retry model ---------------------------
    decline = sev == _DECLINE
    prev = frame["previous_decline_code"].tolist()
    reasons = np.array([r if r in SOFT_DECLINES else DEFAULT_SOFT_REASON for r in prev], dtype=object)
    retry_count = np.fromiter((int(v or 0) for v in frame["retry_count"].tolist()), dtype=np.int64, count=n)
    max_att = np.fromiter((DECLINES[r].max_attempts for r in reasons.tolist()), dtype=np.int64, count=n)
    remaining = np.maximum(0, max_att - retry_count)
    risk_decline = decline & ((cause == _RISK) | (cause == _RULE_RISK))
    first_retry = _first_fired("retry", live, masks, n)
    by_rule = decline & ~risk_decline & (first_retry >= 0)
    exhausted = decline & ~risk_decline & ~by_rule & (remaining <= 0)
    by_model = decline & ~risk_decline & ~by_rule & ~exhausted
    retry: list[dict[str, Any] | None] = [None] * n
    for i in np.flatnonzero(risk_decline | exhausted).tolist():
        retry[i] = dict(_NO_RETRY)
    for i in np.flatnonzero(by_rule).tolist():
        value = compiled[first_retry[i]].action.value
        retry[i] = dict(_NO_RETRY) if value is None else {
            "should_retry": True, "retry_after_seconds": int(value), "max_attempts": max(1, int(remaining[i]))}
    model_rows = np.flatnonzero(by_model)
    if len(model_rows):
        p_retry = np.empty(len(model_rows), dtype=np.float64)
        row_reasons = reasons[model_rows]
        for reason in sorted(set(row_reasons.tolist())):
            sel = row_reasons == reason
            Xr = _retry_rows(X[model_rows[sel]], reason)
            p_retry[sel] = [round(v * 1e6) / 1e6 for v in st.bundle.champions["retry"].predict(Xr)[0].tolist()]
        min_p = engine.policy.retry_min_probability
        for i, reason, p in zip(model_rows.tolist(), row_reasons.tolist(), p_retry.tolist(), strict=True):
            retry[i] = {"should_retry": True, "retry_after_seconds": DECLINES[reason].retry_after_seconds,
                        "max_attempts": int(remaining[i])} if p >= min_p else dict(_NO_RETRY)

    # --- route: the first routing rule, else the best eligible route ------------------------------
    current = frame["payment_solution"].to_numpy(dtype=object)
    route_index = {r: i for i, r in enumerate(ROUTES)}
    cur = np.fromiter((route_index[r] for r in current.tolist()), dtype=np.int64, count=n)
    mobile = frame["device_type"].to_numpy(dtype=object) != "desktop"
    eligible = np.ones((n, len(ROUTES)), dtype=bool)
    for i, r in enumerate(ROUTES):
        if r == "network_token":
            eligible[:, i] = _truthy(frame["is_network_token"])
        elif r == "passkey":
            eligible[:, i] = _truthy(frame["has_passkey"])
        elif r in ("apple_pay", "google_pay"):
            eligible[:, i] = mobile
    rows = np.arange(n)
    eligible[rows, cur] = True
    scores = s.route_scores
    best = cur.copy()
    best_score = scores[rows, cur]
    for i in range(len(ROUTES)):
        upd = eligible[:, i] & (scores[:, i] > best_score)
        best[upd] = i
        best_score = np.where(upd, scores[:, i], best_score)
    route = np.array(ROUTES, dtype=object)[best]
    first_route = _first_fired("route", live, masks, n)
    for i in np.flatnonzero(first_route >= 0).tolist():
        route[i] = str(compiled[first_route[i]].action.value)

    # --- reason codes: fired rules, the policy code, the top factors of the deciding model ------
    fired_rows: list[list[int]] = [[] for _ in range(n)]
    shadow_rows: list[list[int]] = [[] for _ in range(n)]
    for k, c in enumerate(compiled):
        target = shadow_rows if c.rule.shadow else fired_rows
        for i in np.flatnonzero(masks[k]).tolist():
            target[i].append(k)
    rule_reason = [{"code": c.rule.id, "kind": "rule", "detail": f"{c.rule.name} -> {c.rule.action}"}
                   for c in compiled]
    shadow_reason = [{"code": c.rule.id, "kind": "rule", "detail": f"shadow: {c.rule.name} -> {c.rule.action}"}
                     for c in compiled]
    outcome_names = _OUTCOMES[sev]
    use_risk = (cause == _RISK) | (cause == _RULE_RISK) | (((sev == _REVIEW) | (sev == _CHALLENGE)) & (cause == _RULE))
    k_top = engine.policy.top_factors
    factors: list[list[dict[str, str]]] = [[] for _ in range(n)]
    b = st.bundle
    for which, contrib, rows_sel in (("risk", s.risk_contrib, use_risk), ("approval", s.approval_contrib, ~use_risk)):
        sel = np.flatnonzero(rows_sel)
        if contrib is None or not len(sel) or k_top <= 0:
            continue
        direction = np.ones(len(sel)) if which == "risk" else np.where(sev[sel] == _APPROVE, 1.0, -1.0)
        sub = contrib[sel]
        idx, ok = _top_factors(sub, direction, k_top)
        kind = b.champions[which].kind
        for r, i in enumerate(sel.tolist()):
            row_f = factors[i]
            for j, good in zip(idx[r].tolist(), ok[r].tolist(), strict=True):
                if not good:
                    break
                row_f.append({"code": MODEL_FEATURES[j], "kind": "model_factor", "detail": f"{kind} {sub[r, j]:+.3f}"})

    decided_at = _DATETIME.dump_python(datetime.now(UTC), mode="json")
    versions = st.model_versions
    rsv = st.rule_set_version
    suffix = f"|{rsv}|{st.versions_json}".encode()
    tids = frame["transaction_id"].tolist()
    out: list[dict[str, Any]] = []
    for i, (tid, outcome, a, r, c, rt) in enumerate(zip(tids, outcome_names.tolist(), s.approval, s.risk,
                                                          code.tolist(), route.tolist(), strict=True)):
        reasons_i = [dict(rule_reason[k]) for k in fired_rows[i]]
        reasons_i.append({"code": c, "kind": "policy", "detail": f"outcome {outcome}; approval {a:.3f}, risk {r:.3f}"})
        reasons_i += factors[i]
        out.append({
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
        })
    per_row = round((time.perf_counter() - started) * 1000.0 / n, 3)
    for item in out:  # the batch's latency, shared per row
        item["latency_ms"] = per_row
    return out


def _retry_rows(X: np.ndarray, reason: str) -> np.ndarray:
    """``model_features.retry_feature_vector`` for many rows of one decline reason."""
    y = np.array(X, dtype=np.float32, copy=True)
    y[:, FEATURE_INDEX["is_retry"]] = 1.0
    y[:, FEATURE_INDEX["retry_count"]] += 1.0
    y[:, FEATURE_INDEX["attempt_number"]] += 1.0
    for idx in _ONEHOT_INDEX["previous_decline_code"].values():
        y[:, idx] = 0.0
    y[:, _ONEHOT_INDEX["previous_decline_code"][reason]] = 1.0
    return y
