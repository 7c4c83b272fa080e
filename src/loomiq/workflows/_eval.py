"""Evaluating an expression AST over a mapping of variables, and the built-in functions.

Values are JSON values: None, bool, int, float, str, list (or tuple), dict (or any Mapping). There is
no attribute access on Python objects and no call of anything but the functions in `FUNCTIONS`, so an
expression can read only what its scope holds. The rules (documented in docs/workflows.md):

- ``==``/``!=`` compare values of the same kind (numbers across int/float); values of different kinds
  are unequal, never coerced (``1 == '1'`` is false, ``true == 1`` is false).
- ``<``, ``<=``, ``>``, ``>=`` need two numbers or two strings; ``+`` adds numbers, joins strings or
  lists; ``-``, ``*``, ``/``, ``%`` need numbers.
- ``&&``, ``||`` and ``!`` need booleans (``&&``, ``||`` short-circuit); no truthiness.
- ``a.b`` and ``a[k]`` on null give null, and so does a missing field or an index out of range, so a
  skipped node's fields read as null instead of failing the run.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from ._parser import Binary, Call, Index, Literal, Member, Name, Node, Unary

__all__ = ["FUNCTIONS", "EvaluationError", "Function", "evaluate", "kind_of", "render_text"]


class EvaluationError(ValueError):
    """An expression could not be evaluated (a type error, a bad call); `pos` is the offset in its text."""

    def __init__(self, message: str, pos: int = 0) -> None:
        super().__init__(message)
        self.message = message
        self.pos = pos


def kind_of(value: Any) -> str:
    """The kind of a JSON value: null, boolean, number, string, list or object."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int | float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, Mapping):
        return "object"
    if isinstance(value, Sequence):
        return "list"
    return type(value).__name__


def render_text(value: Any) -> str:
    """How a value reads inside a string: text as is, null as empty, numbers and booleans as in JSON,
    lists and objects as compact JSON."""
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and value.is_integer() and abs(value) < 1e16:
        return str(int(value))
    if isinstance(value, int | float):
        return str(value)
    return json.dumps(_plain(value), ensure_ascii=False, separators=(",", ":"))


