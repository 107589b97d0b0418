"""A small subset of the Kubernetes DRA CEL environment, for the scheduler simulator.

Supported (everything else is a :class:`CelError` at compile time, never a silent match):

* the variable ``device`` with fields ``driver`` (string), ``attributes`` and ``capacity``
  (maps of domain -> map of name -> value); ``device.attributes["dom"].name``,
  ``device.attributes['dom']["name"]``, ``device.capacity["dom"].name`` (a quantity);
* literals: strings ('' or ""), ints (decimal or hex, optionally negated), ``true``/``false``,
  list literals ``[a, b]``;
* operators ``==`` ``!=`` (any values; different types are simply unequal, as in CEL),
  ``<`` ``<=`` ``>`` ``>=`` (int/int, string/string), ``&&`` ``||`` ``!``, parentheses,
  ``x in [list]`` and ``"name" in device.attributes["dom"]``;
* ``quantity("40Gi")`` with ``.compareTo(q)``, ``.isGreaterThan(q)``, ``.isLessThan(q)``;
  ``.startsWith(s)``, ``.endsWith(s)``, ``.contains(s)`` on strings; ``has(x.name)`` on
  attribute/capacity maps.

Semantics follow CEL as used by the DRA allocator: an unknown domain yields an empty map,
a reference to an unknown attribute is a runtime error (:class:`CelEvalError`), and
``&&``/``||`` are commutative with respect to errors (``false && error`` is ``false``,
``true || error`` is ``true``). What the caller does with a runtime error is its business:
the real allocator aborts the whole allocation attempt ("CEL runtime error").
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from fractions import Fraction
from typing import Any

MAX_EXPRESSION_LENGTH = 10 * 1024

_BINARY_SUFFIXES = {"Ki": 1, "Mi": 2, "Gi": 3, "Ti": 4, "Pi": 5, "Ei": 6}
_DECIMAL_SUFFIXES = {"n": -9, "u": -6, "m": -3, "": 0, "k": 3, "M": 6, "G": 9, "T": 12,
                     "P": 15, "E": 18}
_QUANTITY_RE = re.compile(r"^([+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+))([a-zA-Z]*|[eE][+-]?[0-9]+)$")


class CelError(ValueError):
    """The expression is outside the supported subset or ill-typed (compile time)."""


class CelEvalError(CelError):
    """Evaluation failed at runtime (e.g. "no such key"), like a CEL runtime error."""


# --------------------------------------------------------------------------------------------
# Values


def parse_quantity(text: str) -> Fraction:
    """The exact value of a Kubernetes quantity string ("40Gi", "1500m", "1e3")."""
    match = _QUANTITY_RE.match(text.strip()) if isinstance(text, str) else None
    if match is None:
        raise ValueError(f"invalid quantity {text!r}")
    number, suffix = match.groups()
    value = Fraction(number)
    if suffix in _BINARY_SUFFIXES:
        return value * 1024 ** _BINARY_SUFFIXES[suffix]
    if suffix in _DECIMAL_SUFFIXES:
        return value * Fraction(10) ** _DECIMAL_SUFFIXES[suffix]
    if suffix[:1] in ("e", "E") and suffix[1:].lstrip("+-").isdigit():
        return value * Fraction(10) ** int(suffix[1:])
    raise ValueError(f"invalid quantity suffix in {text!r}")


@dataclass(frozen=True)
class Quantity:
    value: Fraction
    text: str = field(default="", compare=False)

    @classmethod
    def parse(cls, text: str) -> Quantity:
        return cls(parse_quantity(text), text)

    def compare(self, other: Quantity) -> int:
        return (self.value > other.value) - (self.value < other.value)


@dataclass(frozen=True)
class Version:
    """A ``version`` attribute value (semver string); only equality is supported."""

    text: str


@dataclass(frozen=True)
class CelDevice:
    """What an expression sees as ``device``."""

    driver: str
    attributes: Mapping[str, Mapping[str, Any]]
    capacity: Mapping[str, Mapping[str, Quantity]]


def _split_qualified(name: str, driver: str) -> tuple[str, str]:
    if "/" in name:
        domain, _, short = name.rpartition("/")
        return domain, short
    return driver, name


def _attribute_value(raw: Any) -> Any:
    if not isinstance(raw, Mapping):
        return None
    for key in ("string", "int", "bool"):
        if key in raw:
            return raw[key]
    if "version" in raw:
        return Version(str(raw["version"]))
    return None


def _capacity_value(raw: Any) -> Quantity | None:
    text = raw.get("value") if isinstance(raw, Mapping) else raw
    try:
        return Quantity.parse(str(text))
    except ValueError:
        return None


def cel_device(driver: str, device: Mapping[str, Any]) -> CelDevice:
    """Build the CEL view of a ResourceSlice device (v1 flat or v1beta1 ``basic`` form).

    Unqualified attribute/capacity names are in the driver's domain."""
    body = device.get("basic") if isinstance(device.get("basic"), Mapping) else device
    attributes: dict[str, dict[str, Any]] = {}
    for name, raw in (body.get("attributes") or {}).items():
        value = _attribute_value(raw)
        if value is not None:
            domain, short = _split_qualified(name, driver)
            attributes.setdefault(domain, {})[short] = value
    capacity: dict[str, dict[str, Quantity]] = {}
    for name, raw in (body.get("capacity") or {}).items():
        quantity = _capacity_value(raw)
        if quantity is not None:
            domain, short = _split_qualified(name, driver)
            capacity.setdefault(domain, {})[short] = quantity
    return CelDevice(driver=driver, attributes=attributes, capacity=capacity)


