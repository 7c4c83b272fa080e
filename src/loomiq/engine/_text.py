"""Text that no database can store: a NUL character (PostgreSQL's text refuses it) and a lone surrogate
(U+D800-U+DFFF: not encodable as UTF-8, so neither SQLite's driver nor PostgreSQL's takes it). The
engine refuses such text where it enters (`check_text`), naming the field, instead of accepting a
task whose rows can then never be written."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from .errors import InvalidTask

_UNSTORABLE = re.compile("[\x00\ud800-\udfff]")


def unstorable(text: str) -> str | None:
    """Why `text` cannot be stored (its first bad character, and where), or None when it can."""
    found = _UNSTORABLE.search(text)
    if found is None:
        return None
    char = found.group()
    what = "a NUL character (U+0000)" if char == "\x00" else f"a lone surrogate (U+{ord(char):04X})"
    return f"{what} at character {found.start()}"


def check_text(field: str, value: Any) -> None:
    """Raise `InvalidTask` naming `field` (``context.user[2]`` for nested values) when `value`, a string
    or JSON-like data, holds text that cannot be stored (see the module docstring)."""
    if isinstance(value, str):
        why = unstorable(value)
        if why is not None:
            raise InvalidTask(f"{field} contains {why}, which cannot be stored; remove it", field=field)
    elif isinstance(value, Mapping):
        for k, v in value.items():
            check_text(f"{field} (a key)", k)
            check_text(f"{field}.{k}", v)
    elif isinstance(value, list | tuple):
        for i, v in enumerate(value):
            check_text(f"{field}[{i}]", v)
