"""Rule condition language: valid, invalid with position, precedence, NULLs, both evaluators agree."""

from __future__ import annotations

import random

import pandas as pd
import pytest

from payments_core.rules import RuleSyntaxError, compile_condition, validate_condition

ROW = {
    "fraud_score": 0.9,
    "amount_major": 120.0,
    "merchant_segment": "Gaming",
    "is_retry": False,
    "previous_decline_code": None,
    "antifraud_result": "pass",
    "card_txn_count_600s": 2,
    "three_ds_authenticated": True,
    "geo_country": "BR",
    "issuer_country": "US",
}


@pytest.mark.parametrize(
    "text, expected",
    [
        ("fraud_score >= 0.9", True),
        ("fraud_score > 0.9", False),
        ("fraud_score = 0.9 and amount_major <> 120", False),
        ("merchant_segment IN ('Gaming', 'Digital')", True),
        ("merchant_segment NOT IN ('Gaming')", False),
        ("amount_major BETWEEN 100 AND 200", True),
        ("amount_major NOT BETWEEN 100 AND 200", False),
        ("previous_decline_code IS NULL", True),
        ("previous_decline_code IS NOT NULL", False),
        ("NOT is_retry AND three_ds_authenticated", True),
        ("geo_country != issuer_country", True),
        ("card_txn_count_600s >= 2", True),
        ("(fraud_score > 0.5 OR is_retry) AND NOT (amount_major < 100)", True),
        ("is_retry = FALSE", True),
        ("amount_major >= 1.2e2", True),
    ],
)
def test_valid_conditions(text, expected):
    assert compile_condition(text).matches(ROW) is expected


def test_keywords_are_case_insensitive_and_fields_may_contain_keywords():
    c = compile_condition("is_retry Or not is_retry")
    assert c.matches(ROW) is True
    assert c.fields == frozenset({"is_retry"})


def test_precedence_and_binds_tighter_than_or_and_not_binds_tightest():
    # TRUE OR (TRUE AND FALSE) = TRUE ; (TRUE OR TRUE) AND FALSE would be FALSE
    assert compile_condition("fraud_score > 0.5 OR fraud_score > 0.5 AND is_retry").matches(ROW) is True
    # NOT applies to the predicate only: (NOT FALSE) AND FALSE = FALSE
    assert compile_condition("NOT is_retry AND is_retry").matches(ROW) is False
    assert compile_condition("NOT (is_retry AND is_retry)").matches(ROW) is True
    # BETWEEN's AND is not the boolean AND
    assert compile_condition("amount_major BETWEEN 1 AND 200 AND fraud_score > 0.95").matches(ROW) is False


@pytest.mark.parametrize(
    "text, line, column, fragment",
    [
        ("fraud_score >= ", 1, 16, "unexpected end"),
        ("fraud_score >> 1", 1, 14, "unexpected"),
        ("fraud_scor > 1", 1, 1, "did you mean 'fraud_score'"),
        ("merchant_segment = 'Gamng'", 1, 20, "not a value of merchant_segment"),
        ("fraud_score > 'high'", 1, 13, "cannot compare"),
        ("amount_major", 1, 1, "not a condition"),
        ("x $ 1", 1, 3, "unexpected character"),
        ("previous_decline_code = NULL", 1, 23, "IS NULL"),
        ("merchant_segment > 'Gaming'", 1, 18, "needs numbers"),
        ("is_retry AND\n  (fraud_score > 1", 2, 19, "unexpected end"),
        ("merchant_segment IN ('Gaming', 3)", 1, 32, "IN list value"),
        ("amount_major BETWEEN 1 AND 'x'", 1, 28, "BETWEEN needs numbers"),
        ("", 1, 1, "empty"),
        ("__import__('os').system('x')", 1, 11, "unexpected"),
    ],
)
def test_invalid_conditions_are_refused_with_position(text, line, column, fragment):
    with pytest.raises(RuleSyntaxError) as err:
        compile_condition(text)
    assert (err.value.line, err.value.column) == (line, column), err.value.describe()
    assert fragment in err.value.message
    assert f"line {line}, column {column}" in str(err.value)
    assert validate_condition(text) is not None


def test_null_semantics_are_sql_three_valued():
    row = {**ROW, "previous_decline_code": None, "antifraud_result": None}
    eq = compile_condition("previous_decline_code = 'DO_NOT_HONOR'")
    assert eq.evaluate(row) is None and eq.matches(row) is False
    neg = compile_condition("NOT previous_decline_code = 'DO_NOT_HONOR'")
    assert neg.evaluate(row) is None and neg.matches(row) is False  # NOT unknown is unknown
    assert compile_condition("previous_decline_code = 'DO_NOT_HONOR' OR is_retry = false").matches(row) is True
    assert compile_condition("previous_decline_code = 'DO_NOT_HONOR' AND is_retry").evaluate(row) is False
    assert compile_condition("previous_decline_code IN ('DO_NOT_HONOR')").evaluate(row) is None
    assert compile_condition("previous_decline_code NOT IN ('DO_NOT_HONOR')").evaluate(row) is None
    assert compile_condition("antifraud_result IS NULL AND previous_decline_code IS NULL").matches(row) is True


CONDITIONS = [
    "fraud_score >= 0.5",
    "previous_decline_code = 'DO_NOT_HONOR'",
    "NOT previous_decline_code = 'DO_NOT_HONOR'",
    "antifraud_result IN ('fail', 'review') OR fraud_score > 0.8",
    "NOT (antifraud_result NOT IN ('pass') AND is_retry)",
    "amount_major BETWEEN 10 AND 100",
    "previous_decline_code IS NULL OR NOT is_retry",
    "card_txn_count_600s > 3 AND geo_country <> issuer_country",
    "(antifraud_result = 'fail' OR previous_decline_code = 'FRAUD_SUSPECTED') AND NOT is_retry",
    "NOT (antifraud_result = 'fail' OR previous_decline_code = 'EXPIRED_CARD')",
]


def test_row_and_frame_evaluators_agree():
    rng = random.Random(11)
    rows = []
    for _ in range(500):
        rows.append(
            {
                "fraud_score": rng.choice([0.1, 0.5, 0.8, 0.95]),
                "amount_major": rng.choice([5.0, 10.0, 50.0, 100.0, 500.0]),
                "is_retry": rng.random() < 0.5,
                "card_txn_count_600s": rng.randrange(6),
                "previous_decline_code": rng.choice([None, "DO_NOT_HONOR", "FRAUD_SUSPECTED", "EXPIRED_CARD"]),
                "antifraud_result": rng.choice([None, "pass", "review", "fail"]),
                "geo_country": rng.choice(["BR", "US"]),
                "issuer_country": rng.choice(["BR", "US"]),
            }
        )
    frame = pd.DataFrame(rows)
    for text in CONDITIONS:
        c = compile_condition(text)
        true, null = c.evaluate_frame(frame)
        for i, row in enumerate(rows):
            v = c.evaluate(row)
            assert (bool(true[i]), bool(null[i])) == (v is True, v is None), (text, row)


def test_compiled_once():
    assert compile_condition("fraud_score > 0.25") is compile_condition("fraud_score > 0.25")
