"""Driving durable workflow runs (see `workflow_runs`): `drive` folds a run's journal and does what
is due (submits node tasks, writes approval rows, takes deadlines, starts child runs, journals
results), idempotently; `serve` drives the runs that are due on any live process.

The fold of a run with node tasks out stays in memory (`_Fold`): a pass reads only the journal rows
written since (by another process, or by an answer, pause or cancel), folds them, then folds what it
learns itself (the end of a node's task, told by the task's watcher; a deadline that passed; a child
run's end) and acts on the actions that come out, until nothing more is due; then ONE transaction
journals the results and notices, writes the approval rows and the run's row, and submits the tasks
of the nodes that became ready (`_ops.submit` inside it: a node's result and the next node's task
commit together or not at all). That transaction first checks, under the run's row lock, that the
journal still ends where the fold does; when another writer got in between, it writes nothing, the
fold is dropped and the pass starts again from the journal. A process without the fold (a fresh one
after a crash, or once the run parked on approvals, when it is dropped to hold no memory) folds the
journal from the start and does every action again: each is idempotent (tasks under the idempotency
key ``wf:<run>:<step_key>``, rows under unique keys)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import weakref
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from ..runtime.events import ApprovalRequested, ApprovalResolved, NodeFinished, NodeStarted, WorkflowFinished
from ..workflows import (
    Action,
    ApprovalTimedOut,
    CancelTask,
    Event,
    FinishRun,
    NodeFailed,
    NodeStatus,
    NodeSucceeded,
    RequestApproval,
    ResolveApproval,
    RunState,
    StartSubworkflow,
    StartTask,
    SubworkflowNode,
    WorkflowDefinition,
    advance,
    initial_state,
)
from ..workflows.journal import event_from_json, event_to_json
from . import _ops
from ._codec import request_to_json
from ._ops import Outcome, Stmt
from ._submission import build_request
from ._text import check_text
from ._workflow_children import child_run_id
from ._workflow_rows import (
    APPROVAL_COLUMNS,
    RUN_COLUMNS,
    TERMINAL,
    Journal,
    RunsBase,
    WorkflowRun,
    approval_id,
    dumps,
    event_key,
    notice,
    plain,
    run_from_row,
)
from .errors import EngineError
from .task import DEFAULT_TENANT, SubmitOptions, Task, TaskRequest, new_task_id

logger = logging.getLogger("loomiq.engine.workflows")

__all__ = ["DriverMixin"]

MAX_FOLDS = 4096
"""Folds kept in memory at most (the least recently driven are dropped first, and rebuilt if needed)."""


@dataclass(slots=True)
class _Fold:
    """A run's journal folded, as this process last saw and wrote it."""

    run: WorkflowRun
    d: WorkflowDefinition
    state: RunState
    seq: int
    """The journal's last sequence number (of any row) folded here."""
    starts: dict[str, StartTask] = field(default_factory=dict)
    """Node tasks asked for, by step key (`_running` says which are still out)."""
    children: dict[str, StartSubworkflow] = field(default_factory=dict)
    tasks: dict[str, str] = field(default_factory=dict)
    """Step key -> the id of its engine task, where known."""
    ended: dict[str, Task] = field(default_factory=dict)
    """Task id -> the task as it ended (told by its watcher), not yet journalled."""
    row: tuple[int, int, float | None] | None = None
    """(paused, active tasks, wake_at) as this process last wrote them on the run's row."""

    def fold(self, events: Sequence[Event]) -> list[Action]:
        """Apply `events`; the actions they bring, node tasks and child runs kept in `starts`/`children`."""
        out: list[Action] = []
        for event in events:
            t = advance(self.d, self.state, event)
            self.state = t.state
            for a in t.actions:
                if isinstance(a, StartTask):
                    self.starts[a.step_key] = a
                elif isinstance(a, StartSubworkflow):
                    self.children[a.step_key] = a
                else:
                    out.append(a)
        return out

    def prune(self) -> None:
        """Forget node tasks and child runs that are no longer out."""
        for key in [k for k, a in self.starts.items() if not _running(self.state, a)]:
            del self.starts[key]
            self.tasks.pop(key, None)
        for key in [k for k, c in self.children.items() if not _running(self.state, c)]:
            del self.children[key]
        out = set(self.tasks.values())
        for tid in [t for t in self.ended if t not in out]:
            del self.ended[tid]


@dataclass(slots=True)
class _Submission:
    key: str
    start: StartTask
    task_id: str
    request: TaskRequest
    request_json: str


