"""The PostgreSQL store: `asyncpg`, a writer coroutine that group-commits, LISTEN/NOTIFY wake-ups.

The writer coroutine owns one connection. It takes everything queued (journal rows, events,
operations), runs it in one transaction (each operation in a savepoint; journal and event rows as
one ``INSERT ... SELECT FROM unnest(...)`` each, after locking their tasks' rows ``FOR SHARE`` so a
concurrent takeover waits for the batch or fences it), notifies, and commits. Reads use a pool.
Workers claim with ``FOR UPDATE SKIP LOCKED``.

Notifications (channels prefixed ``loomiq_<schema>_``): ``tasks`` (something became claimable),
``cancel`` (payload: a task id), ``events`` (payload: task ids whose log grew). A listening
connection turns them into the hub's wake-ups; polling remains as a slow fallback.

URL: ``postgresql://user@host:port/db``; add ``?schema=name`` to keep the engine's tables in a schema
of their own (created if missing).
"""

from __future__ import annotations

import asyncio
import collections
import logging
import re
import time
from collections.abc import Awaitable
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import asyncpg

from ..runtime import StepResult
from ._codec import dumps, step_to_json
from ._ops import Dialect, Op, Outcome, Stmt
from ._schema import CREATE_MIGRATIONS_TABLE, LATEST, pending
from .errors import EngineClosed, LeaseLost, SchemaError
from .events import EventHub
from .store import Store
from .task import TaskEvent

logger = logging.getLogger("loomiq.engine")

_STEP, _EVENT, _OP, _BARRIER, _STOP = range(5)
_MAX_BATCH = 4096
_IDENT = re.compile(r"^[a-z_][a-z0-9_]{0,40}$")

_INSERT_STEPS = (
    "INSERT INTO steps (task_id, step_key, tenant_id, epoch, ok, result, created_at) "
    "SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::int[], $5::int[], $6::text[], $7::float8[]) "
    "ON CONFLICT (task_id, step_key) DO NOTHING"
)
_INSERT_EVENTS = (
    "INSERT INTO events (task_id, seq, tenant_id, epoch, type, data, created_at) "
    "SELECT * FROM unnest($1::text[], $2::int[], $3::text[], $4::int[], $5::text[], $6::text[], $7::float8[]) "
    "ON CONFLICT (task_id, seq) DO NOTHING"
)


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


