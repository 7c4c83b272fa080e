"""Queue decisions as pure functions over data: claim order with aging, dependency cycles, and what
to do after a run. No I/O and no event loop here, so these are tested directly (and by hypothesis).

Aging. A task of priority level ``p`` (critical 0 ... low 3) that became ready at ``t`` has, at time
``now``, the effective rank ``p - (now - t) / aging_s``: it gains one level per `aging_s` seconds
waited, so a low task waiting ``3 * aging_s`` ranks with a fresh critical one. Ordering tasks by that
rank is the same, for every ``now``, as ordering them by ``t + p * aging_s``; that is the `sort_key`
stored with each queued task, so the database claims in rank order from a plain index.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Literal

from .task import PRIORITY_LEVELS, TaskRetry


def sort_key(priority: str, ready_at: float, aging_s: float) -> float:
    """The claim order key of a task that became ready at `ready_at` (smaller is claimed first)."""
    return ready_at + PRIORITY_LEVELS[priority] * aging_s


def effective_rank(priority: str, waited_s: float, aging_s: float) -> float:
    """The priority level after aging (smaller starts first); may go below 0 for a long wait."""
    return PRIORITY_LEVELS[priority] - waited_s / aging_s


@dataclass(frozen=True, slots=True)
class QueuedItem:
    """What the claim order looks at: a task's id, priority, when it became ready, and a tie-break."""

    id: str
    priority: str
    ready_at: float
    created_seq: int = 0


def claim_order(items: Iterable[QueuedItem], now: float, aging_s: float) -> list[str]:
    """Ids in the order workers claim them at `now`: lowest effective rank first; equal ranks in
    submission order. Only items ready at `now` are included."""
    ready = [i for i in items if i.ready_at <= now]
    ready.sort(key=lambda i: (sort_key(i.priority, i.ready_at, aging_s), i.created_seq))
    return [i.id for i in ready]


def find_cycle(start: str, deps: Sequence[str], edges: Callable[[str], Iterable[str]]) -> list[str] | None:
    """The cycle through `start` if it were to depend on `deps`, as a path ``[start, ..., start]``;
    None when there is none. `edges(id)` gives the ids that `id` depends on."""
    stack: list[tuple[str, list[str]]] = [(d, [start, d]) for d in deps]
    seen: set[str] = set()
    while stack:
        node, path = stack.pop()
        if node == start:
            return path
        if node in seen:
            continue
        seen.add(node)
        stack.extend((n, [*path, n]) for n in edges(node))
    return None


def find_cycle_in(graph: Mapping[str, Sequence[str]]) -> list[str] | None:
    """Any cycle in a whole dependency graph (id -> ids it depends on), or None."""
    for start, deps in graph.items():
        cycle = find_cycle(start, deps, lambda n: graph.get(n, ()))
        if cycle is not None:
            return cycle
    return None


Decision = tuple[Literal["finish"], str, bool] | tuple[Literal["retry"], float]


def after_run(status: str, failures_before: int, retry: TaskRetry) -> Decision:
    """What to do with a task whose run ended with `status`.

    Returns ``("finish", status, dead)`` or ``("retry", delay_s)``. Only ``failed`` runs are retried;
    `dead` is True for a failed task whose attempts are spent.
    """
    if status != "failed":
        return ("finish", status, False)
    delay = retry.delay(failures_before + 1)
    if delay is None:
        return ("finish", "failed", True)
    return ("retry", delay)
