"""Driving durable workflow runs (see `workflow_runs`): `drive` replays a run and does what is due
(submits node tasks, writes approval rows, takes deadlines, starts child runs, journals results),
idempotently; `serve` drives the runs that are due on any live process."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import weakref
from collections.abc import Callable
from typing import Any

from ..workflows import (
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
    replay,
)
from ..workflows.journal import event_to_json
from ._ops import Outcome, Stmt
from ._workflow_children import child_run_id
from ._workflow_rows import (
    APPROVAL_COLUMNS,
    TERMINAL,
    Journal,
    RunsBase,
    WorkflowRun,
    append_rows,
    approval_id,
    dumps,
    event_key,
)
from .errors import EngineClosed, EngineError, LeaseLost, StoreUnavailable
from .task import DEFAULT_TENANT

logger = logging.getLogger("loomiq.engine.workflows")

__all__ = ["DriverMixin"]


class DriverMixin(RunsBase):
    """`WorkflowRuns`' driver."""

    _locks: weakref.WeakValueDictionary[str, asyncio.Lock]
    _watching: dict[str, asyncio.Task[None]]
    _wake: asyncio.Event

    def _lock(self, run_id: str) -> asyncio.Lock:
        lock = self._locks.get(run_id)
        if lock is None:
            lock = self._locks[run_id] = asyncio.Lock()
        return lock

    async def drive(self, run_id: str) -> None:
        """Replay the run and do what is due (see the module docstring), until nothing more is."""
        async with self._lock(run_id):
            for _ in range(1000):
                if not await self._step(run_id):
                    return

    async def _step(self, run_id: str) -> bool:
        """One pass: True when new events were journalled (so another pass may have more to do)."""
        run, d = await self._load(run_id, None)
        if run.status in TERMINAL:
            return False
        state, actions = replay(d, await self._journal(run_id))
        now = self.clock()
        events: list[Event] = []
        notices: Journal = []
        updates: list[Stmt] = []
        starts: dict[str, StartTask] = {}
        for a in actions:
            if isinstance(a, StartTask):
                starts[a.step_key] = a
        wake: list[float] = []
        active = 0
        engine = self.engine
        for key, a in starts.items():
            if not _running(state, a):
                continue
            if a.not_before is not None and a.not_before > now:
                wake.append(a.not_before)
                continue
            t = a.task
            try:
                submitted = await engine.submit(
                    t.prompt, strategy=t.strategy, agents=list(t.agents) or None, capabilities=t.capabilities,
                    timeout_s=t.timeout_s, idempotency_key=f"wf:{run_id}:{key}", tenant_id=run.tenant_id,
                    context={"workflow_run": run_id, "node": str(a.node)})
            except (StoreUnavailable, EngineClosed, LeaseLost):
                raise
            except Exception as exc:  # noqa: BLE001 - a task that cannot be planned here fails its node, once
                events.append(NodeFailed(a.node, a.attempt, f"cannot start the task: {exc}", now, a.index))
                continue
            task = submitted.task
            if not submitted.replayed:
                for hook in self.on_node_start:
                    hook(run_id, key)
                notices.append((f"notice/node_started/{key}", "notice", "node_started",
                                dumps({"node": a.node, "attempt": a.attempt, "index": a.index, "task_id": task.id})))
            if task.terminal:
                if task.status == "completed":
                    events.append(NodeSucceeded(a.node, a.attempt, task.output, now, a.index))
                else:
                    events.append(NodeFailed(a.node, a.attempt, task.error or task.status, now, a.index))
                notices.append((f"notice/node_finished/{key}", "notice", "node_finished",
                                dumps({"node": a.node, "attempt": a.attempt, "index": a.index, "status": task.status,
                                        "error": task.error})))
            else:
                active += 1
                self._watch(run_id, task.id)
        children: list[str] = []
        for a in actions:
            if isinstance(a, StartSubworkflow) and _running(state, a):
                if a.not_before is not None and a.not_before > now:
                    wake.append(a.not_before)
                    continue
                cid = child_run_id(run_id, a.node, a.attempt)
                children.append(cid)
                ended = await self._child(run, a, cid, notices)
                if ended is not None:
                    events.append(ended)
            elif isinstance(a, RequestApproval):
                aid = approval_id(run_id, a.node, a.round)
                updates.append(Stmt(
                    f"INSERT INTO workflow_approvals ({APPROVAL_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, "
                    "'pending', NULL, NULL, NULL, ?, NULL) ON CONFLICT DO NOTHING",
                    (aid, run_id, run.tenant_id, a.node, a.round, a.message,
                     dumps({"roles": list(a.approvers.roles), "subjects": list(a.approvers.subjects)}),
                     dumps(a.require), a.deadline, now)))
                notices.append((f"notice/approval_requested/{aid}", "notice", "approval_requested",
                                dumps({"approval_id": aid, "node": a.node, "round": a.round, "message": a.message,
                                        "approvers": {"roles": list(a.approvers.roles),
                                                      "subjects": list(a.approvers.subjects)},
                                        "require": a.require, "deadline": a.deadline})))
            elif isinstance(a, ResolveApproval):
                aid = approval_id(run_id, a.node, a.round)
                updates.append(Stmt(
                    "UPDATE workflow_approvals SET status = ?, decision = ?, comment = ?, decided_by = ?, "
                    "resolved_at = ? WHERE id = ? AND status = 'pending'",
                    (a.outcome, a.decision, a.comment, a.decided_by, now, aid)))
                notices.append((f"notice/approval_resolved/{aid}", "notice", "approval_resolved",
                                dumps({"approval_id": aid, "node": a.node, "round": a.round, "outcome": a.outcome,
                                        "decision": a.decision, "comment": a.comment, "decided_by": a.decided_by})))
            elif isinstance(a, CancelTask) and isinstance(d.by_id.get(a.node), SubworkflowNode):
                await self._cancel_child(child_run_id(run_id, a.node, a.attempt), a.reason)
            elif isinstance(a, CancelTask):
                item = f"/{a.index}" if a.index is not None else ""
                await self._cancel_task(run, f"wf:{run_id}:node/{a.node}{item}/{a.attempt}")
        # Deadlines that passed: each taken once (the journal key is per node and round).
        for node_id, ns in state.nodes.items():
            if ns.status == NodeStatus.WAITING_APPROVAL and ns.approval is not None and ns.approval.deadline:
                if ns.approval.deadline <= now:
                    events.append(ApprovalTimedOut(node_id, ns.approval.round, now))
                else:
                    wake.append(ns.approval.deadline)
        finish = next((a for a in actions if isinstance(a, FinishRun)), None)
        parent = await self._parent_of(run_id) if finish is not None else None
        if parent is not None:  # the parent, parked on this child, is driven again (by any process)
            updates.append(Stmt("UPDATE workflow_runs SET wake_at = ? WHERE id = ? AND status = 'running'",
                                (now, parent)))
        if finish is not None:
            notices.append(("notice/workflow_finished", "notice", "workflow_finished",
                            dumps({"status": str(finish.status), "error": finish.error, "outputs": finish.outputs})))
            updates.append(Stmt(
                "UPDATE workflow_runs SET status = ?, error = ?, outputs = ?, paused = ?, active_tasks = 0, "
                "wake_at = NULL, updated_at = ? WHERE id = ?",
                (str(finish.status), finish.error, None if finish.outputs is None else dumps(finish.outputs),
                 int(state.paused), now, run_id)))
        else:
            updates.append(Stmt(
                "UPDATE workflow_runs SET paused = ?, active_tasks = ?, wake_at = ?, updated_at = ? WHERE id = ?",
                (int(state.paused), active, min(wake) if wake else None, now, run_id)))
        # One transaction: the approval rows and the run's row, then the journal.
        rows: Journal = [*((event_key(e), "input", e.type, event_to_json(e)) for e in events), *notices]
        dialect = self.store.dialect

        def op() -> Any:
            for stmt in updates:  # noqa: UP028 - the store sends each result back (a list iterator cannot take it)
                yield stmt
            if children and finish is None:
                # A child that ended before this row was written had its wake-up overwritten: wake now.
                marks = ", ".join("?" * len(children))
                ended = yield Stmt(f"SELECT COUNT(*) FROM workflow_runs WHERE id IN ({marks}) AND status <> 'running'",
                                   tuple(children), "val")
                if ended:
                    yield Stmt("UPDATE workflow_runs SET wake_at = ? WHERE id = ?", (now, run.id))
            if rows:
                return (yield from append_rows(dialect, run.id, run.tenant_id, rows, now))
            return Outcome(value=[])

        written = (await self.store.run_op(op())).value
        if parent is not None:
            self._wake.set()
        return any(not k.startswith("notice/") for k in written)


    async def _cancel_task(self, run: WorkflowRun, key: str) -> None:
        tid = await self.store.fetch(Stmt(
            "SELECT id FROM tasks WHERE tenant_id = ? AND idempotency_key = ?", (run.tenant_id, key), "val"))
        if tid is not None:
            with contextlib.suppress(EngineError):
                await self.engine.cancel_task(tid)

    def _watch(self, run_id: str, task_id: str) -> None:
        """Drive the run again as soon as its node task ends (while this process is up)."""
        if task_id in self._watching:
            return

        async def watch() -> None:
            try:
                await self.engine.wait(task_id)
                await self.drive(run_id)
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
        """Drive the run until it ends (or `until(run)` is true); returns it. Raises `TimeoutError`."""
        async with asyncio.timeout(timeout_s):
            while True:
                await self.drive(run_id)
                run = await self.get_run(run_id, tenant_id=tenant_id)
                if run.status in TERMINAL or (until is not None and until(run)):
                    return run
                await asyncio.sleep(min(self.poll_s, 0.05))

    async def close(self) -> None:
        """Stop watching node tasks (the runs stay as they are; any process drives them later)."""
        for t in list(self._watching.values()):
            t.cancel()
        await asyncio.gather(*self._watching.values(), return_exceptions=True)
        self._watching.clear()


def _running(state: RunState, a: StartTask | StartSubworkflow) -> bool:
    ns = state.nodes.get(a.node)
    if ns is None:
        return False
    index = getattr(a, "index", None)
    if index is not None:
        item = next((i for i in ns.items if i.index == index), None)
        return item is not None and item.status == NodeStatus.RUNNING and item.attempts == a.attempt
    return ns.status == NodeStatus.RUNNING and ns.attempts == a.attempt