def _split_url(url: str) -> tuple[str, str | None]:
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
    ) -> None:
        super().__init__(url)
        self.dsn, url_schema = _split_url(url)
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
        self._writer_task: asyncio.Task[None] | None = None
        self._closed = True
        self._own_pids: set[int] = set()

    def _settings(self) -> dict[str, str]:
        return {"search_path": self.schema} if self.schema else {}

    async def open(self) -> None:
        """Connect, migrate, listen, and start the writer."""
        if not self._closed:
            return  # already open
        self._hub = EventHub()
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
        self._wconn = await asyncpg.connect(self.dsn, server_settings=settings)
        self._lconn = await asyncpg.connect(self.dsn, server_settings=settings)
        self._own_pids = {self._wconn.get_server_pid()}
        prefix = self.dialect.notify_channel
        await self._lconn.add_listener(f"{prefix}_tasks", self._on_notify)
        await self._lconn.add_listener(f"{prefix}_cancel", self._on_notify)
        await self._lconn.add_listener(f"{prefix}_events", self._on_notify)
        self._closed = False
        self._writer_task = asyncio.get_running_loop().create_task(self._writer(), name="loomiq-pg-writer")

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
        self._items.append((_STOP,))
        self._ready.set()
        if self._writer_task is not None:
            await self._writer_task
        for conn in (self._lconn, self._wconn):
            if conn is not None:
                await conn.close()
        if self._pool is not None:
            await self._pool.close()
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
        async with pool.acquire() as conn:
            if stmt.mode == "all":
                return await conn.fetch(sql, *stmt.args)
            if stmt.mode == "val":
                return await conn.fetchval(sql, *stmt.args)
            return await conn.fetchrow(sql, *stmt.args)

    # -- writes ---------------------------------------------------------------------------------

    def _put(self, item: tuple[Any, ...]) -> None:
        if self._closed:
            raise EngineClosed("the store is closed")
        self._items.append(item)
        self._ready.set()

    def _enqueue(self, op: Op[Outcome], fence: str | None) -> asyncio.Future[Outcome]:
        fut: asyncio.Future[Outcome] = asyncio.get_running_loop().create_future()
        self._put((_OP, op, fence, fut))
        return fut

    def put_step(self, tenant: str, task_id: str, epoch: int, step: StepResult) -> Awaitable[None]:
        """Journal a step in the next batch (see `Store.put_step`)."""
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._put((_STEP, task_id, epoch, (task_id, step.key, tenant, epoch, int(step.error is None)), step, fut))
        return fut

    def put_event(self, tenant: str, task_id: str, epoch: int, event: TaskEvent) -> None:
        """Log a held task's event in the next batch (see `Store.put_event`)."""
        self._put((_EVENT, task_id, epoch, (task_id, event.seq, tenant, epoch, event.type), event.data, None))

    async def flush(self) -> None:
        """Wait until everything queued so far has committed."""
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._put((_BARRIER, None, "*", fut))
        await fut

    async def _writer(self) -> None:
        items = self._items
        while True:
            await self._ready.wait()
            self._ready.clear()
            while items:
                batch = []
                while items and len(batch) < _MAX_BATCH:
                    batch.append(items.popleft())
                stop = any(item[0] == _STOP for item in batch)
                batch = [item for item in batch if item[0] != _STOP]
                if batch:
                    await self._commit(batch)
                if stop and not items:
                    return

    async def _commit(self, batch: list[tuple[Any, ...]]) -> None:
        conn = self._wconn
        assert conn is not None
        results: list[Any] = [None] * len(batch)
        notify: set[str] = set()
        nops = 0
        try:
            async with conn.transaction():
                rows: list[int] = []
                row_tasks: set[str] = set()
                for i, item in enumerate(batch):
                    kind = item[0]
                    if kind <= _EVENT:
                        rows.append(i)
                        row_tasks.add(item[1])
                        continue
                    fence = item[2]
                    if rows and (fence == "*" or fence in row_tasks):
                        await self._write_rows(conn, batch, rows, results, notify)
                        rows = []
                        row_tasks.clear()
                    if kind == _OP:
                        nops += 1
                        try:
                            async with conn.transaction():  # a savepoint
                                out = results[i] = await _drive(conn, item[1])
                        except Exception as exc:  # noqa: BLE001 - handed to the awaiting caller
                            results[i] = _Failed(exc)
                        else:
                            notify.update(e.task_id for e in out.events)
                if rows:
                    await self._write_rows(conn, batch, rows, results, notify)
                if notify:
                    await conn.execute(
                        "SELECT pg_notify($1, p) FROM unnest($2::text[]) AS p",
                        f"{self.dialect.notify_channel}_events", _chunks(sorted(notify)),
                    )
            self.stats.transactions += 1
            self.stats.ops += nops
        except Exception as exc:  # noqa: BLE001 - the whole batch failed: every caller learns why
            logger.warning("a write batch failed: %s", exc)
            results = [_Failed(exc)] * len(batch)
        for item, value in zip(batch, results, strict=True):
            fut = item[-1]
            if fut is None or fut.done():
                continue
            if type(value) is _Failed:
                fut.set_exception(value.exc)
            else:
                fut.set_result(value)

    async def _write_rows(self, conn: asyncpg.Connection, batch: list[tuple[Any, ...]], rows: list[int],
                          results: list[Any], notify: set[str]) -> None:
        # Fencing: lock the tasks' rows (a takeover's UPDATE waits for this batch), keep the rows whose
        # task still runs under the epoch they name.
        ids = sorted({batch[i][1] for i in rows})
        epochs = dict(await conn.fetch(
            "SELECT id, lease_epoch FROM tasks WHERE id = ANY($1::text[]) AND status = 'running' ORDER BY id FOR SHARE",
            ids,
        ))
        now = time.time()
        steps: list[list[Any]] = [[] for _ in range(7)]
        events: list[list[Any]] = [[] for _ in range(7)]
        for i in rows:
            item = batch[i]
            if epochs.get(item[1]) != item[2]:
                results[i] = _Failed(LeaseLost(f"task {item[1]}: lease epoch {item[2]} was taken over"))
                continue
            cols = steps if item[0] == _STEP else events
            for c, v in zip(cols, item[3], strict=False):
                c.append(v)
            if item[0] == _STEP:
                cols[5].append(step_to_json(item[4]))
            else:
                cols[5].append(dumps(item[4]))
                notify.add(item[1])
            cols[6].append(now)
        if steps[0]:
            await conn.execute(_INSERT_STEPS, *steps)
        if events[0]:
            await conn.execute(_INSERT_EVENTS, *events)
        self.stats.rows += len(steps[0]) + len(events[0])


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

