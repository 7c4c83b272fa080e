"""`Store`: the engine's storage, one abstract class with a subclass per SQL dialect, chosen by URL.

    store = await open_store("sqlite:///loomiq.db")      # or postgresql://user@host/db
    ...
    await store.close()

``LOOMIQ_DATABASE_URL`` is used when no URL is given; its default is ``sqlite:///loomiq.db`` in the
working directory. A subclass provides four things: a group-commit writer (`run_op`, `put_step`,
`put_event`, `flush`), reads (`fetch`), migrations, and cross-process wake-ups. Everything the engine
does with the data (the transactions in `_ops` and the reads below) is written once, here and there.

Group commit. Every write of a process goes through its store's single writer, which takes all that
is queued (journal rows, events, status changes) and commits it in one transaction; a caller awaiting
a write resumes once its batch has committed. `stats` counts the transactions and rows.
"""

from __future__ import annotations

import asyncio
import os
from abc import ABC, abstractmethod
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

from ..models import ModelResponse
from ..runtime import StepResult
from ..tools import ToolCallRecord
from ._codec import (
    ATTEMPT_COLUMNS,
    TASK_COLUMNS,
    WORKER_COLUMNS,
    JournalEntry,
    attempt_from_row,
    event_from_row,
    journal_entry_from_json,
    task_from_row,
    worker_from_row,
)
from ._records import FastOp
from ._stmt import Dialect, Op, Outcome, Stmt
from .errors import EngineClosed
from .events import EventHub
from .task import TERMINAL_STATUSES, Attempt, Task, TaskEvent, WorkerInfo

DEFAULT_URL = "sqlite:///loomiq.db"
"""Where the engine keeps its data when neither an URL nor ``LOOMIQ_DATABASE_URL`` is given."""


def database_url(url: str | None = None) -> str:
    """`url`, else ``$LOOMIQ_DATABASE_URL``, else `DEFAULT_URL`."""
    return url or os.environ.get("LOOMIQ_DATABASE_URL") or DEFAULT_URL


@dataclass(slots=True)
class WriterStats:
    """What a store's writer has done: committed transactions, and the rows and operations in them."""

    transactions: int = 0
    rows: int = 0
    """Journal and event rows written through the batch path."""
    ops: int = 0
    """Transactional operations (submissions, claims, finishes...)."""


