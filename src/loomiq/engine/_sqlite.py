"""The SQLite store: stdlib `sqlite3` in WAL mode, one writer thread per store that group-commits.

The writer thread owns the only writing connection. It takes everything queued (journal rows,
events, transactional operations), runs it in one ``BEGIN IMMEDIATE`` transaction (each operation in
a savepoint, so one refused operation does not undo the others), commits, and resolves the waiting
futures with one ``call_soon_threadsafe`` per event loop. Other processes on the same file queue on
SQLite's write lock (``busy_timeout``).

Reads use other connections (WAL lets them run beside the writer): point reads by primary key run on
the event loop thread, where they cost ~10-30 µs, less than a thread hop; reads that may scan
(`list_tasks`, counts) run on a small thread pool.
"""

from __future__ import annotations

import asyncio
import collections
import os
import sqlite3
import threading
import time
from collections.abc import Awaitable
from concurrent.futures import ThreadPoolExecutor
from typing import Any
from urllib.parse import unquote, urlsplit

from ..runtime import StepResult
from ._codec import dumps, step_to_json
from ._ops import Dialect, Op, Outcome, Stmt
from ._schema import CREATE_MIGRATIONS_TABLE, LATEST, pending
from .errors import EngineClosed, LeaseLost, SchemaError
from .store import Store
from .task import TaskEvent

_STEP, _EVENT, _OP, _BARRIER, _STOP = range(5)
_MAX_BATCH = 4096

_INSERT_STEP = (
    "INSERT INTO steps (task_id, step_key, tenant_id, epoch, ok, result, created_at) VALUES (?, ?, ?, ?, ?, ?, ?) "
    "ON CONFLICT (task_id, step_key) DO NOTHING"
)
_INSERT_EVENT = (
    "INSERT INTO events (task_id, seq, tenant_id, epoch, type, data, created_at) VALUES (?, ?, ?, ?, ?, ?, ?) "
    "ON CONFLICT (task_id, seq) DO NOTHING"
)


class _Failed:
    __slots__ = ("exc",)

    def __init__(self, exc: BaseException) -> None:
        self.exc = exc


def sqlite_path(url: str) -> str:
    """The file of a ``sqlite:///relative`` or ``sqlite:////absolute`` URL."""
    parts = urlsplit(url)
    path = unquote(parts.path)
    if parts.netloc:
        raise ValueError(f"a sqlite URL has no host: {url!r} (use sqlite:///file.db)")
    if path.startswith("/"):
        path = path[1:]
    if not path or path == ":memory:":
        raise ValueError(f"the engine needs a database file, not {url!r}")
    return path


def _drive(conn: sqlite3.Connection, op: Op[Any]) -> Any:
    """Run a generator operation to its end on `conn`."""
    result: Any = None
    try:
        while True:
            stmt = op.send(result)
            if stmt.mode == "many":
                conn.executemany(stmt.sql, stmt.args)
                result = None
                continue
            cur = conn.execute(stmt.sql, stmt.args)
            mode = stmt.mode
            if mode == "exec":
                cur.fetchall()  # a RETURNING-less statement; rowcount is final once stepped through
                result = cur.rowcount
            elif mode == "one":
                result = cur.fetchone()
                cur.fetchall()
            elif mode == "all":
                result = cur.fetchall()
            else:
                row = cur.fetchone()
                cur.fetchall()
                result = row[0] if row is not None else None
    except StopIteration as stop:
        return stop.value
    finally:
        op.close()  # a statement that raised leaves the generator suspended


def _resolve(items: list[tuple[asyncio.Future[Any], Any]]) -> None:
    for fut, value in items:
        if fut.done():
            continue
        if type(value) is _Failed:
            fut.set_exception(value.exc)
        else:
            fut.set_result(value)