# --------------------------------------------------------------------------------------------
# Tokenizer


@dataclass(frozen=True)
class Token:
    kind: str       # "int", "str", "ident", "op", "eof"
    value: Any
    pos: int


_OPERATORS = ("&&", "||", "==", "!=", "<=", ">=", "<", ">", "!", "(", ")", "[", "]", ".",
              ",", "-")
_UNSUPPORTED_CHARS = {"+": "arithmetic", "*": "arithmetic", "/": "arithmetic",
                      "%": "arithmetic", "?": "the conditional operator",
                      ":": "the conditional operator", "{": "map literals",
                      "}": "map literals", "=": "assignment"}
_ESCAPES = {"\\": "\\", "'": "'", '"': '"', "n": "\n", "t": "\t", "r": "\r"}
_IDENT_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_NUMBER_RE = re.compile(r"0[xX][0-9a-fA-F]+|[0-9]+")


def _read_string(text: str, pos: int) -> tuple[str, int]:
    quote = text[pos]
    if text.startswith(quote * 3, pos):
        raise CelError(f"triple-quoted strings are not supported (column {pos + 1})")
    out: list[str] = []
    i = pos + 1
    while i < len(text):
        ch = text[i]
        if ch == quote:
            return "".join(out), i + 1
        if ch == "\n":
            break
        if ch == "\\":
            nxt = text[i + 1:i + 2]
            if nxt not in _ESCAPES:
                raise CelError(f"unsupported escape sequence \\{nxt} (column {i + 1})")
            out.append(_ESCAPES[nxt])
            i += 2
            continue
        out.append(ch)
        i += 1
    raise CelError(f"unterminated string literal (column {pos + 1})")


def _read_number(text: str, pos: int) -> tuple[int, int]:
    match = _NUMBER_RE.match(text, pos)
    assert match is not None
    end = match.end()
    if end < len(text) and (text[end] in ".eEuU" or text[end].isalnum() or text[end] == "_"):
        raise CelError(f"unsupported numeric literal at column {pos + 1} "
                       "(only int literals are supported)")
    return int(match.group(), 0), end


