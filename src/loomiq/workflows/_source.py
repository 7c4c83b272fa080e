"""Reading a workflow file into plain data while keeping where each value came from.

`yaml.compose` (libyaml when available) gives a node tree with marks; this module builds the JSON-like
data from it and a `SourceMap` from key paths (``("nodes", "draft", "prompt")``) to line and column, so
every later error, including one inside an expression in the middle of a string, names its place.

Plain scalars are resolved by the YAML 1.2 core schema, not PyYAML's YAML 1.1 one: ``on``, ``yes``,
``no`` stay strings (``on: failure`` would otherwise be a boolean key), and JSON files (which are YAML)
read the same. Duplicate keys are errors instead of silently keeping the last one.
"""

from __future__ import annotations

import bisect
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from itertools import accumulate
from typing import Any, cast

import yaml

from .errors import Path
from .errors import ValidationIssue as Issue

__all__ = ["Composed", "Path", "SourceMap", "compose"]


_BREAK = re.compile(r"\r\n|[\r\n\x85\u2028\u2029]")
_OTHER_BREAK = re.compile(r"[\r\x85\u2028\u2029]")
_NULL = re.compile(r"^(?:~|null|Null|NULL|)$")
_BOOL = {"true": True, "True": True, "TRUE": True, "false": False, "False": False, "FALSE": False}
_INT = re.compile(r"^[-+]?[0-9]+$")
_INT_OCT = re.compile(r"^0o[0-7]+$")
_INT_HEX = re.compile(r"^0x[0-9a-fA-F]+$")
_FLOAT = re.compile(r"^[-+]?(?:\.[0-9]+|[0-9]+(?:\.[0-9]*)?)(?:[eE][-+]?[0-9]+)?$")
_SPECIAL_FLOAT = {".inf": float("inf"), "+.inf": float("inf"), "-.inf": float("-inf"), ".nan": float("nan")}
_STR_TAG = "tag:yaml.org,2002:str"
_MERGE_TAG = "tag:yaml.org,2002:merge"
_BOOL_TAG = "tag:yaml.org,2002:bool"
_EXPLICIT: dict[str, Any] = {
    _BOOL_TAG: bool, "tag:yaml.org,2002:int": int, "tag:yaml.org,2002:float": (int, float),
    "tag:yaml.org,2002:null": type(None),
}
_PLAIN_TAG = "tag:loomiq:plain"
_MAPPING_TAG = "tag:yaml.org,2002:map"
_SEQUENCE_TAG = "tag:yaml.org,2002:seq"
# The first characters a plain scalar other than a string can start with (YAML 1.2 core schema).
_NOT_STR_START = frozenset("0123456789+-.~nNtTfF")


class _Resolver(yaml.resolver.BaseResolver):
    """Tags a plain scalar as plain (resolved later by YAML 1.2's rules), instead of running PyYAML's
    YAML 1.1 regular expressions over every scalar; explicit tags stay as written."""

    def resolve(self, kind: Any, value: Any, implicit: Any) -> str:
        # Called by the composer for every untagged node (a 200-node file has ~3,000): no path
        # resolvers, no regular expressions.
        if kind is yaml.ScalarNode:
            if implicit[0]:
                return _MERGE_TAG if value == "<<" else _PLAIN_TAG
            return _STR_TAG
        return _MAPPING_TAG if kind is yaml.MappingNode else _SEQUENCE_TAG


if yaml.__with_libyaml__:
    from yaml._yaml import CParser  # where yaml.cyaml imports it from (the stubs do not re-export it)

    class _Loader(CParser, yaml.constructor.BaseConstructor, _Resolver):
        """libyaml's parser and composer with our resolver."""

        def __init__(self, stream: str) -> None:
            CParser.__init__(self, stream)
            yaml.constructor.BaseConstructor.__init__(self)
            _Resolver.__init__(self)
