"""The $filter language of redfish_service.protocol.filter."""

from __future__ import annotations

import operator

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from redfish_service.protocol.filter import FilterSyntaxError, parse

DOC = {
    "Id": "7",
    "Name": "O'Brien",
    "Count": 5,
    "Ratio": 0.5,
    "Enabled": True,
    "Nothing": None,
    "Status": {"State": "Enabled", "Health": "OK"},
    "Links": {"Role": {"@odata.id": "/redfish/v1/AccountService/Roles/Operator"}},
}


def matches(expr: str, doc=DOC) -> bool:
    return parse(expr)(doc)


# -- comparisons ---------------------------------------------------------------------------


@pytest.mark.parametrize(("expr", "expected"), [
    ("Id eq '7'", True),
    ("Id eq '8'", False),
    ("Id ne '8'", True),
    ("Id eq 7", False),  # a string is not a number
    ("Count eq 5", True),
    ("Count ne 5", False),
    ("Count gt 4", True),
    ("Count gt 5", False),
    ("Count ge 5", True),
    ("Count lt 5", False),
    ("Count le 5", True),
    ("Count eq 5.0", True),
    ("Count gt -1", True),
    ("Count lt 1e1", True),
    ("Ratio lt 1", True),
    ("Ratio eq 0.5", True),
    ("Enabled eq true", True),
    ("Enabled eq false", False),
    ("Enabled ne false", True),
    ("Nothing eq null", True),
    ("Nothing ne null", False),
    ("Count eq null", False),
    ("Name eq 'O''Brien'", True),
    ("Name gt 'N'", True),
    ("Name lt 'N'", False),
    ("Status/Health eq 'OK'", True),
    ("Status/State ne 'Enabled'", False),
    ("Links/Role/@odata.id eq '/redfish/v1/AccountService/Roles/Operator'", True),
    ("Status/Missing eq 'x'", False),
    ("Missing eq 'x'", False),
    ("Missing gt 1", False),
    ("Status gt 'a'", False),  # an object does not order against a string
    ("Name gt 5", False),  # nor a string against a number
    ("Nothing gt 1", False),
    ("Id eq 'a)b'", False),
    ("Id eq ''", False),
])
def test_comparisons(expr, expected):
    assert matches(expr) is expected


def test_string_literal_with_parentheses_and_keywords():
    doc = {"Name": "a) or (b eq 'c"}
    assert matches("Name eq 'a) or (b eq ''c'", doc) is True


def test_booleans_are_not_numbers():
    doc = {"Enabled": True, "Count": 1}
    # ordering operators refuse to compare booleans with numbers ...
    assert matches("Enabled gt 0", doc) is False
    # ... and equality must not treat true as 1 either (OData is strongly typed).
    assert matches("Enabled eq 1", doc) is False
    assert matches("Count eq true", doc) is False
    assert matches("Enabled ne 1", doc) is True


# -- logic -----------------------------------------------------------------------------------


@pytest.mark.parametrize(("expr", "expected"), [
    ("Count eq 5 and Enabled eq true", True),
    ("Count eq 5 and Enabled eq false", False),
    ("Count eq 4 or Enabled eq true", True),
    ("Count eq 4 or Enabled eq false", False),
    ("not Count eq 4", True),
    ("not (Count eq 5)", False),
    ("not not (Count eq 5)", True),
    ("(Count eq 5)", True),
    ("((Count eq 5))", True),
    # and binds tighter than or
    ("Count eq 5 or Count eq 4 and Enabled eq false", True),
    ("(Count eq 5 or Count eq 4) and Enabled eq false", False),
    ("Count eq 4 and Enabled eq false or Id eq '7'", True),
    ("Count eq 4 and (Enabled eq false or Id eq '7')", False),
    # not binds tighter than and
    ("not Count eq 4 and Id eq '7'", True),
    ("not (Count eq 5 and Id eq '8')", True),
    ("Count eq 1 or Count eq 2 or Count eq 5", True),
    ("Count ge 1 and Count le 9 and Enabled eq true", True),
])
def test_logic(expr, expected):
    assert matches(expr) is expected


def test_whitespace_is_free():
    assert matches("  ( Count   eq 5 )and(Id eq '7')  ") is True


# -- syntax errors ------------------------------------------------------------------------------


@pytest.mark.parametrize("expr", [
    "", "   ", "Count", "Count eq", "eq 5", "Count 5", "Count equals 5", "Count == 5",
    "Count eq 5 and", "and Count eq 5", "Count eq 5 or", "not", "not ()", "()",
    "(Count eq 5", "Count eq 5)", "((Count eq 5)", "Count eq 5 Count eq 5",
    "Count eq 'open", "Count eq Id", "Count eq eq", "Count eq 5 5", "Count eq 'a' 'b'",
    "5 eq Count", "'x' eq Name", "Count eq $5", "Count eq 5 AND Id eq '7'",
    "Count eq 5 && Id eq '7'", "Count eq -", "Count eq 1.2.3", "Count/ eq 5", "/Count eq 5",
    "Count eq 5; DROP", "Name eq \"x\"", "and eq 5", "or eq 5", "Count in (1, 2)",
])
def test_syntax_errors(expr):
    with pytest.raises(FilterSyntaxError):
        parse(expr)


