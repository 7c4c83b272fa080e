"""What a store's group-commit writer queues, how a batch of it is cut into segments, and how the
outcome of a segment's statements is handed to each item; shared by the SQLite and PostgreSQL
writers, which only execute the SQL.

A queued item is one of the slotted classes below: `StepRow` (a journal row), `EventRow` (an event
row), `OpItem` (an operation, with the record of its fast path when it has one), `Barrier`
(`flush`), `Stop` (the store closes). Each carries the future its caller awaits (None when nobody
does) and, on SQLite, the event loop that future belongs to.
"""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import Callable, Mapping, Sequence
from typing import Any, cast

from ._records import FastOp, FinishFinal, SubmitClaimed
from ._stmt import Op, Outcome
from .errors import LeaseLost

STEP, EVENT, OP, BARRIER, STOP = range(5)
MAX_BATCH = 4096
"""The most items one commit takes."""


class Row:
    """A journal or event row of a held task: written only while `task_id` runs under `epoch`."""

    __slots__ = ("epoch", "fut", "loop", "task_id", "values")
    kind: int

    def __init__(self, task_id: str, epoch: int, values: tuple[Any, ...],
                 fut: asyncio.Future[Any] | None, loop: asyncio.AbstractEventLoop | None) -> None:
        self.task_id = task_id
        self.epoch = epoch
        self.values = values
        """The row's columns (`_STEP_COLUMNS` / `_EVENT_COLUMNS` order: task_id, key or seq, tenant...)."""
        self.fut = fut
        self.loop = loop


class StepRow(Row):
    __slots__ = ()
    kind = STEP


class EventRow(Row):
    __slots__ = ()
    kind = EVENT


class OpItem:
    """An operation driven on the writer's connection; `fast` is its record when a segment may write it
    set-wide (a claimed submission, the end of a run)."""

    __slots__ = ("fence", "fut", "loop", "op", "fast")
    kind = OP

    def __init__(self, op: Op[Outcome], fence: str | None, fast: FastOp | None,
                 fut: asyncio.Future[Any] | None, loop: asyncio.AbstractEventLoop | None) -> None:
        self.op = op
        self.fence = fence
        self.fast = fast
        self.fut = fut
        self.loop = loop


class Barrier:
    """`flush`: resolved once everything queued before it has committed."""

    __slots__ = ("fut", "loop")
    kind = BARRIER

    def __init__(self, fut: asyncio.Future[Any], loop: asyncio.AbstractEventLoop | None) -> None:
        self.fut = fut
        self.loop = loop


class Stop:
    """The store closes: the writer commits what is before it and ends."""

    __slots__ = ()
    kind = STOP
    fut = None
    loop = None


Item = Row | OpItem | Barrier
"""What a batch holds (a `Stop` never reaches one)."""


class Failed:
    """A batch result that is an error (the awaiting caller gets it raised)."""

    __slots__ = ("exc",)

    def __init__(self, exc: BaseException) -> None:
        self.exc = exc


def resolve(fut: asyncio.Future[Any] | None, value: Any) -> None:
    """Hand `value` (or a `Failed`'s error) to `fut`, unless nobody waits or it is done."""
    if fut is None or fut.done():
        return
    if type(value) is Failed:
        fut.set_exception(value.exc)
    else:
        fut.set_result(value)


class Segment:
    """Indexes into a batch of what one segment writes set-wide: the claimed submissions, the journal
    and event rows, and the ends of runs that have a record (`_records.FastOp`)."""

    __slots__ = ("finishes", "rows", "submits")

    def __init__(self, submits: list[int], rows: list[int], finishes: list[int]) -> None:
        self.submits = submits
        self.rows = rows
        self.finishes = finishes


def segments(batch: Sequence[Item], *, split_own_ends: bool) -> list[Segment | int]:
    """`batch` cut in order into `Segment`s, written set-wide, and the index of each other item (an
    operation driven on its own, or a barrier).

    A segment stops before a row that would change places with its task's submission or end (the
    submissions are written first, then the rows, then the ends: every row is fenced as at its
    place). With `split_own_ends` it also stops before the end of a task it submits (for a dialect
    whose segment is one statement, which does not see the rows it inserts)."""
    out: list[Segment | int] = []
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
            if isinstance(item, Row):
                tid = item.task_id
                if tid in ended:
                    break
                rows.append(j)
                row_tasks.add(tid)
            elif isinstance(item, OpItem) and item.fast is not None:
                fast = item.fast
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
            out.append(Segment(submits, rows, finishes))
            i = j
        else:
            out.append(i)
            i += 1
    return out


