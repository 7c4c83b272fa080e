"""The expression grammar: a tokenizer and a Pratt parser to a small immutable AST.

Grammar (lowest precedence first; comparisons do not chain)::

    expr    := or
    or      := and (("||" | "or") and)*
    and     := not (("&&" | "and") not)*
    not     := ("!" | "not") not | cmp
    cmp     := sum (("==" | "!=" | "<" | "<=" | ">" | ">=" | "in" | "not" "in") sum)?
    sum     := product (("+" | "-") product)*
    product := unary (("*" | "/" | "%") unary)*
    unary   := "-" unary | postfix
    postfix := primary ("." NAME | "[" expr "]")*
    primary := NUMBER | STRING | "true" | "false" | "null" | NAME | NAME "(" args ")" | "(" expr ")"
             | "[" (expr ("," expr)*)? "]"

Every node carries `pos`, its offset in the expression's text, so an error can name a column.
Nothing here evaluates anything: `_eval` does, over a mapping of variables, never with Python `eval`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, NamedTuple

__all__ = [
    "Binary",
    "Call",
    "Index",
    "ListLiteral",
    "Literal",
    "Member",
    "Name",
    "Node",
    "ParseError",
    "Unary",
    "parse",
]


class ParseError(ValueError):
    """The text is not an expression of the grammar; `pos` is the offset of the offending character."""

    def __init__(self, message: str, pos: int) -> None:
        super().__init__(message)
        self.message = message
        self.pos = pos


@dataclass(frozen=True, slots=True)
class Literal:
    """A constant: a string, number, boolean or null."""

    value: Any
    pos: int


@dataclass(frozen=True, slots=True)
class Name:
    """A root variable (`inputs`, `nodes`, `vars`, `item`, `matrix`, `index`, `error`)."""

    name: str
    pos: int


@dataclass(frozen=True, slots=True)
class Member:
    """``obj.name``: a field of an object."""

    obj: Node
    name: str
    pos: int


@dataclass(frozen=True, slots=True)
class Index:
    """``obj[index]``: an element of a list or a field of an object by a computed key."""

    obj: Node
    index: Node
    pos: int


@dataclass(frozen=True, slots=True)
class Call:
    """``name(args...)``: one of the built-in functions."""

    name: str
    args: tuple[Node, ...]
    pos: int


@dataclass(frozen=True, slots=True)
class Unary:
    """``!x`` (also ``not x``) or ``-x``."""

    op: str
    operand: Node
    pos: int


@dataclass(frozen=True, slots=True)
class Binary:
    """``left op right``; `op` is the canonical spelling (``&&``, ``||``, ``not in``...)."""

    op: str
    left: Node
    right: Node
    pos: int


@dataclass(frozen=True, slots=True)
class ListLiteral:
    """``[a, b, c]``."""

    items: tuple[Node, ...]
    pos: int


Node = Literal | Name | Member | Index | Call | Unary | Binary | ListLiteral
"""Any expression node."""

_KEYWORDS = {"true": True, "false": False, "null": None}
_WORD_OPS = {"and": "&&", "or": "||", "not": "!", "in": "in"}

_TOKEN = re.compile(r"""
    (?P<ws>\s+)
  | (?P<number>\d+(?:\.\d+)?(?:[eE][+-]?\d+)?)
  | (?P<name>[A-Za-z_][A-Za-z0-9_]*)
  | (?P<string>'(?:[^'\\]|\\.|'')*'|"(?:[^"\\]|\\.)*")
  | (?P<op>==|!=|<=|>=|&&|\|\||[<>!+\-*/%.,()\[\]])
