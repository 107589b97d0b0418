"""Label and field selectors with the grammar and semantics of k8s.io/apimachinery."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from .k8s_errors import bad_request, go_quote
from .k8s_names import is_label_value, is_qualified_name
from .k8s_resources import ResourceType

_SPECIAL = "!=,()<> \t\n"
_OPERATORS = ("==", "!=", "=", "!", ",", "(", ")", "<", ">")


class SelectorError(ValueError):
    """A selector that cannot be parsed."""


@dataclass(frozen=True)
class Requirement:
    key: str
    op: str  # exists, !exists, in, notin, gt, lt
    values: tuple[str, ...] = ()

    def matches(self, labels: dict[str, str]) -> bool:
        present = self.key in labels
        value = labels.get(self.key)
        if self.op == "exists":
            return present
        if self.op == "!exists":
            return not present
        if self.op == "in":
            return present and value in self.values
        if self.op == "notin":
            return not present or value not in self.values
        if not present:
            return False
        try:
            number = int(value or "")
        except ValueError:
            return False
        bound = int(self.values[0])
        return number > bound if self.op == "gt" else number < bound


def _lex(text: str) -> list[str]:
    tokens: list[str] = []
    i = 0
    while i < len(text):
        ch = text[i]
        if ch.isspace():
            i += 1
            continue
        two = text[i : i + 2]
        if two in ("==", "!="):
            tokens.append(two)
            i += 2
            continue
        if ch in "!=,()<>":
            tokens.append(ch)
            i += 1
            continue
        start = i
        while i < len(text) and text[i] not in _SPECIAL:
            i += 1
        tokens.append(text[start:i])
    return tokens


class _LabelParser:
    def __init__(self, text: str) -> None:
        self.tokens = _lex(text)
        self.pos = 0

    def peek(self) -> str | None:
        return self.tokens[self.pos] if self.pos < len(self.tokens) else None

    def take(self) -> str | None:
        tok = self.peek()
        self.pos += 1
        return tok

    @staticmethod
    def is_ident(tok: str | None) -> bool:
        return tok is not None and tok not in _OPERATORS

    def parse(self) -> list[Requirement]:
        reqs: list[Requirement] = []
        if self.peek() is None:
            return reqs
        while True:
            reqs.append(self.requirement())
            tok = self.take()
            if tok is None:
                return reqs
            if tok != ",":
                raise SelectorError(f"found '{tok}', expected: ',' or 'end of string'")

    def requirement(self) -> Requirement:
        tok = self.take()
        if tok == "!":
            key = self.take()
            if not self.is_ident(key):
                raise SelectorError(f"found '{key or ''}', expected: identifier")
            _check_key(key or "")
            return Requirement(key or "", "!exists")
        if not self.is_ident(tok):
            raise SelectorError(f"found '{tok or ''}', expected: !, identifier, or 'end of string'")
        key = tok or ""
        _check_key(key)
        nxt = self.peek()
        if nxt is None or nxt == ",":
            return Requirement(key, "exists")
        op = self.take()
        if op in ("in", "notin"):
            return Requirement(key, op or "", self.value_set())
        if op in ("=", "==", "!="):
            value = self.take() if self.is_ident(self.peek()) else ""
            _check_values([value or ""])
            return Requirement(key, "notin" if op == "!=" else "in", (value or "",))
        if op in (">", "<"):
            value = self.take() if self.is_ident(self.peek()) else ""
            try:
                int(value or "")
            except ValueError:
                raise SelectorError(
                    f"for 'Gt', 'Lt' operators, the value must be an integer: {value}"
                ) from None
            return Requirement(key, "gt" if op == ">" else "lt", (value or "",))
        raise SelectorError(f"found '{op or ''}', expected: in, notin, =, ==, !=, gt, lt")

    def value_set(self) -> tuple[str, ...]:
        if self.take() != "(":
            raise SelectorError("found '', expected: '('")
        values: list[str] = []
        while True:
            tok = self.take()
            if tok == ")":
                break
            if tok == ",":
                values.append("")
                continue
            if not self.is_ident(tok):
                raise SelectorError(f"found '{tok or ''}', expected: ',', ')' or identifier")
            values.append(tok or "")
            sep = self.take()
            if sep == ")":
                break
            if sep != ",":
                raise SelectorError(f"found '{sep or ''}', expected: ',' or ')'")
        if not values:
            raise SelectorError("for 'in', 'notin' operators, values set can't be empty")
        _check_values(values)
        return tuple(values)


def _check_key(key: str) -> None:
    errs = is_qualified_name(key)
    if errs:
        raise SelectorError(f"key: Invalid value: {go_quote(key)}: {'; '.join(errs)}")


def _check_values(values: list[str]) -> None:
    for i, value in enumerate(values):
        errs = is_label_value(value)
        if errs:
            raise SelectorError(
                f"values[{i}][key]: Invalid value: {go_quote(value)}: {'; '.join(errs)}"
            )


def parse_label_selector(text: str) -> list[Requirement]:
    try:
        return _LabelParser(text).parse()
    except SelectorError as err:
        raise bad_request(f"unable to parse requirement: {err}") from None


@dataclass(frozen=True)
class FieldTerm:
    field: str
    value: str
    negate: bool


def _split_unescaped(text: str, sep: str) -> list[str]:
    parts: list[str] = []
    current: list[str] = []
    escaped = False
    for ch in text:
        if escaped:
            current.append("\\" + ch)
            escaped = False
        elif ch == "\\":
            escaped = True
        elif ch == sep:
            parts.append("".join(current))
            current = []
        else:
            current.append(ch)
    if escaped:
        current.append("\\")
    parts.append("".join(current))
    return parts


def _unescape(text: str) -> str:
    out: list[str] = []
    escaped = False
    for ch in text:
        if escaped:
            out.append(ch)
            escaped = False
        elif ch == "\\":
            escaped = True
        else:
            out.append(ch)
    return "".join(out)


def _parse_term(term: str, whole: str) -> FieldTerm:
    for op in ("!=", "==", "="):
        idx = _find_unescaped(term, op)
        if idx >= 0:
            field = term[:idx].strip()
            value = _unescape(term[idx + len(op) :])
            return FieldTerm(field, value, op == "!=")
    raise bad_request(f"invalid selector: '{whole}'; can't understand '{term}'")


def _find_unescaped(text: str, needle: str) -> int:
    i = 0
    while i < len(text):
        if text[i] == "\\":
            i += 2
            continue
        if text.startswith(needle, i):
            return i
        i += 1
    return -1


def parse_field_selector(text: str, rt: ResourceType) -> list[FieldTerm]:
    if not text.strip():
        return []
    terms = [_parse_term(part, text) for part in _split_unescaped(text, ",") if part]
    allowed = rt.supported_fields()
    for term in terms:
        if term.field in allowed:
            continue
        if rt.fields is None:
            raise bad_request(
                f'"{term.field}" is not a known field selector: only "metadata.name", '
                '"metadata.namespace"'
            )
        raise bad_request(f"field label not supported: {term.field}")
    return terms


def _stringify(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _dig(obj: dict[str, Any], path: str) -> Any:
    current: Any = obj
    for part in path.split("."):
        if not isinstance(current, dict):
            return None
        current = current.get(part)
    return current


def field_value(rt: ResourceType, obj: dict[str, Any], name: str) -> str:
    """The value a field selector compares, as the apiserver's GetAttrs computes it."""
    if name == "metadata.namespace" and not rt.namespaced:
        return ""
    if name == "status.podIPs":
        ips = (obj.get("status") or {}).get("podIPs") or []
        return ",".join(str(ip.get("ip", "")) for ip in ips if isinstance(ip, dict))
    if name == "source" and rt.plural == "events" and not rt.group:
        return _stringify(_dig(obj, "source.component"))
    if name == "spec.unschedulable":
        return "true" if _dig(obj, name) else "false"
    if name == "spec.hostNetwork":
        return "true" if _dig(obj, name) else "false"
    return _stringify(_dig(obj, name))


@dataclass(frozen=True)
class Selection:
    """A parsed ``labelSelector`` + ``fieldSelector`` pair (plus a namespace filter)."""

    rt: ResourceType
    labels: tuple[Requirement, ...] = ()
    fields: tuple[FieldTerm, ...] = ()
    namespace: str | None = None

    @classmethod
    def parse(
        cls, rt: ResourceType, label_text: str, field_text: str, namespace: str | None
    ) -> Selection:
        return cls(
            rt,
            tuple(parse_label_selector(label_text)),
            tuple(parse_field_selector(field_text, rt)),
            namespace,
        )

    @property
    def empty(self) -> bool:
        return not self.labels and not self.fields

    def matches(self, obj: dict[str, Any]) -> bool:
        meta = obj.get("metadata") or {}
        if self.namespace is not None and meta.get("namespace") != self.namespace:
            return False
        labels = meta.get("labels") or {}
        if not all(req.matches(labels) for req in self.labels):
            return False
        for term in self.fields:
            equal = field_value(self.rt, obj, term.field) == term.value
            if equal == term.negate:
                return False
        return True