def tokenize(text: str) -> list[Token]:
    tokens: list[Token] = []
    pos = 0
    while pos < len(text):
        ch = text[pos]
        if ch.isspace():
            pos += 1
        elif ch in "'\"":
            value, end = _read_string(text, pos)
            tokens.append(Token("str", value, pos))
            pos = end
        elif ch.isdigit():
            number, end = _read_number(text, pos)
            tokens.append(Token("int", number, pos))
            pos = end
        elif ident := _IDENT_RE.match(text, pos):
            if ident.group() in ("r", "R", "b", "B") and text[ident.end():ident.end() + 1] in (
                    "'", '"'):
                raise CelError(f"raw/bytes string literals are not supported (column {pos + 1})")
            tokens.append(Token("ident", ident.group(), pos))
            pos = ident.end()
        else:
            op = next((o for o in _OPERATORS if text.startswith(o, pos)), None)
            if op is None:
                what = _UNSUPPORTED_CHARS.get(ch, "this character")
                raise CelError(f"unsupported token {ch!r} at column {pos + 1}: {what} is not "
                               "in the simulator's CEL subset")
            tokens.append(Token("op", op, pos))
            pos += len(op)
    tokens.append(Token("eof", None, len(text)))
    return tokens


# --------------------------------------------------------------------------------------------
# Typed closures
#
# The parser compiles directly to closures over a CelDevice; each carries a static type:
# "bool", "int", "string", "list", "quantity", "device", "domains" (device.attributes),
# "capdomains" (device.capacity), "attrs" (one domain's attributes), "caps" (one domain's
# capacities) or "dyn" (an attribute value whose type is only known at runtime).

Evaluator = Callable[[CelDevice], Any]


@dataclass(frozen=True)
class Typed:
    type: str
    fn: Evaluator
    presence: Evaluator | None = None   # for has(): tests the selected key's existence
    literal: bool = False
    value: Any = None                   # the constant, when literal


_ORDERED_TYPES = ("int", "string")
_MAP_TYPES = ("attrs", "caps", "domains", "capdomains")


def _kind(value: Any) -> str:
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, int):
        return "int"
    if isinstance(value, str):
        return "string"
    if isinstance(value, Quantity):
        return "quantity"
    if isinstance(value, Version):
        return "version"
    if isinstance(value, list):
        return "list"
    return "map"


def cel_equals(left: Any, right: Any) -> bool:
    """CEL heterogeneous equality: values of different types are unequal."""
    if _kind(left) != _kind(right):
        return False
    if isinstance(left, list):
        return len(left) == len(right) and all(map(cel_equals, left, right))
    return bool(left == right)


def _expect(value: Any, kind: str, what: str) -> Any:
    if _kind(value) != kind:
        raise CelEvalError(f"no such overload: {what} on {_kind(value)} (want {kind})")
    return value


def _check_static(node: Typed, allowed: tuple[str, ...], what: str) -> None:
    if node.type != "dyn" and node.type not in allowed:
        raise CelError(f"found no matching overload for {what} applied to {node.type}")


def _attempt(node: Typed, device: CelDevice) -> tuple[Any, CelEvalError | None]:
    try:
        return node.fn(device), None
    except CelEvalError as exc:
        return None, exc


def _logical(op: str, left: Typed, right: Typed) -> Typed:
    _check_static(left, ("bool",), op)
    _check_static(right, ("bool",), op)
    absorbing = op == "||"     # true absorbs for ||, false absorbs for &&

    def fn(device: CelDevice) -> bool:
        results = [_attempt(left, device), _attempt(right, device)]
        if any(value is absorbing for value, _ in results):
            return absorbing
        for value, error in results:
            if error is not None:
                raise error
            _expect(value, "bool", op)
        return not absorbing

    return Typed("bool", fn)


def _not(operand: Typed) -> Typed:
    _check_static(operand, ("bool",), "!")
    return Typed("bool", lambda d: not _expect(operand.fn(d), "bool", "!"))


_COMPARATORS: dict[str, Callable[[Any, Any], bool]] = {
    "<": lambda a, b: a < b, "<=": lambda a, b: a <= b,
    ">": lambda a, b: a > b, ">=": lambda a, b: a >= b,
}


