"""Decision policy on hand-built cases, determinism, and one-row == batch."""

from __future__ import annotations

import math
import random

import numpy as np
import pandas as pd
import pytest

from payments_core.contract.events import DecisionEvent, TransactionRequest
from payments_core.engine import DecisionEngine, eligible_routes
from payments_core.fastpath import LinearModel
from payments_core.model_features import FEATURE_INDEX, N_FEATURES
from payments_core.models import MODEL_KINDS, ModelBundle, ScoringModel, heuristic_model
from payments_core.rules import Rule, RuleSet, starter_rule_set
from payments_core.samples import EXAMPLE_REQUEST, sample_request
from payments_core.velocity import InMemoryVelocityStore


def constant(kind: str, p: float, version: str = "7", **feature_weights: float) -> ScoringModel:
    w = np.zeros(N_FEATURES)
    for name, value in feature_weights.items():
        w[FEATURE_INDEX[name.replace("__", "=")]] = value
    return ScoringModel(kind, version, LinearModel(w, np.zeros(N_FEATURES), math.log(p / (1 - p))))


def bundle(approval=0.9, risk=0.05, retry=0.6, routing=None, challengers=None) -> ModelBundle:
    champions = {
        "approval": constant("approval", approval),
        "risk": constant("risk", risk),
        "retry": constant("retry", retry),
        "routing": routing or constant("routing", 0.5),
    }
    return ModelBundle(champions, challengers or {})


def rules(*items) -> RuleSet:
    return RuleSet(version="t", rules=[Rule(**r) for r in items])


def R(id, type, condition, action, priority=100, **kw):
    return dict(id=id, name=f"rule {id}", type=type, condition=condition, action=action, priority=priority, **kw)


def req(**kw) -> TransactionRequest:
    return TransactionRequest(**{**EXAMPLE_REQUEST, **kw})


def codes(decision: DecisionEvent, kind="rule"):
    return [r.code for r in decision.reason_codes if r.kind == kind]


def test_clean_transaction_is_approved_with_factors_and_versions():
    d = DecisionEngine(rules(), bundle()).decide(req())
    assert d.outcome == "approve" and d.retry is None
    assert d.approval_probability == pytest.approx(0.9) and d.risk_score == pytest.approx(0.05)
    assert d.model_versions == {"approval": "7", "risk": "7", "routing": "7", "retry": "7"}
    assert codes(d, "policy") == ["models_approve"]
    assert d.decision_id.startswith("dec_") and d.source == "api" and d.latency_ms >= 0


def test_risk_threshold_declines_and_never_retries():
    d = DecisionEngine(rules(), bundle(risk=0.85)).decide(
        req(previous_decline_code="ISSUER_UNAVAILABLE", is_retry=True, retry_count=1, attempt_number=2)
    )
    assert d.outcome == "decline"
    assert d.retry is not None and d.retry.should_retry is False and d.retry.max_attempts == 0
    assert codes(d, "policy") == ["risk_score>=0.8"]


@pytest.mark.parametrize(
    "risk, authenticated, outcome",
    [
        (0.65, False, "review"),
        (0.45, False, "challenge_3ds"),
        (0.45, True, "approve"),
        (0.2, False, "approve"),
    ],
)
def test_risk_bands(risk, authenticated, outcome):
    d = DecisionEngine(rules(), bundle(risk=risk)).decide(req(three_ds_authenticated=authenticated))
    assert d.outcome == outcome


def test_low_approval_declines_with_taxonomy_retry_advice():
    eng = DecisionEngine(rules(), bundle(approval=0.05, retry=0.6))
    d = eng.decide(req(is_retry=True, retry_count=1, attempt_number=2, previous_decline_code="INSUFFICIENT_FUNDS"))
    assert d.outcome == "decline"
    assert (d.retry.should_retry, d.retry.retry_after_seconds, d.retry.max_attempts) == (True, 6 * 3600, 2)
    # no soft reason of its own: DO_NOT_HONOR's advice (1 h, 2 attempts)
    d = eng.decide(req())
    assert (d.retry.should_retry, d.retry.retry_after_seconds, d.retry.max_attempts) == (True, 3600, 2)
    # the retry model says a retry would fail
    d = DecisionEngine(rules(), bundle(approval=0.05, retry=0.1)).decide(req())
    assert d.retry.should_retry is False
    # attempts exhausted
    d = eng.decide(req(is_retry=True, retry_count=2, attempt_number=3, previous_decline_code="DO_NOT_HONOR"))
    assert d.retry.should_retry is False and d.retry.max_attempts == 0