def singles(seg: Segment) -> list[Segment]:
    """`seg`'s items one segment each, in the order a segment writes them (submissions, rows, ends):
    when a segment is refused as a whole (a row no database can store, a constraint), each item is
    written on its own, so that only the one at fault fails (with the reason) and the others commit."""
    return ([Segment([k], [], []) for k in seg.submits] + [Segment([], [k], []) for k in seg.rows]
            + [Segment([], [], [k]) for k in seg.finishes])


def items_of(seg: Segment) -> list[int]:
    """The batch indexes `seg` writes."""
    return [*seg.submits, *seg.rows, *seg.finishes]


def reset(batch: Sequence[Item], items: Sequence[int], results: list[Any], exc: Exception) -> None:
    """Before a refused segment's items are written one by one: forget what the refused attempt set,
    except for an operation it drove (it cannot run again): that one fails with `exc`."""
    for k in items:
        item = batch[k]
        results[k] = Failed(exc) if isinstance(item, OpItem) and not fresh(item.op) else None


def fresh(op: Op[Any]) -> bool:
    """Whether `op` has not started (an operation driven in a segment that was then refused cannot run again)."""
    return inspect.getgeneratorstate(op) == inspect.GEN_CREATED


# -- what a segment's statements decided, handed to each item (the same on both dialects) ----------


def submit_record(batch: Sequence[Item], k: int) -> SubmitClaimed:
    """The record of the claimed submission at `batch[k]` (a segment's `submits` index)."""
    return cast(SubmitClaimed, cast(OpItem, batch[k]).fast)


def end_record(batch: Sequence[Item], k: int) -> FinishFinal:
    """The record of the end at `batch[k]` (a segment's `finishes` index)."""
    return cast(FinishFinal, cast(OpItem, batch[k]).fast)


def row_at(batch: Sequence[Item], k: int) -> Row:
    """The row at `batch[k]` (a segment's `rows` index)."""
    return cast(Row, batch[k])


def op_at(batch: Sequence[Item], k: int) -> Op[Outcome]:
    """The operation at `batch[k]` (an operation's index)."""
    return cast(OpItem, batch[k]).op


def settle_submits(batch: Sequence[Item], submits: Sequence[int], inserted: Callable[[str], bool],
                   results: list[Any], listening: Callable[[str], bool], notify: set[str]) -> list[int]:
    """Set the outcome of each claimed submission that was `inserted`; the others (an id that exists
    already) are returned: their operations run, and decide."""
    left: list[int] = []
    for k in submits:
        f = submit_record(batch, k)
        if inserted(f.task_id):
            results[k] = f.outcome(listening)
            notify.add(f.task_id)
        else:
            left.append(k)
    return left


def fence_rows(batch: Sequence[Item], rows: Sequence[int], epochs: Mapping[str, int], results: list[Any],
               notify: set[str] | None = None) -> list[Row]:
    """The rows of `rows` whose task runs under the epoch they name (`epochs`: task id -> its running
    epoch); every other row fails with `LeaseLost`. Tasks whose event log grows are added to `notify`."""
    out: list[Row] = []
    for k in rows:
        row = row_at(batch, k)
        if epochs.get(row.task_id) != row.epoch:
            results[k] = Failed(LeaseLost(f"task {row.task_id}: lease epoch {row.epoch} was taken over"))
            continue
        out.append(row)
        if notify is not None and row.kind == EVENT:
            notify.add(row.task_id)
    return out


def settle_ends(batch: Sequence[Item], finishes: Sequence[int], ended: Callable[[str], bool], results: list[Any],
                listening: Callable[[str], bool], notify: set[str]) -> list[int]:
    """Set the outcome of each end that was written (`ended`); the others (lease lost, or dependents to
    promote) are returned: their operations run, and decide."""
    left: list[int] = []
    for k in finishes:
        e = end_record(batch, k)
        if ended(e.task_id):
            results[k] = e.outcome(listening)
            notify.add(e.task_id)
        else:
            left.append(k)
    return left
