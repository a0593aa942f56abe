"""Fuzz of the rule language (hypothesis): whatever the text, compiling it gives a condition or a
``RuleSyntaxError`` with a 1-based position inside the text, deep nesting included; never another
exception. A condition that compiles evaluates on a row and on a frame without error, and the two
evaluators agree. A ``Rule`` with any condition is created or refused with the error's position.

The texts come from three sources: arbitrary characters; soups of the language's own tokens (most of
them almost-valid, which is where a parser's error paths are); and generated well-typed conditions,
optionally nested hundreds of levels deep (NOT chains, parentheses, AND/OR chains)."""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Iterator

import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from payments_core.rules import FIELDS, Rule, RuleSyntaxError, compile_condition
from payments_core.rules.language import MAX_CONDITION_LENGTH

FUZZ = settings(max_examples=150, deadline=None, database=None, suppress_health_check=list(HealthCheck))

NUMBER_FIELDS = sorted(n for n, f in FIELDS.items() if f.kind == "number")
BOOL_FIELDS = sorted(n for n, f in FIELDS.items() if f.kind == "bool")
ENUM_FIELDS = sorted(n for n, f in FIELDS.items() if f.kind == "string" and f.vocabulary)
KEYWORDS = ["AND", "OR", "NOT", "IN", "BETWEEN", "IS", "NULL", "TRUE", "FALSE", "and", "Not", "nUlL"]
SYMBOLS = ["(", ")", ",", "=", "==", "!=", "<>", "<", "<=", ">", ">=", "'", "''", "-", ".", "e", "\n", "\t", " "]
ROW = {
    "fraud_score": 0.4,
    "aml_risk_score": 0.1,
    "device_trust_score": 0.8,
    "amount_minor": 12_345,
    "amount_major": 123.45,
    "merchant_segment": "Gaming",
    "card_network": "visa",
    "currency": "BRL",
    "is_retry": False,
    "uses_3ds": True,
    "previous_decline_code": None,
    "antifraud_result": None,
    "card_txn_count_600s": 3,
    "risk_score": 0.2,
    "approval_probability": 0.9,
}

numbers = st.one_of(
    st.integers(-(10**6), 10**6).map(str),
    st.floats(-1e6, 1e6, allow_nan=False, allow_infinity=False).map(lambda f: f"{f:.4f}"),
    st.sampled_from(["0", "-0", ".5", "1.", "1e3", "-2.5E-2", "0001"]),
)
strings = st.text(max_size=8).map(lambda s: "'" + s.replace("'", "''") + "'")
token = st.one_of(
    st.sampled_from(KEYWORDS + SYMBOLS),
    st.sampled_from(sorted(FIELDS)),
    numbers,
    strings,
    st.text(alphabet=st.characters(codec="utf-8"), min_size=1, max_size=3),
)
soup = st.lists(token, min_size=1, max_size=40).map(" ".join)


@st.composite
def predicate(draw) -> str:
    kind = draw(st.sampled_from(["compare", "in", "between", "null", "bool", "enum"]))
    if kind == "compare":
        op = draw(st.sampled_from(["=", "!=", "<>", "<", "<=", ">", ">="]))
        return f"{draw(st.sampled_from(NUMBER_FIELDS))} {op} {draw(numbers)}"
    if kind == "in":
        field = draw(st.sampled_from(ENUM_FIELDS))
        values = draw(st.lists(st.sampled_from(FIELDS[field].vocabulary or ("x",)), min_size=1, max_size=4))
        neg = draw(st.sampled_from(["", "NOT "]))
        return f"{field} {neg}IN ({', '.join(repr(v) for v in values)})"
    if kind == "between":
        lo, hi = draw(numbers), draw(numbers)
        neg = draw(st.sampled_from(["", "NOT "]))
        return f"{draw(st.sampled_from(NUMBER_FIELDS))} {neg}BETWEEN {lo} AND {hi}"
    if kind == "null":
        return f"{draw(st.sampled_from(sorted(FIELDS)))} IS {draw(st.sampled_from(['', 'NOT ']))}NULL"
    if kind == "enum":
        field = draw(st.sampled_from(ENUM_FIELDS))
        return f"{field} = {draw(st.sampled_from(FIELDS[field].vocabulary or ('x',)))!r}"
    return draw(st.sampled_from(BOOL_FIELDS))


