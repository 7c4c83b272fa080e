"""The PostgreSQL store: `asyncpg`, a writer coroutine that group-commits, LISTEN/NOTIFY wake-ups.

The writer coroutine owns one connection. It takes everything queued (journal rows, events,
operations) and writes it in segments (see `PostgresStore._commit`): the journal and event rows, the
claimed submissions and the ends of durable runs of a segment in one statement (`_segment_sql`, which locks
the rows' tasks ``FOR SHARE`` so that a concurrent takeover waits for it or fences it), any other
operation driven in a savepoint. A batch that is one segment (what durable runs queue) is one
statement in one round trip, its NOTIFY inside it; any other is one transaction, notified with its
COMMIT. ``synchronous_commit`` is left as it is (on: every commit waits for its WAL flush; group commit
shares one among the batch). Reads use a pool. Workers claim with ``FOR UPDATE SKIP LOCKED``.

Notifications (channels prefixed ``loomiq_<schema>_``): ``tasks`` (something became claimable),
``cancel`` (payload: a task id), ``events`` (payload: task ids whose log grew; listened to only
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
import collections
import contextlib
import functools
import logging
import re
import time
from collections.abc import Awaitable, Mapping, Sequence
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import asyncpg

from ..models import ModelResponse
from ..runtime import StepResult
from ..tools import ToolCallRecord
from ._batch import BARRIER, EVENT, MAX_BATCH, OP, STEP, STOP, segments
from ._codec import dumps, step_to_json, tool_entry_to_json
from ._ops import (
    FINISH_TASK_COLUMNS,
    SUBMIT_TASK_COLUMNS,
    Dialect,
    FastOp,
    FinishFinal,
    Op,
    Outcome,
    Stmt,
    SubmitClaimed,
)
from ._schema import CREATE_MIGRATIONS_TABLE, LATEST, pending
from .errors import EngineClosed, LeaseLost, SchemaError, StoreUnavailable
from .events import EventHub
from .store import Store

logger = logging.getLogger("loomiq.engine")

_IDENT = re.compile(r"^[a-z_][a-z0-9_]{0,40}$")

_UNLISTEN_AFTER_S = 5.0
"""How long the events channel stays listened to after the last follower in this process left."""

_STEP_COLUMNS = "task_id, step_key, tenant_id, epoch, ok, result, created_at"
_EVENT_COLUMNS = "task_id, seq, tenant_id, epoch, type, data, created_at"

# A segment of a batch (see `PostgresStore._write_rows`) in one statement, made of the parts it needs
# (`_segment_sql`; a part left out costs nothing to plan or run):
#   submits  claimed submissions: the columns of `SUBMIT_TASK_COLUMNS`, then the JSON of each task's first two
#            events (14 arrays). A task id that exists already is left out (its operation then runs).
#   fence    the ids of the tasks the rows and ends name: locked FOR SHARE in id order (a takeover's UPDATE
#            waits for this transaction); with the tasks just submitted, they fence the rows and ends.
#   steps, events   journal rows, event rows (7 arrays each): written when their task runs under the epoch
#            they name.
#   ends     ends of runs that did not fail (ids, epochs, the columns of `FINISH_TASK_COLUMNS`, the seq and JSON
#            of each task_finished event: 12 arrays): written when their task runs under that epoch and no
#            task depends on it (the others: their operation runs).
#   notify   the NOTIFY channel and payloads to send (when the statement is its own transaction).
# It returns ('f', id, epoch) per fenced task, ('t', id, 1) per task submitted, ('u', id, 0) per end written
# (and one ('n', NULL, count) row).
_SUBMITS = (
    "s AS (SELECT * FROM unnest({0}::text[], {1}::text[], {2}::text[], {3}::float8[], {4}::float8[], {5}::text[], "
    "{6}::float8[], {7}::text[], {8}::float8[], {9}::float8[], {10}::float8[], {11}::float8[], {12}::text[], "
    "{13}::text[]) AS s(id, tenant_id, priority, sort_key, ready_at, request, created_at, lease_owner, lease_expires, "
    "started_at, timeout_s, deadline_at, queued, started)), "
    f"t AS (INSERT INTO tasks ({SUBMIT_TASK_COLUMNS}, status, attempts, lease_epoch) "
    f"SELECT {SUBMIT_TASK_COLUMNS}, 'running', 1, 1 FROM s ON CONFLICT (id) DO NOTHING "
    "RETURNING id, tenant_id, created_at, lease_owner), "
    "ta AS (INSERT INTO attempts (task_id, attempt, tenant_id, epoch, worker_id, started_at, status) "
    "SELECT id, 1, tenant_id, 1, lease_owner, created_at, 'running' FROM t), "
    f"te AS (INSERT INTO events ({_EVENT_COLUMNS}) "
    "SELECT t.id, x.seq, t.tenant_id, x.epoch, x.type, x.data, t.created_at FROM t JOIN s ON s.id = t.id, "
    "LATERAL (VALUES (1, 0, 'task_queued', s.queued), (2, 1, 'task_started', s.started)) "
    "AS x(seq, epoch, type, data))"
)
_FENCE = (
    "f AS (SELECT id, lease_epoch, attempts, tenant_id{deps} "
    "FROM tasks WHERE id = ANY({0}::text[]) AND status = 'running' ORDER BY id FOR SHARE)"
)
_DEPS = ", EXISTS (SELECT 1 FROM task_dependencies d WHERE d.depends_on = tasks.id) AS deps"
_STEPS = (
    f"rs AS (INSERT INTO steps ({_STEP_COLUMNS}) SELECT u.* FROM unnest({{0}}::text[], {{1}}::text[], {{2}}::text[], "
    "{3}::int[], {4}::int[], {5}::text[], {6}::float8[]) AS u(task_id, step_key, tenant_id, epoch, ok, result, "
    "created_at) JOIN g ON g.id = u.task_id AND g.lease_epoch = u.epoch ON CONFLICT (task_id, step_key) DO NOTHING)"
)
_EVENTS = (
    f"re AS (INSERT INTO events ({_EVENT_COLUMNS}) SELECT u.* FROM unnest({{0}}::text[], {{1}}::int[], "
    "{2}::text[], {3}::int[], {4}::text[], {5}::text[], {6}::float8[]) AS u(task_id, seq, tenant_id, epoch, type, "
    "data, created_at) JOIN g ON g.id = u.task_id AND g.lease_epoch = u.epoch ON CONFLICT (task_id, seq) DO NOTHING)"
)
_ENDS = (
    "v AS (SELECT * FROM unnest({0}::text[], {1}::int[], {2}::text[], {3}::float8[], {4}::text[], {5}::text[], "
    "{6}::int[], {7}::int[], {8}::float8[], {9}::text[], {10}::int[], {11}::text[]) AS v(id, epoch, status, "
    "finished_at, error, output, input_tokens, output_tokens, cost_usd, result, seq, data)), "
    "u AS (UPDATE tasks SET " + ", ".join(f"{c} = v.{c}" for c in FINISH_TASK_COLUMNS)
    + ", lease_owner = NULL, lease_expires = NULL FROM v JOIN f ON f.id = v.id AND f.lease_epoch = v.epoch "
    "AND NOT f.deps WHERE tasks.id = v.id "
    "RETURNING tasks.id, f.attempts, f.tenant_id, v.epoch, v.status, v.finished_at, v.error, v.seq, v.data), "
    "ua AS (UPDATE attempts SET status = u.status, finished_at = u.finished_at, error = u.error FROM u "
    "WHERE attempts.task_id = u.id AND attempts.attempt = u.attempts), "
    f"ue AS (INSERT INTO events ({_EVENT_COLUMNS}) "
    "SELECT u.id, u.seq, u.tenant_id, u.epoch, 'task_finished', u.data, u.finished_at FROM u)"
)


@functools.cache
def _segment_sql(submits: bool, steps: bool, events: bool, ends: bool, notify: bool) -> str:
    """The statement of a segment with these parts (see the comment above); its arguments, in order:
    the submits' 14 arrays, the fenced ids, the steps' 7, the events' 7, the ends' 12, the channel and
    the payloads, each group only when its part is in."""
    n = iter(range(1, 100))

    def params(k: int) -> list[str]:
        return [f"${next(n)}" for _ in range(k)]

    ctes: list[str] = []
    selects: list[str] = []
    if submits:
        ctes.append(_SUBMITS.format(*params(14)))
        selects.append("SELECT 't', id, 1 FROM t")
    if steps or events or ends:
        ctes.append(_FENCE.format(*params(1), deps=_DEPS if ends else ""))
        selects.insert(0, "SELECT 'f', id, lease_epoch FROM f")
        ctes.append("g AS (SELECT id, lease_epoch FROM f" + (" UNION ALL SELECT id, 1 FROM t)" if submits else ")"))
    if steps:
        ctes.append(_STEPS.format(*params(7)))
    if events:
        ctes.append(_EVENTS.format(*params(7)))
    if ends:
        ctes.append(_ENDS.format(*params(12)))
        selects.append("SELECT 'u', id, 0 FROM u")
    if notify:
        channel, payloads = params(2)
        selects.append(f"SELECT 'n', NULL, count(pg_notify({channel}, p))::int FROM unnest({payloads}::text[]) AS p")
    return "WITH " + ", ".join(ctes) + " " + " UNION ALL ".join(selects)


class _Failed:
    __slots__ = ("exc",)

    def __init__(self, exc: BaseException) -> None:
        self.exc = exc


_placeholders: dict[str, str] = {}


def _sql(sql: str) -> str:
    """``?`` placeholders as ``$1, $2...`` (the shared SQL never has a literal ``?``)."""
    out = _placeholders.get(sql)
    if out is None:
        n = iter(range(1, 10_000))
        out = _placeholders[sql] = re.sub(r"\?", lambda _: f"${next(n)}", sql)
    return out


def _count(status: str) -> int:
    # "UPDATE 3", "INSERT 0 1", "DELETE 0", "SELECT 1"
    tail = status.rsplit(" ", 1)[-1]
    return int(tail) if tail.isdigit() else 0


async def _drive(conn: asyncpg.Connection, op: Op[Any]) -> Any:
    result: Any = None
    try:
        while True:
            stmt = op.send(result)
            sql, args, mode = _sql(stmt.sql), stmt.args, stmt.mode
            if mode == "exec":
                result = _count(await conn.execute(sql, *args))
            elif mode == "one":
                result = await conn.fetchrow(sql, *args)
            elif mode == "all":
                result = await conn.fetch(sql, *args)
            elif mode == "val":
                result = await conn.fetchval(sql, *args)
            else:
                await conn.executemany(sql, args)
                result = None
    except StopIteration as stop:
        return stop.value
    finally:
        op.close()


_LOST = (
    asyncpg.PostgresConnectionError,  # class 08: the connection does not exist, failed...
    asyncpg.exceptions.OperatorInterventionError,  # class 57: admin shutdown, cannot connect now...
    asyncpg.exceptions.IdleInTransactionSessionTimeoutError,
    OSError,
    TimeoutError,
)


def _lost(exc: BaseException, conn: asyncpg.Connection | None) -> bool:
    """Whether `exc` means the connection to the server is gone (rather than a refused statement)."""
    return isinstance(exc, _LOST) or (conn is not None and conn.is_closed())


class _Cut(Exception):
    """A read's connection was lost (its cause says how)."""


