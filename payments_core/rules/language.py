"""Rule condition language: parse once with lark (LALR), type-check against the known fields,
compile to closures (one row) and to a vectorised evaluator (pandas DataFrame). Never ``eval``.

Semantics are SQL's three-valued logic: a comparison with NULL is unknown, ``NOT unknown`` is
unknown, ``FALSE AND unknown`` is false, ``TRUE OR unknown`` is true, and a rule fires only when its
condition is TRUE. ``x IN (...)`` / ``x BETWEEN a AND b`` are unknown when ``x`` is NULL;
``x IS NULL`` is never unknown. Both evaluators implement exactly these semantics (tests compare
them row by row).
"""

from __future__ import annotations

import difflib
import functools
import operator
import types
import typing
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, get_args

import numpy as np
import pandas as pd
from lark import Lark, Token, Tree
from lark.exceptions import UnexpectedCharacters, UnexpectedEOF, UnexpectedInput, UnexpectedToken

from payments_core.contract.events import TransactionRequest
from payments_core.features import AMOUNT_BUCKETS, RISK_TIERS, VELOCITY_FEATURES

MAX_CONDITION_LENGTH = 4000
# Levels of nesting a condition may have: NOT, parentheses around an operator, and each further term of
# an AND/OR chain (a chain is a nested pair of operations) count. Type-checking and both evaluators
# recurse once or twice per level; without a bound a 4,000-character condition ("NOT NOT ...", a long
# "a AND b AND ...") overflowed Python's stack with a RecursionError instead of a positioned error.
MAX_NESTING = 100


# ------------------------------------------------------------------------------------------ fields
@dataclass(frozen=True)
class FieldType:
    kind: Literal["number", "string", "bool"]
    nullable: bool = False
    vocabulary: tuple[str, ...] | None = None  # allowed string values (enums)
    source: str = "request"  # request | derived | velocity | model


def _unwrap(ann: Any) -> tuple[Any, bool]:
    nullable = False
    if typing.get_origin(ann) in (typing.Union, types.UnionType):
        args = [a for a in get_args(ann) if a is not type(None)]
        nullable = len(args) != len(get_args(ann))
        ann = args[0]
    if typing.get_origin(ann) is typing.Annotated:
        ann = get_args(ann)[0]
    return ann, nullable


def _request_fields() -> dict[str, FieldType]:
    out: dict[str, FieldType] = {}
    for name, info in TransactionRequest.model_fields.items():
        if name in ("schema_version", "event_timestamp"):
            continue
        base, nullable = _unwrap(info.annotation)
        if typing.get_origin(base) is Literal:
            out[name] = FieldType("string", nullable, tuple(get_args(base)))
        elif base is bool:
            out[name] = FieldType("bool", nullable)
        elif base in (int, float):
            out[name] = FieldType("number", nullable)
        else:
            out[name] = FieldType("string", nullable)
    return out


FIELDS: dict[str, FieldType] = {
    **_request_fields(),
    "amount_major": FieldType("number", source="derived"),
    "amount_bucket": FieldType("string", vocabulary=tuple(label for _, label in AMOUNT_BUCKETS), source="derived"),
    "is_cross_border": FieldType("bool", source="derived"),
    "hour_of_day": FieldType("number", source="derived"),
    "day_of_week": FieldType("number", source="derived"),
    "is_weekend": FieldType("bool", source="derived"),
    "is_night": FieldType("bool", source="derived"),
    "composite_risk_score": FieldType("number", source="derived"),
    "risk_tier": FieldType("string", vocabulary=tuple(label for _, label in RISK_TIERS), source="derived"),
    "service_path": FieldType("string", source="derived"),
    **{name: FieldType("number", source="velocity") for name in VELOCITY_FEATURES},
    "approval_probability": FieldType("number", source="model"),
    "risk_score": FieldType("number", source="model"),
}


# ------------------------------------------------------------------------------------------ errors
class RuleSyntaxError(ValueError):
    """An invalid condition, with the 1-based line/column of the problem."""

    def __init__(self, message: str, line: int, column: int, text: str = ""):
        self.message, self.line, self.column, self.text = message, line, column, text
        super().__init__(self.describe())

    def describe(self) -> str:
        out = f"line {self.line}, column {self.column}: {self.message}"
        if self.text:
            src = self.text.splitlines()[self.line - 1] if self.text.splitlines() else ""
            out += f"\n  {src}\n  {' ' * (self.column - 1)}^"
        return out

    def to_dict(self) -> dict[str, Any]:
        return {"message": self.message, "line": self.line, "column": self.column}