def _relation(op: str, left: Typed, right: Typed) -> Typed:
    if op in ("==", "!=") and "dyn" not in (left.type, right.type) and left.type != right.type:
        raise CelError(f"found no matching overload for {op} applied to "
                       f"({left.type}, {right.type})")
    if op == "==":
        return Typed("bool", lambda d: cel_equals(left.fn(d), right.fn(d)))
    if op == "!=":
        return Typed("bool", lambda d: not cel_equals(left.fn(d), right.fn(d)))
    if op == "in":
        return _membership(left, right)
    _check_static(left, _ORDERED_TYPES, op)
    _check_static(right, _ORDERED_TYPES, op)
    if "dyn" not in (left.type, right.type) and left.type != right.type:
        raise CelError(f"found no matching overload for {op} applied to "
                       f"({left.type}, {right.type})")
    compare = _COMPARATORS[op]

    def fn(device: CelDevice) -> bool:
        a, b = left.fn(device), right.fn(device)
        if _kind(a) != _kind(b) or _kind(a) not in _ORDERED_TYPES:
            raise CelEvalError(f"no such overload: {_kind(a)} {op} {_kind(b)}")
        return compare(a, b)

    return Typed("bool", fn)


def _membership(left: Typed, right: Typed) -> Typed:
    if right.type == "list":
        return Typed("bool", lambda d: any(cel_equals(left.fn(d), x) for x in right.fn(d)))
    if right.type in _MAP_TYPES:
        _check_static(left, ("string",), "in (map)")
        return Typed("bool", lambda d: _expect(left.fn(d), "string", "in") in right.fn(d))
    raise CelError(f"'in' needs a list literal or an attribute/capacity map, not {right.type}")


# --------------------------------------------------------------------------------------------
# Member access and functions


_DEVICE_FIELDS = {"driver": "string", "attributes": "domains", "capacity": "capdomains"}
_SELECT_RESULT = {"domains": "attrs", "capdomains": "caps", "attrs": "dyn", "caps": "quantity"}


def _lookup(mapping: Mapping[str, Any], key: str, kind: str) -> Any:
    if kind in ("domains", "capdomains"):
        return mapping.get(key, {})     # unknown domain: an empty map
    if key not in mapping:
        raise CelEvalError(f"no such key: {key}")
    return mapping[key]


def _select(target: Typed, key: Typed, *, dot: bool) -> Typed:
    """``target.name`` (dot) or ``target["name"]``."""
    if target.type == "device":
        if not dot or key.value not in _DEVICE_FIELDS:
            shown = key.value if dot else "[...]"
            raise CelError(f"undefined field {shown!r} on device (supported: "
                           f"{', '.join(_DEVICE_FIELDS)})")
        name = key.value
        return Typed(_DEVICE_FIELDS[name], lambda d: getattr(d, name),
                     presence=lambda d: True)
    if target.type not in _SELECT_RESULT:
        shown = key.value if key.literal else "[...]"
        raise CelError(f"cannot select {shown!r} from a value of type {target.type}")
    if key.type not in ("string", "dyn"):
        raise CelError(f"map keys are strings, not {key.type}")
    kind = target.type

    def fn(device: CelDevice) -> Any:
        return _lookup(target.fn(device), _expect(key.fn(device), "string", "[]"), kind)

    def presence(device: CelDevice) -> bool:
        return _expect(key.fn(device), "string", "has") in target.fn(device)

    return Typed(_SELECT_RESULT[kind], fn, presence=presence if dot else None)


def _quantity_literal(args: list[Typed]) -> Typed:
    if len(args) != 1:
        raise CelError("quantity() takes exactly one argument")
    _check_static(args[0], ("string",), "quantity()")
    if args[0].literal:
        try:
            value = Quantity.parse(args[0].value)
        except ValueError as exc:
            raise CelError(f"quantity(): {exc}") from None
        return Typed("quantity", lambda d: value)

    def fn(device: CelDevice) -> Quantity:
        try:
            return Quantity.parse(_expect(args[0].fn(device), "string", "quantity"))
        except ValueError as exc:
            raise CelEvalError(str(exc)) from None

    return Typed("quantity", fn)


