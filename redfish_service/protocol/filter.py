"""The ``$filter`` language: comparisons, ``and``/``or``/``not`` and parentheses.

    expr       := or
    or         := and ('or' and)*
    and        := unary ('and' unary)*
    unary      := 'not' unary | '(' expr ')' | comparison
    comparison := path op literal
    op         := eq | ne | gt | ge | lt | le
    literal    := 'quoted string' | number | true | false | null
    path       := Name ('/' Name)*

:func:`parse` returns a predicate over a document or raises :class:`FilterSyntaxError`.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

Predicate = Callable[[dict[str, Any]], bool]

_TOKEN = re.compile(
    r"""\s*(?:
        (?P<lparen>\() | (?P<rparen>\)) |
        (?P<string>'(?:[^']|'')*') |
        (?P<number>-?\d+(?:\.\d+)?(?:[eE][-+]?\d+)?) |
        (?P<word>[A-Za-z_@#][A-Za-z0-9_@#.]*(?:/[A-Za-z_@#][A-Za-z0-9_@#.]*)*)
    )""",
    re.VERBOSE,
)

_OPS: dict[str, Callable[[Any, Any], bool]] = {
    "eq": lambda a, b: a == b,
    "ne": lambda a, b: a != b,
    "gt": lambda a, b: a > b,
    "ge": lambda a, b: a >= b,
    "lt": lambda a, b: a < b,
    "le": lambda a, b: a <= b,
}

_MISSING = object()


class FilterSyntaxError(ValueError):
    pass


def _tokenize(text: str) -> list[tuple[str, str]]:
    tokens: list[tuple[str, str]] = []
    pos = 0
    text = text.rstrip()
    while pos < len(text):
        m = _TOKEN.match(text, pos)
        if not m or m.end() == pos:
            raise FilterSyntaxError(f"unexpected input at {pos}")
        kind = m.lastgroup
        assert kind is not None
        tokens.append((kind, m.group(kind)))
        pos = m.end()
    return tokens


def _lookup(doc: Any, path: list[str]) -> Any:
    for part in path:
        if not isinstance(doc, dict) or part not in doc:
            return _MISSING
        doc = doc[part]
    return doc


def _compare(op: str, left: Any, right: Any) -> bool:
    if left is _MISSING:
        return False
    if op in ("eq", "ne"):
        # Strongly typed, as OData is: true is not 1.
        same = isinstance(left, bool) == isinstance(right, bool) and left == right
        return same if op == "eq" else not same
    if left is None or right is None:
        return False
    if isinstance(left, bool) != isinstance(right, bool):
        return False
    if isinstance(left, (int, float)) and isinstance(right, (int, float)):
        return _OPS[op](left, right)
    if isinstance(left, str) and isinstance(right, str):
        return _OPS[op](left, right)
    return False


MAX_DEPTH = 32  # nesting of parentheses and 'not'


class _Parser:
    def __init__(self, tokens: list[tuple[str, str]]) -> None:
        self.tokens = tokens
        self.i = 0
        self.depth = 0

    def peek(self) -> tuple[str, str] | None:
        return self.tokens[self.i] if self.i < len(self.tokens) else None

    def take(self) -> tuple[str, str]:
        tok = self.peek()
        if tok is None:
            raise FilterSyntaxError("unexpected end of expression")
        self.i += 1
        return tok

    def keyword(self, word: str) -> bool:
        tok = self.peek()
        if tok and tok[0] == "word" and tok[1] == word:
            self.i += 1
            return True
        return False

    def parse(self) -> Predicate:
        pred = self.or_()
        if self.peek() is not None:
            raise FilterSyntaxError(f"unexpected token {self.peek()[1]!r}")  # type: ignore[index]
        return pred

    def or_(self) -> Predicate:
        parts = [self.and_()]
        while self.keyword("or"):
            parts.append(self.and_())
        if len(parts) == 1:
            return parts[0]
        return lambda d: any(p(d) for p in parts)

    def and_(self) -> Predicate:
        parts = [self.unary()]
        while self.keyword("and"):
            parts.append(self.unary())
        if len(parts) == 1:
            return parts[0]
        return lambda d: all(p(d) for p in parts)

    def unary(self) -> Predicate:
        self.depth += 1
        if self.depth > MAX_DEPTH:
            raise FilterSyntaxError(f"nested deeper than {MAX_DEPTH} levels")
        try:
            if self.keyword("not"):
                inner = self.unary()
                return lambda d: not inner(d)
            tok = self.peek()
            if tok and tok[0] == "lparen":
                self.take()
                inner = self.or_()
                if self.take()[0] != "rparen":
                    raise FilterSyntaxError("missing ')'")
                return inner
            return self.comparison()
        finally:
            self.depth -= 1

    def comparison(self) -> Predicate:
        kind, path = self.take()
        if kind != "word" or path in _OPS or path in ("and", "or", "not"):
            raise FilterSyntaxError(f"expected a property path, got {path!r}")
        kind, op = self.take()
        if kind != "word" or op not in _OPS:
            raise FilterSyntaxError(f"expected a comparison operator, got {op!r}")
        value = self.literal()
        parts = path.split("/")
        return lambda d: _compare(op, _lookup(d, parts), value)

    def literal(self) -> Any:
        kind, text = self.take()
        if kind == "string":
            return text[1:-1].replace("''", "'")
        if kind == "number":
            return float(text) if any(c in text for c in ".eE") else int(text)
        if kind == "word" and text in ("true", "false", "null"):
            return {"true": True, "false": False, "null": None}[text]
        raise FilterSyntaxError(f"expected a literal, got {text!r}")


def parse(text: str) -> Predicate:
    if not text.strip():
        raise FilterSyntaxError("empty expression")
    return _Parser(_tokenize(text)).parse()
