"""The PostgreSQL store: `asyncpg`, a writer coroutine that group-commits, LISTEN/NOTIFY wake-ups.

This module holds the connections, LISTEN/NOTIFY, migrations and reads. The writer coroutine, which
owns one connection and group-commits what is queued, is `_pg_writer.PostgresWriter`; the SQL of a
group-commit segment and the connection helpers are in `_pg_sql`. Reads use a pool. Workers claim
with ``FOR UPDATE SKIP LOCKED``.

Notifications (channels prefixed ``loomiq_<schema>_``): ``tasks`` (something became claimable),
``cancel`` (payload: a task id), ``agents`` (the agents registered over the API changed; payload:
their new version), ``events`` (payload: task ids whose log grew; listened to only
while someone in the process follows a task). A listening connection turns them into the hub's
wake-ups; polling remains as a slow fallback.

Losing the server (a restart, a failover, a cut connection) is survived without a restart of the
process: a batch whose connection is lost fails with `StoreUnavailable` (a holder abandons its runs,
which are taken over and replayed once their leases run out), the next batch reconnects the writer,
reads retry once on a fresh pooled connection, and the listening connection reconnects in the
background (with backoff), then pokes every follower and idle worker to read again what it may have
missed. The writer's session has ``idle_in_transaction_session_timeout`` at half the engine's lease,
so a process frozen inside a write transaction loses its session (and its row locks) before its
leases expire, and a takeover is never blocked by it.

URL: ``postgresql://user@host:port/db``; add ``?schema=name`` to keep the engine's tables in a schema
of their own (created if missing).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import time
from typing import Any

import asyncpg

from ._pg_sql import LOST, Cut, is_lost, placeholders, split_url, unavailable
from ._pg_writer import PostgresWriter
from ._schema import CREATE_MIGRATIONS_TABLE, LATEST, pending
from ._stmt import Dialect, Stmt
from .errors import EngineClosed, SchemaError
from .events import EventHub

logger = logging.getLogger("loomiq.engine")

_IDENT = re.compile(r"^[a-z_][a-z0-9_]{0,40}$")

_UNLISTEN_AFTER_S = 5.0
"""How long the events channel stays listened to after the last follower in this process left."""

class PostgresStore(PostgresWriter):
    """The engine on PostgreSQL (see the module docstring).

    Args:
        url: ``postgresql://...``, optionally with ``?schema=name``.
        schema: the schema of the engine's tables (overrides the URL's); None = the default path.
        schema_version: migrate only up to this version (tests of the upgrade path); None = latest.
        min_size, max_size: the read pool's size.
        poll_s: fallback polling period for followers when no notification arrives.
        linger_s: how long a write nobody awaits (an event) may wait to share the next commit.
    """

    schemes = ("postgresql", "postgres")

    def __init__(
        self,
        url: str,
        *,
        schema: str | None = None,
        schema_version: int | None = None,
        min_size: int = 1,
        max_size: int = 8,
        poll_s: float = 0.5,
        linger_s: float = 0.002,
    ) -> None:
        super().__init__(url)
        self.dsn, url_schema = split_url(url)
        self.schema = schema or url_schema
        if self.schema is not None and not _IDENT.match(self.schema):
            raise ValueError(f"schema name {self.schema!r}: use lowercase letters, digits and _ (max 41)")
        self.dialect = Dialect(
            "postgresql", for_update=" FOR UPDATE", for_share=" FOR SHARE", skip_locked=" FOR UPDATE SKIP LOCKED",
            notify_channel=f"loomiq_{self.schema or 'public'}",
        )
        self.target_version = LATEST if schema_version is None else schema_version
        self.follow_poll_s = poll_s
        self.claim_poll_s = max(poll_s, 0.25)
        self.cancel_poll_s = 1.0
        self.agents_poll_s = 5.0  # (NOTIFY tells at once)
        self._min, self._max = min_size, max_size
        self._pool: asyncpg.Pool | None = None
        self._wconn: asyncpg.Connection | None = None
        self._lconn: asyncpg.Connection | None = None
        self.linger_s = linger_s
        self._writer_task: asyncio.Task[None] | None = None
        self._listener_task: asyncio.Task[None] | None = None
        self._events_listened = False
        self._events_task: asyncio.Task[None] | None = None
        self._unlisten_later: asyncio.TimerHandle | None = None
        self._own_pids: set[int] = set()
        self.connect_timeout_s = 5.0
        self.reconnects = 0
        """How many times the writer or the listener reconnected after losing the server."""

    def _settings(self) -> dict[str, str]:
        return {"search_path": self.schema} if self.schema else {}

    def _writer_settings(self) -> dict[str, str]:
        idle_ms = max(100, int(self.lease_s * 500))  # half the lease (see the module docstring)
        return {
            **self._settings(),
            "idle_in_transaction_session_timeout": str(idle_ms),
            "plan_cache_mode": "force_generic_plan",  # its few statements run thousands of times: plan once
        }

    async def open(self) -> None:
        """Connect, migrate, listen, and start the writer."""
        if not self._closed:
            return  # already open
        self._hub = EventHub()
        self._hub.on_followed = self._on_followed
        conn = await asyncpg.connect(self.dsn)
        try:
            if self.schema:
                await conn.execute(f'CREATE SCHEMA IF NOT EXISTS "{self.schema}"')
                await conn.execute(f'SET search_path TO "{self.schema}"')
            await self._migrate(conn)
        finally:
            await conn.close()
        settings = self._settings()
        self._pool = await asyncpg.create_pool(self.dsn, min_size=self._min, max_size=self._max,
                                               server_settings=settings)
        await self._connect_writer()
        await self._listen()
        self._closed = False
        self._writer_task = asyncio.get_running_loop().create_task(self._writer(), name="loomiq-pg-writer")

    async def _connect_writer(self) -> asyncpg.Connection:
        conn = await asyncpg.connect(self.dsn, server_settings=self._writer_settings(),
                                     timeout=self.connect_timeout_s)
        self._wconn = conn
        self._own_pids.add(conn.get_server_pid())
        return conn

    async def _writer_conn(self) -> asyncpg.Connection:
        """The writer's connection, reconnected if it was lost (`StoreUnavailable` if that fails)."""
        conn = self._wconn
        if conn is not None and not conn.is_closed():
            return conn
        if conn is not None:
            conn.terminate()  # (lost: abort whatever transport it still holds)
        self._wconn = None
        try:
            conn = await self._connect_writer()
        except Exception as exc:  # noqa: BLE001 - every connection failure means the same to callers
            raise unavailable(exc) from exc
        self.reconnects += 1
        logger.warning("the PostgreSQL writer reconnected")
        return conn

    def _drop_writer(self) -> None:
        conn, self._wconn = self._wconn, None
        if conn is not None:
            conn.terminate()

    async def _listen(self) -> None:
        """Open the listening connection and register the channels; on its loss, reconnect."""
        conn = await asyncpg.connect(self.dsn, server_settings=self._settings(), timeout=self.connect_timeout_s)
        prefix = self.dialect.notify_channel
        for kind in ("tasks", "cancel", "agents"):
            await conn.add_listener(f"{prefix}_{kind}", self._on_notify)
        self._events_listened = False
        if self._hub is not None and self._hub.followed:
            await conn.add_listener(f"{prefix}_events", self._on_notify)
            self._events_listened = True
        conn.add_termination_listener(self._on_listener_lost)
        self._lconn = conn

    # The ``events`` channel is listened to only while someone in this process follows a task: every
    # durable step's commit notifies it, and a process nobody follows tasks in (a worker) would
    # otherwise receive, parse and drop one notification per commit of every process. The first
    # subscription starts listening, then pokes every follower to read its log again (an event
    # committed between a follower's first read and the LISTEN would otherwise wait for the
    # follower's poll); the channel is left `_UNLISTEN_AFTER_S` after the last one ends.

    def _on_followed(self, followed: bool) -> None:
        if self._closed:
            return
        if self._unlisten_later is not None:
            self._unlisten_later.cancel()
            self._unlisten_later = None
        if followed:
            self._sync_events_listen()
        elif self._events_listened:
            self._unlisten_later = asyncio.get_running_loop().call_later(_UNLISTEN_AFTER_S, self._sync_events_listen)

    def _sync_events_listen(self) -> None:
        self._unlisten_later = None
        if self._events_task is None and not self._closed:
            self._events_task = asyncio.get_running_loop().create_task(self._events_listen(),
                                                                       name="loomiq-pg-listen-events")

    async def _events_listen(self) -> None:
        """LISTEN or UNLISTEN the events channel until it matches whether anyone here follows a task."""
        channel = f"{self.dialect.notify_channel}_events"
        try:
            while not self._closed and self._hub is not None:
                want, conn = self._hub.followed, self._lconn
                if want == self._events_listened or conn is None or conn.is_closed():
                    return  # (a reconnecting listener decides by itself when it is back)
                try:
                    if want:
                        await conn.add_listener(channel, self._on_notify)
                    else:
                        await conn.remove_listener(channel, self._on_notify)
                except Exception as exc:  # noqa: BLE001 - the connection is going: `_relisten` takes over
                    logger.debug("changing the events LISTEN failed: %s", exc)
                    return
                if conn is self._lconn:
                    self._events_listened = want
                if want:
                    self._hub.poke_all()
        finally:
            self._events_task = None

    def _on_listener_lost(self, conn: Any) -> None:
        if self._closed or conn is not self._lconn or self._listener_task is not None:
            return
        logger.warning("the PostgreSQL listening connection was lost; reconnecting")
        self._lconn = None
        self._listener_task = asyncio.get_running_loop().create_task(self._relisten(), name="loomiq-pg-relisten")

    async def _relisten(self) -> None:
        delay = 0.1
        try:
            while not self._closed:
                try:
                    await self._listen()
                except Exception as exc:  # noqa: BLE001 - the server is still away: try again later
                    logger.debug("listening again failed: %s", exc)
                    await asyncio.sleep(delay)
                    delay = min(delay * 2, 2.0)
                    continue
                self.reconnects += 1
                logger.warning("the PostgreSQL listening connection reconnected")
                if self._hub is not None:  # notifications sent meanwhile were lost: look again
                    self._hub.poke_all()
                    self._hub.notify_work()
                if self.on_agents_changed is not None:
                    self.on_agents_changed()
                return
        finally:
            self._listener_task = None

    async def _migrate(self, conn: asyncpg.Connection) -> None:
        async with conn.transaction():
            # One process migrates a schema at a time.
            await conn.execute("SELECT pg_advisory_xact_lock(hashtext($1))", f"loomiq:{self.schema or 'public'}")
            await conn.execute(CREATE_MIGRATIONS_TABLE.format(real="DOUBLE PRECISION"))
            current = await conn.fetchval("SELECT COALESCE(MAX(version), 0) FROM schema_migrations")
            if current > LATEST:
                raise SchemaError(f"the database has schema version {current}; this loomiq knows up to {LATEST}")
            for version, statements in pending("postgresql", current, self.target_version):
                for sql in statements:
                    await conn.execute(sql)
                await conn.execute("INSERT INTO schema_migrations (version, applied_at) VALUES ($1, $2)",
                                   version, time.time())

    async def close(self) -> None:
        """Commit what is queued, stop the writer, and close every connection.

        Every connection is closed or aborted whatever happened before (a writer that failed, a server
        that went away, a connection asyncpg already reports closed): none is left to the collector."""
        if self._closed:
            return
        self._closed = True
        try:
            self._stop_writer()
            if self._writer_task is not None:
                try:
                    await self._writer_task
                except Exception:  # noqa: BLE001 - closing goes on: the connections must still be closed
                    logger.warning("the PostgreSQL writer failed while closing", exc_info=True)
            if self._unlisten_later is not None:
                self._unlisten_later.cancel()
                self._unlisten_later = None
            for task in (self._listener_task, self._events_task):
                if task is not None:
                    task.cancel()
                    with contextlib.suppress(asyncio.CancelledError):
                        await task
        finally:
            await self._close_connections()

    async def _close_connections(self) -> None:
        conns, pool = (self._lconn, self._wconn), self._pool
        self._lconn = self._wconn = None
        self._pool = None
        for conn in conns:
            if conn is None:
                continue
            try:
                if conn.is_closed():
                    conn.terminate()  # (a lost connection: abort whatever transport it still holds)
                else:
                    await asyncio.wait_for(conn.close(), self.connect_timeout_s)
            except Exception:  # noqa: BLE001 - the server is gone: drop the connection
                logger.debug("closing a PostgreSQL connection failed; aborting it", exc_info=True)
                conn.terminate()
        if pool is not None:
            try:
                await asyncio.wait_for(pool.close(), self.connect_timeout_s)
            except Exception:  # noqa: BLE001 - the server is gone: drop the connections
                logger.debug("closing the PostgreSQL pool failed; aborting its connections", exc_info=True)
            finally:
                pool.terminate()  # (nothing when it closed)

    async def schema_version(self) -> int:
        """The database's schema version."""
        return int(await self.fetch(Stmt("SELECT COALESCE(MAX(version), 0) FROM schema_migrations", (), "val")))

    def _on_notify(self, conn: Any, pid: int, channel: str, payload: object) -> None:
        payload = str(payload)  # asyncpg's listener type says object; a NOTIFY payload is text
        hub = self._hub
        if hub is None or self._closed:
            return
        kind = channel.rsplit("_", 1)[-1]
        if kind == "cancel":
            if self.on_cancel is not None:
                self.on_cancel(payload)
        elif kind == "agents":  # (this process's own change too: it has applied it, and a look is one read)
            if self.on_agents_changed is not None:
                self.on_agents_changed()
        elif pid in self._own_pids:
            return  # this process already delivered it
        elif kind == "tasks":
            hub.notify_work()
        elif kind == "events":
            hub.poke(payload.split(","))

    # -- reads ----------------------------------------------------------------------------------

    async def fetch(self, stmt: Stmt, *, blocking: bool = False) -> Any:
        """Run a read on a pooled connection."""
        pool = self._pool
        if pool is None:
            raise EngineClosed("the store is closed")
        sql = placeholders(stmt.sql)
        for attempt in (1, 2):  # a read is retried once: a pooled connection may have been cut
            try:
                async with pool.acquire(timeout=self.connect_timeout_s) as conn:
                    try:
                        if stmt.mode == "all":
                            return await conn.fetch(sql, *stmt.args)
                        if stmt.mode == "val":
                            return await conn.fetchval(sql, *stmt.args)
                        return await conn.fetchrow(sql, *stmt.args)
                    except Exception as exc:
                        if is_lost(exc, conn):
                            raise Cut from exc
                        raise
            except (Cut, *LOST) as exc:
                cause = exc.__cause__ if isinstance(exc, Cut) else exc
                assert cause is not None
                if attempt == 2 or self._closed:
                    raise unavailable(cause) from cause
        raise AssertionError("unreachable")