_QUANTITY_METHODS: dict[str, tuple[str, Callable[[Quantity, Quantity], Any]]] = {
    "compareTo": ("int", lambda a, b: a.compare(b)),
    "isGreaterThan": ("bool", lambda a, b: a.compare(b) > 0),
    "isLessThan": ("bool", lambda a, b: a.compare(b) < 0),
}
_STRING_METHODS: dict[str, Callable[[str, str], bool]] = {
    "startsWith": str.startswith, "endsWith": str.endswith, "contains": str.__contains__,
}


def _check_method_name(name: str) -> None:
    if name not in _QUANTITY_METHODS and name not in _STRING_METHODS:
        raise CelError(f"method {name}() is not in the simulator's CEL subset (supported: "
                       f"{', '.join([*_QUANTITY_METHODS, *_STRING_METHODS])})")


def _method(target: Typed, name: str, args: list[Typed]) -> Typed:
    _check_method_name(name)
    if len(args) != 1:
        raise CelError(f"{name}() takes exactly one argument")
    arg = args[0]
    if name in _QUANTITY_METHODS:
        _check_static(target, ("quantity",), name)
        _check_static(arg, ("quantity",), name)
        result, impl = _QUANTITY_METHODS[name]
        return Typed(result, lambda d: impl(_expect(target.fn(d), "quantity", name),
                                            _expect(arg.fn(d), "quantity", name)))
    if name in _STRING_METHODS:
        _check_static(target, ("string",), name)
        _check_static(arg, ("string",), name)
        check = _STRING_METHODS[name]
        return Typed("bool", lambda d: check(_expect(target.fn(d), "string", name),
                                             _expect(arg.fn(d), "string", name)))
    raise AssertionError(name)


# --------------------------------------------------------------------------------------------
# Parser (recursive descent):
#   expr     := or
#   or       := and ("||" and)*
#   and      := relation ("&&" relation)*
#   relation := unary (("=="|"!="|"<"|"<="|">"|">="|"in") unary)*
#   unary    := "!" unary | "-" unary | member
#   member   := primary ("." IDENT ["(" args ")"] | "[" expr "]")*
#   primary  := IDENT ["(" args ")"] | INT | STRING | "(" expr ")" | "[" args "]"