def _unavailable(exc: BaseException) -> StoreUnavailable:
    return StoreUnavailable(f"the PostgreSQL server cannot be reached ({type(exc).__name__}: {exc})")


def split_url(url: str) -> tuple[str, str | None]:
    """(a DSN for asyncpg, the ``?schema=`` of `url` or None)."""
    parts = urlsplit(url)
    query = parse_qsl(parts.query)
    schema = next((v for k, v in query if k == "schema"), None)
    rest = urlencode([(k, v) for k, v in query if k != "schema"])
    scheme = "postgresql"
    return urlunsplit((scheme, parts.netloc, parts.path, rest, parts.fragment)), schema


class PostgresStore(Store):
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
        self._min, self._max = min_size, max_size
        self._pool: asyncpg.Pool | None = None
        self._wconn: asyncpg.Connection | None = None
        self._lconn: asyncpg.Connection | None = None
        self._items: collections.deque[tuple[Any, ...]] = collections.deque()
        self._ready = asyncio.Event()
        self._later: asyncio.TimerHandle | None = None
        self.linger_s = linger_s
        self._writer_task: asyncio.Task[None] | None = None
        self._listener_task: asyncio.Task[None] | None = None
        self._events_listened = False
        self._events_task: asyncio.Task[None] | None = None
        self._unlisten_later: asyncio.TimerHandle | None = None
        self._closed = True
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
        self._wconn = None
        try:
            conn = await self._connect_writer()
        except Exception as exc:  # noqa: BLE001 - every connection failure means the same to callers
            raise _unavailable(exc) from exc
        self.reconnects += 1
        logger.warning("the PostgreSQL writer reconnected")
        return conn

    def _drop_writer(self) -> None:
        conn, self._wconn = self._wconn, None
        if conn is not None and not conn.is_closed():
            conn.terminate()

    async def _listen(self) -> None:
        """Open the listening connection and register the channels; on its loss, reconnect."""
        conn = await asyncpg.connect(self.dsn, server_settings=self._settings(), timeout=self.connect_timeout_s)
        prefix = self.dialect.notify_channel
        for kind in ("tasks", "cancel"):
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
        """Commit what is queued, stop the writer, and close every connection."""
        if self._closed:
            return
        self._closed = True
        self._items.append((STOP,))
        self._ready.set()
        if self._later is not None:
            self._later.cancel()
            self._later = None
        if self._writer_task is not None:
            await self._writer_task
        if self._unlisten_later is not None:
            self._unlisten_later.cancel()
            self._unlisten_later = None
        for task in (self._listener_task, self._events_task):
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        for conn in (self._lconn, self._wconn):
            if conn is not None and not conn.is_closed():
                try:
                    await asyncio.wait_for(conn.close(), self.connect_timeout_s)
                except Exception:  # noqa: BLE001 - the server is gone: drop the connection
                    conn.terminate()
        if self._pool is not None:
            try:
                await asyncio.wait_for(self._pool.close(), self.connect_timeout_s)
            except Exception:  # noqa: BLE001 - the server is gone: drop the connections
                self._pool.terminate()
        self._lconn = self._wconn = None
        self._pool = None

    async def schema_version(self) -> int:
        """The database's schema version."""
        return int(await self.fetch(Stmt("SELECT COALESCE(MAX(version), 0) FROM schema_migrations", (), "val")))

    def _on_notify(self, conn: Any, pid: int, channel: str, payload: str) -> None:
        hub = self._hub
        if hub is None or self._closed:
            return
        kind = channel.rsplit("_", 1)[-1]
        if kind == "cancel":
            if self.on_cancel is not None:
                self.on_cancel(payload)
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
        sql = _sql(stmt.sql)
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
                        if _lost(exc, conn):
                            raise _Cut from exc
                        raise
            except (_Cut, *_LOST) as exc:
                cause = exc.__cause__ if isinstance(exc, _Cut) else exc
                assert cause is not None
                if attempt == 2 or self._closed:
                    raise _unavailable(cause) from cause
        raise AssertionError("unreachable")

    # -- writes ---------------------------------------------------------------------------------
    #
    # A write someone awaits (a journal row, an operation, a barrier) wakes the writer at once; one
    # nobody awaits (an event, an end queued by `start_op`) waits up to `linger_s` for the next
    # awaited write, so that it shares its commit (a commit costs an fsync).

    def _put(self, item: tuple[Any, ...], urgent: bool) -> None:
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
        self._put((OP, op, fence, fast, fut), urgent)
        return fut

    def put_step(self, tenant: str, task_id: str, epoch: int, step: StepResult) -> Awaitable[None]:
        """Journal a step in the next batch (see `Store.put_step`)."""
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        row = (task_id, step.key, tenant, epoch, int(step.error is None), step_to_json(step), time.time())
        self._put((STEP, task_id, epoch, row, fut), True)
        return fut

    def put_tool_entry(self, tenant: str, task_id: str, epoch: int, key: str,
                       value: ModelResponse | ToolCallRecord) -> Awaitable[None]:
        """Journal a tool loop's entry in the next batch (see `Store.put_tool_entry`)."""
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        row = (task_id, key, tenant, epoch, 1, tool_entry_to_json(value), time.time())
        self._put((STEP, task_id, epoch, row, fut), True)
        return fut

    def put_event_row(self, tenant: str, task_id: str, epoch: int, seq: int, type_: str,
                      data: Mapping[str, Any] | str) -> None:
        """Log a held task's event in the next batch (see `Store.put_event`)."""
        row = (task_id, seq, tenant, epoch, type_, data if type(data) is str else dumps(data), time.time())
        self._put((EVENT, task_id, epoch, row, None), False)

    async def flush(self) -> None:
        """Wait until everything queued so far has committed."""
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._put((BARRIER, None, "*", None, fut), True)
        await fut

    async def _writer(self) -> None:
        items = self._items
        while True:
            await self._ready.wait()
            self._ready.clear()
            if self._later is not None:
                self._later.cancel()
                self._later = None
            batch = []
            stop = False
            while items and len(batch) < MAX_BATCH:
                item = items.popleft()
                if item[0] == STOP:
                    stop = True
                else:
                    batch.append(item)
            if batch:
                await self._commit(batch)
            if stop:
                if items:  # (nothing is queued after a stop; defensively commit it all the same)
                    self._ready.set()
                    items.append((STOP,))
                    continue
                return
            if len(batch) >= MAX_BATCH:
                self._ready.set()

    async def _commit(self, batch: list[tuple[Any, ...]]) -> None:
        """Write `batch`, in segments as on SQLite (`SQLiteStore._commit`): each segment (claimed
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
            if len(segs) == 1 and segs[0][0] is not None:
                submits, rows, finishes = segs[0]
                left = await self._write_rows(conn, batch, rows, results, set(), submits, finishes, True)
                self.stats.transactions += 1
                self.stats.ops += len(submits) + len(finishes)
                for k in left:  # each in a transaction of its own
                    await self._op_alone(conn, batch, k, results)
            elif len(batch) == 1 and batch[0][0] == OP:
                await self._op_alone(conn, batch, 0, results)
            else:
                await self._transaction(conn, batch, segs, results)
        except StoreUnavailable as exc:
            results = [_Failed(exc)] * len(batch)
        except Exception as exc:  # noqa: BLE001 - the whole batch failed: every caller learns why
            if _lost(exc, conn):  # its outcome is unknown (it may have committed): the next batch reconnects
                logger.warning("the PostgreSQL writer lost its connection: %s", exc)
                self._drop_writer()
                exc = _unavailable(exc)
            else:
                logger.warning("a write batch failed: %s", exc)
            results = [_Failed(exc)] * len(batch)
        self._resolve(batch, results)

    async def _transaction(self, conn: asyncpg.Connection, batch: list[tuple[Any, ...]],
                           segments: list[tuple[Any, ...]], results: list[Any]) -> None:
        notify: set[str] = set()
        nops = 0
        await conn.execute("BEGIN")
        try:
            for seg in segments:
                if seg[0] is not None:
                    submits, rows, finishes = seg
                    nops += len(submits) + len(finishes)
                    for k in await self._write_rows(conn, batch, rows, results, notify, submits, finishes, False):
                        await self._run_op(conn, batch, k, results, notify)
                elif batch[seg[1]][0] == OP:  # (a barrier has nothing to write)
                    nops += 1
                    await self._run_op(conn, batch, seg[1], results, notify)
        except BaseException:
            if not conn.is_closed():
                await conn.execute("ROLLBACK")
            raise
        await conn.execute(self._commit_sql(notify))
        self.stats.transactions += 1
        self.stats.ops += nops

    def _commit_sql(self, notify: set[str]) -> str:
        """COMMIT, after the NOTIFY of `notify` (transactional: sent with the COMMIT, in one round trip)."""
        if not notify:
            return "COMMIT"
        channel = _literal(f"{self.dialect.notify_channel}_events")
        return "".join(f"SELECT pg_notify({channel}, {_literal(p)});" for p in _chunks(sorted(notify))) + "COMMIT"

    async def _op_alone(self, conn: asyncpg.Connection, batch: list[tuple[Any, ...]], i: int,
                        results: list[Any]) -> None:
        """Drive the operation of `batch[i]` in a transaction of its own (rolled back if it fails)."""
        await conn.execute("BEGIN")
        try:
            out = results[i] = await _drive(conn, batch[i][1])
        except Exception as exc:  # noqa: BLE001 - handed to the awaiting caller
            await conn.execute("ROLLBACK")
            results[i] = _Failed(exc)
            return
        except BaseException:
            if not conn.is_closed():
                await conn.execute("ROLLBACK")
            raise
        await conn.execute(self._commit_sql({e.task_id for e in out.events}))
        self.stats.transactions += 1
        self.stats.ops += 1

    @staticmethod
    def _resolve(batch: list[tuple[Any, ...]], results: list[Any]) -> None:
        for item, value in zip(batch, results, strict=True):
            fut = item[-1]
            if fut is None or fut.done():
                continue
            if type(value) is _Failed:
                fut.set_exception(value.exc)
            else:
                fut.set_result(value)

    @staticmethod
    async def _run_op(conn: asyncpg.Connection, batch: list[tuple[Any, ...]], i: int, results: list[Any],
                      notify: set[str]) -> None:
        """Drive the operation of `batch[i]` in a savepoint (a refused one undoes nothing else)."""
        await conn.execute("SAVEPOINT op")
        try:
            out = results[i] = await _drive(conn, batch[i][1])
        except Exception as exc:  # noqa: BLE001 - handed to the awaiting caller
            await conn.execute("ROLLBACK TO SAVEPOINT op")
            results[i] = _Failed(exc)
        else:
            notify.update(e.task_id for e in out.events)
        await conn.execute("RELEASE SAVEPOINT op")

    async def _write_rows(self, conn: asyncpg.Connection, batch: list[tuple[Any, ...]], rows: list[int],
                          results: list[Any], notify: set[str], submits: Sequence[int] = (),
                          finishes: Sequence[int] = (), alone: bool = False) -> list[int]:
        """Write a segment of `batch` in one statement (`_segment_sql`): the claimed submissions `submits`,
        the journal and event rows `rows`, fenced (the rows' tasks are locked ``FOR SHARE``, so a
        takeover's UPDATE waits for the rest of the transaction; a row whose task no longer runs under
        the epoch it names gets `LeaseLost`), and the ends `finishes`. The tasks whose log may grow are
        added to `notify`, or, when the statement is `alone` (its own transaction), notified by it.
        Returns the submissions and ends the statement left out: their operations decide."""
        sub: list[list[Any]] = [[] for _ in range(14)]
        for k in submits:
            f: SubmitClaimed = batch[k][3]
            for c, v in zip(sub, f.task_row(), strict=False):
                c.append(v)
            queued, started = f.event_rows()
            sub[12].append(queued[5])
            sub[13].append(started[5])
        ids: set[str] = set()
        steps: list[list[Any]] = [[] for _ in range(7)]
        events: list[list[Any]] = [[] for _ in range(7)]
        for i in rows:
            item = batch[i]
            ids.add(item[1])
            for c, v in zip(steps if item[0] == STEP else events, item[3], strict=True):
                c.append(v)
        ends: list[list[Any]] = [[] for _ in range(12)]
        for k in sorted(finishes, key=lambda k: batch[k][3].task_id):  # lock order
            e: FinishFinal = batch[k][3]
            ids.add(e.task_id)
            for c, v in zip(ends, (*e.task_row(), e.seq, e.event_json), strict=True):
                c.append(v)
        pokes: list[str] = []
        if alone:
            pokes = _chunks(sorted(set(events[0]).union(sub[0], ends[0])))
        fenced: dict[str, int] = {}
        inserted: set[str] = set()
        ended: set[str] = set()
        channel = f"{self.dialect.notify_channel}_events"
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
            args += (channel, pokes)
        sql = _segment_sql(bool(submits), bool(steps[0]), bool(events[0]), bool(ends[0]), bool(pokes))
        for kind, tid, epoch in await conn.fetch(sql, *args):
            if kind == "n":
                continue
            if kind == "f":
                fenced[tid] = epoch
            elif kind == "t":
                inserted.add(tid)
                fenced[tid] = 1
            else:
                ended.add(tid)
        listening = self.hub.listening
        left: list[int] = []
        for k in submits:
            f = batch[k][3]
            if f.task_id in inserted:
                results[k] = f.outcome(listening)
                notify.add(f.task_id)
            else:  # its id exists already: the operation raises
                left.append(k)
        written = 0
        for i in rows:
            item = batch[i]
            if fenced.get(item[1]) != item[2]:
                results[i] = _Failed(LeaseLost(f"task {item[1]}: lease epoch {item[2]} was taken over"))
                continue
            written += 1
            if item[0] == EVENT:
                notify.add(item[1])
        self.stats.rows += written
        for k in finishes:
            e = batch[k][3]
            if e.task_id in ended:
                results[k] = e.outcome(listening)
                notify.add(e.task_id)
            else:  # lease lost, or dependents to promote: the operation decides
                left.append(k)
        return left


def _literal(text: str) -> str:
    """`text` as a PostgreSQL string literal (an escape string: right whatever standard_conforming_strings says)."""
    return "E'" + text.replace("\\", "\\\\").replace("'", "\\'") + "'"


def _chunks(ids: list[str], limit: int = 7000) -> list[str]:
    """Comma-joined ids in payloads under NOTIFY's 8000-byte limit."""
    out, cur, size = [], [], 0
    for i in ids:
        if size + len(i) + 1 > limit and cur:
            out.append(",".join(cur))
            cur, size = [], 0
        cur.append(i)
        size += len(i) + 1
    if cur:
        out.append(",".join(cur))
    return out

