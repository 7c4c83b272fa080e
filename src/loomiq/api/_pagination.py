"""Cursor pagination of task lists, over a store that pages by offset.

A cursor names the last task a client has seen (its ``created_at`` and id, in the list's order:
newest first, ties by id) plus a hint of its offset. The next page is every task strictly after that
task, so tasks submitted meanwhile (which go on top) cause no duplicate, and tasks that leave a
filtered list cause no gap: reading starts a margin before the hinted offset and goes back to the
start when even that margin is past the cursor. Pure apart from the `fetch` it is given.
"""

from __future__ import annotations

import base64
import binascii
import json
import math
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Protocol, TypeVar


class Ordered(Protocol):
    """What pagination reads of an item."""

    @property
    def id(self) -> str: ...  # noqa: D102

    @property
    def created_at(self) -> float: ...  # noqa: D102


T = TypeVar("T", bound=Ordered)

MAX_OFFSET = 2**31 - 1
"""The largest offset a cursor may carry: far past any list, well inside what both databases take."""


@dataclass(frozen=True, slots=True)
class Cursor:
    """A position in a list: after the item (`created_at`, `item_id`), found near `offset`."""

    created_at: float
    item_id: str
    offset: int

    def encode(self) -> str:
        """The opaque string clients send back."""
        raw = json.dumps([self.created_at, self.item_id, self.offset], separators=(",", ":")).encode()
        return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()

    @classmethod
    def decode(cls, text: str) -> Cursor:
        """Parse a cursor. Raises `ValueError` for anything this module did not produce."""
        try:
            created_at, item_id, offset = json.loads(base64.urlsafe_b64decode(text + "=" * (-len(text) % 4)))
        except (binascii.Error, ValueError, TypeError):
            raise ValueError("not a cursor from this API") from None
        # Bounded here, before any number reaches a query: an offset of 10^23 overflowed SQLite's
        # integers and PostgreSQL's bigint (a 500), and a non-finite time breaks the ordering.
        if (
            isinstance(created_at, bool) or not isinstance(created_at, int | float)
            or not math.isfinite(created_at) or not 0 <= created_at <= 2**53
            or not isinstance(item_id, str)
            or isinstance(offset, bool) or not isinstance(offset, int) or not 0 <= offset <= MAX_OFFSET
        ):
            raise ValueError("not a cursor from this API")
        return cls(float(created_at), item_id, offset)

    def precedes(self, item: Ordered) -> bool:
        """True when `item` comes after this position (newest first, ties by id)."""
        return item.created_at < self.created_at or (item.created_at == self.created_at and item.id > self.item_id)


async def paginate(
    fetch: Callable[[int, int], Awaitable[list[T]]], limit: int, cursor: Cursor | None
) -> tuple[list[T], Cursor | None]:
    """One page of at most `limit` items after `cursor`, and the cursor of the next page (None at the
    end). `fetch(offset, count)` reads the list as the store orders it."""
    start = 0 if cursor is None else max(0, cursor.offset - limit)
    while True:
        found: list[tuple[int, T]] = []
        position = start
        size = limit + 1 + (0 if cursor is None else cursor.offset - start)
        restart = False
        while len(found) <= limit:
            rows = await fetch(position, size)
            if cursor is not None and position == start and start > 0 and rows and cursor.precedes(rows[0]):
                restart = True  # items before the cursor left the list: the margin was not enough
                break
            found += [(position + i, row) for i, row in enumerate(rows) if cursor is None or cursor.precedes(row)]
            if len(rows) < size:
                break
            position += len(rows)
        if restart:
            start = 0
            continue
        page = found[:limit]
        if len(found) > limit and page:
            offset, last = page[-1]
            return [row for _, row in page], Cursor(last.created_at, last.id, offset + 1)
        return [row for _, row in page], None
