"""Workflow expressions: ``${{ ... }}`` inside strings, evaluated by loomiq's own small grammar.

An `Expression` is the parsed text of one ``${{ }}`` (or of an ``if:`` written without it). A
`Template` is a string with any number of ``${{ }}`` in it: rendered to text, or, when the whole
string is one ``${{ }}``, to the expression's value (a list stays a list). Parsing happens once, when
the workflow is loaded; evaluation reads only the variables it is given and calls only the built-in
functions (`FUNCTIONS`). The grammar is in `_parser`, the evaluation rules in `_eval`, the static
checks in `_types`; docs/workflows.md states all three for users.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from ._eval import FUNCTIONS, EvaluationError, evaluate, kind_of, render_text
from ._parser import Binary, Call, Index, Literal, Member, Name, Node, ParseError, Unary, parse

__all__ = [
    "FUNCTIONS",
    "EvaluationError",
    "Expression",
    "ExpressionError",
    "Template",
    "kind_of",
    "parse_condition",
    "parse_expression",
    "parse_template",
    "render_text",
    "render_value",
]

OPEN, CLOSE = "${{", "}}"


class ExpressionError(ValueError):
    """An expression that does not parse. `pos` is the offset of the problem in `source`."""

    def __init__(self, message: str, source: str, pos: int) -> None:
        super().__init__(message)
        self.message = message
        self.source = source
        self.pos = pos


@dataclass(frozen=True, slots=True)
class Expression:
    """One parsed expression. Two expressions are equal when their text is."""

    source: str
    ast: Node = field(compare=False, repr=False)
    offset: int = field(default=0, compare=False, repr=False)
    """Where the parsed text starts inside the string it came from; the AST's positions count from here."""

    def evaluate(self, scope: Mapping[str, Any]) -> Any:
        """The value over `scope` (root variable -> value). Raises `EvaluationError`."""
        return evaluate(self.ast, scope)

    @property
    def is_constant(self) -> bool:
        """True when the expression reads no variable, so its value is known before any run."""
        return not _reads_variables(self.ast)


@dataclass(frozen=True, slots=True)
class Template:
    """A string with ``${{ }}`` expressions. Two templates are equal when their text is."""

    source: str
    parts: tuple[str | Expression, ...] = field(compare=False, repr=False)

    @property
    def expressions(self) -> tuple[Expression, ...]:
        """The expressions in the template, in order."""
        return tuple(p for p in self.parts if isinstance(p, Expression))

    @property
    def single(self) -> Expression | None:
        """The expression when the whole template is one ``${{ }}`` (surrounding spaces aside)."""
        exprs = [p for p in self.parts if isinstance(p, Expression)]
        if len(exprs) == 1 and all(isinstance(p, Expression) or not p.strip() for p in self.parts):
            return exprs[0]
        return None

    def render(self, scope: Mapping[str, Any]) -> Any:
        """The value: the expression's own value if the template is one ``${{ }}``, else the text."""
        single = self.single
        if single is not None:
            return single.evaluate(scope)
        return self.render_text(scope)

    def render_text(self, scope: Mapping[str, Any]) -> str:
        """The template as text, each expression's value written as `render_text` writes it."""
        return "".join(p if isinstance(p, str) else render_text(p.evaluate(scope)) for p in self.parts)


def _reads_variables(node: Node) -> bool:
    if isinstance(node, Name):
        return True
    if isinstance(node, Literal):
        return False
    if isinstance(node, Member | Unary):
        return _reads_variables(node.obj if isinstance(node, Member) else node.operand)
    if isinstance(node, Index):
        return _reads_variables(node.obj) or _reads_variables(node.index)
    if isinstance(node, Binary):
        return _reads_variables(node.left) or _reads_variables(node.right)
    return any(_reads_variables(arg) for arg in (node.args if isinstance(node, Call) else node.items))


def parse_expression(text: str, offset: int = 0) -> Expression:
    """Parse a bare expression (``nodes.a.decision == 'approved'``). Raises `ExpressionError`.

    `offset` is where `text` starts in the string it came from; error positions include it.
    """
    try:
        return Expression(text.strip(), parse(text), offset)
    except ParseError as exc:
        raise ExpressionError(exc.message, text, offset + exc.pos) from None


def _find_close(text: str, start: int) -> int:
    """The offset of the ``}}`` that closes an expression starting at `start`, skipping string literals."""
    end = text.find(CLOSE, start)
    if end < 0 or ("'" not in text[start:end] and '"' not in text[start:end]):
        return end  # the common case: no string literal before the first `}}`
    i, size = start, len(text)
    while i < size:
        ch = text[i]
        if ch in "'\"":
            j = i + 1
            while j < size and text[j] != ch:
                j += 2 if text[j] == "\\" else 1
            i = j + 1
            continue
        if text.startswith(CLOSE, i):
            return i
        i += 1
    return -1


def parse_template(text: str) -> Template:
    """Parse a string with ``${{ }}`` expressions. Raises `ExpressionError` (positions in `text`)."""
    parts: list[str | Expression] = []
    pos = 0
    while True:
        start = text.find(OPEN, pos)
        if start < 0:
            if pos < len(text):
                parts.append(text[pos:])
            break
        if start > pos:
            parts.append(text[pos:start])
        inner = start + len(OPEN)
        end = _find_close(text, inner)
        if end < 0:
            raise ExpressionError("'${{' is never closed by '}}'", text, start)
        parts.append(parse_expression(text[inner:end], inner))
        pos = end + len(CLOSE)
    return Template(text, tuple(parts))


def parse_condition(text: str) -> Expression:
    """An ``if:``/``when:`` condition: one ``${{ }}``, or a bare expression. Raises `ExpressionError`."""
    if OPEN in text:
        template = parse_template(text)
        single = template.single
        if single is None:
            raise ExpressionError("a condition is one ${{ ... }} expression, with no text around it", text, 0)
        return single
    return parse_expression(text)


def render_value(value: Any, scope: Mapping[str, Any]) -> Any:
    """Render a value that may hold templates anywhere inside lists and objects."""
    if isinstance(value, Template):
        return value.render(scope)
    if isinstance(value, Mapping):
        return {k: render_value(v, scope) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [render_value(v, scope) for v in value]
    return value