else:  # pragma: no cover - PyYAML built without libyaml
    class _Loader(yaml.reader.Reader, yaml.scanner.Scanner, yaml.parser.Parser,  # type: ignore[no-redef]
                  yaml.composer.Composer, yaml.constructor.BaseConstructor, _Resolver):
        """PyYAML's pure-Python parser and composer with our resolver."""

        def __init__(self, stream: str) -> None:
            yaml.reader.Reader.__init__(self, stream)
            yaml.scanner.Scanner.__init__(self)
            yaml.parser.Parser.__init__(self)
            yaml.composer.Composer.__init__(self)
            yaml.constructor.BaseConstructor.__init__(self)
            _Resolver.__init__(self)


@dataclass
class SourceMap:
    """Line and column of every value and mapping key of a document, by path."""

    text: str = ""
    values: dict[Path, tuple[int, int]] = field(default_factory=dict)
    keys: dict[Path, tuple[int, int]] = field(default_factory=dict)
    styles: dict[Path, str | None] = field(default_factory=dict)
    line_starts: list[int] = field(default_factory=list)

    def locate(self, path: Path, *, key: bool = False) -> tuple[int, int]:
        """1-based (line, column) of the value at `path` (or of its key with `key`), or of the
        nearest enclosing value that has a place; (0, 0) when none does (a definition built in Python)."""
        if key and path in self.keys:
            return _one_based(self.keys[path])
        probe = path
        while True:
            if probe in self.values:
                return _one_based(self.values[probe])
            if not probe:
                return (0, 0)
            probe = probe[:-1]

    def locate_in_string(self, path: Path, value: str, offset: int) -> tuple[int, int]:
        """1-based (line, column) of character `offset` of the string `value` found at `path`.

        Exact for plain and quoted scalars on one line and for expressions inside block scalars;
        falls back to the start of the value when escapes make the raw text differ from the value.
        """
        if path not in self.values or not self.line_starts:
            return self.locate(path)
        start_line, start_col = self.values[path]
        start = self.line_starts[start_line] + start_col
        style = self.styles.get(path)
        raw_end = len(self.text)
        # Count the expression openings before `offset` and find the same one in the raw text.
        anchor = value.rfind("${{", 0, offset + 1)
        if anchor >= 0:
            nth = value.count("${{", 0, anchor)
            raw_pos = start
            for _ in range(nth + 1):
                raw_pos = self.text.find("${{", raw_pos, raw_end)
                if raw_pos < 0:
                    return _one_based((start_line, start_col))
                raw_pos += 3
            absolute = raw_pos - 3 + (offset - anchor)
        elif style in (None, ""):
            absolute = start + offset
        elif style in ("'", '"'):
            absolute = start + 1 + offset
        else:
            return _one_based((start_line, start_col))
        line = bisect.bisect_right(self.line_starts, absolute) - 1
        return (line + 1, absolute - self.line_starts[line] + 1)


def _dotted(path: Path) -> str:
    return ".".join(str(p) for p in path) or "document"


def _one_based(pos: tuple[int, int]) -> tuple[int, int]:
    return (pos[0] + 1, pos[1] + 1)


@dataclass
class Composed:
    """A document read: its data (None if it could not be read), where everything is, and problems."""

    data: Any
    source: SourceMap
    issues: list[Issue]


def _resolve_plain(value: str) -> Any:
    if not value:
        return None
    if value[0] not in _NOT_STR_START:  # most plain scalars (names, kinds, prompts): no pattern to try
        return value
    if _NULL.match(value):
        return None
    if value in _BOOL:
        return _BOOL[value]
    if _INT.match(value):
        return int(value)
    if _INT_OCT.match(value):
        return int(value[2:], 8)
    if _INT_HEX.match(value):
        return int(value[2:], 16)
    if _FLOAT.match(value):
        return float(value)
    return _SPECIAL_FLOAT.get(value.lower(), value)