_TOKEN_NAMES = {
    "_OR": "OR",
    "_AND": "AND",
    "_NOT": "NOT",
    "_IN": "IN",
    "_BETWEEN": "BETWEEN",
    "_IS": "IS",
    "_NULL": "NULL",
    "_TRUE": "TRUE",
    "_FALSE": "FALSE",
    "COMP_OP": "a comparison operator",
    "NUMBER": "a number",
    "STRING": "a 'string'",
    "NAME": "a field name",
    "LPAR": "'('",
    "RPAR": "')'",
    "COMMA": "','",
    "$END": "end of input",
}


def _expected(names: set[str]) -> str:
    shown = sorted({_TOKEN_NAMES.get(n, n) for n in names if not n.startswith("__")})
    return ", ".join(shown[:12]) if shown else "something else"


@functools.cache
def _parser() -> Lark:
    grammar = (Path(__file__).parent / "grammar.lark").read_text()
    return Lark(grammar, parser="lalr", lexer="basic", propagate_positions=True, maybe_placeholders=False)


def parse(text: str) -> Tree:
    if not isinstance(text, str) or not text.strip():
        raise RuleSyntaxError("empty condition", 1, 1, text if isinstance(text, str) else "")
    if len(text) > MAX_CONDITION_LENGTH:
        raise RuleSyntaxError(f"condition longer than {MAX_CONDITION_LENGTH} characters", 1, 1)
    try:
        tree = _parser().parse(text)
    except UnexpectedCharacters as exc:
        pos = exc.pos_in_stream
        ch = text[pos] if pos is not None and pos < len(text) else ""
        raise RuleSyntaxError(f"unexpected character {ch!r}", exc.line, exc.column, text) from None
    except UnexpectedEOF as exc:
        lines = text.splitlines() or [""]
        raise RuleSyntaxError(
            f"unexpected end of condition; expected {_expected(set(exc.expected))}",
            len(lines),
            len(lines[-1]) + 1,
            text,
        ) from None
    except UnexpectedToken as exc:
        tok = exc.token
        if tok.type == "$END":
            lines = text.splitlines() or [""]
            raise RuleSyntaxError(
                f"unexpected end of condition; expected {_expected(set(exc.expected))}",
                len(lines),
                len(lines[-1]) + 1,
                text,
            ) from None
        raise RuleSyntaxError(
            f"unexpected {str(tok)!r}; expected {_expected(set(exc.expected))}", tok.line, tok.column, text
        ) from None
    except UnexpectedInput as exc:  # pragma: no cover - other lark errors
        raise RuleSyntaxError(str(exc), getattr(exc, "line", 1), getattr(exc, "column", 1), text) from None
    _check_nesting(tree, text)
    return tree


def _position(tree: Tree) -> tuple[int, int]:
    """Line and column where ``tree`` starts (its first token's, when lark kept no position for it)."""
    if not tree.meta.empty:
        return tree.meta.line, tree.meta.column
    for tok in tree.scan_values(lambda v: isinstance(v, Token)):
        return tok.line or 1, tok.column or 1
    return 1, 1


def _check_nesting(tree: Tree, text: str) -> None:
    """Refuse a tree more than ``MAX_NESTING`` levels deep, at the first node too deep (no recursion)."""
    stack = [(tree, 1)]
    while stack:
        node, depth = stack.pop()
        if depth > MAX_NESTING:
            line, column = _position(node)
            raise RuleSyntaxError(
                f"condition nested more than {MAX_NESTING} levels deep (NOT, parentheses and AND/OR terms "
                "count); simplify it, e.g. with IN (...), or split the rule",
                line,
                column,
                text,
            )
        stack.extend((child, depth + 1) for child in node.children if isinstance(child, Tree))


# ------------------------------------------------------------------------------------------ typed AST
@dataclass(frozen=True)
class Node:
    op: str
    type: str  # number | string | bool | null
    args: tuple[Any, ...] = ()
    line: int = 1
    column: int = 1


_OPS = {
    "=": operator.eq,
    "==": operator.eq,
    "!=": operator.ne,
    "<>": operator.ne,
    "<": operator.lt,
    "<=": operator.le,
    ">": operator.gt,
    ">=": operator.ge,
}
_EQUALITY = {"=", "==", "!=", "<>"}


