"""The SQLite store: stdlib `sqlite3` in WAL mode, one writer thread per store that group-commits.

This module opens the connections (WAL and the other pragmas), migrates the schema, runs the reads
and checkpoints the write-ahead log; the writes (queued on the event loop's thread, committed in
batches, on the loop's thread when SQLite's write lock is free and otherwise on the writer thread)
are `SQLiteWriter`'s, in `_sqlite_writer`.

Reads use other connections (WAL lets them run beside the writer): point reads by primary key run on
the event loop thread, where they cost ~10-30 µs, less than a thread hop; reads that may scan
(`list_tasks`, counts) run on a small thread pool.
"""

from __future__ import annotations

import asyncio
import os
import sqlite3
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from ._batch import Stop
from ._schema import CREATE_MIGRATIONS_TABLE, LATEST, pending
from ._sqlite_sql import sqlite_path
from ._sqlite_writer import SQLiteWriter
from ._stmt import Dialect, Stmt
from .errors import EngineClosed, SchemaError


class SQLiteStore(SQLiteWriter):
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
        synchronous = synchronous.upper()
        if synchronous not in ("NORMAL", "FULL", "OFF"):
            raise ValueError(f"synchronous must be NORMAL, FULL or OFF, not {synchronous!r}")
        super().__init__(url, linger_s=linger_s, inline=synchronous != "FULL" if inline is None else inline,
                         busy_timeout_s=busy_timeout_s)
        self.path = sqlite_path(url)
        self.dialect = Dialect("sqlite")
        self.synchronous = synchronous
        self.target_version = LATEST if schema_version is None else schema_version
        self.busy_timeout_s = busy_timeout_s
        self.follow_poll_s = poll_s
        self.claim_poll_s = max(poll_s, 0.05)
        self.cancel_poll_s = max(poll_s, 0.25)
        self._readers = readers
        self.wal_limit_bytes = wal_limit_bytes
        self._checkpointer: threading.Thread | None = None
        self._stop_checkpoints = threading.Event()
        self._thread: threading.Thread | None = None
        self._rconn: sqlite3.Connection | None = None
        self._pool: ThreadPoolExecutor | None = None
        self._pool_conns: list[sqlite3.Connection] = []
        self._local = threading.local()

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
            self._close_connections()
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
        self._close_connections()

    def _close_connections(self) -> None:
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

    # -- the checkpoint thread ------------------------------------------------------------------

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


def _remove_files(path: str) -> None:
    """Delete a database file and its WAL companions (tests and benchmarks)."""
    for suffix in ("", "-wal", "-shm"):
        try:
            os.remove(path + suffix)
        except FileNotFoundError:
            pass