class SQLiteStore(Store):
    """The engine on a SQLite file (see the module docstring).

    Args:
        url: ``sqlite:///path/to/file.db``.
        synchronous: ``NORMAL`` (default: a commit survives a process crash, not a power loss) or
            ``FULL`` (an fsync per commit).
        schema_version: migrate only up to this version (tests of the upgrade path); None = latest.
        poll_s: how often followers and idle workers look for other processes' writes.
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
        # One FIFO for everything the writer does; `_wake` tells it there is something to wait for.
        # Events nobody awaits do not wake it themselves (that would split a step's commit in two):
        # they go with the next awaited write, or at the end of the current loop iteration.
        self._items: collections.deque[tuple[Any, ...]] = collections.deque()
        self._wake = threading.Event()
        self._kick_pending = False
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
        self._thread = threading.Thread(target=self._writer, name="loomiq-sqlite-writer", daemon=True)
        self._checkpointer = threading.Thread(target=self._checkpoints, name="loomiq-sqlite-checkpoint",
                                              daemon=True)
        self._closed = False
        self._thread.start()
        self._checkpointer.start()

    async def close(self) -> None:
        """Commit what is queued, stop the writer thread, and close every connection."""
        if self._closed:
            return
        self._closed = True
        self._items.append((_STOP,))
        self._wake.set()
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

    def _put(self, item: tuple[Any, ...]) -> None:
        if self._closed:
            raise EngineClosed("the store is closed")
        self._items.append(item)
        self._wake.set()

    def _kick(self) -> None:
        self._kick_pending = False
        self._wake.set()

    def _enqueue(self, op: Op[Outcome], fence: str | None) -> asyncio.Future[Outcome]:
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[Outcome] = loop.create_future()
        self._put((_OP, op, fence, fut, loop))
        return fut

    def put_step(self, tenant: str, task_id: str, epoch: int, step: StepResult) -> Awaitable[None]:
        """Journal a step in the next batch (see `Store.put_step`)."""
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[None] = loop.create_future()
        self._put((_STEP, task_id, epoch, (task_id, step.key, tenant, epoch, int(step.error is None)), step, fut, loop))
        return fut

    def put_event(self, tenant: str, task_id: str, epoch: int, event: TaskEvent) -> None:
        """Log a held task's event in the next batch (see `Store.put_event`)."""
        if self._closed:
            raise EngineClosed("the store is closed")
        self._items.append((_EVENT, task_id, epoch, (task_id, event.seq, tenant, epoch, event.type), event.data,
                            None, None))
        if not self._kick_pending:
            self._kick_pending = True
            asyncio.get_running_loop().call_soon(self._kick)

    async def flush(self) -> None:
        """Wait until everything queued so far has committed."""
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[None] = loop.create_future()
        self._put((_BARRIER, None, "*", fut, loop))
        await fut

    # -- the writer thread ----------------------------------------------------------------------

    def _writer(self) -> None:
        items, wake = self._items, self._wake
        while True:
            wake.wait()
            wake.clear()  # before draining: a put after this point sets it again
            while items:
                batch = []
                stop = False
                while items and len(batch) < _MAX_BATCH:
                    item = items.popleft()
                    if item[0] == _STOP:
                        stop = True
                    else:
                        batch.append(item)
                if batch:
                    self._commit(batch)
                if stop and not items:
                    return

    def _checkpoints(self) -> None:
        """Copy the WAL into the database now and then, without blocking the writer (PASSIVE)."""
        conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False,
                               timeout=self.busy_timeout_s)
        try:
            while not self._stop_checkpoints.wait(0.5):
                try:
                    conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()
                except sqlite3.OperationalError:
                    pass  # busy: the next round will do it
            conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()
        finally:
            conn.close()

    def _commit(self, batch: list[tuple[Any, ...]]) -> None:
        conn = self._wconn
        assert conn is not None
        results: list[Any] = [None] * len(batch)
        rows: list[int] = []
        row_tasks: set[str] = set()
        nops = 0
        try:
            conn.execute("BEGIN IMMEDIATE")
            for i, item in enumerate(batch):
                kind = item[0]
                if kind <= _EVENT:
                    rows.append(i)
                    row_tasks.add(item[1])
                    continue
                fence = item[2]
                if rows and (fence == "*" or fence in row_tasks):
                    self._write_rows(conn, batch, rows, results)
                    rows = []
                    row_tasks.clear()
                if kind == _OP:
                    nops += 1
                    conn.execute("SAVEPOINT op")
                    try:
                        results[i] = _drive(conn, item[1])
                    except Exception as exc:  # noqa: BLE001 - handed to the awaiting caller
                        conn.execute("ROLLBACK TO op")
                        results[i] = _Failed(exc)
                    conn.execute("RELEASE op")
            if rows:
                self._write_rows(conn, batch, rows, results)
            conn.execute("COMMIT")
            self.stats.transactions += 1
            self.stats.ops += nops
        except Exception as exc:  # noqa: BLE001 - the whole batch failed: every caller learns why
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            results = [_Failed(exc)] * len(batch)
        by_loop: dict[asyncio.AbstractEventLoop, list[tuple[asyncio.Future[Any], Any]]] = {}
        for item, value in zip(batch, results, strict=True):
            fut, loop = item[-2], item[-1]
            if fut is not None:
                by_loop.setdefault(loop, []).append((fut, value))
        for loop, items in by_loop.items():
            try:
                loop.call_soon_threadsafe(_resolve, items)
            except RuntimeError:
                pass  # that loop is closed: nobody is waiting any more

    def _write_rows(self, conn: sqlite3.Connection, batch: list[tuple[Any, ...]], rows: list[int],
                    results: list[Any]) -> None:
        # Fencing: a row is written only if its task still runs under the epoch the row names.
        ids = list({batch[i][1] for i in rows})
        epochs: dict[str, int] = {}
        for start in range(0, len(ids), 500):
            chunk = ids[start : start + 500]
            marks = ",".join("?" * len(chunk))
            epochs.update(conn.execute(
                f"SELECT id, lease_epoch FROM tasks WHERE id IN ({marks}) AND status = 'running'", chunk
            ).fetchall())
        now = time.time()
        steps, events = [], []
        for i in rows:
            item = batch[i]
            if epochs.get(item[1]) != item[2]:
                results[i] = _Failed(LeaseLost(f"task {item[1]}: lease epoch {item[2]} was taken over"))
                continue
            if item[0] == _STEP:
                steps.append((*item[3], step_to_json(item[4]), now))
            else:
                events.append((*item[3], dumps(item[4]), now))
        if steps:
            conn.executemany(_INSERT_STEP, steps)
        if events:
            conn.executemany(_INSERT_EVENT, events)
        self.stats.rows += len(steps) + len(events)


def _remove_files(path: str) -> None:
    """Delete a database file and its WAL companions (tests and benchmarks)."""
    for suffix in ("", "-wal", "-shm"):
        try:
            os.remove(path + suffix)
        except FileNotFoundError:
            pass
