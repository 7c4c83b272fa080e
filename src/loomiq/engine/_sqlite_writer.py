"""The SQLite store's group-commit writer: writes queued on the event loop's thread, committed in batches
in one ``BEGIN IMMEDIATE`` transaction each, on the loop's thread or on a writer thread.

A batch is written in segments (`_batch.segments`): journal and event rows, claimed submissions and
ends of durable runs with a few set-wide statements per segment (fenced by one read), any other
operation in a savepoint (one refused operation undoes nothing else). A batch commits on the loop's
thread itself when SQLite's write lock is free at once (no thread hop: with ``synchronous=NORMAL`` a
WAL commit does not fsync); otherwise (another process writes, or ``synchronous=FULL``) the writer
thread, which owns the connection while it has batches, waits for the lock (``busy_timeout``) and
resolves the waiting futures with one ``call_soon_threadsafe`` per event loop. See "writes" below.
The store (`_sqlite.SQLiteStore`) opens the connection, migrates and reads.
"""

from __future__ import annotations

import asyncio
import collections
import logging
import sqlite3
import threading
import time
from collections.abc import Awaitable, Mapping, Sequence
from typing import Any

from ..models import ModelResponse
from ..runtime import StepResult
from ..tools import ToolCallRecord
from ._batch import (
    MAX_BATCH,
    STEP,
    Barrier,
    EventRow,
    Failed,
    Item,
    OpItem,
    Segment,
    StepRow,
    Stop,
    end_record,
    fence_rows,
    fresh,
    items_of,
    op_at,
    reset,
    resolve,
    row_at,
    segments,
    settle_ends,
    settle_submits,
    singles,
    submit_record,
)
from ._codec import dumps, step_to_json, tool_entry_to_json
from ._records import FastOp
from ._sqlite_sql import (
    FENCE_MANY,
    FENCE_ONE,
    FINISH,
    INSERT_ATTEMPT,
    INSERT_EVENT,
    INSERT_STEP,
    INSERT_TASK,
    UPDATE_ATTEMPT,
    drive,
)
from ._stmt import Op, Outcome
from .errors import EngineClosed
from .store import Store

logger = logging.getLogger("loomiq.engine")


def _resolve(items: Sequence[tuple[asyncio.Future[Any] | None, Any]]) -> None:
    for fut, value in items:
        resolve(fut, value)