def test_retry_rules_apply_to_soft_declines_only():
    rs = rules(
        R("RT1", "retry", "previous_decline_code = 'ISSUER_UNAVAILABLE'", "retry:30"),
        R("RT2", "retry", "attempt_number >= 3", "no_retry", priority=50),
    )
    soft = DecisionEngine(rs, bundle(approval=0.05))
    d = soft.decide(req(is_retry=True, retry_count=1, attempt_number=2, previous_decline_code="ISSUER_UNAVAILABLE"))
    assert (d.retry.should_retry, d.retry.retry_after_seconds) == (True, 30)
    d = soft.decide(req(is_retry=True, retry_count=2, attempt_number=3, previous_decline_code="ISSUER_UNAVAILABLE"))
    assert d.retry.should_retry is False  # RT2 has the higher priority
    assert codes(d) == ["RT2", "RT1"]
    d = DecisionEngine(rs, bundle(risk=0.95)).decide(
        req(is_retry=True, retry_count=1, attempt_number=2, previous_decline_code="ISSUER_UNAVAILABLE")
    )
    assert d.retry.should_retry is False  # a risk decline is never retried


def test_most_severe_rule_wins_and_allow_list_overrides_models():
    rs = rules(
        R("A", "authentication", "amount_minor > 1000", "challenge_3ds", 20),
        R("B", "risk", "fraud_score > 0.1", "review", 30),
        R("C", "risk", "merchant_id = 'm_vip'", "approve", 10),
    )
    eng = DecisionEngine(rs, bundle(risk=0.9))
    d = eng.decide(req())
    assert d.outcome == "decline"  # the model's decline is more severe than both rules
    assert codes(d) == ["A", "B"]
    d = DecisionEngine(rs, bundle()).decide(req())
    assert d.outcome == "review" and codes(d, "policy") == ["rule:B"]
    d = eng.decide(req(merchant_id="m_vip"))
    assert d.outcome == "approve" and codes(d, "policy") == ["allow_list:C"]


def test_rules_can_use_model_scores_and_velocity():
    rs = rules(R("V", "risk", "card_txn_count_600s >= 3 AND risk_score > 0.01", "decline"))
    eng = DecisionEngine(rs, bundle())
    assert eng.decide(req(), {"card_txn_count_600s": 2}).outcome == "approve"
    d = eng.decide(req(), {"card_txn_count_600s": 3})
    assert d.outcome == "decline" and d.retry.should_retry is False  # risk rule: no retry


def test_shadow_rules_and_challenger_are_logged_never_applied():
    rs = rules(R("S", "risk", "fraud_score > 0.1", "decline", shadow=True))
    ch = {"risk": constant("risk", 0.95, version="8")}
    d = DecisionEngine(rs, bundle(challengers=ch)).decide(req())
    assert d.outcome == "approve"
    assert [r.code for r in d.shadow_reason_codes] == ["S"] and codes(d) == []
    assert d.challenger_outcome == "decline"
    assert d.model_versions["risk@challenger"] == "8"


def test_inactive_rules_are_ignored():
    d = DecisionEngine(rules(R("X", "risk", "fraud_score > 0.1", "decline", active=False)), bundle()).decide(req())
    assert d.outcome == "approve" and d.reason_codes[0].kind == "policy"


def test_route_from_rule_or_best_eligible_route():
    routing = constant("routing", 0.5, payment_solution__passkey=2.0, payment_solution__network_token=1.0)
    eng = DecisionEngine(rules(), bundle(routing=routing))
    assert eng.decide(req(has_passkey=True)).recommended_route == "passkey"
    assert eng.decide(req(has_passkey=False, is_network_token=True)).recommended_route == "network_token"
    assert eng.decide(req(has_passkey=False, is_network_token=False)).recommended_route == "standard"
    eng = DecisionEngine(rules(R("RR", "routing", "card_network = 'visa'", "route:3ds")), bundle(routing=routing))
    assert eng.decide(req(has_passkey=True)).recommended_route == "3ds"
    assert eligible_routes({"payment_solution": "apple_pay", "device_type": "desktop"}) == [
        "standard",
        "3ds",
        "apple_pay",
    ]


def test_deterministic_and_versioned_ids():
    eng = DecisionEngine(starter_rule_set())
    a, b = eng.decide(req()), eng.decide(req())

    def strip(d):
        return d.model_dump(exclude={"latency_ms", "decided_at"})

    assert strip(a) == strip(b)
    other = DecisionEngine(rules(R("Z", "risk", "fraud_score > 0.99", "decline"))).decide(req())
    assert other.decision_id != a.decision_id
    assert a.decision_id != eng.decide(req(transaction_id="txn_00000000000000ff")).decision_id


def test_without_models_the_heuristic_decides_and_says_so():
    eng = DecisionEngine(starter_rule_set())
    assert eng.model_versions == {k: "heuristic" for k in MODEL_KINDS}
    good = eng.decide(req())
    bad = eng.decide(req(fraud_score=0.9, device_trust_score=0.05, aml_risk_score=0.8))
    assert good.outcome == "approve" and bad.outcome == "decline"
    assert bad.risk_score > good.risk_score and bad.approval_probability < good.approval_probability
    assert any(r.kind == "model_factor" and r.code == "composite_risk_score" for r in bad.reason_codes)