conditions = st.recursive(
    predicate(),
    lambda inner: st.one_of(
        st.tuples(inner, st.sampled_from(["AND", "OR"]), inner).map(" ".join),
        inner.map(lambda c: f"NOT ({c})"),
        inner.map(lambda c: f"({c})"),
    ),
    max_leaves=12,
)


@st.composite
def deep(draw) -> str:
    """One predicate nested ``depth`` times by one kind of nesting (up to the length limit and beyond)."""
    depth = draw(st.integers(1, 1200))
    base = draw(predicate())
    kind = draw(st.sampled_from(["not", "paren", "not_paren", "and_chain", "or_chain", "mixed"]))
    if kind == "not":
        return "NOT " * depth + base
    if kind == "paren":
        return "(" * depth + base + ")" * depth
    if kind == "not_paren":
        return "NOT (" * depth + base + ")" * depth
    if kind in ("and_chain", "or_chain"):
        return f" {kind[:-6].upper()} ".join([base] * depth)
    return "".join(draw(st.sampled_from(["NOT ", "(", "NOT ("])) for _ in range(depth)) + base


@contextlib.contextmanager
def python_default_stack() -> Iterator[None]:
    """Python's default recursion limit. Hypothesis raises the limit while it runs a test, which hid the
    very overflow this fuzz is after: the services run with the default."""
    before = sys.getrecursionlimit()
    sys.setrecursionlimit(1000)
    try:
        yield
    finally:
        sys.setrecursionlimit(before)


def check(text: str) -> None:
    """The property: a condition that evaluates, or a RuleSyntaxError that says where."""
    compile_condition.cache_clear()  # each text compiled here, under the default stack
    try:
        with python_default_stack():
            condition = compile_condition(text)
            one = condition.evaluate(ROW)
            true, null = condition.evaluate_frame(pd.DataFrame([ROW]))
    except RuleSyntaxError as exc:
        assert exc.message
        assert exc.line >= 1 and exc.column >= 1
        assert exc.line <= max(1, len(text.splitlines()) + 1), (exc.line, text)
        assert isinstance(exc.describe(), str) and exc.to_dict()["line"] == exc.line
        return
    assert len(text) <= MAX_CONDITION_LENGTH
    assert one in (True, False, None)
    assert bool(true[0]) == (one is True) and bool(null[0]) == (one is None), text


@FUZZ
@given(st.text(max_size=300))
def test_arbitrary_text_is_a_condition_or_a_positioned_error(text):
    check(text)


@FUZZ
@given(soup)
def test_token_soups_are_a_condition_or_a_positioned_error(text):
    check(text)


@FUZZ
@given(conditions)
def test_generated_conditions_compile_and_both_evaluators_agree(text):
    check(text)
    compile_condition(text)  # well-typed and shallow: always a condition


@FUZZ
@given(deep())
def test_deep_nesting_is_a_condition_or_a_positioned_error(text):
    check(text)


@FUZZ
@given(st.one_of(soup, conditions, deep()))
def test_a_rule_is_created_or_refused_with_the_position(text):
    compile_condition.cache_clear()
    try:
        with python_default_stack():
            rule = Rule(id="F1", name="fuzz", type="risk", condition=text, action="review")
    except ValidationError as exc:
        error = exc.errors()[0]
        assert error["loc"] in (("condition",), ()), error
        if error["loc"] == ("condition",) and error["type"] == "value_error":
            assert "line " in error["msg"] and ", column " in error["msg"], error["msg"]
        return
    assert rule.compiled.text == text


@pytest.mark.parametrize(
    "text",
    [
        "NOT " * 990 + "uses_3ds",
        "1=1 AND " * 499 + "1=1",
        "NOT (" * 600 + "uses_3ds" + ")" * 600,
        " OR ".join(["fraud_score > 0.5"] * 150),
    ],
)
def test_the_nesting_that_overflowed_the_stack_is_a_positioned_error(text):
    with pytest.raises(RuleSyntaxError) as err:
        compile_condition(text)
    assert "nested" in err.value.message and err.value.column > 1