class SQLiteWriter(Store):
    """The writes of `SQLiteStore` (see the module docstring); the store opens `_wconn` and starts
    `_writer` on a thread of its own.

    Args:
        url: the store's URL.
        linger_s: how long a write nobody awaits (an event) may wait to share the next commit.
        inline: commit on the event loop's thread when SQLite's write lock is free.
        busy_timeout_s: how long the writer thread waits for SQLite's write lock.
    """

    def __init__(self, url: str, *, linger_s: float, inline: bool, busy_timeout_s: float) -> None:
        super().__init__(url)
        self.linger_s = linger_s
        # Writes queued on the loop thread, and the flush scheduled for them (see "writes" below).
        self._pending: list[Item] = []
        self._soon: asyncio.Handle | None = None
        self._later: asyncio.TimerHandle | None = None
        self._inline = inline
        # The writer thread's FIFO; `_wake` tells it there is something to do. `_mu` guards the
        # FIFO and `_threaded` (True while the thread has batches: the loop thread then queues behind
        # them instead of committing itself), and is held by an inline commit.
        self._items: collections.deque[Item | Stop] = collections.deque()
        self._wake = threading.Event()
        self._mu = threading.Lock()
        self._threaded = False
        self._busy_timeout_ms = int(busy_timeout_s * 1000)
        self._busy_ms = self._busy_timeout_ms  # the write connection's current busy_timeout
        self._wconn: sqlite3.Connection | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._closed = True

    # -- writes ---------------------------------------------------------------------------------
    #
    # Writes queue on the loop thread (`_pending`) and are committed together by `_flush`: at once
    # (next loop turn) for a write someone awaits, within `linger_s` for one nobody awaits (an event, an
    # end queued by `start_op`), so that those ride along with the next awaited commit. `_flush` commits
    # on the loop thread itself when it can take SQLite's write lock at once (no thread hop, no GIL
    # hand-off: with synchronous=NORMAL a WAL commit does not fsync); when another connection holds
    # the lock, or with synchronous=FULL, the batch goes to the writer thread, which waits for the
    # lock (busy_timeout). Batches stay FIFO: while the thread has batches, later ones queue behind.

    def _put(self, item: Item, loop: asyncio.AbstractEventLoop, urgent: bool) -> None:
        if self._closed:
            raise EngineClosed("the store is closed")
        if loop is not self._loop:
            self._to_thread([item])  # another loop's write (not the store's): straight to the thread
            return
        self._pending.append(item)
        if urgent:
            if self._soon is None:
                self._soon = loop.call_soon(self._flush)
        elif self._soon is None and self._later is None:
            self._later = loop.call_later(self.linger_s, self._flush)

    def _flush(self) -> None:
        """Commit (or hand to the thread) everything queued on the loop thread."""
        self._soon = None
        if self._later is not None:
            self._later.cancel()
            self._later = None
        batch = self._pending
        if not batch:
            return
        self._pending = []
        while len(batch) > MAX_BATCH:
            self._write(batch[:MAX_BATCH])
            batch = batch[MAX_BATCH:]
        self._write(batch)

    def expedite(self) -> None:
        """Commit what is queued at the next loop turn instead of letting it linger."""
        if self._pending and self._soon is None and self._loop is not None:
            self._soon = self._loop.call_soon(self._flush)

    def _write(self, batch: list[Item]) -> None:
        if self._inline and self._mu.acquire(blocking=False):
            try:
                if not self._threaded:
                    conn = self._wconn
                    assert conn is not None
                    if self._busy_ms:
                        conn.execute("PRAGMA busy_timeout = 0")
                        self._busy_ms = 0
                    try:
                        conn.execute("BEGIN IMMEDIATE")
                    except sqlite3.OperationalError as exc:
                        if exc.sqlite_errorcode & 0xFF != sqlite3.SQLITE_BUSY:
                            _resolve([(item.fut, Failed(exc)) for item in batch])
                            return
                        # Another connection writes: the thread waits for the lock (below).
                    else:
                        _resolve(list(zip((item.fut for item in batch), self._commit(batch), strict=True)))
                        return
            finally:
                self._mu.release()
        self._to_thread(batch)

    def _to_thread(self, batch: Sequence[Item | Stop]) -> None:
        with self._mu:
            self._threaded = True
            self._items.extend(batch)
        self._wake.set()

    def _enqueue(self, op: Op[Outcome], fence: str | None, urgent: bool = True,
                 fast: FastOp | None = None) -> asyncio.Future[Outcome]:
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[Outcome] = loop.create_future()
        self._put(OpItem(op, fence, fast, fut, loop), loop, urgent)
        return fut

    def put_step(self, tenant: str, task_id: str, epoch: int, step: StepResult) -> Awaitable[None]:
        """Journal a step in the next batch (see `Store.put_step`)."""
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[None] = loop.create_future()
        row = (task_id, step.key, tenant, epoch, int(step.error is None), step_to_json(step), time.time())
        self._put(StepRow(task_id, epoch, row, fut, loop), loop, True)
        return fut

    def put_tool_entry(self, tenant: str, task_id: str, epoch: int, key: str,
                       value: ModelResponse | ToolCallRecord) -> Awaitable[None]:
        """Journal a tool loop's entry in the next batch (see `Store.put_tool_entry`)."""
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[None] = loop.create_future()
        row = (task_id, key, tenant, epoch, 1, tool_entry_to_json(value), time.time())
        self._put(StepRow(task_id, epoch, row, fut, loop), loop, True)
        return fut

    def put_event_row(self, tenant: str, task_id: str, epoch: int, seq: int, type_: str,
                      data: Mapping[str, Any] | str) -> None:
        """Log a held task's event in the next batch (see `Store.put_event`)."""
        row = (task_id, seq, tenant, epoch, type_, data if type(data) is str else dumps(data), time.time())
        self._put(EventRow(task_id, epoch, row, None, None), asyncio.get_running_loop(), False)

    async def flush(self) -> None:
        """Wait until everything queued so far has committed."""
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[None] = loop.create_future()
        self._put(Barrier(fut, loop), loop, True)
        await fut

    # -- the writer thread ----------------------------------------------------------------------

    def _writer(self) -> None:
        items, wake, mu = self._items, self._wake, self._mu
        conn = self._wconn
        assert conn is not None
        while True:
            wake.wait()
            wake.clear()  # before draining: a put after this point sets it again
            while True:
                batch: list[Item] = []
                stop = False
                with mu:
                    if not items:
                        self._threaded = False  # the loop thread may commit again
                        break
                    while items and len(batch) < MAX_BATCH:
                        item = items.popleft()
                        if isinstance(item, Stop):
                            stop = True
                        else:
                            batch.append(item)
                if batch:
                    if self._busy_ms != self._busy_timeout_ms:
                        conn.execute(f"PRAGMA busy_timeout = {self._busy_timeout_ms}")
                        self._busy_ms = self._busy_timeout_ms
                    try:
                        conn.execute("BEGIN IMMEDIATE")
                    except Exception as exc:  # noqa: BLE001 - every caller of the batch learns why
                        results: list[Any] = [Failed(exc)] * len(batch)
                    else:
                        results = self._commit(batch)
                    by_loop: dict[asyncio.AbstractEventLoop, list[tuple[asyncio.Future[Any], Any]]] = {}
                    for item, value in zip(batch, results, strict=True):
                        fut, loop = item.fut, item.loop
                        if fut is not None and loop is not None:
                            by_loop.setdefault(loop, []).append((fut, value))
                    for loop, done in by_loop.items():
                        try:
                            loop.call_soon_threadsafe(_resolve, done)
                        except RuntimeError:
                            pass  # that loop is closed: nobody is waiting any more
                if stop:
                    with mu:
                        self._threaded = False
                    return


    def _commit(self, batch: list[Item]) -> list[Any]:
        """Write `batch` in the transaction just begun (``BEGIN IMMEDIATE``) and commit; the value or
        `_Failed` of each item.

        The batch is written in segments (`_batch.segments`): the journal and event rows and the
        operations that have a record (`_records.FastOp`) up to the next other operation, with a few
        set-wide statements (`_segment`), then that operation (in a savepoint, so that its failure
        undoes nothing else)."""
        conn = self._wconn
        assert conn is not None
        results: list[Any] = [None] * len(batch)
        nops = 0
        try:
            for seg in segments(batch, split_own_ends=False):
                if isinstance(seg, Segment):
                    self._segment_or_singles(conn, batch, seg, results)
                    nops += len(seg.submits) + len(seg.finishes)
                elif isinstance(batch[seg], OpItem):  # (a barrier has nothing to write)
                    nops += 1
                    self._run_op(conn, batch, seg, results)
            conn.execute("COMMIT")
            self.stats.transactions += 1
            self.stats.ops += nops
        except Exception as exc:  # noqa: BLE001 - the whole batch failed: every caller learns why
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            results = [Failed(exc)] * len(batch)
        return results

    def _segment_or_singles(self, conn: sqlite3.Connection, batch: list[Item], seg: Segment,
                            results: list[Any]) -> None:
        """`_segment` in a savepoint; if it is refused, each of its items on its own (`_batch.singles`):
        the one at fault fails with the reason, the others are written."""
        conn.execute("SAVEPOINT seg")
        try:
            self._segment(conn, batch, seg, results)
        except Exception as exc:  # noqa: BLE001 - handed to the item at fault
            conn.execute("ROLLBACK TO seg")
            conn.execute("RELEASE seg")
            items = items_of(seg)
            if len(items) > 1:
                logger.warning("a write batch was refused (%s); writing its %d items one by one", exc, len(items))
                reset(batch, items, results, exc)
                for one in singles(seg):
                    self._segment_or_singles(conn, batch, one, results)
            else:
                logger.warning("a write was refused: %s", exc)
                results[items[0]] = Failed(exc)
            return
        conn.execute("RELEASE seg")

    @staticmethod
    def _run_op(conn: sqlite3.Connection, batch: list[Item], i: int, results: list[Any]) -> None:
        """Drive the operation of `batch[i]` in a savepoint (unless it ran in a segment then refused:
        its result stays that segment's failure)."""
        op = op_at(batch, i)
        if not fresh(op):
            return
        conn.execute("SAVEPOINT op")
        try:
            results[i] = drive(conn, op)
        except Exception as exc:  # noqa: BLE001 - handed to the awaiting caller
            conn.execute("ROLLBACK TO op")
            results[i] = Failed(exc)
        conn.execute("RELEASE op")

    def _segment(self, conn: sqlite3.Connection, batch: list[Item], seg: Segment, results: list[Any]) -> None:
        """Write a segment (see `_commit`) with a few set-wide statements: the claimed submissions (in a
        savepoint: on an error, such as a task id that exists already, each runs as its operation);
        one read of the state of the tasks the rows and ends name (the fence); then the rows whose
        task runs under the epoch they name, the ends' events with them, and the ends of the tasks
        that still run under the epoch named and that no task depends on. Any other end runs as its
        operation (which refuses it, or promotes the dependents)."""
        listening = self.hub.listening
        submits, rows, finishes = seg.submits, seg.rows, seg.finishes
        events: list[tuple[Any, ...]] = []
        notify: set[str] = set()  # (SQLite has no NOTIFY: followers poll)
        if submits:
            records = [submit_record(batch, k) for k in submits]
            conn.execute("SAVEPOINT fast")
            try:
                conn.executemany(INSERT_TASK, [f.task_row() for f in records])
                conn.executemany(INSERT_ATTEMPT, [(f.task_id, f.tenant, f.holder, f.now) for f in records])
            except Exception:  # noqa: BLE001 - the operations tell which failed, and why
                conn.execute("ROLLBACK TO fast")
                conn.execute("RELEASE fast")
                for k in submits:
                    self._run_op(conn, batch, k, results)
            else:
                conn.execute("RELEASE fast")
                settle_submits(batch, submits, lambda _: True, results, listening, notify)
                for f in records:
                    events.extend(f.event_rows())
        if not rows and not finishes:
            conn.executemany(INSERT_EVENT, events)
            return
        # The fence: a row, or an end, is written only if its task still runs under the epoch it names.
        ids = list({row_at(batch, k).task_id for k in rows}.union(end_record(batch, k).task_id for k in finishes))
        state: dict[str, tuple[int, int, str, int]] = {}
        for start in range(0, len(ids), 500):
            chunk = ids[start : start + 500]
            if len(chunk) == 1:
                sql = FENCE_ONE
            else:
                sql = FENCE_MANY.format(marks=",".join("?" * len(chunk)))
            for tid, epoch, attempts, tenant, dependents in conn.execute(sql, chunk):
                state[tid] = (epoch, attempts, tenant, dependents)
        steps: list[tuple[Any, ...]] = []
        for row in fence_rows(batch, rows, {tid: got[0] for tid, got in state.items()}, results):
            (steps if row.kind == STEP else events).append(row.values)
        written = len(steps) + len(events)
        ends, attempts_rows = [], []
        ended: set[str] = set()
        for k in finishes:
            fin = end_record(batch, k)
            got = state.get(fin.task_id)
            if got is None or got[0] != fin.epoch or got[3]:
                continue  # lease lost, or dependents to promote: the operation decides
            ended.add(fin.task_id)
            ends.append((*fin.task_row()[2:], fin.task_id, fin.epoch))
            attempts_rows.append((fin.status, fin.now, fin.error, fin.task_id, got[1]))
            events.append((fin.task_id, fin.seq, got[2], fin.epoch, "task_finished", fin.event_json, fin.now))
        slow = settle_ends(batch, finishes, ended.__contains__, results, listening, notify)
        if steps:
            conn.executemany(INSERT_STEP, steps)
        if events:
            conn.executemany(INSERT_EVENT, events)
        if ends:
            conn.executemany(FINISH, ends)
            conn.executemany(UPDATE_ATTEMPT, attempts_rows)
        self.stats.rows += written
        for k in slow:
            self._run_op(conn, batch, k, results)
