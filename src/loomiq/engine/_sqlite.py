"""The SQLite store: stdlib `sqlite3` in WAL mode, one writer thread per store that group-commits.

Writes are queued on the event loop's thread and committed in batches (group commit) in one
``BEGIN IMMEDIATE`` transaction each: journal and event rows, claimed submissions and ends of durable
runs with a few set-wide statements per segment (fenced by one read), any other operation in a
savepoint (one refused operation undoes nothing else). A batch commits on the loop's thread itself
when SQLite's write lock is free at once (no thread hop: with ``synchronous=NORMAL`` a WAL commit does
not fsync); otherwise (another process writes, or ``synchronous=FULL``) the writer thread, which owns
the connection while it has batches, waits for the lock (``busy_timeout``) and resolves the waiting
futures with one ``call_soon_threadsafe`` per event loop. See "writes" in `SQLiteStore`.

Reads use other connections (WAL lets them run beside the writer): point reads by primary key run on
the event loop thread, where they cost ~10-30 µs, less than a thread hop; reads that may scan
(`list_tasks`, counts) run on a small thread pool.
"""

from __future__ import annotations

import asyncio
import collections
import logging
import os
import sqlite3
import threading
import time
from collections.abc import Awaitable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
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
from ._schema import CREATE_MIGRATIONS_TABLE, LATEST, pending
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
    sqlite_path,
)
from ._stmt import Dialect, Op, Outcome, Stmt
from .errors import EngineClosed, SchemaError
from .store import Store

logger = logging.getLogger("loomiq.engine")

def _resolve(items: Sequence[tuple[asyncio.Future[Any] | None, Any]]) -> None:
    for fut, value in items:
        resolve(fut, value)