def _plain(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    return value


def _equal(a: Any, b: Any) -> bool:
    ka, kb = kind_of(a), kind_of(b)
    if ka != kb:
        return False
    if ka == "list":
        return len(a) == len(b) and all(_equal(x, y) for x, y in zip(a, b, strict=True))
    if ka == "object":
        return a.keys() == b.keys() and all(_equal(a[k], b[k]) for k in a)
    return bool(a == b)


@dataclass(frozen=True, slots=True)
class Function:
    """A built-in function: its implementation, how many arguments it takes, the kinds each accepts
    (``any`` for any kind; the last entry repeats for variadic functions) and the kind it returns."""

    impl: Callable[..., Any]
    min_args: int
    max_args: int | None
    params: tuple[frozenset[str], ...]
    returns: str
    doc: str


def _kinds(*names: str) -> frozenset[str]:
    return frozenset(names)


_ANY = _kinds("any")
_STR = _kinds("string")
_SEQ = _kinds("string", "list", "object")


def _fn_len(value: Any) -> int:
    return len(value)


def _fn_contains(haystack: Any, needle: Any) -> bool:
    if isinstance(haystack, str):
        if not isinstance(needle, str):
            raise EvaluationError(f"contains() on a string needs a string to look for, not a {kind_of(needle)}")
        return needle.lower() in haystack.lower()
    return any(_equal(item, needle) for item in haystack)


def _fn_join(items: Any, sep: str = ",") -> str:
    return sep.join(render_text(item) for item in items)


def _fn_from_json(text: str) -> Any:
    try:
        return json.loads(text)
    except ValueError as exc:
        raise EvaluationError(f"fromJSON(): not JSON: {exc}") from None


def _fn_coalesce(*values: Any) -> Any:
    return next((v for v in values if v is not None), None)


def _fn_string(value: Any) -> str:
    return render_text(value)


def _fn_number(value: Any) -> int | float:
    if isinstance(value, bool):
        raise EvaluationError("number() of a boolean")
    if isinstance(value, int | float):
        return value
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise EvaluationError(f"number(): {render_text(value)!r} is not a number") from None
    if not math.isfinite(number):
        raise EvaluationError(f"number(): {value!r} is not a finite number")
    return int(number) if number.is_integer() and "." not in value and "e" not in value.lower() else number


FUNCTIONS: dict[str, Function] = {
    "len": Function(_fn_len, 1, 1, (_SEQ,), "number", "length of a string, list or object"),
    "contains": Function(_fn_contains, 2, 2, (_kinds("string", "list"), _ANY), "boolean",
                         "a list holds a value, or a string holds a substring (case-insensitive)"),
    "startsWith": Function(lambda s, p: s.lower().startswith(p.lower()), 2, 2, (_STR, _STR), "boolean",
                           "a string starts with a prefix (case-insensitive)"),
    "endsWith": Function(lambda s, p: s.lower().endswith(p.lower()), 2, 2, (_STR, _STR), "boolean",
                         "a string ends with a suffix (case-insensitive)"),
    "lower": Function(str.lower, 1, 1, (_STR,), "string", "the string in lower case"),
    "upper": Function(str.upper, 1, 1, (_STR,), "string", "the string in upper case"),
    "trim": Function(str.strip, 1, 1, (_STR,), "string", "the string without surrounding whitespace"),
    "join": Function(_fn_join, 1, 2, (_kinds("list"), _STR), "string",
                     "the items of a list as text, separated by `sep` (default ',')"),
    "split": Function(lambda s, sep: s.split(sep) if sep else list(s), 2, 2, (_STR, _STR), "list",
                      "a string cut at each `sep`"),
    "toJSON": Function(lambda v: json.dumps(_plain(v), ensure_ascii=False), 1, 1, (_ANY,), "string",
                       "a value as JSON text"),
    "fromJSON": Function(_fn_from_json, 1, 1, (_STR,), "any", "the value a JSON text encodes"),
    "coalesce": Function(_fn_coalesce, 1, None, (_ANY,), "any", "the first argument that is not null"),
    "string": Function(_fn_string, 1, 1, (_ANY,), "string", "a value as it reads inside a string"),
    "number": Function(_fn_number, 1, 1, (_kinds("string", "number"),), "number", "a string parsed as a number"),
}
"""The built-in functions, by name. Nothing else can be called."""


def _check_bool(value: Any, op: str, pos: int) -> bool:
    if not isinstance(value, bool):
        raise EvaluationError(f"'{op}' needs booleans, got a {kind_of(value)}", pos)
    return value


def _number(value: Any, op: str, pos: int) -> int | float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise EvaluationError(f"'{op}' needs numbers, got a {kind_of(value)}", pos)
    return value


def _binary(node: Binary, scope: Mapping[str, Any]) -> Any:
    op = node.op
    if op == "&&":
        return _check_bool(evaluate(node.left, scope), op, node.pos) and _check_bool(
            evaluate(node.right, scope), op, node.pos)
    if op == "||":
        return _check_bool(evaluate(node.left, scope), op, node.pos) or _check_bool(
            evaluate(node.right, scope), op, node.pos)
    left, right = evaluate(node.left, scope), evaluate(node.right, scope)
    if op == "==":
        return _equal(left, right)
    if op == "!=":
        return not _equal(left, right)
    if op in ("in", "not in"):
        if right is None:
            found = False
        elif isinstance(right, str):
            if not isinstance(left, str):
                raise EvaluationError(f"'{op}' a string needs a string on the left, got a {kind_of(left)}", node.pos)
            found = left in right
        elif isinstance(right, Mapping):
            found = left in right
        elif isinstance(right, list | tuple):
            found = any(_equal(left, item) for item in right)
        else:
            raise EvaluationError(f"'{op}' needs a list, string or object on the right, got a {kind_of(right)}",
                                  node.pos)
        return found if op == "in" else not found
    if op in ("<", "<=", ">", ">="):
        ka, kb = kind_of(left), kind_of(right)
        if not (ka == kb and ka in ("number", "string")):
            raise EvaluationError(f"'{op}' compares two numbers or two strings, not a {ka} and a {kb}", node.pos)
        if op == "<":
            return left < right
        if op == "<=":
            return left <= right
        if op == ">":
            return left > right
        return left >= right
    if op == "+":
        ka, kb = kind_of(left), kind_of(right)
        if ka == kb == "string":
            return left + right
        if ka == kb == "list":
            return [*left, *right]
        if ka == kb == "number":
            return left + right
        raise EvaluationError(f"'+' adds two numbers, strings or lists, not a {ka} and a {kb}", node.pos)
    a, b = _number(left, op, node.pos), _number(right, op, node.pos)
    if op == "-":
        return a - b
    if op == "*":
        return a * b
    if b == 0:
        raise EvaluationError(f"'{op}' by zero", node.pos)
    if op == "/":
        result = a / b
        return int(result) if isinstance(a, int) and isinstance(b, int) and a % b == 0 else result
    return a % b


def _get(obj: Any, key: Any, pos: int) -> Any:
    if obj is None:
        return None
    if isinstance(obj, Mapping):
        if not isinstance(key, str):
            raise EvaluationError(f"an object's fields are named by strings, not a {kind_of(key)}", pos)
        return obj.get(key)
    if isinstance(obj, list | tuple):
        if isinstance(key, bool) or not isinstance(key, int):
            raise EvaluationError(f"a list is indexed by an integer, not a {kind_of(key)}", pos)
        return obj[key] if 0 <= key < len(obj) else None
    raise EvaluationError(f"a {kind_of(obj)} has no fields", pos)


def _call(node: Call, scope: Mapping[str, Any]) -> Any:
    fn = FUNCTIONS.get(node.name)
    if fn is None:
        raise EvaluationError(f"unknown function {node.name}()", node.pos)
    args = [evaluate(arg, scope) for arg in node.args]
    if len(args) < fn.min_args or (fn.max_args is not None and len(args) > fn.max_args):
        raise EvaluationError(f"{node.name}() takes {_arity(fn)}, got {len(args)}", node.pos)
    for i, value in enumerate(args):
        allowed = fn.params[min(i, len(fn.params) - 1)]
        if "any" not in allowed and kind_of(value) not in allowed:
            raise EvaluationError(
                f"{node.name}() argument {i + 1} must be a {' or '.join(sorted(allowed))}, got a {kind_of(value)}",
                node.args[i].pos)
    try:
        return fn.impl(*args)
    except EvaluationError as exc:
        raise EvaluationError(exc.message, node.pos) from None


def _arity(fn: Function) -> str:
    if fn.max_args == fn.min_args:
        return f"{fn.min_args} argument{'s' if fn.min_args != 1 else ''}"
    if fn.max_args is None:
        return f"at least {fn.min_args} argument{'s' if fn.min_args != 1 else ''}"
    return f"{fn.min_args} to {fn.max_args} arguments"


def evaluate(node: Node, scope: Mapping[str, Any]) -> Any:
    """The value of `node` with root variables from `scope`. Raises `EvaluationError`."""
    if isinstance(node, Literal):
        return node.value
    if isinstance(node, Name):
        if node.name not in scope:
            raise EvaluationError(f"unknown variable '{node.name}'", node.pos)
        return scope[node.name]
    if isinstance(node, Member):
        return _get(evaluate(node.obj, scope), node.name, node.pos)
    if isinstance(node, Index):
        return _get(evaluate(node.obj, scope), evaluate(node.index, scope), node.pos)
    if isinstance(node, Binary):
        return _binary(node, scope)
    if isinstance(node, Unary):
        value = evaluate(node.operand, scope)
        if node.op == "!":
            return not _check_bool(value, "!", node.pos)
        return -_number(value, "-", node.pos)
    if isinstance(node, Call):
        return _call(node, scope)
    return [evaluate(item, scope) for item in node.items]
