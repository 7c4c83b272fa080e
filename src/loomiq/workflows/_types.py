"""Static checks of an expression before anything runs: variables that do not exist, fields a value
cannot have, operators and functions applied to the wrong kinds, comparisons that can never be true.

Types are deliberately small: a kind (any, null, boolean, number, string, list, object), the set of
values a string can take when it is known (an approval's decision is 'approved' or 'rejected'), a
list's element type, an object's known fields. Null is compatible with everything (a skipped node's
fields are null), and `any` is never an error: only what is certain to fail is reported.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from ._eval import FUNCTIONS, _arity
from ._parser import Binary, Call, Index, ListLiteral, Literal, Member, Name, Node, Unary

__all__ = ["ANY", "BOOLEAN", "NULL", "NUMBER", "STRING", "Checker", "Type", "enum", "list_of", "obj", "of_kind"]


@dataclass(frozen=True, slots=True)
class Type:
    """What an expression is known to evaluate to."""

    kind: str
    values: frozenset[str] | None = None
    elem: Type | None = None
    fields: Mapping[str, Type] | None = field(default=None, compare=False)
    closed: bool = False
    label: str = ""

    def describe(self) -> str:
        """A short phrase for messages: ``a string``, ``'approved' or 'rejected'``, ``an object``."""
        if self.kind == "string" and self.values:
            return " or ".join(repr(v) for v in sorted(self.values))
        article = "an" if self.kind[0] in "aeiou" else "a"
        return f"{article} {self.kind}"


ANY = Type("any")
NULL = Type("null")
BOOLEAN = Type("boolean")
NUMBER = Type("number")
STRING = Type("string")


def enum(*values: str) -> Type:
    """A string known to be one of `values`."""
    return Type("string", values=frozenset(values))


def list_of(elem: Type = ANY) -> Type:
    """A list whose elements have type `elem`."""
    return Type("list", elem=elem)


def obj(fields: Mapping[str, Type] | None = None, *, closed: bool = False, label: str = "") -> Type:
    """An object; with `closed`, a field outside `fields` is an error naming `label`."""
    return Type("object", fields=dict(fields or {}), closed=closed, label=label)


def of_kind(kind: str) -> Type:
    """The plain type of a kind name (``string``, ``number``, ``integer``, ``list``...)."""
    if kind == "integer":
        return NUMBER
    if kind == "list":
        return list_of()
    if kind == "object":
        return obj()
    return Type(kind)


def _known(t: Type) -> bool:
    return t.kind not in ("any", "null")


@dataclass
class Checker:
    """Checks one expression. `roots` gives the root variables' types; `node_ref(name, pos)` gives the
    type of ``nodes.<name>`` (or reports why it cannot be read here and returns None). Errors collect
    in `errors` as (message, offset) pairs; checking goes on after an error, so all are found at once."""

    roots: Mapping[str, Type]
    node_ref: Callable[[str, int], Type | None]
    errors: list[tuple[str, int]] = field(default_factory=list)

    def error(self, message: str, pos: int) -> Type:
        """Record an error and return `ANY`, so checking continues without cascading errors."""
        self.errors.append((message, pos))
        return ANY

    def check(self, node: Node) -> Type:
        """The type of `node`, recording what is certainly wrong."""
        if isinstance(node, Literal):
            value = node.value
            if isinstance(value, str):
                return enum(value)
            if isinstance(value, bool):
                return BOOLEAN
            return NULL if value is None else NUMBER
        if isinstance(node, Name):
            if node.name in self.roots:
                return self.roots[node.name]
            if node.name in FUNCTIONS:
                return self.error(f"{node.name} is a function; call it as {node.name}(...)", node.pos)
            known = ", ".join(sorted(self.roots))
            return self.error(f"unknown variable '{node.name}' (known here: {known})", node.pos)
        if isinstance(node, Member):
            return self.member(node)
        if isinstance(node, Index):
            return self.index(node)
        if isinstance(node, Call):
            return self.call(node)
        if isinstance(node, Unary):
            operand = self.check(node.operand)
            if node.op == "!":
                if _known(operand) and operand.kind != "boolean":
                    self.error(f"'!' needs a boolean, not {operand.describe()}", node.pos)
                return BOOLEAN
            if _known(operand) and operand.kind != "number":
                self.error(f"'-' needs a number, not {operand.describe()}", node.pos)
            return NUMBER
        if isinstance(node, Binary):
            return self.binary(node)
        return self.list_literal(node)

    def member(self, node: Member) -> Type:
        if isinstance(node.obj, Name) and node.obj.name == "nodes" and "nodes" in self.roots:
            return self.node_ref(node.name, node.pos) or ANY
        return self.field(self.check(node.obj), node.name, node.pos)

    def field(self, owner: Type, name: str, pos: int) -> Type:
        if owner.kind == "object":
            if owner.fields and name in owner.fields:
                return owner.fields[name]
            if owner.closed:
                fields = ", ".join(sorted(owner.fields or ())) or "none"
                return self.error(f"{owner.label or 'the object'} has no field '{name}' (fields: {fields})", pos)
            return ANY
        if _known(owner):
            return self.error(f"{owner.label or owner.describe()} has no field '{name}' "
                              f"(it is {owner.describe()})", pos)
        return ANY

    def index(self, node: Index) -> Type:
        if (isinstance(node.obj, Name) and node.obj.name == "nodes" and "nodes" in self.roots
                and isinstance(node.index, Literal) and isinstance(node.index.value, str)):
            return self.node_ref(node.index.value, node.pos) or ANY
        owner = self.check(node.obj)
        key = self.check(node.index)
        if owner.kind == "list":
            if _known(key) and key.kind != "number":
                self.error(f"a list is indexed by a number, not {key.describe()}", node.index.pos)
            return owner.elem or ANY
        if owner.kind == "object":
            if isinstance(node.index, Literal) and isinstance(node.index.value, str):
                return self.field(owner, node.index.value, node.index.pos)
            if _known(key) and key.kind != "string":
                self.error(f"an object's fields are named by strings, not {key.describe()}", node.index.pos)
            return ANY
        if _known(owner):
            return self.error(f"{owner.label or owner.describe()} cannot be indexed (it is {owner.describe()})",
                              node.pos)
        return ANY

    def call(self, node: Call) -> Type:
        fn = FUNCTIONS.get(node.name)
        if fn is None:
            return self.error(f"unknown function {node.name}() (functions: {', '.join(sorted(FUNCTIONS))})",
                              node.pos)
        args = [self.check(arg) for arg in node.args]
        if len(args) < fn.min_args or (fn.max_args is not None and len(args) > fn.max_args):
            return self.error(f"{node.name}() takes {_arity(fn)}, got {len(args)}", node.pos)
        for i, arg in enumerate(args):
            allowed = fn.params[min(i, len(fn.params) - 1)]
            if "any" not in allowed and _known(arg) and arg.kind not in allowed:
                self.error(f"{node.name}() argument {i + 1} must be a {' or '.join(sorted(allowed))}, "
                           f"not {arg.describe()}", node.args[i].pos)
        if fn.returns == "list":
            return list_of(STRING)
        return of_kind(fn.returns)

    def binary(self, node: Binary) -> Type:
        op = node.op
        left, right = self.check(node.left), self.check(node.right)
        if op in ("&&", "||"):
            for side in (left, right):
                if _known(side) and side.kind != "boolean":
                    self.error(f"'{op}' needs booleans, not {side.describe()}", node.pos)
            return BOOLEAN
        if op in ("==", "!="):
            if _known(left) and _known(right):
                if left.kind != right.kind:
                    self.error(f"compares {left.describe()} with {right.describe()}: they are never equal",
                               node.pos)
                elif left.values is not None and right.values is not None and not left.values & right.values:
                    self.error(_never_equal(node, left, right), node.pos)
            return BOOLEAN
        if op in ("in", "not in"):
            if _known(right) and right.kind not in ("list", "string", "object"):
                self.error(f"'{op}' needs a list, string or object on the right, not {right.describe()}", node.pos)
            elif right.kind == "string" and _known(left) and left.kind != "string":
                self.error(f"'{op}' a string needs a string on the left, not {left.describe()}", node.pos)
            elif (right.kind == "list" and left.values is not None and isinstance(node.right, ListLiteral)
                  and right.elem is not None and right.elem.values is not None):
                missing = sorted(right.elem.values - left.values)
                if missing:
                    self.error(f"{_source_name(node.left)} is never {', '.join(map(repr, missing))} "
                               f"(it is {left.describe()})", node.right.pos)
            return BOOLEAN
        if op in ("<", "<=", ">", ">="):
            if _known(left) and _known(right) and not (left.kind == right.kind and left.kind in ("number", "string")):
                self.error(f"'{op}' compares two numbers or two strings, not {left.describe()} and "
                           f"{right.describe()}", node.pos)
            return BOOLEAN
        if op == "+":
            if _known(left) and _known(right):
                if left.kind != right.kind or left.kind not in ("number", "string", "list"):
                    return self.error(f"'+' adds two numbers, strings or lists, not {left.describe()} and "
                                      f"{right.describe()}", node.pos)
                return Type(left.kind, elem=left.elem if left.kind == "list" else None)
            known = left if _known(left) else right
            return Type(known.kind) if _known(known) else ANY
        for side in (left, right):
            if _known(side) and side.kind != "number":
                self.error(f"'{op}' needs numbers, not {side.describe()}", node.pos)
        return NUMBER

    def list_literal(self, node: ListLiteral) -> Type:
        items = [self.check(item) for item in node.items]
        if items and all(t.kind == "string" and t.values is not None for t in items):
            values: frozenset[str] = frozenset().union(*(t.values or () for t in items))
            return list_of(Type("string", values=values))
        kinds = {t.kind for t in items}
        return list_of(Type(kinds.pop()) if len(kinds) == 1 else ANY)


def _source_name(node: Node) -> str:
    if isinstance(node, Name):
        return node.name
    if isinstance(node, Member):
        return f"{_source_name(node.obj)}.{node.name}"
    if isinstance(node, Index) and isinstance(node.index, Literal):
        return f"{_source_name(node.obj)}[{node.index.value!r}]"
    return "the value"


def _never_equal(node: Binary, left: Type, right: Type) -> str:
    # Name the side that reads a variable, and the literal it is compared with.
    if isinstance(node.right, Literal):
        return f"{_source_name(node.left)} is never {node.right.value!r} (it is {left.describe()})"
    if isinstance(node.left, Literal):
        return f"{_source_name(node.right)} is never {node.left.value!r} (it is {right.describe()})"
    return f"{_source_name(node.left)} ({left.describe()}) never equals {_source_name(node.right)} " \
           f"({right.describe()})"