def _compare_paths(engine: DecisionEngine, n: int = 600, seed: int = 9):
    rng = random.Random(seed)
    txs = [sample_request(rng, card_token_id=f"tok_{rng.randrange(40)}") for _ in range(n)]
    # boundary values: exact thresholds of rules and policy
    txs[0].update(fraud_score=0.95)
    txs[1].update(amount_minor=100000, currency="BRL")
    vel = InMemoryVelocityStore().features_batch(txs)
    one = [
        engine.decide(TransactionRequest(**t), v, source="backtest").model_dump(mode="json") for t, v in zip(txs, vel)
    ]
    many = engine.decide_batch(pd.DataFrame(txs), pd.DataFrame(vel), source="backtest")
    assert len(many) == n
    for a, b in zip(one, many):
        for k in ("latency_ms", "decided_at"):
            a.pop(k), b.pop(k)
        assert a == b
    return one


def test_one_row_and_batch_decide_identically_heuristic():
    out = _compare_paths(DecisionEngine(starter_rule_set()))
    assert len({d["outcome"] for d in out}) == 4  # every outcome occurs


def test_one_row_and_batch_decide_identically_with_every_rule_kind_and_challengers():
    # the vectorised batch path (payments_core.batch) against decide(): allow-list, rule severities of
    # both causes, routing / retry rules, shadow rules, challengers of both scores, model retry advice
    extra = [
        R("AL", "risk", "merchant_segment = 'Fuel' AND fraud_score < 0.5", "approve", 5),
        R("AU", "authentication", "amount_major > 300 AND NOT three_ds_authenticated", "review", 65),
        R("RT", "routing", "device_type = 'mobile_app' AND amount_major < 20", "route:google_pay", 90),
        R("RY", "retry", "retry_count = 1", "retry:600", 105),
        R("SH", "routing", "fraud_score > 0.3", "route:3ds", 95, shadow=True),
    ]
    rs = RuleSet(version="t", rules=[*starter_rule_set().rules, *(Rule(**r) for r in extra)])
    models = ModelBundle(
        {k: heuristic_model(k) for k in MODEL_KINDS},
        {
            "approval": constant("approval", 0.5, version="9", fraud_score=-4.0),
            "risk": constant("risk", 0.3, version="9", composite_risk_score=3.0),
        },
    )
    out = _compare_paths(DecisionEngine(rs, models), n=900, seed=21)
    policy = [c["code"] for d in out for c in d["reason_codes"] if c["kind"] == "policy"]
    assert any(c.startswith("allow_list:") for c in policy) and "rule:AU" in policy
    assert {d["challenger_outcome"] for d in out} >= {"approve", "decline"}
    retry = [d["retry"] for d in out if d["retry"] is not None]
    assert {r["should_retry"] for r in retry} == {True, False}
    assert any(r["retry_after_seconds"] == 600 for r in retry)
    assert any(d["shadow_reason_codes"] for d in out)
    assert any(c["code"] == "RT" for d in out for c in d["reason_codes"])
    assert any(c["kind"] == "model_factor" for d in out for c in d["reason_codes"])


@pytest.mark.parametrize("challengers", [False, True])
def test_decide_json_answers_the_events_own_json(challengers):
    """The scoring API's hot path (``decide_json``: orjson over plain fields, no pydantic model) gives
    the bytes ``DecisionEvent``'s own serialiser gives for the same decision as ``decide_dumped``."""
    models = ModelBundle(
        {k: heuristic_model(k) for k in MODEL_KINDS},
        {"risk": constant("risk", 0.3, version="9", composite_risk_score=3.0)} if challengers else {},
    )
    extra = Rule(**R("SH", "routing", "fraud_score > 0.3", "route:3ds", 95, shadow=True))
    engine = DecisionEngine(RuleSet(version="t", rules=[*starter_rule_set().rules, extra]), models)
    assert (engine.snapshot.stacked is None) == challengers  # both scoring paths of one row
    rng = random.Random(4)
    txs = [sample_request(rng, card_token_id=f"tok_{rng.randrange(20)}") for _ in range(400)]
    velocity = InMemoryVelocityStore().features_batch(txs)
    outcomes = set()
    for tx, vel in zip(txs, velocity):
        data = TransactionRequest(**tx).model_dump()
        outcome, body = engine.decide_json(data, vel, source="api", started=0.0)
        event = DecisionEvent.model_validate_json(body)
        assert event.outcome == outcome and DecisionEvent.__pydantic_serializer__.to_json(event) == body
        expected = engine.decide_dumped(data, vel, source="api")
        volatile = {"latency_ms", "decided_at"}
        assert event.model_dump(exclude=volatile) == expected.model_dump(exclude=volatile)
        outcomes.add(outcome)
    assert len(outcomes) == 4


def test_batch_accepts_frames_without_optional_columns_and_empty():
    eng = DecisionEngine(starter_rule_set())
    required = {k: v for k, v in EXAMPLE_REQUEST.items() if k not in ("uses_3ds", "is_network_token")}
    out = eng.decide_batch(pd.DataFrame([required]))
    assert out[0]["transaction_id"] == EXAMPLE_REQUEST["transaction_id"]
    assert out[0]["outcome"] == eng.decide(req(uses_3ds=False, is_network_token=False)).outcome
    assert eng.decide_batch(pd.DataFrame([])) == []
