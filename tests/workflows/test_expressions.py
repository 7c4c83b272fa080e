"""The expression language: grammar, evaluation rules, built-in functions, templates, static checks."""

from __future__ import annotations

from typing import Any

import pytest

from loomiq.workflows import EvaluationError, ExpressionError, parse_condition, parse_expression, parse_template
from loomiq.workflows._types import ANY, Checker, Type, enum, list_of, obj

SCOPE: dict[str, Any] = {
    "inputs": {"version": "1.2", "count": 3, "tags": ["a", "b"], "flag": True, "cfg": {"k": 1}},
    "nodes": {"approve": {"decision": "approved", "comment": "ok"}, "skipped": {"output": None}},
}


def ev(text: str, scope: dict[str, Any] | None = None) -> Any:
    return parse_expression(text).evaluate(SCOPE if scope is None else scope)


@pytest.mark.parametrize(("text", "expected"), [
    ("1 + 2 * 3", 7),
    ("(1 + 2) * 3", 9),
    ("10 / 4", 2.5),
    ("10 / 5", 2),
    ("7 % 4", 3),
    ("-inputs.count + 1", -2),
    ("true || false && false", True),
    ("!true || true", True),
    ("not true or true", True),
    ("not (1 in [2, 3])", True),
    ("2 not in [1, 2]", False),
    ("'b' in inputs.tags", True),
    ("'ell' in 'hello'", True),
    ("'k' in inputs.cfg", True),
    ("inputs.version == '1.2'", True),
    ("inputs.version == \"1.2\"", True),
    ("1 == 1.0", True),
    ("1 == '1'", False),
    ("true == 1", False),
    ("null == null", True),
    ("[1, 'a'] == [1, 'a']", True),
    ("'a' < 'b' && 2 >= 2", True),
    ("nodes.approve.decision == 'approved' and nodes.approve.comment != ''", True),
    ("inputs.tags[1]", "b"),
    ("inputs.tags[5]", None),
    ("inputs['version']", "1.2"),
    ("nodes.skipped.output.field.deeper", None),
    ("nodes.missing", None),
    ("'it''s'", "it's"),
    ("'a\\nb'", "a\nb"),
    ("len(inputs.tags) + len('abc') + len(inputs.cfg)", 6),
    ("contains(inputs.tags, 'a') && contains('Hello', 'hell')", True),
    ("startsWith(inputs.version, '1.') && endsWith('file.YAML', '.yaml')", True),
    ("upper(lower('AbC')) + trim('  x ')", "ABCx"),
    ("join(inputs.tags, '+')", "a+b"),
    ("join([1, true, null])", "1,true,"),
    ("split('a,b', ',')", ["a", "b"]),
    ("fromJSON('{\"a\": [1]}').a[0]", 1),
    ("toJSON(inputs.tags)", '["a", "b"]'),
    ("coalesce(null, nodes.skipped.output, 'x')", "x"),
    ("string(1.0) + string(true)", "1true"),
    ("number('42') + number('0.5')", 42.5),
    ("inputs.tags + ['c']", ["a", "b", "c"]),
    ("1e3", 1000.0),
])
def test_evaluation(text: str, expected: Any) -> None:
    assert ev(text) == expected


@pytest.mark.parametrize(("text", "message"), [
    ("1 < 'a'", "'<' compares two numbers or two strings"),
    ("inputs.version && true", "'&&' needs booleans"),
    ("!inputs.count", "'!' needs booleans"),
    ("1 + 'a'", "'+' adds two numbers"),
    ("inputs.count / 0", "by zero"),
    ("inputs.count.x", "a number has no fields"),
    ("inputs.tags['x']", "indexed by an integer"),
    ("len(1)", "len() argument 1 must be"),
    ("len()", "len() takes 1 argument"),
    ("fromJSON('{')", "not JSON"),
    ("number('abc')", "not a number"),
    ("1 in 2", "needs a list, string or object"),
    ("unknown_var", "unknown variable 'unknown_var'"),
    ("nope(1)", "unknown function nope()"),
])
def test_evaluation_errors(text: str, message: str) -> None:
    with pytest.raises(EvaluationError) as info:
        ev(text)
    assert message in info.value.message


def test_short_circuit_does_not_evaluate_the_right_side() -> None:
    assert ev("false && (1 / 0 == 1)") is False
    assert ev("true || (1 / 0 == 1)") is True


@pytest.mark.parametrize(("text", "message", "pos"), [
    ("a ==", "ends too early", 4),
    ("a = b", "'=' is not an operator", 2),
    ("a & b", "use '&&'", 2),
    ("1 < 2 < 3", "do not chain", 6),
    ("'abc", "unterminated string", 0),
    ("a b", "expected an operator", 2),
    ("f(1,", "ends too early", 4),
    ("a.", "expected a field name", 2),
    ("a[1", "expected ']'", 3),
    ("", "empty expression", 0),
    ("x @ y", "unexpected character '@'", 2),
    ("'\\q'", "unknown escape", 1),
])
def test_parse_errors_name_the_position(text: str, message: str, pos: int) -> None:
    with pytest.raises(ExpressionError) as info:
        parse_expression(text)
    assert message in info.value.message
    assert info.value.pos == pos


