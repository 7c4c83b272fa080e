"""Cursor pagination over an offset-paged list: no duplicate on inserts, no gap on removals."""

from __future__ import annotations

import base64
from dataclasses import dataclass

import pytest
from hypothesis import given
from hypothesis import strategies as st

from loomiq.api._pagination import MAX_OFFSET, Cursor, paginate


@dataclass(frozen=True)
class Item:
    id: str
    created_at: float


class Listing:
    """A list ordered like the task store (newest first, ties by id) that tests can change."""

    def __init__(self, items: list[Item]) -> None:
        self.items = items
        self.fetches = 0

    def ordered(self) -> list[Item]:
        return sorted(self.items, key=lambda i: (-i.created_at, i.id))

    async def fetch(self, offset: int, count: int) -> list[Item]:
        self.fetches += 1
        return self.ordered()[offset:offset + count]


def items(n: int, start: float = 0.0) -> list[Item]:
    return [Item(f"t{i:03d}", start + i) for i in range(n)]


async def collect(listing: Listing, limit: int, between=None) -> list[str]:  # noqa: ANN001
    seen: list[str] = []
    cursor = None
    while True:
        page, cursor = await paginate(listing.fetch, limit, cursor)
        seen += [i.id for i in page]
        if cursor is None:
            return seen
        if between is not None:
            between(listing)


async def test_pages_cover_the_list_once() -> None:
    listing = Listing(items(7))
    assert await collect(listing, 3) == [i.id for i in listing.ordered()]


async def test_inserts_on_top_cause_no_duplicate() -> None:
    listing = Listing(items(7))
    expected = [i.id for i in listing.ordered()]
    counter = iter(range(100, 200))

    def insert(lst: Listing) -> None:
        lst.items.append(Item(f"new{next(counter)}", 1000.0 + len(lst.items)))

    assert await collect(listing, 2, insert) == expected


async def test_removals_before_the_cursor_cause_no_gap() -> None:
    listing = Listing(items(20))
    expected = [i.id for i in listing.ordered()]
    removed: list[str] = []

    def remove_seen(lst: Listing) -> None:
        # A filtered list loses items the client already saw (e.g. queued tasks start running).
        head = lst.ordered()[0]
        lst.items.remove(head)
        removed.append(head.id)

    seen = await collect(listing, 3, remove_seen)
    assert seen == expected


async def test_ties_on_created_at_are_ordered_by_id() -> None:
    listing = Listing([Item(f"t{i}", 5.0) for i in range(6)])
    assert await collect(listing, 4) == [f"t{i}" for i in range(6)]


def test_cursor_round_trip_and_garbage() -> None:
    cursor = Cursor(1234.5, "abc", 7)
    assert Cursor.decode(cursor.encode()) == cursor
    for garbage in ("", "nonsense", "W10", Cursor(1.0, "x", 1).encode()[:-3] + "!!!"):
        with pytest.raises(ValueError):
            Cursor.decode(garbage)


def _raw(text: str) -> str:
    return base64.urlsafe_b64encode(text.encode()).rstrip(b"=").decode()


@pytest.mark.parametrize(
    "forged",
    [
        *(f'[1.5,"x",{n}]' for n in ("-1", str(2**31), str(2**63), str(10**23), "1.5", "true", "NaN")),
        *(f'[{n},"x",0]' for n in ("-1", str(2**63), str(10**23), "1e400", "-1e400", "NaN", "true")),
    ],
)
def test_cursor_numbers_out_of_bounds_are_refused(forged: str) -> None:
    assert Cursor.decode(_raw('[1.5,"x",0]')) == Cursor(1.5, "x", 0)
    assert Cursor.decode(_raw(f'[{2**31},"x",{MAX_OFFSET}]')) == Cursor(2**31, "x", MAX_OFFSET)
    with pytest.raises(ValueError, match="not a cursor"):
        Cursor.decode(_raw(forged))


@given(
    n=st.integers(0, 30),
    limit=st.integers(1, 8),
    ops=st.lists(st.sampled_from(["insert", "remove_seen", "none"]), max_size=20),
)
async def test_property_every_original_unremoved_item_once(n: int, limit: int, ops: list[str]) -> None:
    listing = Listing(items(n))
    original = [i.id for i in listing.ordered()]
    plan = iter(ops)
    removed: set[str] = set()
    seen: list[str] = []
    cursor = None
    serial = iter(range(10_000))
    while True:
        page, cursor = await paginate(listing.fetch, limit, cursor)
        seen += [i.id for i in page]
        if cursor is None:
            break
        op = next(plan, "none")
        if op == "insert":
            listing.items.append(Item(f"new{next(serial)}", 10_000.0 + next(serial)))
        elif op == "remove_seen" and seen:
            victim = next((i for i in listing.items if i.id == seen[0]), None)
            if victim is not None:
                listing.items.remove(victim)
                removed.add(victim.id)
    assert len(seen) == len(set(seen))
    assert [i for i in seen if not i.startswith("new")] == original