class _Checker:
    def __init__(self, text: str, fields: Mapping[str, FieldType]):
        self.text, self.fields = text, fields
        self.used: set[str] = set()

    def fail(self, message: str, item: Tree | Token) -> typing.NoReturn:
        if isinstance(item, Token):
            line, col = item.line or 1, item.column or 1
        else:
            line, col = (item.meta.line, item.meta.column) if not item.meta.empty else (1, 1)
        raise RuleSyntaxError(message, line, col, self.text)

    def pos(self, item: Tree | Token) -> tuple[int, int]:
        if isinstance(item, Token):
            return item.line or 1, item.column or 1
        return (item.meta.line, item.meta.column) if not item.meta.empty else (1, 1)

    def node(self, t: Tree) -> Node:
        line, col = self.pos(t)
        kind = t.data
        if kind == "field":
            tok = t.children[0]
            name = str(tok)
            ft = self.fields.get(name)
            if ft is None:
                close = difflib.get_close_matches(name, list(self.fields), n=1)
                hint = f" (did you mean {close[0]!r}?)" if close else ""
                self.fail(f"unknown field {name!r}{hint}", tok)
            self.used.add(name)
            return Node("field", ft.kind, (name, ft), line, col)
        if kind == "number":
            text = str(t.children[0])
            value = float(text) if any(c in text for c in ".eE") else int(text)
            return Node("lit", "number", (value,), line, col)
        if kind == "string":
            raw = str(t.children[0])[1:-1].replace("''", "'")
            return Node("lit", "string", (raw,), line, col)
        if kind in ("true", "false"):
            return Node("lit", "bool", (kind == "true",), line, col)
        if kind == "null":
            return Node("lit", "null", (None,), line, col)
        if kind in ("and_", "or_"):
            a, b = (self.boolean(c) for c in t.children)
            return Node(kind.rstrip("_"), "bool", (a, b), line, col)
        if kind == "not_":
            return Node("not", "bool", (self.boolean(t.children[0]),), line, col)
        if kind == "compare":
            left_t, op_tok, right_t = t.children
            left, right = self.node(left_t), self.node(right_t)
            op = str(op_tok)
            if "null" in (left.type, right.type):
                self.fail("comparison with NULL is never true; use IS NULL / IS NOT NULL", op_tok)
            if left.type != right.type:
                self.fail(
                    f"cannot compare {self.describe(left)} ({left.type}) with {self.describe(right)} ({right.type})",
                    op_tok,
                )
            if left.type in ("string", "bool") and op not in _EQUALITY:
                self.fail(f"operator {op!r} needs numbers; {left.type}s support = and !=", op_tok)
            self.check_vocab(left, [right], right_t)
            self.check_vocab(right, [left], left_t)
            return Node("compare", "bool", (op, left, right), line, col)
        if kind in ("in_", "not_in"):
            subject = self.node(t.children[0])
            items = [self.node(c) for c in t.children[1:]]
            for item, src in zip(items, t.children[1:], strict=True):
                if item.type == "null":
                    self.fail("NULL in an IN list is never matched; use IS NULL", src)
                if item.type != subject.type:
                    self.fail(
                        f"IN list value {self.describe(item)} is a {item.type}, "
                        f"{self.describe(subject)} is a {subject.type}",
                        src,
                    )
            for item, src in zip(items, t.children[1:], strict=True):
                self.check_vocab(subject, [item], src)
            values = frozenset(i.args[0] for i in items)
            return Node("in", "bool", (subject, values, kind == "not_in"), line, col)
        if kind in ("between", "not_between"):
            parts = [self.node(c) for c in t.children]
            for p, src in zip(parts, t.children, strict=True):
                if p.type != "number":
                    self.fail(f"BETWEEN needs numbers; {self.describe(p)} is a {p.type}", src)
            return Node("between", "bool", (*parts, kind == "not_between"), line, col)
        if kind in ("is_null", "is_not_null"):
            subject = self.node(t.children[0])
            if subject.op != "field":
                self.fail("IS NULL applies to a field", t.children[0])
            return Node("is_null", "bool", (subject, kind == "is_not_null"), line, col)
        if kind == "truthy":
            return self.boolean(t.children[0])
        self.fail(f"unsupported expression {kind}", t)  # pragma: no cover

    def boolean(self, t: Tree) -> Node:
        n = self.node(t)
        if n.type != "bool":
            self.fail(f"{self.describe(n)} is a {n.type}, not a condition (compare it with something)", t)
        if n.op == "field":
            return Node("truthy", "bool", (n,), n.line, n.column)
        return n

    @staticmethod
    def describe(n: Node) -> str:
        if n.op == "field":
            return f"field {n.args[0]!r}"
        if n.op == "lit":
            return repr(n.args[0])
        return n.op

    def check_vocab(self, subject: Node, items: list[Node], src: Tree | Token) -> None:
        if subject.op != "field":
            return
        vocab = subject.args[1].vocabulary
        for item in items:
            if vocab and item.op == "lit" and item.type == "string" and item.args[0] not in vocab:
                close = difflib.get_close_matches(item.args[0], vocab, n=1)
                hint = f" (did you mean {close[0]!r}?)" if close else ""
                self.fail(
                    f"{item.args[0]!r} is not a value of {subject.args[0]}{hint}; expected one of {', '.join(vocab)}",
                    src,
                )