def test_never_python_eval() -> None:
    # Names are variables of the scope and calls only the built-ins: nothing reaches Python objects.
    with pytest.raises(EvaluationError, match="unknown function"):
        ev("__import__('os')")
    with pytest.raises(ExpressionError):
        parse_expression("().__class__")
    assert ev("inputs.__class__") is None
    assert ev("inputs.version.__len__", {"inputs": {"version": None}}) is None
    with pytest.raises(EvaluationError, match="has no fields"):
        ev("inputs.version.upper")


def test_template_renders_text_and_whole_expressions_keep_their_type() -> None:
    t = parse_template("Notes for ${{ inputs.version }} (${{ inputs.count }} items, ${{ inputs.flag }}) ${{ null }}")
    assert t.render(SCOPE) == "Notes for 1.2 (3 items, true) "
    whole = parse_template("${{ inputs.tags }}")
    assert whole.single is not None and whole.render(SCOPE) == ["a", "b"]
    assert parse_template("  ${{ inputs.count }} ").render(SCOPE) == 3
    assert parse_template("${{ inputs.tags }}!").render(SCOPE) == '["a","b"]!'
    assert parse_template("${{ '}}' }}").render(SCOPE) == "}}"
    assert parse_template("no expressions").render(SCOPE) == "no expressions"


def test_template_errors_point_inside_the_string() -> None:
    with pytest.raises(ExpressionError) as info:
        parse_template("Hello ${{ inputs. }}")
    assert info.value.pos == len("Hello ${{ inputs. ")
    with pytest.raises(ExpressionError, match="never closed"):
        parse_template("Hello ${{ inputs.x")


def test_conditions_with_or_without_braces() -> None:
    assert parse_condition("${{ 1 == 1 }}").evaluate({}) is True
    assert parse_condition("1 == 1").evaluate({}) is True
    with pytest.raises(ExpressionError, match="one \\$\\{\\{"):
        parse_condition("x ${{ true }}")


def test_constant_expressions() -> None:
    assert parse_expression("1 == 2 || false").is_constant
    assert not parse_expression("inputs.x == 1").is_constant
    assert not parse_expression("len([inputs.x]) > 0").is_constant


def check(text: str, roots: dict[str, Type] | None = None) -> tuple[Type, list[str]]:
    nodes: dict[str, Type] = {"approve": obj({"decision": enum("approved", "rejected")}, closed=True,
                                             label="nodes.approve")}

    def node_ref(name: str, pos: int) -> Type | None:
        if name not in nodes:
            checker.error(f"unknown node '{name}'", pos)
            return None
        return nodes[name]

    base = {"inputs": obj({"version": Type("string"), "n": Type("number"), "tags": list_of(Type("string"))},
                          closed=True, label="inputs"), "nodes": obj()}
    checker = Checker(roots or base, node_ref)
    result = checker.check(parse_expression(text).ast)
    return result, [m for m, _ in checker.errors]


@pytest.mark.parametrize(("text", "message"), [
    ("inputs.versoin", "inputs has no field 'versoin'"),
    ("nodes.approve.decision == 'aproved'", "nodes.approve.decision is never 'aproved'"),
    ("nodes.approve.decision in ['approved', 'nope']", "is never 'nope'"),
    ("nodes.aprove.decision", "unknown node 'aprove'"),
    ("nodes.approve.comment", "nodes.approve has no field 'comment'"),
    ("inputs.version < 3", "'<' compares two numbers or two strings"),
    ("inputs.version == 3", "never equal"),
    ("inputs.n && true", "'&&' needs booleans"),
    ("len(inputs.n)", "len() argument 1 must be"),
    ("inputs.version.x", "has no field 'x'"),
    ("inputs.tags.x", "has no field 'x'"),
    ("input.version", "unknown variable 'input'"),
    ("len", "len is a function"),
    ("inputs.n + 'x'", "'+' adds two numbers"),
    ("inputs.tags['a']", "indexed by a number"),
    ("frobnicate(1)", "unknown function frobnicate()"),
    ("contains(1, 2)", "contains() argument 1 must be"),
])
def test_static_checks(text: str, message: str) -> None:
    _, errors = check(text)
    assert any(message in e for e in errors), errors


@pytest.mark.parametrize("text", [
    "nodes.approve.decision == 'approved'",
    "inputs.version == 'x' && len(inputs.tags) > 0",
    "inputs.tags[0] == 'x'",
    "contains(inputs.tags, inputs.version)",
    "coalesce(inputs.version, 'x') == 'y'",
    "fromJSON(inputs.version).anything.goes",
    "inputs.n + 1 > 2",
])
def test_static_checks_accept_valid_expressions(text: str) -> None:
    _, errors = check(text)
    assert errors == []


def test_static_types() -> None:
    assert check("inputs.n > 1")[0].kind == "boolean"
    assert check("inputs.tags")[0] == list_of(Type("string"))
    assert check("fromJSON('1')")[0] == ANY