class _Parser:
    def __init__(self, text: str) -> None:
        self.tokens = tokenize(text)
        self.index = 0

    @property
    def current(self) -> Token:
        return self.tokens[self.index]

    def advance(self) -> Token:
        token = self.current
        self.index += 1
        return token

    def accept(self, op: str) -> bool:
        token = self.current
        if (token.kind == "op" and token.value == op) or (
                token.kind == "ident" and token.value == op == "in"):
            self.index += 1
            return True
        return False

    def expect(self, op: str) -> None:
        if not self.accept(op):
            raise self.error(f"expected {op!r}")

    def error(self, message: str) -> CelError:
        token = self.current
        found = "end of expression" if token.kind == "eof" else repr(token.value)
        return CelError(f"{message} at column {token.pos + 1}, found {found}")

    def parse(self) -> Typed:
        node = self.parse_or()
        if self.current.kind == "op" and self.current.value == "-":
            raise self.error("arithmetic is not in the simulator's CEL subset")
        if self.current.kind != "eof":
            raise self.error("unexpected token")
        return node

    def parse_or(self) -> Typed:
        node = self.parse_and()
        while self.accept("||"):
            node = _logical("||", node, self.parse_and())
        return node

    def parse_and(self) -> Typed:
        node = self.parse_relation()
        while self.accept("&&"):
            node = _logical("&&", node, self.parse_relation())
        return node

    def parse_relation(self) -> Typed:
        node = self.parse_unary()
        while True:
            op = next((o for o in ("==", "!=", "<=", ">=", "<", ">", "in") if self.accept(o)),
                      None)
            if op is None:
                return node
            node = _relation(op, node, self.parse_unary())

    def parse_unary(self) -> Typed:
        if self.accept("!"):
            return _not(self.parse_unary())
        if self.accept("-"):
            operand = self.parse_unary()
            if operand.type != "int" or not operand.literal:
                raise CelError("unary minus is only supported on int literals")
            return _constant("int", -operand.value)
        return self.parse_member(self.parse_primary())

    def parse_member(self, node: Typed) -> Typed:
        while True:
            if self.accept("."):
                token = self.advance()
                if token.kind != "ident":
                    self.index -= 1
                    raise self.error("expected a field or method name")
                if self.accept("("):
                    _check_method_name(token.value)
                    node = _method(node, token.value, self.parse_args(")"))
                else:
                    node = _select(node, _constant("string", token.value), dot=True)
            elif self.accept("["):
                key = self.parse_or()
                self.expect("]")
                node = _select(node, key, dot=False)
            else:
                return node

    def parse_args(self, closing: str) -> list[Typed]:
        args: list[Typed] = []
        if self.accept(closing):
            return args
        while True:
            args.append(self.parse_or())
            if self.accept(closing):
                return args
            self.expect(",")

    def parse_primary(self) -> Typed:
        token = self.advance()
        if token.kind == "int":
            return _constant("int", token.value)
        if token.kind == "str":
            return _constant("string", token.value)
        if token.kind == "op" and token.value == "(":
            node = self.parse_or()
            self.expect(")")
            return node
        if token.kind == "op" and token.value == "[":
            items = self.parse_args("]")
            return Typed("list", lambda d: [item.fn(d) for item in items])
        if token.kind == "ident":
            return self.parse_identifier(token)
        self.index -= 1
        raise self.error("expected an expression")

    def parse_identifier(self, token: Token) -> Typed:
        name = token.value
        if name in ("true", "false"):
            return _constant("bool", name == "true")
        if self.accept("("):
            if name == "has":
                return self.parse_has()
            if name == "quantity":
                return _quantity_literal(self.parse_args(")"))
            raise CelError(f"function {name}() is not in the simulator's CEL subset")
        if name == "device":
            return Typed("device", lambda d: d)
        raise CelError(f"undeclared reference to {name!r} at column {token.pos + 1} "
                       "(only 'device' is declared)")

    def parse_has(self) -> Typed:
        node = self.parse_or()
        self.expect(")")
        presence = node.presence
        if presence is None:
            raise CelError("has() needs a field selection such as "
                           "has(device.attributes['dom'].name)")
        return Typed("bool", presence)


def _constant(kind: str, value: Any) -> Typed:
    return Typed(kind, lambda d: value, literal=True, value=value)


@dataclass(frozen=True)
class Program:
    """A compiled expression; :meth:`evaluate` returns a bool or raises CelEvalError."""

    expression: str
    root: Typed

    def evaluate(self, device: CelDevice) -> bool:
        result = self.root.fn(device)
        if not isinstance(result, bool):
            raise CelEvalError(f"expression returned {_kind(result)}, not bool")
        return result


def compile_expression(expression: str) -> Program:
    """Parse and type-check ``expression``; raises CelError outside the subset."""
    if not isinstance(expression, str) or not expression.strip():
        raise CelError("empty expression")
    if len(expression) > MAX_EXPRESSION_LENGTH:
        raise CelError(f"expression longer than {MAX_EXPRESSION_LENGTH} characters")
    root = _Parser(expression).parse()
    if root.type not in ("bool", "dyn"):
        raise CelError(f"expression must return bool, not {root.type}")
    return Program(expression, root)


def evaluate(expression: str, driver: str, device: Mapping[str, Any]) -> bool:
    """Compile and evaluate once against a ResourceSlice device (convenience for tests)."""
    return compile_expression(expression).evaluate(cel_device(driver, device))
