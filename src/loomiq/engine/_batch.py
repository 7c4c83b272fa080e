"""What a store's group-commit writer queues, and how a batch of it is cut into segments; shared by
the SQLite and PostgreSQL writers.

A queued item is a tuple whose first field is its kind: ``(_STEP, task_id, epoch, row, future)``,
``(_EVENT, task_id, epoch, row, None)``, ``(_OP, op, fence, fast, future)``, ``(_BARRIER, None, "*",
None, future)`` or ``(_STOP,)``.
"""

from __future__ import annotations

from typing import Any

from ._ops import SubmitClaimed

STEP, EVENT, OP, BARRIER, STOP = range(5)
MAX_BATCH = 4096
"""The most items one commit takes."""


def segments(batch: list[tuple[Any, ...]], *, split_own_ends: bool) -> list[tuple[Any, ...]]:
    """`batch` cut in order into segments ``(submits, rows, finishes)`` (indexes of the claimed
    submissions, the journal and event rows, and the ends of runs that have a record,
    `_ops.FastOp`), written set-wide, and ``(None, i)`` for each other item (an operation driven on
    its own, or a barrier).

    A segment stops before a row that would change places with its task's submission or end (the
    submissions are written first, then the rows, then the ends: every row is fenced as at its
    place). With `split_own_ends` it also stops before the end of a task it submits (for a dialect
    whose segment is one statement, which does not see the rows it inserts)."""
    out: list[tuple[Any, ...]] = []
    n = len(batch)
    i = 0
    while i < n:
        submits: list[int] = []
        rows: list[int] = []
        finishes: list[int] = []
        row_tasks: set[str] = set()
        ended: set[str] = set()
        submitted: set[str] = set()
        j = i
        while j < n:
            item = batch[j]
            kind = item[0]
            if kind <= EVENT:
                if item[1] in ended:
                    break
                rows.append(j)
                row_tasks.add(item[1])
            elif kind == OP and item[3] is not None:
                fast = item[3]
                tid = fast.task_id
                if tid in ended:
                    break
                if type(fast) is SubmitClaimed:
                    if tid in row_tasks:
                        break
                    submits.append(j)
                    submitted.add(tid)
                else:
                    if split_own_ends and tid in submitted:
                        break
                    finishes.append(j)
                    ended.add(tid)
            else:
                break
            j += 1
        if j > i:
            out.append((submits, rows, finishes))
            i = j
        else:
            out.append((None, i))
            i += 1
    return out
