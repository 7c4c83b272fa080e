"""Google-style docstrings read for a tool's description and its parameters' descriptions (pure)."""

from __future__ import annotations

import inspect
import re

_ARGS_HEADERS = frozenset({"args", "arguments", "parameters", "params"})
_SECTION = re.compile(r"^([A-Za-z][A-Za-z ]*):\s*$")
_PARAM = re.compile(r"^\*{0,2}(\w+)\s*(?:\([^)]*\))?\s*:\s*(.*)$")


def parse_docstring(doc: str | None) -> tuple[str, dict[str, str]]:
    """The summary (everything before the first section such as ``Args:`` or ``Returns:``) and the
    description of each parameter listed under ``Args:``, continuation lines joined.

    >>> parse_docstring('''Add two numbers.

    ...     Args:
    ...         a: the first.
    ...         b (int): the second,
    ...             never negative.
    ...     Returns:
    ...         The sum.''')
    ('Add two numbers.', {'a': 'the first.', 'b': 'the second, never negative.'})
    """
    if not doc:
        return "", {}
    lines = inspect.cleandoc(doc).splitlines()
    summary: list[str] = []
    params: dict[str, str] = {}
    section: str | None = None
    current: str | None = None
    param_indent: int | None = None
    for line in lines:
        stripped = line.strip()
        header = _SECTION.match(line)
        if header and not line[:1].isspace():
            section = header.group(1).strip().lower()
            current, param_indent = None, None
            continue
        if section is None:
            summary.append(line)
            continue
        if section not in _ARGS_HEADERS or not stripped:
            continue
        indent = len(line) - len(line.lstrip())
        match = _PARAM.match(stripped)
        if match and (param_indent is None or indent <= param_indent):
            param_indent = indent
            current = match.group(1)
            params[current] = match.group(2).strip()
        elif current is not None:
            params[current] = f"{params[current]} {stripped}".strip()
    return "\n".join(summary).strip(), params