def test_syntax_error_is_a_value_error():
    assert issubclass(FilterSyntaxError, ValueError)


# -- properties ---------------------------------------------------------------------------------

INT_PATHS = ("A", "N/X")
OPS = {"eq": operator.eq, "ne": operator.ne, "gt": operator.gt, "ge": operator.ge,
       "lt": operator.lt, "le": operator.le}

small_ints = st.integers(min_value=-3, max_value=3)
short_text = st.text(alphabet="ab'", max_size=3)

docs = st.fixed_dictionaries({
    "A": small_ints,
    "B": st.booleans(),
    "S": short_text,
    "N": st.fixed_dictionaries({"X": small_ints}),
})


def quote(s: str) -> str:
    return "'" + s.replace("'", "''") + "'"


def get(doc, path):
    for part in path.split("/"):
        doc = doc[part]
    return doc


@st.composite
def atoms(draw):
    """(filter text, reference predicate) for one comparison."""
    kind = draw(st.sampled_from(["int", "bool", "str"]))
    if kind == "int":
        path = draw(st.sampled_from(INT_PATHS))
        op = draw(st.sampled_from(sorted(OPS)))
        value = draw(small_ints)
        return f"{path} {op} {value}", lambda d: OPS[op](get(d, path), value)
    if kind == "bool":
        op = draw(st.sampled_from(["eq", "ne"]))
        value = draw(st.booleans())
        return f"B {op} {str(value).lower()}", lambda d: OPS[op](d["B"], value)
    op = draw(st.sampled_from(sorted(OPS)))
    value = draw(short_text)
    return f"S {op} {quote(value)}", lambda d: OPS[op](d["S"], value)


def combine(children):
    left, right = children
    return st.sampled_from(["and", "or"]).map(
        lambda op: (
            f"({left[0]}) {op} ({right[0]})",
            (lambda d: left[1](d) and right[1](d)) if op == "and"
            else (lambda d: left[1](d) or right[1](d)),
        )
    )


def negate(child):
    return (f"not ({child[0]})", lambda d: not child[1](d))


expressions = st.recursive(
    atoms(),
    lambda inner: st.one_of(
        st.tuples(inner, inner).flatmap(combine),
        inner.map(negate),
    ),
    max_leaves=8,
)


@settings(max_examples=150, deadline=None)
@given(expressions, docs)
def test_fully_parenthesised_expressions_match_reference(expr, doc):
    text, reference = expr
    assert parse(text)(doc) is reference(doc), text


@settings(max_examples=100, deadline=None)
@given(expressions, docs)
def test_not_is_negation(expr, doc):
    text, _ = expr
    assert parse(f"not ({text})")(doc) is (not parse(text)(doc))
    assert parse(f"not not ({text})")(doc) is parse(text)(doc)


@settings(max_examples=100, deadline=None)
@given(expressions, expressions, docs)
def test_de_morgan(x, y, doc):
    a, b = x[0], y[0]
    assert parse(f"not (({a}) and ({b}))")(doc) is parse(f"not ({a}) or not ({b})")(doc)
    assert parse(f"not (({a}) or ({b}))")(doc) is parse(f"not ({a}) and not ({b})")(doc)


@settings(max_examples=100, deadline=None)
@given(st.lists(atoms(), min_size=1, max_size=6),
       st.lists(st.sampled_from(["and", "or"]), min_size=5, max_size=5), docs)
def test_precedence_of_unparenthesised_chains(parts, ops, doc):
    """``a or b and c`` is ``a or (b and c)``: evaluate as an or of and-groups."""
    text = parts[0][0]
    groups = [[parts[0][1]]]
    for (atom_text, pred), op in zip(parts[1:], ops, strict=False):
        text += f" {op} {atom_text}"
        if op == "and":
            groups[-1].append(pred)
        else:
            groups.append([pred])
    expected = any(all(p(doc) for p in g) for g in groups)
    assert parse(text)(doc) is expected, text


@settings(max_examples=300, deadline=None)
@given(st.text(alphabet=st.sampled_from(list("AB/ ()'eqnotadrgl0123.-$")), max_size=30))
def test_arbitrary_text_parses_or_raises_syntax_error(text):
    try:
        pred = parse(text)
    except FilterSyntaxError:
        return
    result = pred({"A": 1, "B": {"A": "x"}})
    assert isinstance(result, bool)


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=5),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.sampled_from("AB"), inner,
                                                                max_size=2),
    max_leaves=6,
)


@settings(max_examples=150, deadline=None)
@given(expressions, st.dictionaries(st.sampled_from(["A", "B", "S", "N"]), json_values))
def test_evaluation_never_raises_on_any_document(expr, doc):
    result = parse(expr[0])(doc)
    assert isinstance(result, bool)


@pytest.mark.parametrize("depth", [10, 300, 450, 1000])
def test_deep_nesting_never_overflows(depth):
    """Too deep an expression is a syntax error (or parses), never a RecursionError."""
    text = "(" * depth + "Count eq 5" + ")" * depth
    try:
        pred = parse(text)
    except FilterSyntaxError:
        return
    assert pred(DOC) is True


def test_long_not_chain_never_overflows():
    text = "not " * 1000 + "Count eq 5"
    try:
        pred = parse(text)
    except FilterSyntaxError:
        return
    assert pred(DOC) is True