class _Builder:
    def __init__(self, source: SourceMap) -> None:
        self.source = source
        self.issues: list[Issue] = []

    def issue(self, message: str, path: Path, mark: Any) -> None:
        self.issues.append(Issue(message, path=path, line=mark.line + 1, column=mark.column + 1))

    def build(self, node: yaml.Node, path: Path) -> Any:
        mark = node.start_mark
        self.source.values[path] = (mark.line, mark.column)
        kind = type(node)
        if type(node) is yaml.ScalarNode:  # type(node), not kind: mypy narrows node by this test
            style = node.style
            self.source.styles[path] = style
            tag = node.tag
            # Quoted and block scalars are strings; plain ones are resolved by YAML 1.2's core schema.
            if tag == _PLAIN_TAG:
                return node.value if style else _resolve_plain(node.value)
            if tag == _STR_TAG:
                return node.value
            if not tag.startswith("tag:yaml.org,2002:"):
                self.issue(f"{_dotted(path)}: unsupported YAML tag {tag}", path, mark)
                return node.value
            if tag in _EXPLICIT:
                resolved = _resolve_plain(node.value)
                if isinstance(resolved, _EXPLICIT[tag]) and not (isinstance(resolved, bool) and tag != _BOOL_TAG):
                    return resolved
            self.issue(f"{_dotted(path)}: '{node.value}' is not a valid {tag.rsplit(':', 1)[-1]}", path, mark)
            return node.value
        if kind is yaml.MappingNode:
            return self.mapping(cast(yaml.MappingNode, node), path)  # by the class test
        if kind is yaml.SequenceNode:
            return [self.build(item, (*path, i)) for i, item in enumerate(node.value)]
        self.issue("unsupported YAML node", path, mark)
        return None

    def mapping(self, node: yaml.MappingNode, path: Path) -> dict[str, Any]:
        out: dict[str, Any] = {}
        first: dict[str, Any] = {}
        merged: list[yaml.MappingNode] = []
        keys = self.source.keys
        for key_node, value_node in node.value:
            if key_node.tag == _MERGE_TAG:
                sources = value_node.value if isinstance(value_node, yaml.SequenceNode) else [value_node]
                merged.extend(s for s in sources if isinstance(s, yaml.MappingNode))
                continue
            if key_node.__class__ is not yaml.ScalarNode:
                self.issue("a key must be a plain string", path, key_node.start_mark)
                continue
            key = str(key_node.value)
            mark = key_node.start_mark
            if key in first:
                self.issue(f"{_dotted((*path, key))}: duplicate key '{key}' (first at line {first[key].line + 1})",
                           (*path, key), mark)
                continue
            first[key] = mark
            child = (*path, key)
            keys[child] = (mark.line, mark.column)
            out[key] = self.build(value_node, child)
        for source in merged:  # merged keys never override the mapping's own
            for key, value in self.mapping(source, path).items():
                out.setdefault(key, value)
        return out


def _line_starts(text: str) -> list[int]:
    """The offset where each line starts."""
    if _OTHER_BREAK.search(text) is None:  # only \n: lengths summed in C, no Python step per line
        return list(accumulate(map((1).__add__, map(len, text.split("\n")[:-1])), initial=0))
    return [0, *(m.end() for m in _BREAK.finditer(text))]


def compose(text: str, filename: str = "<string>") -> Composed:
    """Read YAML (or JSON) text into plain data with a source map. Syntax errors become issues."""
    if text.startswith("\ufeff"):
        text = text[1:]
    source = SourceMap(text=text, line_starts=_line_starts(text))
    try:
        # The stubs list PyYAML's own loaders only; ours is assembled from the same parts (see _Loader).
        nodes: Sequence[yaml.Node] = list(yaml.compose_all(text, Loader=_Loader))  # type: ignore[arg-type]
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        problem = " ".join(str(exc.problem or exc.context or "invalid YAML").split())
        line, column = (mark.line + 1, mark.column + 1) if mark is not None else (0, 0)
        return Composed(None, source, [Issue(f"invalid YAML: {problem}", line=line, column=column)])
    except yaml.YAMLError as exc:
        return Composed(None, source, [Issue(f"invalid YAML: {' '.join(str(exc).split())}")])
    if not nodes:
        return Composed(None, source, [Issue("the file is empty", line=1, column=1)])
    if len(nodes) > 1:
        mark = nodes[1].start_mark
        return Composed(None, source, [Issue("one workflow per file (found a second document)",
                                             line=mark.line + 1, column=mark.column + 1)])
    builder = _Builder(source)
    data = builder.build(nodes[0], ())
    return Composed(data, source, builder.issues)
