"""Which tool call of a model turn waits for which: a pure function over the calls' footprints.

The model asks for calls in an order. Two calls conflict when one writes what the other reads or
writes (`Footprint.conflicts_with`); a call waits for every earlier call it conflicts with, and for
nothing else. Running each call once those it waits for have finished gives the same result as
running all of them one by one in the model's order: two conflicting calls keep their order, and
calls that do not conflict touch disjoint resources, so their relative order cannot be observed.
"""

from __future__ import annotations

from collections.abc import Sequence

from .base import Footprint


def schedule(footprints: Sequence[Footprint]) -> tuple[tuple[int, ...], ...]:
    """For each call, in model order, the indexes of the earlier calls it must wait for."""
    waits: list[tuple[int, ...]] = []
    for i, mine in enumerate(footprints):
        if not (mine.reads or mine.writes or mine.exclusive):
            # A call touching nothing shared waits only for exclusive calls before it.
            waits.append(tuple(j for j in range(i) if footprints[j].exclusive))
            continue
        waits.append(tuple(j for j in range(i) if mine.conflicts_with(footprints[j])))
    return tuple(waits)


def critical_path(waits: Sequence[Sequence[int]], durations: Sequence[float]) -> float:
    """How long the turn takes when every call takes `durations[i]` and runs as soon as the calls it
    waits for are done (the longest chain of waits)."""
    finish: list[float] = []
    for i, before in enumerate(waits):
        start = max((finish[j] for j in before), default=0.0)
        finish.append(start + durations[i])
    return max(finish, default=0.0)