# ------------------------------------------------------------------------------------------ closures
Row = Mapping[str, Any]
RowFn = Callable[[Row], Any]


def _closure(n: Node) -> RowFn:
    op = n.op
    if op == "lit":
        value = n.args[0]
        return lambda row: value
    if op == "field":
        name = n.args[0]
        return lambda row: row.get(name)
    if op == "truthy":
        if n.args[0].op == "field":
            name = n.args[0].args[0]

            def truthy_field(row: Row) -> bool | None:
                v = row.get(name)
                return None if v is None else bool(v)

            return truthy_field
        get = _closure(n.args[0])

        def truthy(row: Row) -> bool | None:
            v = get(row)
            return None if v is None else bool(v)

        return truthy
    if op == "not":
        inner = _closure(n.args[0])

        def not_(row: Row) -> bool | None:
            v = inner(row)
            return None if v is None else not v

        return not_
    if op == "and":
        a, b = (_closure(x) for x in n.args)

        def and_(row: Row) -> bool | None:
            x = a(row)
            if x is False:
                return False
            y = b(row)
            if y is False:
                return False
            return None if (x is None or y is None) else True

        return and_
    if op == "or":
        a, b = (_closure(x) for x in n.args)

        def or_(row: Row) -> bool | None:
            x = a(row)
            if x is True:
                return True
            y = b(row)
            if y is True:
                return True
            return None if (x is None or y is None) else False

        return or_
    if op == "compare":
        fn = _OPS[n.args[0]]
        lhs, rhs = n.args[1], n.args[2]
        # the usual shape, a field against a literal, reads the field itself: one call per comparison
        # instead of three (rules run once per decision on the scoring API's hot path)
        if lhs.op == "field" and rhs.op == "lit" and rhs.args[0] is not None:
            name, value = lhs.args[0], rhs.args[0]

            def compare_field(row: Row) -> bool | None:
                x = row.get(name)
                return None if x is None else fn(x, value)

            return compare_field
        left, right = _closure(lhs), _closure(rhs)

        def compare(row: Row) -> bool | None:
            x, y = left(row), right(row)
            if x is None or y is None:
                return None
            return fn(x, y)

        return compare
    if op == "in":
        values, negate = n.args[1], n.args[2]
        if n.args[0].op == "field":
            name = n.args[0].args[0]

            def in_field(row: Row) -> bool | None:
                v = row.get(name)
                return None if v is None else (v in values) != negate

            return in_field
        subject = _closure(n.args[0])

        def in_(row: Row) -> bool | None:
            v = subject(row)
            if v is None:
                return None
            return (v in values) != negate

        return in_
    if op == "between":
        s, lo, hi = (_closure(x) for x in n.args[:3])
        negate = n.args[3]

        def between(row: Row) -> bool | None:
            v, a, b = s(row), lo(row), hi(row)
            if v is None or a is None or b is None:
                return None
            return (a <= v <= b) != negate

        return between
    if op == "is_null":
        s, negate = _closure(n.args[0]), n.args[1]
        return lambda row: (s(row) is None) != negate
    raise AssertionError(op)  # pragma: no cover


# ------------------------------------------------------------------------------------------ vectorised
@dataclass
class _Vec:
    """A column under three-valued logic: values plus a NULL mask (numpy)."""

    values: np.ndarray
    null: np.ndarray


