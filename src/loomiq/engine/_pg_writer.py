"""The PostgreSQL store's group-commit writer: a coroutine that owns one connection, takes everything
queued (journal rows, events, operations) and writes it in segments (`_batch.segments`).

A segment (claimed submissions, journal and event rows, ends of durable runs) is one statement
(`_pg_sql.segment_sql`, which locks the rows' tasks ``FOR SHARE`` so that a concurrent takeover
waits for it or fences it); any other operation is driven in a savepoint. A batch that is one
segment (what durable runs queue) is one statement in one round trip, its NOTIFY inside it; any
other is one transaction, notified with its COMMIT. ``synchronous_commit`` is left as it is (on:
every commit waits for its WAL flush; group commit shares one among the batch).
"""

from __future__ import annotations

import asyncio
import collections
import logging
import time
from abc import abstractmethod
from collections.abc import Awaitable, Mapping
from typing import Any

import asyncpg

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
from ._pg_sql import chunks, drive, is_lost, literal, segment_sql, unavailable
from ._records import FastOp
from ._stmt import Op, Outcome
from .errors import EngineClosed, StoreUnavailable
from .store import Store

logger = logging.getLogger("loomiq.engine")


class PostgresWriter(Store):
    """The writes of `PostgresStore` (see the module docstring); the store provides the connection."""

    linger_s: float

    def __init__(self, url: str) -> None:
        super().__init__(url)
        self._items: collections.deque[Item | Stop] = collections.deque()
        self._ready = asyncio.Event()
        self._later: asyncio.TimerHandle | None = None
        self._closed = True

    @abstractmethod
    async def _writer_conn(self) -> asyncpg.Connection:
        """The writer's connection, reconnected if it was lost (`StoreUnavailable` if that fails)."""

    @abstractmethod
    def _drop_writer(self) -> None:
        """Forget the writer's connection (the next batch reconnects)."""

    # A write someone awaits (a journal row, an operation, a barrier) wakes the writer at once; one
    # nobody awaits (an event, an end queued by `start_op`) waits up to `linger_s` for the next
    # awaited write, so that it shares its commit (a commit costs an fsync).

    def _put(self, item: Item, urgent: bool) -> None:
        if self._closed:
            raise EngineClosed("the store is closed")
        self._items.append(item)
        if urgent:
            self._ready.set()
        elif self._later is None and not self._ready.is_set():
            self._later = asyncio.get_running_loop().call_later(self.linger_s, self._ready.set)

    def expedite(self) -> None:
        """Commit what is queued without waiting for the linger of writes nobody awaits."""
        if self._items:
            self._ready.set()

    def _enqueue(self, op: Op[Outcome], fence: str | None, urgent: bool = True,
                 fast: FastOp | None = None) -> asyncio.Future[Outcome]:
        fut: asyncio.Future[Outcome] = asyncio.get_running_loop().create_future()
        self._put(OpItem(op, fence, fast, fut, None), urgent)
        return fut

    def put_step(self, tenant: str, task_id: str, epoch: int, step: StepResult) -> Awaitable[None]:
        """Journal a step in the next batch (see `Store.put_step`)."""
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        row = (task_id, step.key, tenant, epoch, int(step.error is None), step_to_json(step), time.time())
        self._put(StepRow(task_id, epoch, row, fut, None), True)
        return fut

    def put_tool_entry(self, tenant: str, task_id: str, epoch: int, key: str,
                       value: ModelResponse | ToolCallRecord) -> Awaitable[None]:
        """Journal a tool loop's entry in the next batch (see `Store.put_tool_entry`)."""
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        row = (task_id, key, tenant, epoch, 1, tool_entry_to_json(value), time.time())
        self._put(StepRow(task_id, epoch, row, fut, None), True)
        return fut

    def put_event_row(self, tenant: str, task_id: str, epoch: int, seq: int, type_: str,
                      data: Mapping[str, Any] | str) -> None:
        """Log a held task's event in the next batch (see `Store.put_event`)."""
        row = (task_id, seq, tenant, epoch, type_, data if type(data) is str else dumps(data), time.time())
        self._put(EventRow(task_id, epoch, row, None, None), False)

    async def flush(self) -> None:
        """Wait until everything queued so far has committed."""
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._put(Barrier(fut, None), True)
        await fut

    def _stop_writer(self) -> None:
        self._items.append(Stop())
        self._ready.set()
        if self._later is not None:
            self._later.cancel()
            self._later = None

    async def _writer(self) -> None:
        items = self._items
        while True:
            await self._ready.wait()
            self._ready.clear()
            if self._later is not None:
                self._later.cancel()
                self._later = None
            batch: list[Item] = []
            stop = False
            while items and len(batch) < MAX_BATCH:
                item = items.popleft()
                if isinstance(item, Stop):
                    stop = True
                else:
                    batch.append(item)
            if batch:
                await self._commit(batch)
            if stop:
                if items:  # (nothing is queued after a stop; defensively commit it all the same)
                    self._ready.set()
                    items.append(Stop())
                    continue
                return
            if len(batch) >= MAX_BATCH:
                self._ready.set()

    async def _commit(self, batch: list[Item]) -> None:
        """Write `batch`, in segments as on SQLite (`SQLiteWriter._commit`): each segment (claimed
        submissions, journal and event rows, ends) in one statement (`_write_rows`), then the next other
        operation.

        A batch that is one segment (what durable runs queue) is that one statement and nothing else: no
        BEGIN, no COMMIT, the NOTIFY inside it; a single statement is atomic, and no transaction stays
        open across round trips. Any other batch is one transaction, each other operation in a
        savepoint when it shares the batch, the NOTIFY sent with the COMMIT."""
        results: list[Any] = [None] * len(batch)
        segs = segments(batch, split_own_ends=True)
        conn = None
        try:
            conn = await self._writer_conn()
            first = segs[0]
            if len(segs) == 1 and isinstance(first, Segment):
                left = await self._write_alone(conn, batch, first, results)
                self.stats.transactions += 1
                self.stats.ops += len(first.submits) + len(first.finishes)
                for k in left:  # each in a transaction of its own
                    await self._op_alone(conn, batch, k, results)
            elif len(batch) == 1 and isinstance(batch[0], OpItem):
                await self._op_alone(conn, batch, 0, results)
            else:
                await self._transaction(conn, batch, segs, results)
        except StoreUnavailable as exc:
            results = [Failed(exc)] * len(batch)
        except Exception as exc:  # noqa: BLE001 - the whole batch failed: every caller learns why
            if is_lost(exc, conn):  # its outcome is unknown (it may have committed): the next batch reconnects
                logger.warning("the PostgreSQL writer lost its connection: %s", exc)
                self._drop_writer()
                exc = unavailable(exc)
            else:
                logger.warning("a write batch failed: %s", exc)
            results = [Failed(exc)] * len(batch)
        for item, value in zip(batch, results, strict=True):
            resolve(item.fut, value)

    async def _transaction(self, conn: asyncpg.Connection, batch: list[Item], segs: list[Segment | int],
                           results: list[Any]) -> None:
        notify: set[str] = set()
        nops = 0
        await conn.execute("BEGIN")
        try:
            for seg in segs:
                if isinstance(seg, Segment):
                    nops += len(seg.submits) + len(seg.finishes)
                    for k in await self._write_in_transaction(conn, batch, seg, results, notify):
                        await self._run_op(conn, batch, k, results, notify)
                elif isinstance(batch[seg], OpItem):  # (a barrier has nothing to write)
                    nops += 1
                    await self._run_op(conn, batch, seg, results, notify)
        except BaseException:
            if not conn.is_closed():
                await conn.execute("ROLLBACK")
            raise
        await conn.execute(self._commit_sql(notify))
        self.stats.transactions += 1
        self.stats.ops += nops

    async def _write_alone(self, conn: asyncpg.Connection, batch: list[Item], seg: Segment,
                           results: list[Any]) -> list[int]:
        """`_write_rows` as a statement of its own; if it is refused, each of the segment's items on its
        own (`_batch.singles`): the one at fault fails with the reason, the others are written."""
        try:
            return await self._write_rows(conn, batch, seg, results, set(), True)
        except Exception as exc:
            if is_lost(exc, conn):
                raise
            return await self._singles(conn, batch, seg, results, exc, None)

    async def _write_in_transaction(self, conn: asyncpg.Connection, batch: list[Item], seg: Segment,
                                    results: list[Any], notify: set[str]) -> list[int]:
        """`_write_rows` in a savepoint of the batch's transaction, with `_write_alone`'s fallback."""
        await conn.execute("SAVEPOINT seg")
        try:
            left = await self._write_rows(conn, batch, seg, results, notify, False)
        except Exception as exc:
            if is_lost(exc, conn):
                raise
            await conn.execute("ROLLBACK TO SAVEPOINT seg")
            await conn.execute("RELEASE SAVEPOINT seg")
            return await self._singles(conn, batch, seg, results, exc, notify)
        await conn.execute("RELEASE SAVEPOINT seg")
        return left

    async def _singles(self, conn: asyncpg.Connection, batch: list[Item], seg: Segment, results: list[Any],
                       exc: Exception, notify: set[str] | None) -> list[int]:
        items = items_of(seg)
        if len(items) == 1:
            logger.warning("a write was refused: %s", exc)
            results[items[0]] = Failed(exc)
            return []
        logger.warning("a write batch was refused (%s); writing its %d items one by one", exc, len(items))
        reset(batch, items, results, exc)
        left: list[int] = []
        for one in singles(seg):
            if notify is None:
                left += await self._write_alone(conn, batch, one, results)
            else:
                left += await self._write_in_transaction(conn, batch, one, results, notify)
        return left

    def _commit_sql(self, notify: set[str]) -> str:
        """COMMIT, after the NOTIFY of `notify` (transactional: sent with the COMMIT, in one round trip)."""
        if not notify:
            return "COMMIT"
        channel = literal(f"{self.dialect.notify_channel}_events")
        return "".join(f"SELECT pg_notify({channel}, {literal(p)});" for p in chunks(sorted(notify))) + "COMMIT"

    async def _op_alone(self, conn: asyncpg.Connection, batch: list[Item], i: int, results: list[Any]) -> None:
        """Drive the operation of `batch[i]` in a transaction of its own (rolled back if it fails)."""
        await conn.execute("BEGIN")
        try:
            out = results[i] = await drive(conn, op_at(batch, i))
        except Exception as exc:  # noqa: BLE001 - handed to the awaiting caller
            await conn.execute("ROLLBACK")
            results[i] = Failed(exc)
            return
        except BaseException:
            if not conn.is_closed():
                await conn.execute("ROLLBACK")
            raise
        await conn.execute(self._commit_sql({e.task_id for e in out.events}))
        self.stats.transactions += 1
        self.stats.ops += 1

    @staticmethod
    async def _run_op(conn: asyncpg.Connection, batch: list[Item], i: int, results: list[Any],
                      notify: set[str]) -> None:
        """Drive the operation of `batch[i]` in a savepoint (a refused one undoes nothing else)."""
        op = op_at(batch, i)
        if not fresh(op):
            return  # it ran in a segment that was then refused: its result is that failure
        await conn.execute("SAVEPOINT op")
        try:
            out = results[i] = await drive(conn, op)
        except Exception as exc:  # noqa: BLE001 - handed to the awaiting caller
            await conn.execute("ROLLBACK TO SAVEPOINT op")
            results[i] = Failed(exc)
        else:
            notify.update(e.task_id for e in out.events)
        await conn.execute("RELEASE SAVEPOINT op")

    async def _write_rows(self, conn: asyncpg.Connection, batch: list[Item], seg: Segment, results: list[Any],
                          notify: set[str], alone: bool) -> list[int]:
        """Write a segment of `batch` in one statement (`segment_sql`): the claimed submissions, the
        journal and event rows, fenced (the rows' tasks are locked ``FOR SHARE``, so a takeover's
        UPDATE waits for the rest of the transaction; a row whose task no longer runs under the epoch
        it names gets `LeaseLost`), and the ends. The tasks whose log may grow are added to `notify`,
        or, when the statement is `alone` (its own transaction), notified by it. Returns the
        submissions and ends the statement left out: their operations decide."""
        submits, rows, finishes = seg.submits, seg.rows, seg.finishes
        sub: list[list[Any]] = [[] for _ in range(14)]
        for k in submits:
            f = submit_record(batch, k)
            for c, v in zip(sub, f.task_row(), strict=False):
                c.append(v)
            queued, started = f.event_rows()
            sub[12].append(queued[5])
            sub[13].append(started[5])
        ids: set[str] = set()
        steps: list[list[Any]] = [[] for _ in range(7)]
        events: list[list[Any]] = [[] for _ in range(7)]
        for i in rows:
            item = row_at(batch, i)
            ids.add(item.task_id)
            for c, v in zip(steps if item.kind == STEP else events, item.values, strict=True):
                c.append(v)
        ends: list[list[Any]] = [[] for _ in range(12)]
        for k in sorted(finishes, key=lambda k: end_record(batch, k).task_id):  # lock order
            e = end_record(batch, k)
            ids.add(e.task_id)
            for c, v in zip(ends, (*e.task_row(), e.seq, e.event_json), strict=True):
                c.append(v)
        pokes: list[str] = []
        if alone:
            pokes = chunks(sorted(set(events[0]).union(sub[0], ends[0])))
        args: list[Any] = []
        if submits:
            args += sub
        if ids:
            args.append(sorted(ids))
        if steps[0]:
            args += steps
        if events[0]:
            args += events
        if ends[0]:
            args += ends
        if pokes:
            args += (f"{self.dialect.notify_channel}_events", pokes)
        sql = segment_sql(bool(submits), bool(steps[0]), bool(events[0]), bool(ends[0]), bool(pokes))
        fenced: dict[str, int] = {}
        inserted: set[str] = set()
        ended: set[str] = set()
        for kind, tid, epoch in await conn.fetch(sql, *args):
            if kind == "f":
                fenced[tid] = epoch
            elif kind == "t":
                inserted.add(tid)
                fenced[tid] = 1
            elif kind == "u":
                ended.add(tid)
        listening = self.hub.listening
        left = settle_submits(batch, submits, inserted.__contains__, results, listening, notify)
        self.stats.rows += len(fence_rows(batch, rows, fenced, results, notify))
        left += settle_ends(batch, finishes, ended.__contains__, results, listening, notify)
        return left