class Store(ABC):
    """A database holding tasks, their journals and event logs, leases and workers.

    Use `Store.from_url` (or `open_store`) rather than a subclass. A store lives on the event loop
    that opened it; `hub` delivers its events to this process at once.
    """

    schemes: ClassVar[tuple[str, ...]] = ()
    dialect: Dialect
    follow_poll_s: float = 0.05
    """How often the store's shared follower (`_follow.LogFollower`) reads the logs of every task
    followed in this process, for events written by other processes."""
    claim_poll_s: float = 0.1
    """How often an idle worker looks for claimable tasks written by other processes."""
    cancel_poll_s: float = 0.5
    """How often a holder looks for cancellations requested by other processes."""
    agents_poll_s: float = 1.0
    """How often an engine following the agents registered over the API reads their version (one
    row) for changes made by other processes (PostgreSQL: a safety net under NOTIFY)."""
    lease_s: float = 10.0
    """The lease of the engine using this store (set before `open`): a PostgreSQL writer session left
    idle inside a transaction for half of it is ended by the server, so a frozen process cannot keep
    row locks that a takeover needs."""

    _registry: ClassVar[dict[str, type[Store]]] = {}

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        for scheme in cls.schemes:
            Store._registry[scheme] = cls

    def __init__(self, url: str) -> None:
        self.url = url
        self.stats = WriterStats()
        self._hub: EventHub | None = None
        self.on_cancel: Callable[[str], None] | None = None
        """Called with a task id when another process asks to cancel it (PostgreSQL NOTIFY)."""
        self.on_agents_changed: Callable[[], None] | None = None
        """Called when some process changed the agents registered over the API (PostgreSQL NOTIFY), or
        when notifications may have been missed (the listening connection came back)."""

    @staticmethod
    def from_url(url: str | None = None, **options: Any) -> Store:
        """An unopened store for `url` (see `database_url`); `options` go to the dialect's class."""
        url = database_url(url)
        scheme = url.split(":", 1)[0].split("+", 1)[0].lower()
        if scheme == "sqlite":
            from . import _sqlite  # noqa: F401  (registers the class)
        elif scheme in ("postgresql", "postgres"):
            from . import _postgres  # noqa: F401
        cls = Store._registry.get(scheme)
        if cls is None:
            raise ValueError(f"unsupported database URL {url!r} (use sqlite:///path or postgresql://...)")
        return cls(url, **options)

    @property
    def hub(self) -> EventHub:
        """This process's live delivery of the store's events."""
        if self._hub is None:
            raise EngineClosed("the store is not open")
        return self._hub

    async def __aenter__(self) -> Store:
        await self.open()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    # -- what a dialect provides ----------------------------------------------------------------

    @abstractmethod
    async def open(self) -> None:
        """Connect, bring the schema to the latest version (or the one asked for), start the writer."""

    @abstractmethod
    async def close(self) -> None:
        """Commit what is queued, stop the writer, close every connection."""

    @abstractmethod
    async def schema_version(self) -> int:
        """The schema version of the database (0 when empty)."""

    @abstractmethod
    def _enqueue(self, op: Op[Outcome], fence: str | None, urgent: bool = True,
                 fast: FastOp | None = None) -> asyncio.Future[Outcome]:
        """Queue a transactional operation for the writer's next batch; the future resolves once
        it committed. Not `urgent`: it may wait a moment (the store's linger) to share the commit of
        the next write someone awaits. `fast`: the operation's record (`_records.SubmitClaimed`,
        `_records.FinishFinal`), which the writer may write together with others of its kind."""

    @abstractmethod
    def expedite(self) -> None:  # noqa: B027 - optional: stores without a linger have nothing to hurry
        """Commit what is queued without waiting for the linger of writes nobody awaits (call it
        before awaiting the future of `start_op`)."""

    @abstractmethod
    def put_step(self, tenant: str, task_id: str, epoch: int, step: StepResult) -> Awaitable[None]:
        """Journal a step under lease `epoch`; await the result to know it committed (`LeaseLost`
        if the lease was taken over: then nothing was written)."""

    @abstractmethod
    def put_tool_entry(self, tenant: str, task_id: str, epoch: int, key: str,
                       value: ModelResponse | ToolCallRecord) -> Awaitable[None]:
        """Journal a tool loop's finished model turn or tool call under `key`, fenced and awaited like
        `put_step` (kept when a failed run is retried: a tool's side effect happens once)."""

    def put_event(self, tenant: str, task_id: str, epoch: int, event: TaskEvent) -> None:
        """Log a held task's event in the next batch (fenced like `put_step`; not awaited)."""
        self.put_event_row(tenant, task_id, epoch, event.seq, event.type, event.data)

    @abstractmethod
    def put_event_row(self, tenant: str, task_id: str, epoch: int, seq: int, type_: str,
                      data: Mapping[str, Any] | str) -> None:
        """`put_event` of an event given by its parts; `data` may be its JSON text already."""

    @abstractmethod
    async def flush(self) -> None:
        """Return once everything queued before this call has committed."""

    @abstractmethod
    async def fetch(self, stmt: Stmt, *, blocking: bool = False) -> Any:
        """Run a read. `blocking` marks reads that may be slow (scans); the SQLite store runs those
        off the event loop, and cheap point reads on it."""

    # -- operations -----------------------------------------------------------------------------

    async def run_op(self, op: Op[Outcome], *, fence: str | None = None) -> Outcome:
        """Run `op` (from `_ops`) in the next batch, then deliver its events in this process.

        Journal and event rows queued before `op` are written before it when they belong to task
        `fence` (``"*"``: any task). Pass the task whose run `op` ends (its rows are fenced on the
        task still running), or ``"*"`` for claims (they change epochs); other operations (submit,
        cancel, renew) do not affect whether a queued row may be written, so rows are batched past them.
        """
        out = await self._enqueue(op, fence)
        self._delivered(out)
        return out

    def start_op(self, op: Op[Outcome], *, fence: str | None = None, fast: FastOp | None = None
                 ) -> asyncio.Future[Outcome]:
        """Queue `op` now, without waiting: later writes of this process commit after it (the
        writer is FIFO). Await the future for its outcome (its events are delivered on commit); it
        commits with the next awaited write, or after the store's linger (`expedite` hurries it).
        `fast`: the operation's record, when it has one (see `_enqueue`)."""
        fut = self._enqueue(op, fence, False, fast)
        fut.add_done_callback(self._started_done)
        return fut

    def _started_done(self, fut: asyncio.Future[Outcome]) -> None:
        if not fut.cancelled() and fut.exception() is None:
            self._delivered(fut.result())

    def _delivered(self, out: Outcome) -> None:
        if out.events:
            self.hub.publish_all(out.events)
        if out.work:
            self.hub.notify_work()

    # -- reads ----------------------------------------------------------------------------------

    async def get_task(self, task_id: str) -> Task | None:
        """The task with this id, or None."""
        row = await self.fetch(Stmt(f"SELECT {TASK_COLUMNS} FROM tasks WHERE id = ?", (task_id,), "one"))
        return task_from_row(row) if row is not None else None

    async def list_tasks(
        self,
        *,
        tenant_id: str | None = "default",
        status: str | Sequence[str] | None = None,
        dead: bool | None = None,
        limit: int = 100,
        offset: int = 0,
    ) -> list[Task]:
        """Tasks, newest first, filtered by tenant (None: all), status(es) and dead-letter flag."""
        where: list[str] = []
        args: list[object] = []
        if tenant_id is not None:
            where.append("tenant_id = ?")
            args.append(tenant_id)
        if status is not None:
            statuses = [status] if isinstance(status, str) else list(status)
            sql, a = self.dialect.in_("status", statuses)
            where.append(sql)
            args.extend(a)
        if dead is not None:
            where.append("dead = ?")
            args.append(int(dead))
        clause = f" WHERE {' AND '.join(where)}" if where else ""
        rows = await self.fetch(Stmt(
            f"SELECT {TASK_COLUMNS} FROM tasks{clause} ORDER BY created_at DESC, id LIMIT ? OFFSET ?",
            (*args, limit, offset), "all",
        ), blocking=True)
        return [task_from_row(r) for r in rows]

    async def attempts(self, task_id: str) -> list[Attempt]:
        """Every run of the task, first to last."""
        rows = await self.fetch(Stmt(
            f"SELECT {ATTEMPT_COLUMNS} FROM attempts WHERE task_id = ? ORDER BY attempt", (task_id,), "all"
        ))
        return [attempt_from_row(r) for r in rows]

    async def read_events(self, task_id: str, after: int = 0, limit: int = 1000) -> list[TaskEvent]:
        """Logged events of the task with ``seq > after``, in order."""
        rows = await self.fetch(Stmt(
            "SELECT seq, type, data FROM events WHERE task_id = ? AND seq > ? ORDER BY seq LIMIT ?",
            (task_id, after, limit), "all",
        ))
        return [event_from_row(task_id, r) for r in rows]

    async def journal(self, task_id: str) -> dict[str, JournalEntry]:
        """The task's journalled steps by step key, and its steps' tool loop entries (finished model
        turns and tool calls) by their keys (``<step>/turn/<t>``, ``<step>/turn/<t>/call/<i>``)."""
        rows = await self.fetch(Stmt("SELECT step_key, result FROM steps WHERE task_id = ?", (task_id,), "all"))
        return {key: journal_entry_from_json(text) for key, text in rows}

    async def outputs(self, task_ids: Sequence[str]) -> dict[str, str]:
        """The outputs of these (completed) tasks, by id."""
        if not task_ids:
            return {}
        where, args = self.dialect.in_("id", list(task_ids))
        rows = await self.fetch(Stmt(f"SELECT id, output FROM tasks WHERE {where}", args, "all"))
        return {tid: out for tid, out in rows}

    async def has_claimable(self, now: float) -> bool:
        """Whether some task is ready to claim or has an expired lease (a cheap read before a claim)."""
        # Two probes, each on its partial index (an OR of the two would scan the table).
        row = await self.fetch(Stmt(
            "SELECT EXISTS (SELECT 1 FROM tasks WHERE status = 'queued' AND ready_at <= ?) "
            "OR EXISTS (SELECT 1 FROM tasks WHERE status = 'running' AND lease_expires < ?)", (now, now), "val",
        ))
        return bool(row)

    async def cancel_requested(self, task_ids: Sequence[str]) -> list[str]:
        """Which of these tasks another process asked to cancel."""
        if not task_ids:
            return []
        where, args = self.dialect.in_("id", list(task_ids))
        rows = await self.fetch(Stmt(f"SELECT id FROM tasks WHERE {where} AND cancel_requested = 1", args, "all"))
        return [r[0] for r in rows]

    async def workers(self) -> list[WorkerInfo]:
        """Every worker's heartbeat row, most recent first."""
        rows = await self.fetch(Stmt(
            f"SELECT {WORKER_COLUMNS} FROM workers ORDER BY heartbeat_at DESC", (), "all"
        ), blocking=True)
        return [worker_from_row(r) for r in rows]

    async def counts(self, tenant_id: str | None = "default") -> dict[str, int]:
        """How many tasks are in each status."""
        clause, args = ("WHERE tenant_id = ? ", (tenant_id,)) if tenant_id is not None else ("", ())
        rows = await self.fetch(Stmt(
            f"SELECT status, COUNT(*) FROM tasks {clause}GROUP BY status", args, "all"
        ), blocking=True)
        return {s: n for s, n in rows}

    async def queue_depth(self, tenant_id: str | None = None) -> dict[tuple[str, str], int]:
        """Tasks not yet ended, of `tenant_id` (None: every tenant's), by (status, priority): queued, waiting
        and running."""
        # On SQLite, `+tenant_id` keeps the planner off the (tenant_id, created_at) index: following it costs
        # a random row read per task of the tenant (310 ms at 100,000 tasks), where one scan costs 33 ms.
        column = "+tenant_id" if self.dialect.name == "sqlite" else "tenant_id"
        clause, args = (f"AND {column} = ? ", (tenant_id,)) if tenant_id is not None else ("", ())
        rows = await self.fetch(Stmt(
            "SELECT status, priority, COUNT(*) FROM tasks WHERE status IN ('queued', 'waiting', 'running') "
            f"{clause}GROUP BY status, priority", args, "all",
        ), blocking=True)
        return {(st, pr): int(n) for st, pr, n in rows}

    async def pending_approvals_summary(self) -> tuple[int, float | None]:
        """Workflow approvals waiting for an answer, every tenant's: how many, and when the oldest was asked."""
        row = await self.fetch(Stmt(
            "SELECT COUNT(*), MIN(created_at) FROM workflow_approvals WHERE status = 'pending'", (), "one",
        ), blocking=True)
        return (int(row[0]), None if row[1] is None else float(row[1])) if row else (0, None)

    async def activity(self, tenant_id: str, since: float, limit: int = 20_000
                       ) -> list[tuple[float, float | None, float | None, str, float]]:
        """(created_at, started_at, finished_at, status, cost_usd) of the tenant's tasks created since `since`,
        newest first, at most `limit` (for dashboards)."""
        rows = await self.fetch(Stmt(
            "SELECT created_at, started_at, finished_at, status, cost_usd FROM tasks WHERE tenant_id = ? "
            "AND created_at >= ? ORDER BY created_at DESC LIMIT ?", (tenant_id, since, limit), "all",
        ), blocking=True)
        return [(float(c), None if s is None else float(s), None if f is None else float(f), st, float(cost or 0))
                for c, s, f, st, cost in rows]

    async def task_stats(self, tenant_id: str | None = "default") -> list[dict[str, Any]]:
        """Per (status, strategy): task count, mean run duration of finished tasks, tokens and cost."""
        strategy = (
            "(request::json ->> 'strategy')" if self.dialect.name == "postgresql"
            else "json_extract(request, '$.strategy')"
        )
        clause, args = ("WHERE tenant_id = ? ", (tenant_id,)) if tenant_id is not None else ("", ())
        rows = await self.fetch(Stmt(
            f"SELECT status, {strategy} AS strategy, COUNT(*), "
            "AVG(CASE WHEN finished_at IS NOT NULL AND started_at IS NOT NULL "
            "THEN finished_at - started_at END), "
            f"SUM(cost_usd), SUM(input_tokens), SUM(output_tokens) FROM tasks {clause}"
            "GROUP BY status, strategy ORDER BY status, strategy", args, "all",
        ), blocking=True)
        return [
            {"status": st, "strategy": sg, "count": int(n), "mean_duration_s": None if d is None else float(d),
             "cost_usd": float(c or 0.0), "input_tokens": int(i or 0), "output_tokens": int(o or 0)}
            for st, sg, n, d, c, i, o in rows
        ]


def is_terminal(status: str) -> bool:
    """Whether a task in `status` has ended for good."""
    return status in TERMINAL_STATUSES


def database_file(url: str | None = None) -> str | None:
    """The file of a SQLite database URL (see `database_url`); None for a server database.
    Raises `ValueError` for a SQLite URL that names no file."""
    url = database_url(url)
    if not url.lower().startswith("sqlite:"):
        return None
    from ._sqlite_sql import sqlite_path

    return sqlite_path(url)


async def open_store(url: str | None = None, **options: Any) -> Store:
    """An opened store for `url` (see `Store.from_url`); close it with `await store.close()`."""
    store = Store.from_url(url, **options)
    await store.open()
    return store


__all__ = ["DEFAULT_URL", "Store", "WriterStats", "database_file", "database_url", "open_store"]