class SQLiteStore(Store):
    """The engine on a SQLite file (see the module docstring).

    Args:
        url: ``sqlite:///path/to/file.db``.
        synchronous: ``NORMAL`` (default: a commit survives a process crash, not a power loss) or
            ``FULL`` (an fsync per commit).
        schema_version: migrate only up to this version (tests of the upgrade path); None = latest.
        poll_s: how often followers and idle workers look for other processes' writes.
        linger_s: how long a write nobody awaits (an event) may wait to share the next commit.
        inline: commit on the event loop's thread when SQLite's write lock is free (default: unless
            `synchronous` is FULL, whose fsync per commit would stall the loop).
        wal_limit_bytes: the write-ahead log's bound. Passive checkpoints (every 0.5 s) copy the
            log into the database but cannot rewind it while readers and writers keep coming, so
            under steady load it grew without end (1 GB after 9,000 tasks); once it passes this
            size a ``TRUNCATE`` checkpoint (a brief pause of writers) empties it, and
            ``journal_size_limit`` trims it to this size whenever it rewinds.
    """

    schemes = ("sqlite",)

    def __init__(
        self,
        url: str,
        *,
        synchronous: str = "NORMAL",
        schema_version: int | None = None,
        busy_timeout_s: float = 30.0,
        poll_s: float = 0.05,
        readers: int = 2,
        linger_s: float = 0.002,
        inline: bool | None = None,
        wal_limit_bytes: int = 64 * 1024 * 1024,
    ) -> None:
        super().__init__(url)
        self.path = sqlite_path(url)
        self.dialect = Dialect("sqlite")
        self.synchronous = synchronous.upper()
        if self.synchronous not in ("NORMAL", "FULL", "OFF"):
            raise ValueError(f"synchronous must be NORMAL, FULL or OFF, not {synchronous!r}")
        self.target_version = LATEST if schema_version is None else schema_version
        self.busy_timeout_s = busy_timeout_s
        self.follow_poll_s = poll_s
        self.claim_poll_s = max(poll_s, 0.05)
        self.cancel_poll_s = max(poll_s, 0.25)
        self._readers = readers
        self.linger_s = linger_s
        self.wal_limit_bytes = wal_limit_bytes
        # Writes queued on the loop thread, and the flush scheduled for them (see "writes" below).
        self._pending: list[Item] = []
        self._soon: asyncio.Handle | None = None
        self._later: asyncio.TimerHandle | None = None
        self._inline = self.synchronous != "FULL" if inline is None else inline
        # The writer thread's FIFO; `_wake` tells it there is something to do. `_mu` guards the
        # FIFO and `_threaded` (True while the thread has batches: the loop thread then queues behind
        # them instead of committing itself), and is held by an inline commit.
        self._items: collections.deque[Item | Stop] = collections.deque()
        self._wake = threading.Event()
        self._mu = threading.Lock()
        self._threaded = False
        self._busy_timeout_ms = int(busy_timeout_s * 1000)
        self._busy_ms = self._busy_timeout_ms  # the write connection's current busy_timeout
        self._checkpointer: threading.Thread | None = None
        self._stop_checkpoints = threading.Event()
        self._thread: threading.Thread | None = None
        self._wconn: sqlite3.Connection | None = None
        self._rconn: sqlite3.Connection | None = None
        self._pool: ThreadPoolExecutor | None = None
        self._pool_conns: list[sqlite3.Connection] = []
        self._local = threading.local()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._closed = True

    # -- connections ----------------------------------------------------------------------------

    def _connect(self) -> sqlite3.Connection:
        conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False,
                               timeout=self.busy_timeout_s)
        mode = conn.execute("PRAGMA journal_mode=WAL").fetchone()[0]
        if mode != "wal":
            conn.close()
            raise SchemaError(f"{self.path}: could not switch to WAL mode (got {mode})")
        conn.execute(f"PRAGMA synchronous={self.synchronous}")
        # Checkpoints (which fsync) run in their own thread, off the commit path.
        conn.execute("PRAGMA wal_autocheckpoint=0")
        conn.execute(f"PRAGMA journal_size_limit={int(self.wal_limit_bytes)}")
        return conn

    def _migrate(self, conn: sqlite3.Connection) -> None:
        conn.execute("BEGIN IMMEDIATE")  # one process migrates at a time
        try:
            conn.execute(CREATE_MIGRATIONS_TABLE.format(real="REAL"))
            current = conn.execute("SELECT COALESCE(MAX(version), 0) FROM schema_migrations").fetchone()[0]
            if current > LATEST:
                raise SchemaError(f"{self.path} has schema version {current}; this loomiq knows up to {LATEST}")
            for version, statements in pending("sqlite", current, self.target_version):
                for sql in statements:
                    conn.execute(sql)
                conn.execute("INSERT INTO schema_migrations (version, applied_at) VALUES (?, ?)",
                             (version, time.time()))
            conn.execute("COMMIT")
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise

    def _open_sync(self) -> None:
        conn = self._connect()
        try:
            self._migrate(conn)
            self._rconn = self._connect()
        except BaseException:
            conn.close()
            raise
        self._wconn = conn

    async def open(self) -> None:
        """Connect, migrate, and start the writer thread."""
        if not self._closed:
            return  # already open
        self._loop = asyncio.get_running_loop()
        from .events import EventHub

        self._hub = EventHub()
        await asyncio.to_thread(self._open_sync)
        self._pool = ThreadPoolExecutor(self._readers, thread_name_prefix="loomiq-sqlite-read")
        try:
            await self._start_readers()
        except BaseException:
            self._pool.shutdown(wait=True)
            for conn in (*self._pool_conns, self._rconn, self._wconn):
                if conn is not None:
                    conn.close()
            self._pool_conns.clear()
            self._rconn = self._wconn = None
            raise
        self._thread = threading.Thread(target=self._writer, name="loomiq-sqlite-writer", daemon=True)
        self._checkpointer = threading.Thread(target=self._checkpoints, name="loomiq-sqlite-checkpoint",
                                              daemon=True)
        self._closed = False
        self._thread.start()
        self._checkpointer.start()

    async def _start_readers(self) -> None:
        """Start every read-pool thread with its connection now, at open, rather than when reads first
        overlap: the pool starts a thread only when all it has are busy, so under load the last one
        started at some moment of a long run (in `loomiq serve`, minutes in), bringing its
        connection's page cache and a malloc arena of its own: a one-off step of 4-7 MB of resident
        memory (issue 15). Started here, what the process holds after start-up is what it holds
        under load, less the caches filling. The barrier makes each call wait for the others, so
        that each runs on a thread of its own."""
        assert self._pool is not None
        barrier = threading.Barrier(self._readers)
        loop = asyncio.get_running_loop()

        def start() -> None:
            self._pool_conn()
            barrier.wait(timeout=30)

        await asyncio.gather(*(loop.run_in_executor(self._pool, start) for _ in range(self._readers)))

    async def close(self) -> None:
        """Commit what is queued, stop the writer thread, and close every connection."""
        if self._closed:
            return
        self._flush()  # what is queued on the loop thread commits first
        self._closed = True
        self._to_thread([Stop()])
        self._stop_checkpoints.set()
        if self._thread is not None:
            await asyncio.to_thread(self._thread.join)
        if self._checkpointer is not None:
            await asyncio.to_thread(self._checkpointer.join)
        if self._pool is not None:
            self._pool.shutdown(wait=True)
        for conn in (*self._pool_conns, self._rconn, self._wconn):
            if conn is not None:
                conn.close()
        self._pool_conns.clear()
        self._rconn = self._wconn = None

    async def schema_version(self) -> int:
        """The database's schema version."""
        row = await self.fetch(Stmt("SELECT COALESCE(MAX(version), 0) FROM schema_migrations", (), "val"))
        return int(row)

    # -- reads ----------------------------------------------------------------------------------

    def _pool_conn(self) -> sqlite3.Connection:
        conn = getattr(self._local, "conn", None)
        if conn is None:
            conn = self._local.conn = self._connect()
            self._pool_conns.append(conn)
        return conn

    def _fetch_on(self, conn: sqlite3.Connection, stmt: Stmt) -> Any:
        cur = conn.execute(stmt.sql, stmt.args)
        if stmt.mode == "all":
            return cur.fetchall()
        row = cur.fetchone()
        cur.fetchall()
        if stmt.mode == "val":
            return row[0] if row is not None else None
        return row

    async def fetch(self, stmt: Stmt, *, blocking: bool = False) -> Any:
        """Run a read: on the loop thread, or on the reader pool when `blocking`."""
        if self._rconn is None or self._pool is None:
            raise EngineClosed("the store is closed")
        if not blocking:
            return self._fetch_on(self._rconn, stmt)
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._pool, lambda: self._fetch_on(self._pool_conn(), stmt))

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

    def _checkpoints(self) -> None:
        """Copy the WAL into the database now and then, without blocking the writer (PASSIVE); empty
        it (TRUNCATE) when it has grown past `wal_limit_bytes`, which a passive checkpoint never
        does while the database is busy."""
        conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False,
                               timeout=self.busy_timeout_s)
        # A TRUNCATE checkpoint holds writers off while it waits for readers: not for long.
        conn.execute("PRAGMA busy_timeout = 500")
        wal = f"{self.path}-wal"
        try:
            while not self._stop_checkpoints.wait(0.5):
                try:
                    size = os.path.getsize(wal) if os.path.exists(wal) else 0
                    mode = "TRUNCATE" if size > self.wal_limit_bytes else "PASSIVE"
                    conn.execute(f"PRAGMA wal_checkpoint({mode})").fetchall()
                except (sqlite3.OperationalError, OSError):
                    pass  # busy: the next round will do it
            conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()
        finally:
            conn.close()

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


def _remove_files(path: str) -> None:
    """Delete a database file and its WAL companions (tests and benchmarks)."""
    for suffix in ("", "-wal", "-shm"):
        try:
            os.remove(path + suffix)
        except FileNotFoundError:
            pass