class DriverMixin(RunsBase):
    """`WorkflowRuns`' driver."""

    _locks: weakref.WeakValueDictionary[str, asyncio.Lock]
    _watching: dict[str, asyncio.Task[None]]
    _wake: asyncio.Event
    _folds: OrderedDict[str, _Fold]
    _waiters: dict[str, set[asyncio.Event]]

    def _lock(self, run_id: str) -> asyncio.Lock:
        lock = self._locks.get(run_id)
        if lock is None:
            lock = self._locks[run_id] = asyncio.Lock()
        return lock

    async def drive(self, run_id: str) -> None:
        """Fold the run's journal and do what is due (see the module docstring), until nothing more is."""
        await self._drive(run_id, news=True)

    async def _drive(self, run_id: str, *, news: bool) -> None:
        """`drive`; without `news`, the first pass reads no news (see `_step`)."""
        async with self._lock(run_id):
            for _ in range(1000):
                try:
                    again = await self._step(run_id, news=news)
                    news = True
                except BaseException:
                    self._folds.pop(run_id, None)  # it may hold events that were never journalled
                    raise
                if not again:
                    return

    def _changed(self, run_id: str) -> None:
        """Wake whoever `wait`s on the run in this process."""
        for ev in self._waiters.pop(run_id, ()):
            ev.set()

    # ---- one pass ---------------------------------------------------------------------------------

    async def _rebuild(self, run_id: str) -> tuple[_Fold, list[Action]] | None:
        """The run's fold from its whole journal, and every action on the way (None once it ended)."""
        row = await self.store.fetch(Stmt(
            f"SELECT {RUN_COLUMNS}, source FROM workflow_runs WHERE id = ?", (run_id,), "one"))
        if row is None:
            return None
        run = run_from_row(row)
        if run.status in TERMINAL:
            return None
        d = self._definition(run.workflow, row[11])
        rows = await self.store.fetch(Stmt(
            "SELECT seq, kind, type, data FROM workflow_events WHERE run_id = ? ORDER BY seq", (run_id,), "all"))
        f = _Fold(run, d, initial_state(d), int(rows[-1][0]) if rows else 0)
        actions = f.fold([event_from_json(r[2], r[3]) for r in rows if r[1] == "input"])
        # Node tasks submitted before (by this process or another, before a crash): their ids, and the
        # ends of those that ended.
        out = {f"wf:{run_id}:{k}": k for k, a in f.starts.items() if _running(f.state, a)}
        if out:
            where, args = self.store.dialect.in_("idempotency_key", list(out))
            found = await self.store.fetch(Stmt(
                f"SELECT id, status, idempotency_key FROM tasks WHERE tenant_id = ? AND {where}",
                (run.tenant_id, *args), "all"))
            for tid, status, ikey in found:
                f.tasks[out[ikey]] = tid
                if status in ("completed", "failed", "cancelled", "timed_out"):
                    f.ended[tid] = await self.engine.get_task(tid)
        return f, actions

    async def _news(self, f: _Fold) -> list[Action]:
        """Fold the journal rows written since `f` was (by other writers); their actions."""
        rows = await self.store.fetch(Stmt(
            "SELECT seq, kind, type, data FROM workflow_events WHERE run_id = ? AND seq > ? ORDER BY seq",
            (f.run.id, f.seq), "all"))
        if not rows:
            return []
        f.seq = int(rows[-1][0])
        return f.fold([event_from_json(r[2], r[3]) for r in rows if r[1] == "input"])

    async def _step(self, run_id: str, *, news: bool = True) -> bool:
        """One pass; True when it must be made again (the fold was stale: it is rebuilt). Without
        `news` a warm fold is taken as current: a pass a node task's end started reads nothing before
        its transaction, whose check on the journal's end finds a stale fold all the same."""
        f = self._folds.get(run_id)
        if f is None:
            built = await self._rebuild(run_id)
            if built is None:
                return False
            f, todo = built
            self._folds[run_id] = f
        else:
            self._folds.move_to_end(run_id)
            todo = await self._news(f) if news else []
        while len(self._folds) > MAX_FOLDS:
            self._folds.popitem(last=False)
        if f.state.finished and not any(isinstance(a, FinishRun) for a in todo):
            # Finished in the journal; its row says so too (both are written in one transaction).
            self._folds.pop(run_id, None)
            return False
        run = f.run
        now = self.clock()
        events: list[Event] = []
        notices: Journal = []
        updates: list[Stmt] = []
        submits: list[_Submission] = []
        children: list[str] = []
        finish: FinishRun | None = None
        while True:
            found: list[Event] = []
            wake: list[float] = []
            active = 0
            for a in todo:
                if isinstance(a, FinishRun):
                    finish = a
                elif isinstance(a, RequestApproval | ResolveApproval):
                    self._approval_rows(run, a, now, updates, notices)
                elif isinstance(a, CancelTask) and isinstance(f.d.by_id.get(a.node), SubworkflowNode):
                    await self._cancel_child(child_run_id(run_id, a.node, a.attempt), a.reason)
                elif isinstance(a, CancelTask):
                    item = f"/{a.index}" if a.index is not None else ""
                    await self._cancel_task(run, f.tasks.get(f"node/{a.node}{item}/{a.attempt}"),
                                            f"wf:{run_id}:node/{a.node}{item}/{a.attempt}")
            pending = {s.key for s in submits}
            for key, a in f.starts.items():
                if not _running(f.state, a):
                    continue
                if key in pending:
                    active += 1
                    continue
                if a.not_before is not None and a.not_before > now:
                    wake.append(a.not_before)
                    continue
                tid = f.tasks.get(key)
                if tid is None:
                    try:
                        submits.append(self._submission(run, key, a))
                    except Exception as exc:  # noqa: BLE001 - a task that cannot be planned fails its node, once
                        found.append(NodeFailed(a.node, a.attempt, f"cannot start the task: {exc}", now, a.index))
                        continue
                    active += 1
                elif tid in f.ended:
                    task = f.ended.pop(tid)
                    if task.status == "completed":
                        found.append(NodeSucceeded(a.node, a.attempt, task.output, now, a.index))
                    else:
                        found.append(NodeFailed(a.node, a.attempt, task.error or task.status, now, a.index))
                    notices.append(notice(NodeFinished(a.node, a.attempt, a.index, task.status, task.error), key))
                else:
                    active += 1
                    self._watch(run_id, tid)  # (a no-op when this process watches it already)
            for c in f.children.values():
                if not _running(f.state, c):
                    continue
                if c.not_before is not None and c.not_before > now:
                    wake.append(c.not_before)
                    continue
                cid = child_run_id(run_id, c.node, c.attempt)
                if cid not in children:
                    children.append(cid)
                ended = await self._child(replace(run, paused=f.state.paused), c, cid, notices, wake)
                if ended is not None:
                    found.append(ended)
            # Deadlines that passed: each taken once (the journal key is per node and round).
            for node_id, ns in f.state.nodes.items():
                if ns.status == NodeStatus.WAITING_APPROVAL and ns.approval is not None and ns.approval.deadline:
                    if ns.approval.deadline <= now:
                        found.append(ApprovalTimedOut(node_id, ns.approval.round, now))
                    else:
                        wake.append(ns.approval.deadline)
            if not found or finish is not None:
                break
            events += found
            todo = f.fold(found)
        submits = [s for s in submits if _running(f.state, s.start)]  # (a later event may have stopped a node)
        parent = await self._parent_of(run_id) if finish is not None else None
        if parent is not None:  # the parent, parked on this child, is driven again (by any process)
            updates.append(Stmt("UPDATE workflow_runs SET wake_at = ? WHERE id = ? AND status = 'running'",
                                (now, parent)))
        row = (int(f.state.paused), active, min(wake) if wake else None)
        if finish is not None:
            outputs = None if finish.outputs is None else plain(dict(finish.outputs))
            notices.append(notice(WorkflowFinished(str(finish.status), finish.error, outputs)))
            updates.append(Stmt(
                "UPDATE workflow_runs SET status = ?, error = ?, outputs = ?, paused = ?, active_tasks = 0, "
                "wake_at = NULL, updated_at = ? WHERE id = ?",
                (str(finish.status), finish.error, None if finish.outputs is None else dumps(finish.outputs),
                 int(f.state.paused), now, run_id)))
        elif row != f.row or events or notices or submits or updates:
            updates.append(Stmt(
                "UPDATE workflow_runs SET paused = ?, active_tasks = ?, wake_at = ?, updated_at = ? WHERE id = ?",
                (*row, now, run_id)))
        if not updates:
            self._park(f)
            return False
        journal: Journal = [*((event_key(e), "input", e.type, event_to_json(e)) for e in events), *notices]
        out = await self.store.run_op(self._write(f, updates, submits, journal, children if finish is None else [],
                                                  now))
        if out.value is None:  # another writer got in first: start again from the journal
            self._folds.pop(run_id, None)
            return True
        f.seq, started = out.value
        f.row = row
        for s, (tid, fresh) in zip(submits, started, strict=True):
            f.tasks[s.key] = tid
            if fresh:
                for hook in self.on_node_start:
                    hook(run_id, s.key)
            self._watch(run_id, tid)
        self._changed(run_id)
        if finish is not None:
            self._folds.pop(run_id, None)
            if parent is not None:
                self._wake.set()
        else:
            self._park(f)
        return False

    def _park(self, f: _Fold) -> None:
        """Keep the fold only while the run has node tasks or child runs out (a run parked on approvals
        or a backoff holds no memory)."""
        f.prune()
        if not f.starts and not f.children:
            self._folds.pop(f.run.id, None)

    def _submission(self, run: WorkflowRun, key: str, a: StartTask) -> _Submission:
        """The node's task as `TaskEngine.submit` would queue it (checked and planned here; queued by `_write`)."""
        t = a.task
        ikey = f"wf:{run.id}:{key}"
        context = {"workflow_run": run.id, "node": str(a.node)}
        agents = list(t.agents) or None
        for name, value in (("prompt", t.prompt), ("strategy", t.strategy), ("agents", agents),
                            ("capabilities", t.capabilities), ("context", context), ("idempotency_key", ikey)):
            check_text(name, value)
        opts = SubmitOptions(strategy=t.strategy, agents=agents, capabilities=t.capabilities, context=context,
                             timeout_s=t.timeout_s, idempotency_key=ikey, tenant_id=run.tenant_id)
        tid = new_task_id()
        request, _ = build_request(self.engine.runner, t.prompt, opts, tid)
        return _Submission(key, a, tid, request, request_to_json(request))

    def _approval_rows(self, run: WorkflowRun, a: RequestApproval | ResolveApproval, now: float,
                       updates: list[Stmt], notices: Journal) -> None:
        aid = approval_id(run.id, a.node, a.round)
        if isinstance(a, RequestApproval):
            updates.append(Stmt(
                f"INSERT INTO workflow_approvals ({APPROVAL_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, "
                "'pending', NULL, NULL, NULL, ?, NULL) ON CONFLICT DO NOTHING",
                (aid, run.id, run.tenant_id, a.node, a.round, a.message,
                 dumps({"roles": list(a.approvers.roles), "subjects": list(a.approvers.subjects)}),
                 dumps(a.require), a.deadline, now)))
            approvers = {"roles": list(a.approvers.roles), "subjects": list(a.approvers.subjects)}
            notices.append(notice(ApprovalRequested(aid, a.node, a.round, a.message, approvers, a.require,
                                                    a.deadline), aid))
        else:
            updates.append(Stmt(
                "UPDATE workflow_approvals SET status = ?, decision = ?, comment = ?, decided_by = ?, "
                "resolved_at = ? WHERE id = ? AND status = 'pending'",
                (a.outcome, a.decision, a.comment, a.decided_by, now, aid)))
            notices.append(notice(ApprovalResolved(aid, a.node, a.round, a.outcome, a.decision, a.comment,
                                                   a.decided_by), aid))

    def _write(self, f: _Fold, updates: list[Stmt], submits: list[_Submission], journal: Journal,
               children: list[str], now: float) -> Any:
        """The pass's transaction (see the module docstring). Value: None when the journal no longer ends
        where the fold does (nothing written), else (its last sequence number, [(task id, queued now)]
        for each submission)."""
        d = self.store.dialect
        run = f.run
        aging_s = self.engine.config.aging_s
        yield Stmt(f"SELECT id FROM workflow_runs WHERE id = ?{d.for_update}", (run.id,), "val")
        seq = yield Stmt("SELECT COALESCE(MAX(seq), 0) FROM workflow_events WHERE run_id = ?", (run.id,), "val")
        if seq != f.seq:
            return Outcome(value=None)
        out = Outcome()
        for stmt in updates:  # noqa: UP028 - the store sends each result back (a list iterator cannot take it)
            yield stmt
        started: list[tuple[str, bool]] = []
        rows = list(journal)
        for s in submits:
            sub = yield from _ops.submit(d, s.task_id, s.request, s.request_json, now, aging_s)
            fresh = bool(sub.events)
            started.append((str(sub.value), fresh))
            if fresh:
                out.events += sub.events
                out.work = out.work or sub.work
                a = s.start
                rows.append(notice(NodeStarted(a.node, a.attempt, a.index, str(sub.value)), s.key))
        if children:
            # A child that ended before this row was written had its wake-up overwritten: wake now.
            marks = ", ".join("?" * len(children))
            ended = yield Stmt(f"SELECT COUNT(*) FROM workflow_runs WHERE id IN ({marks}) AND status <> 'running'",
                               tuple(children), "val")
            if ended:
                yield Stmt("UPDATE workflow_runs SET wake_at = ? WHERE id = ?", (now, run.id))
        for key, kind, type_, data in rows:
            n = yield Stmt(
                "INSERT INTO workflow_events (run_id, seq, key, tenant_id, kind, type, data, created_at) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING",
                (run.id, seq + 1, key, run.tenant_id, kind, type_, data, now))
            if n:
                seq += 1
        out.value = (seq, started)
        return out

    async def _cancel_task(self, run: WorkflowRun, tid: str | None, key: str) -> None:
        if tid is None:
            tid = await self.store.fetch(Stmt(
                "SELECT id FROM tasks WHERE tenant_id = ? AND idempotency_key = ?", (run.tenant_id, key), "val"))
        if tid is not None:
            with contextlib.suppress(EngineError):
                await self.engine.cancel_task(tid)

    # ---- watching and serving ---------------------------------------------------------------------

    def _watch(self, run_id: str, task_id: str) -> None:
        """Drive the run again as soon as its node task ends (while this process is up)."""
        if task_id in self._watching:
            return

        async def watch() -> None:
            try:
                task = await self.engine.wait(task_id)
                f = self._folds.get(run_id)
                if f is not None:
                    f.ended[task.id] = task
                await self._drive(run_id, news=f is None)
            except Exception:  # noqa: BLE001 - `serve` (any process) drives it later
                logger.debug("workflow run %s: watching task %s failed", run_id, task_id, exc_info=True)
            finally:
                self._watching.pop(task_id, None)

        self._watching[task_id] = asyncio.get_running_loop().create_task(watch(), name=f"loomiq-wf-{task_id}")

    async def due(self, limit: int = 100) -> list[str]:
        """Runs to drive now: running ones with node tasks out, or whose wake-up time came."""
        rows = await self.store.fetch(Stmt(
            "SELECT id FROM workflow_runs WHERE status = 'running' AND (active_tasks > 0 OR wake_at <= ?) "
            "ORDER BY updated_at LIMIT ?", (self.clock(), limit), "all"))
        return [r[0] for r in rows]

    async def tick(self) -> int:
        """Drive every run that is due once; returns how many."""
        ids = await self.due()
        for rid in ids:
            try:
                await self.drive(rid)
            except Exception:  # noqa: BLE001 - one broken run must not stop the others
                logger.exception("workflow run %s: driving failed", rid)
        return len(ids)

    async def serve(self) -> None:
        """Drive due runs every `poll_s` until cancelled (what workers run beside their tasks)."""
        while True:
            try:
                await self.tick()
            except Exception:  # noqa: BLE001 - a database hiccup: try again next poll
                logger.exception("workflow driver: tick failed")
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self.poll_s):
                    await self._wake.wait()
            self._wake.clear()

    async def wait(self, run_id: str, *, tenant_id: str = DEFAULT_TENANT, timeout_s: float | None = None,
                   until: Callable[[WorkflowRun], bool] | None = None) -> WorkflowRun:
        """Drive the run until it ends (or `until(run)` is true); returns it. Raises `TimeoutError`.
        Woken at once by this process's progress on the run; other processes' is seen within 50 ms."""
        drive = True
        async with asyncio.timeout(timeout_s):
            while True:
                changed = asyncio.Event()
                self._waiters.setdefault(run_id, set()).add(changed)
                try:
                    if drive:  # (not when this process's driver just made progress: it goes on by itself)
                        await self.drive(run_id)
                    run = await self.get_run(run_id, tenant_id=tenant_id)
                    if run.status in TERMINAL or (until is not None and until(run)):
                        return run
                    with contextlib.suppress(TimeoutError):
                        async with asyncio.timeout(min(self.poll_s, 0.05)):
                            await changed.wait()
                    drive = not changed.is_set()
                finally:
                    waiting = self._waiters.get(run_id)
                    if waiting is not None:
                        waiting.discard(changed)
                        if not waiting:
                            del self._waiters[run_id]

    async def close(self) -> None:
        """Stop watching node tasks (the runs stay as they are; any process drives them later)."""
        for t in list(self._watching.values()):
            t.cancel()
        await asyncio.gather(*self._watching.values(), return_exceptions=True)
        self._watching.clear()
        self._folds.clear()


def _running(state: RunState, a: StartTask | StartSubworkflow) -> bool:
    ns = state.nodes.get(a.node)
    if ns is None:
        return False
    index = getattr(a, "index", None)
    if index is not None:
        item = next((i for i in ns.items if i.index == index), None)
        return item is not None and item.status == NodeStatus.RUNNING and item.attempts == a.attempt
    return ns.status == NodeStatus.RUNNING and ns.attempts == a.attempt