def _vector(n: Node, frame: pd.DataFrame, size: int) -> _Vec:
    op = n.op
    if op == "lit":
        v = n.args[0]
        if v is None:
            return _Vec(np.zeros(size, dtype=bool), np.ones(size, dtype=bool))
        arr = np.empty(size, dtype=object if isinstance(v, str) else type(v))
        arr[:] = v
        return _Vec(arr, np.zeros(size, dtype=bool))
    if op == "field":
        name, ft = n.args
        if name not in frame.columns:
            return _Vec(np.zeros(size, dtype=object), np.ones(size, dtype=bool))
        col = frame[name]
        null = col.isna().to_numpy()
        if ft.kind == "number":
            values = pd.to_numeric(col, errors="coerce").to_numpy(dtype=np.float64, na_value=np.nan)
            if col.dtype.kind in "iub":
                values = col.to_numpy()
        elif ft.kind == "bool":
            values = col.fillna(False).astype(bool).to_numpy()
        else:
            values = col.astype(object).to_numpy()
        return _Vec(values, null)
    if op == "truthy":
        inner = _vector(n.args[0], frame, size)
        return _Vec(np.where(inner.null, False, inner.values.astype(bool)), inner.null)
    if op == "not":
        inner = _vector(n.args[0], frame, size)
        return _Vec(~inner.values.astype(bool) & ~inner.null, inner.null)
    if op in ("and", "or"):
        a, b = (_vector(x, frame, size) for x in n.args)
        av, bv = a.values.astype(bool) & ~a.null, b.values.astype(bool) & ~b.null
        a_false, b_false = ~a.values.astype(bool) & ~a.null, ~b.values.astype(bool) & ~b.null
        if op == "and":
            false = a_false | b_false
            true = av & bv
        else:
            true = av | bv
            false = a_false & b_false
        null = ~(true | false)
        return _Vec(true, null)
    if op == "compare":
        fn = _OPS[n.args[0]]
        a, b = _vector(n.args[1], frame, size), _vector(n.args[2], frame, size)
        null = a.null | b.null
        with np.errstate(invalid="ignore"):
            out = np.zeros(size, dtype=bool)
            ok = ~null
            if ok.any():
                out[ok] = np.asarray(fn(a.values[ok], b.values[ok]), dtype=bool)
        return _Vec(out, null)
    if op == "in":
        s = _vector(n.args[0], frame, size)
        values, negate = n.args[1], n.args[2]
        hit = (
            np.fromiter((v in values for v in s.values.tolist()), dtype=bool, count=size)
            if size
            else np.zeros(0, dtype=bool)
        )
        return _Vec((hit != negate) & ~s.null, s.null)
    if op == "between":
        s, lo, hi = (_vector(x, frame, size) for x in n.args[:3])
        negate = n.args[3]
        null = s.null | lo.null | hi.null
        out = np.zeros(size, dtype=bool)
        ok = ~null
        if ok.any():
            sv = s.values[ok]
            out[ok] = ((lo.values[ok] <= sv) & (sv <= hi.values[ok])) != negate
        return _Vec(out, null)
    if op == "is_null":
        s = _vector(n.args[0], frame, size)
        return _Vec(s.null != n.args[1], np.zeros(size, dtype=bool))
    raise AssertionError(op)  # pragma: no cover


# ------------------------------------------------------------------------------------------ public
@dataclass(frozen=True)
class Condition:
    """A compiled condition: ``matches(row)`` for one row (dict of field values), ``matches_frame``
    for a DataFrame (columns named like the fields). Both return True only when the condition is
    TRUE (NULL/unknown does not fire)."""

    text: str
    ast: Node
    fields: frozenset[str]
    _fn: RowFn

    def evaluate(self, row: Row) -> bool | None:
        """Three-valued result: True, False or None (unknown)."""
        return self._fn(row)

    def matches(self, row: Row) -> bool:
        return self._fn(row) is True

    def evaluate_frame(self, frame: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
        """(true, null) boolean arrays."""
        v = _vector(self.ast, frame, len(frame))
        return v.values.astype(bool) & ~v.null, v.null

    def matches_frame(self, frame: pd.DataFrame) -> np.ndarray:
        return self.evaluate_frame(frame)[0]


@functools.lru_cache(maxsize=4096)
def compile_condition(text: str) -> Condition:
    """Parse, type-check and compile ``text`` (cached: compile once). Raises ``RuleSyntaxError``."""
    tree = parse(text)
    checker = _Checker(text, FIELDS)
    ast = checker.boolean(tree)
    return Condition(text, ast, frozenset(checker.used), _closure(ast))


def validate_condition(text: str) -> RuleSyntaxError | None:
    """None when ``text`` is a valid condition, else the error (for editors / the control plane)."""
    try:
        compile_condition(text)
    except RuleSyntaxError as exc:
        return exc
    return None
