"""Each policy step's one-row and vectorised forms agree, on random transactions, scores and rule
firings (the property the batch path's correctness rests on)."""

from __future__ import annotations

import random

import numpy as np
import pytest

from payments_core.policy import (
    CAUSES,
    OUTCOMES,
    ROUTES,
    CompiledRule,
    PolicyConfig,
    choose_route,
    choose_routes,
    eligible_route_mask,
    eligible_routes,
    first_fired,
    model_retry_advice,
    retry_advice_batch,
    retry_need,
    top_factors,
    top_factors_batch,
    truthy,
    verdict,
    verdicts,
)
from payments_core.rules.model import Rule
from payments_core.samples import sample_request

RULES = [
    CompiledRule.of(r)
    for r in (
        Rule(id="A1", name="allow", type="risk", condition="amount_major < 1", action="approve", priority=1),
        Rule(id="D1", name="deny", type="risk", condition="fraud_score > 0.9", action="decline", priority=2),
        Rule(id="R1", name="review", type="authentication", condition="uses_3ds = false", action="review", priority=3),
        Rule(
            id="C1",
            name="challenge",
            type="authentication",
            condition="amount_major > 100",
            action="challenge_3ds",
            priority=4,
        ),
        Rule(id="T1", name="retry later", type="retry", condition="retry_count = 0", action="retry:600", priority=5),
        Rule(id="T2", name="never retry", type="retry", condition="retry_count > 2", action="no_retry", priority=6),
        Rule(
            id="P1",
            name="tokenise",
            type="routing",
            condition="is_network_token = true",
            action="route:network_token",
            priority=7,
        ),
        Rule(
            id="P2", name="passkey", type="routing", condition="has_passkey = true", action="route:passkey", priority=8
        ),
    )
]


@pytest.mark.parametrize("seed", range(5))
def test_row_and_vectorised_policy_steps_agree_on_random_transactions(seed):
    rng = random.Random(seed)
    np_rng = np.random.default_rng(seed)
    n = 600
    txs = [sample_request(rng) for _ in range(n)]
    policy = PolicyConfig(risk_decline=float(np_rng.uniform(0.6, 0.95)), top_factors=int(rng.choice([0, 1, 3, 5])))
    approval = np.round(np_rng.uniform(0, 1, n), 6)
    risk = np.round(np_rng.beta(1.2, 3.0, n), 6)
    authenticated = truthy([tx.get("three_ds_authenticated") for tx in txs])
    masks = [np_rng.uniform(size=n) < p for p in np_rng.uniform(0.02, 0.5, len(RULES))]
    indexed = list(enumerate(RULES))
    outcome_rules = [(k, c) for k, c in indexed if c.action.kind == "outcome"]

    severity, cause, code = verdicts(policy, policy.risk_decline, approval, risk, authenticated, outcome_rules, masks)
    retry_p = np.round(np_rng.uniform(0, 1, n), 6)
    advice = retry_advice_batch(
        policy,
        severity,
        cause,
        [tx["previous_decline_code"] for tx in txs],
        [tx["retry_count"] for tx in txs],
        first_fired("retry", indexed, masks, n),
        RULES,
        lambda rows, _reason: retry_p[rows].tolist(),
    )
    route_scores = np.round(np_rng.uniform(0, 1, (n, len(ROUTES))), 6)
    route_scores[::9, :] = 0.5  # ties everywhere on some rows
    eligible = eligible_route_mask(
        [tx["payment_solution"] for tx in txs],
        [tx["device_type"] for tx in txs],
        [tx["is_network_token"] for tx in txs],
        [tx["has_passkey"] for tx in txs],
    )
    routes = choose_routes(
        [tx["payment_solution"] for tx in txs], eligible, route_scores, first_fired("route", indexed, masks, n), RULES
    )
    contrib = np.round(np_rng.normal(0, 1, (n, 12)), 2)  # rounding makes ties
    direction = np.where(np_rng.uniform(size=n) < 0.5, 1.0, -1.0)
    k = max(policy.top_factors, 1)
    idx, ok = top_factors_batch(contrib, direction, k)

    for i, tx in enumerate(txs):
        fired = [c for j, c in indexed if masks[j][i]]
        outcome, row_cause, row_code, _ = verdict(
            policy, policy.risk_decline, approval[i], risk[i], bool(tx.get("three_ds_authenticated")), fired
        )
        assert (OUTCOMES[severity[i]], CAUSES[cause[i]], code[i]) == (outcome, row_cause, row_code), i
        kind, value = retry_need(tx, outcome, row_cause, fired)
        if kind == "none":
            assert advice[i] is None
        else:
            expected = value if kind == "fixed" else model_retry_advice(policy, value, tx["retry_count"], retry_p[i])
            assert advice[i] == expected.model_dump(), i
        assert routes[i] == choose_route(tx, route_scores[i], fired)[0], i
        assert [r for r, c in enumerate(ROUTES) if eligible[i, r]] == [ROUTES.index(r) for r in eligible_routes(tx)]
        assert [j for j, good in zip(idx[i], ok[i], strict=True) if good] == top_factors(contrib[i], direction[i], k)
    # the random draw exercised every outcome and every cause
    assert set(severity.tolist()) == {0, 1, 2, 3} and set(cause.tolist()) == set(range(len(CAUSES)))