""", re.VERBOSE | re.DOTALL)

_ESCAPES = {"n": "\n", "t": "\t", "r": "\r", "\\": "\\", "'": "'", '"': '"', "0": "\0"}


class _Token(NamedTuple):
    kind: str  # number, string, name, op, end
    text: str
    value: Any
    pos: int


def _unquote(text: str, pos: int) -> str:
    quote, body = text[0], text[1:-1]
    out: list[str] = []
    i = 0
    while i < len(body):
        ch = body[i]
        if ch == "\\":
            nxt = body[i + 1]
            if nxt not in _ESCAPES:
                raise ParseError(f"unknown escape \\{nxt} in a string", pos + 1 + i)
            out.append(_ESCAPES[nxt])
            i += 2
        elif ch == "'" and quote == "'":  # '' inside a single-quoted string is one quote
            out.append("'")
            i += 2
        else:
            out.append(ch)
            i += 1
    return "".join(out)


def tokenize(text: str) -> list[_Token]:
    """The tokens of `text`, ending with an ``end`` token. Raises `ParseError` at a bad character."""
    tokens: list[_Token] = []
    pos, size = 0, len(text)
    while pos < size:
        match = _TOKEN.match(text, pos)
        if match is None:
            ch = text[pos]
            if ch in "'\"":
                raise ParseError("unterminated string", pos)
            if ch == "=":
                raise ParseError("'=' is not an operator (compare with '==')", pos)
            if ch in "&|":
                raise ParseError(f"'{ch}' is not an operator (use '{ch * 2}')", pos)
            raise ParseError(f"unexpected character {ch!r}", pos)
        kind = match.lastgroup
        raw = match.group()
        if kind == "ws":
            pass
        elif kind == "number":
            value: Any = float(raw) if any(c in raw for c in ".eE") else int(raw)
            tokens.append(_Token("number", raw, value, pos))
        elif kind == "string":
            tokens.append(_Token("string", raw, _unquote(raw, pos), pos))
        elif kind == "name":
            if raw in _WORD_OPS:
                tokens.append(_Token("op", _WORD_OPS[raw], raw, pos))
            else:
                tokens.append(_Token("name", raw, raw, pos))
        elif kind == "op":
            tokens.append(_Token("op", raw, raw, pos))
        pos = match.end()
    tokens.append(_Token("end", "", None, size))
    return tokens


# Binding powers of the infix operators.
_OR, _AND, _NOT, _CMP, _SUM, _PRODUCT, _UNARY, _POSTFIX = 10, 20, 30, 40, 50, 60, 70, 80
_INFIX = {
    "||": _OR, "&&": _AND,
    "==": _CMP, "!=": _CMP, "<": _CMP, "<=": _CMP, ">": _CMP, ">=": _CMP, "in": _CMP,
    "+": _SUM, "-": _SUM, "*": _PRODUCT, "/": _PRODUCT, "%": _PRODUCT,
}


class _Parser:
    def __init__(self, text: str) -> None:
        self.text = text
        self.tokens = tokenize(text)
        self.i = 0

    @property
    def tok(self) -> _Token:
        return self.tokens[self.i]

    def advance(self) -> _Token:
        tok = self.tokens[self.i]
        self.i += 1
        return tok

    def expect(self, text: str, what: str) -> _Token:
        tok = self.tok
        if tok.kind != "op" or tok.text != text:
            raise ParseError(f"expected {what}, found {_describe(tok)}", tok.pos)
        return self.advance()

    def parse(self) -> Node:
        if self.tok.kind == "end":
            raise ParseError("empty expression", 0)
        node = self.expression(0)
        if self.tok.kind != "end":
            raise ParseError(f"unexpected {_describe(self.tok)} after a complete expression", self.tok.pos)
        return node

    def expression(self, min_bp: int) -> Node:
        left = self.prefix()
        while True:
            tok = self.tok
            if tok.kind != "op":
                if tok.kind != "end":
                    raise ParseError(f"expected an operator, found {_describe(tok)}", tok.pos)
                return left
            op = tok.text
            if op == "!" and self.tokens[self.i + 1].text == "in" and tok.value == "not":
                op = "not in"
            bp = _INFIX.get(op) if op != "not in" else _CMP
            if bp is None or bp <= min_bp:
                return left
            self.advance()
            if op == "not in":
                self.advance()
            right = self.expression(bp)
            if bp == _CMP and self.tok.kind == "op" and _INFIX.get(self.tok.text) == _CMP:
                raise ParseError("comparisons do not chain; combine them with '&&'", self.tok.pos)
            left = Binary(op, left, right, tok.pos)

    def prefix(self) -> Node:
        tok = self.advance()
        if tok.kind == "number" or tok.kind == "string":
            return self.postfix(Literal(tok.value, tok.pos))
        if tok.kind == "name":
            if tok.text in _KEYWORDS:
                return self.postfix(Literal(_KEYWORDS[tok.text], tok.pos))
            if self.tok.kind == "op" and self.tok.text == "(":
                return self.postfix(self.call(tok))
            return self.postfix(Name(tok.text, tok.pos))
        if tok.kind == "op":
            if tok.text == "!":
                return Unary("!", self.expression(_NOT), tok.pos)
            if tok.text == "-":
                return Unary("-", self.expression(_UNARY), tok.pos)
            if tok.text == "(":
                inner = self.expression(0)
                self.expect(")", "')'")
                return self.postfix(inner)
            if tok.text == "[":
                items = self.sequence("]")
                return self.postfix(ListLiteral(items, tok.pos))
        if tok.kind == "end":
            raise ParseError("the expression ends too early", tok.pos)
        raise ParseError(f"unexpected {_describe(tok)}", tok.pos)

    def sequence(self, close: str) -> tuple[Node, ...]:
        items: list[Node] = []
        if self.tok.kind == "op" and self.tok.text == close:
            self.advance()
            return ()
        while True:
            items.append(self.expression(0))
            if self.tok.kind == "op" and self.tok.text == ",":
                self.advance()
                continue
            self.expect(close, f"',' or '{close}'")
            return tuple(items)

    def call(self, name: _Token) -> Call:
        self.advance()  # (
        return Call(name.text, self.sequence(")"), name.pos)

    def postfix(self, node: Node) -> Node:
        while self.tok.kind == "op" and self.tok.text in (".", "["):
            tok = self.advance()
            if tok.text == ".":
                field = self.advance()
                if field.kind != "name":
                    raise ParseError(f"expected a field name after '.', found {_describe(field)}", field.pos)
                node = Member(node, field.text, field.pos)
            else:
                index = self.expression(0)
                self.expect("]", "']'")
                node = Index(node, index, tok.pos)
        return node


def _describe(tok: _Token) -> str:
    if tok.kind == "end":
        return "the end of the expression"
    return f"{tok.kind} {tok.text!r}" if tok.kind != "op" else f"{tok.value!r}"


@lru_cache(maxsize=4096)
def parse(text: str) -> Node:
    """Parse `text` (the inside of ``${{ }}``) to an AST. Raises `ParseError` with the offset.

    Cached by text: ASTs are immutable, and a workflow repeats the same expressions
    (``inputs.title`` in many prompts) across its nodes and across the loads of its definition.
    """
    return _Parser(text).parse()
