"""Durable workflow runs on the engine's database (SQLite or PostgreSQL).

A run is rows, never a process: its definition (the source text, versioned), its inputs, and its
journal in ``workflow_events``. The journal holds the run's ``input`` events, which
`loomiq.workflows.replay` folds into its state and its actions, and its ``notice`` events (what its
stream shows: ``workflow_started``, ``node_started``, ``node_finished``, ``approval_requested``,
``approval_resolved``, ``workflow_finished``). Every row has a key unique within its run (a node's
result ``result/node/<id>[/<index>]/<attempt>``, an answer, a timeout), so whoever writes it first
writes it once and every later writer changes nothing.

`WorkflowRuns.drive(run_id)` folds a run's journal (incrementally while it has node tasks out: see
`_workflow_driver`) and does what is due, idempotently, in one transaction per pass, then stops:
- each `StartTask` is a loomiq task submitted to the engine under the idempotency key
  ``wf:<run>:<step_key>``: a node is submitted once whoever drives, and the engine runs it durably
  (its model calls journalled, resumed by any worker after a crash); its end is journalled as the
  node's result, once;
- each `RequestApproval` is an approval row (id ``<run>.<node>.<round>``) and one
  ``approval_requested`` notice; `ResolveApproval` closes the row and emits ``approval_resolved``;
- a deadline that passed is journalled as `ApprovalTimedOut`, once;
- `CancelTask` cancels the node's engine task (its provider calls are aborted);
- each `StartSubworkflow` is a child run (id ``<run>.<node>.<attempt>``, started once whoever drives):
  the parent waits parked, the child's end wakes it, and the child's outputs or error are the node's
  result; cancelling (pausing, resuming) the parent does the same to its running children.

A run waiting only on approvals holds no worker, lease or memory: nothing drives it until an answer
(`answer`, which drives it at once) or its ``wake_at`` (the next deadline) comes. `serve` is the loop
that drives runs whose node tasks ended or whose wake-up time came, on any live process; workers run
it (``loomiq worker``).

`WorkflowRuns` is in parts: this module (definitions, starting, reading, pause/resume/cancel),
`_workflow_driver` (`drive`, `serve`, `wait`), `_workflow_approvals` (answering), `_workflow_children`
(subworkflow nodes' child runs) and `_workflow_rows` (the rows as stored, the journal's appends).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import time
import uuid
import weakref
from collections import OrderedDict
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from ..runtime.events import WorkflowPaused, WorkflowResumed, WorkflowStarted
from ..workflows import (
    Event,
    NodeStatus,
    RunCancelled,
    RunPaused,
    RunResumed,
    RunStarted,
    RunState,
    WorkflowDefinition,
    bind_inputs,
    loads_workflow,
    replay,
)
from ..workflows.journal import event_from_json, event_to_json
from ._ops import Outcome, Stmt
from ._workflow_approvals import ApprovalsMixin
from ._workflow_children import ChildrenMixin, directory_of
from ._workflow_driver import DriverMixin
from ._workflow_rows import (
    RUN_COLUMNS,
    Answered,
    Approval,
    ApprovalClosed,
    ApprovalConflict,
    ApprovalForbidden,
    ApprovalNotFound,
    Journal,
    WorkflowNotFound,
    WorkflowRun,
    WorkflowRunEvent,
    WorkflowRunNotFound,
    append_rows,
    approval_id,
    dumps,
    event_key,
    notice,
    plain,
    run_from_row,
)
from .task import DEFAULT_TENANT

__all__ = [
    "Approval",
    "ApprovalClosed",
    "ApprovalConflict",
    "ApprovalForbidden",
    "ApprovalNotFound",
    "Answered",
    "WorkflowNotFound",
    "WorkflowRun",
    "WorkflowRunEvent",
    "WorkflowRunNotFound",
    "WorkflowRuns",
    "approval_id",
]


class WorkflowRuns(DriverMixin, ChildrenMixin, ApprovalsMixin):
    """Durable workflow runs on `engine` (see the module docstring). `clock` gives the time that events
    carry and deadlines are compared with (a fake clock in tests)."""

    def __init__(self, engine: Any, *, clock: Callable[[], float] = time.time, poll_s: float = 0.5) -> None:
        self.engine = engine
        self.store = engine.store
        self.clock = clock
        self.poll_s = poll_s
        self._defs: dict[tuple[str, str], WorkflowDefinition] = {}
        self._locks: weakref.WeakValueDictionary[str, asyncio.Lock] = weakref.WeakValueDictionary()
        self._watching: dict[str, asyncio.Task[None]] = {}
        self._wake = asyncio.Event()
        self._folds = OrderedDict()
        self._waiters = {}
        self.on_node_start: list[Callable[[str, str], None]] = []
        """Called with (run id, step key) when this process submits a node's task (benchmarks, tests)."""

    # ---- definitions ------------------------------------------------------------------------------

    async def register(self, source: str, *, tenant_id: str = DEFAULT_TENANT) -> tuple[str, int]:
        """Register a workflow (its text, validated): a new version of its name. Returns (name, version).
        Raises `WorkflowError` for an invalid one."""
        definition = loads_workflow(source)
        name = definition.name
        now = self.clock()

        def op() -> Any:
            version = (yield Stmt("SELECT COALESCE(MAX(version), 0) FROM workflow_definitions WHERE tenant_id = ? "
                                  "AND name = ?", (tenant_id, name), "val")) + 1
            yield Stmt("INSERT INTO workflow_definitions (tenant_id, name, version, source, created_at) "
                       "VALUES (?, ?, ?, ?, ?)", (tenant_id, name, version, source, now))
            return Outcome(value=version)

        out = await self.store.run_op(op())
        return name, out.value

    async def workflows(self, *, tenant_id: str = DEFAULT_TENANT) -> list[dict[str, Any]]:
        """The registered workflows: name, latest version, when registered."""
        rows = await self.store.fetch(Stmt(
            "SELECT name, MAX(version), MAX(created_at) FROM workflow_definitions WHERE tenant_id = ? "
            "GROUP BY name ORDER BY name", (tenant_id,), "all"))
        return [{"name": r[0], "version": int(r[1]), "created_at": r[2]} for r in rows]

    async def workflow(self, name: str, *, tenant_id: str = DEFAULT_TENANT, version: int | None = None
                       ) -> tuple[int, str]:
        """(version, source) of a registered workflow (the latest version by default)."""
        if version is None:
            row = await self.store.fetch(Stmt(
                "SELECT version, source FROM workflow_definitions WHERE tenant_id = ? AND name = ? "
                "ORDER BY version DESC LIMIT 1", (tenant_id, name), "one"))
        else:
            row = await self.store.fetch(Stmt(
                "SELECT version, source FROM workflow_definitions WHERE tenant_id = ? AND name = ? AND version = ?",
                (tenant_id, name, version), "one"))
        if row is None:
            raise WorkflowNotFound(f"no workflow '{name}'" + (f" version {version}" if version else ""))
        return int(row[0]), row[1]

    def _definition(self, name: str, source: str) -> WorkflowDefinition:
        return self._parse(source, f"{name}.yaml")

    def _parse(self, source: str, filename: str) -> WorkflowDefinition:
        # Parsed once per distinct text and file name (runs of one workflow share it; definitions are
        # frozen), whatever the run or version. An invalid text is parsed (and refused) every time.
        key = (filename, hashlib.sha256(source.encode()).hexdigest())
        d = self._defs.get(key)
        if d is None:
            if len(self._defs) >= 256:
                self._defs.clear()
            d = self._defs[key] = loads_workflow(source, filename)
            self._defs.setdefault((f"{d.name}.yaml", key[1]), d)
        return d

    # ---- starting ---------------------------------------------------------------------------------

    async def start(self, source: str, inputs: Mapping[str, Any] | None = None, *, tenant_id: str = DEFAULT_TENANT,
                    from_strings: bool = False, run_id: str | None = None, version: int = 0,
                    drive: bool = True, filename: str = "<workflow>",
                    parent: Mapping[str, Any] | None = None) -> WorkflowRun:
        """Start a run of the workflow in `source` (its text) with `inputs` (checked by `bind_inputs`;
        `from_strings` converts command-line text). `version` is the registered version (0: not
        registered; `filename` names it in errors, and a subworkflow is looked up beside it). `parent`
        ({run, node, attempt}) makes it a subworkflow's child run: started once under `run_id`, whoever
        asks again. Raises `WorkflowError` for an invalid workflow or inputs."""
        definition = self._parse(source, filename)
        bound = bind_inputs(definition, dict(inputs or {}), from_strings=from_strings)
        rid = run_id or f"wr-{uuid.uuid4().hex[:16]}"
        now = self.clock()
        event = RunStarted(bound, now)
        rows: Journal = [("start", "input", event.type, event_to_json(event)),
                         notice(WorkflowStarted(definition.name, version, plain(bound), directory_of(filename),
                                                plain(dict(parent)) if parent else None))]
        insert = Stmt(
            "INSERT INTO workflow_runs (id, tenant_id, workflow, version, source, inputs, status, paused, "
            "active_tasks, wake_at, created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, 'running', 0, 0, ?, ?, ?)"
            + (" ON CONFLICT DO NOTHING" if parent else ""),
            (rid, tenant_id, definition.name, version, source, dumps(bound), now, now, now))

        def op() -> Any:
            yield insert
            return (yield from append_rows(self.store.dialect, rid, tenant_id, rows, now))

        await self.store.run_op(op())
        if drive:
            await self.drive(rid)
        return await self.get_run(rid, tenant_id=tenant_id)

    async def start_registered(self, name: str, inputs: Mapping[str, Any] | None = None, *,
                               tenant_id: str = DEFAULT_TENANT, version: int | None = None,
                               from_strings: bool = False) -> WorkflowRun:
        """Start a run of a registered workflow (its latest version unless `version`)."""
        v, source = await self.workflow(name, tenant_id=tenant_id, version=version)
        return await self.start(source, inputs, tenant_id=tenant_id, version=v, from_strings=from_strings)

    # ---- reading ----------------------------------------------------------------------------------

    async def get_run(self, run_id: str, *, tenant_id: str | None = DEFAULT_TENANT) -> WorkflowRun:
        """The run. Raises `WorkflowRunNotFound` (also for another tenant's run)."""
        row = await self.store.fetch(Stmt(f"SELECT {RUN_COLUMNS} FROM workflow_runs WHERE id = ?", (run_id,), "one"))
        if row is None or (tenant_id is not None and row[1] != tenant_id):
            raise WorkflowRunNotFound(f"no workflow run {run_id}")
        return run_from_row(row)

    async def list_runs(self, *, tenant_id: str = DEFAULT_TENANT, status: str | None = None, limit: int = 100
                        ) -> list[WorkflowRun]:
        """Runs of the tenant, newest first."""
        where, args = "tenant_id = ?", [tenant_id]
        if status is not None:
            where += " AND status = ?"
            args.append(status)
        rows = await self.store.fetch(Stmt(
            f"SELECT {RUN_COLUMNS} FROM workflow_runs WHERE {where} ORDER BY created_at DESC, id LIMIT ?",
            (*args, limit), "all"))
        return [run_from_row(r) for r in rows]

    async def _journal(self, run_id: str) -> list[Event]:
        rows = await self.store.fetch(Stmt(
            "SELECT type, data FROM workflow_events WHERE run_id = ? AND kind = 'input' ORDER BY seq", (run_id,),
            "all"))
        return [event_from_json(r[0], r[1]) for r in rows]

    async def state(self, run_id: str, *, tenant_id: str | None = DEFAULT_TENANT) -> RunState:
        """The run's state, replayed from its journal."""
        run, d = await self._load(run_id, tenant_id)
        state, _ = replay(d, await self._journal(run_id))
        return state

    async def status(self, run_id: str, *, tenant_id: str | None = DEFAULT_TENANT) -> dict[str, Any]:
        """The run with its node states, variables, path (nodes in the order they settled) and pending
        approvals: what ``loomiq workflow status`` shows."""
        run, d = await self._load(run_id, tenant_id)
        state, _ = replay(d, await self._journal(run_id))
        nodes = {}
        for node in d.nodes:
            ns = state.nodes[node.id]
            nodes[node.id] = {"kind": node.kind, "status": str(ns.status), "attempts": ns.attempts,
                              "output": ns.output, "error": ns.error, "reason": ns.reason, "decision": ns.decision}
        settled = [n for n in d.nodes if state.nodes[n.id].finished_at is not None
                   and state.nodes[n.id].status != NodeStatus.SKIPPED]
        path = [n.id for n in sorted(settled, key=lambda n: state.nodes[n.id].finished_at or 0.0)]
        pending = await self.approvals(tenant_id=run.tenant_id, status="pending", run_id=run_id)
        return {**run.to_dict(), "nodes": nodes, "vars": dict(state.vars), "path": path,
                "pending_approvals": [a.to_dict() for a in pending]}

    async def events(self, run_id: str, *, after: int = 0, tenant_id: str | None = DEFAULT_TENANT
                     ) -> list[WorkflowRunEvent]:
        """The run's log after sequence number `after`: its workflow events (`entry.event` is the typed
        one, a `loomiq.runtime.WorkflowEvent`; `entry.to_dict()` the wire form ``{seq, type, data, at}``)."""
        await self.get_run(run_id, tenant_id=tenant_id)
        rows = await self.store.fetch(Stmt(
            "SELECT seq, type, data, created_at FROM workflow_events WHERE run_id = ? AND kind = 'notice' AND seq > ? "
            "ORDER BY seq", (run_id, after), "all"))
        return [WorkflowRunEvent.from_row(run_id, r) for r in rows]


    async def definition(self, run_id: str, *, tenant_id: str | None = DEFAULT_TENANT) -> WorkflowDefinition:
        """The definition the run follows (its nodes and edges, for a graph). Raises `WorkflowRunNotFound`."""
        return (await self._load(run_id, tenant_id))[1]

    async def _load(self, run_id: str, tenant_id: str | None) -> tuple[WorkflowRun, WorkflowDefinition]:
        row = await self.store.fetch(Stmt(
            f"SELECT {RUN_COLUMNS}, source FROM workflow_runs WHERE id = ?", (run_id,), "one"))
        if row is None or (tenant_id is not None and row[1] != tenant_id):
            raise WorkflowRunNotFound(f"no workflow run {run_id}")
        run = run_from_row(row)
        return run, self._definition(run.workflow, row[11])

    # ---- commands ---------------------------------------------------------------------------------

    async def _record(self, run: WorkflowRun, events: Sequence[Event], notices: Sequence[tuple[str, str, str, str]] = ()
                      ) -> list[str]:
        rows: Journal = [(event_key(e), "input", e.type, event_to_json(e)) for e in events]
        out = await self.store.run_op(append_rows(self.store.dialect, run.id, run.tenant_id, [*rows, *notices],
                                              self.clock()))
        keys: list[str] = out.value
        return keys

    async def pause(self, run_id: str, *, tenant_id: str = DEFAULT_TENANT) -> WorkflowRun:
        """Start nothing new until `resume` (running nodes finish; approvals still take answers)."""
        run = await self.get_run(run_id, tenant_id=tenant_id)
        if run.status == "running" and not run.paused:
            await self._record(run, [RunPaused(self.clock())], [notice(WorkflowPaused(), uuid.uuid4().hex)])
        for cid in await self._children(run_id, tenant_id):
            with contextlib.suppress(WorkflowRunNotFound):
                await self.pause(cid, tenant_id=tenant_id)
        await self.drive(run_id)
        return await self.get_run(run_id, tenant_id=tenant_id)

    async def resume(self, run_id: str, *, tenant_id: str = DEFAULT_TENANT) -> WorkflowRun:
        """Release what a pause held back."""
        run = await self.get_run(run_id, tenant_id=tenant_id)
        if run.status == "running" and run.paused:
            await self._record(run, [RunResumed(self.clock())], [notice(WorkflowResumed(), uuid.uuid4().hex)])
        for cid in await self._children(run_id, tenant_id):
            with contextlib.suppress(WorkflowRunNotFound):
                await self.resume(cid, tenant_id=tenant_id)
        await self.drive(run_id)
        return await self.get_run(run_id, tenant_id=tenant_id)

    async def cancel(self, run_id: str, *, tenant_id: str = DEFAULT_TENANT, reason: str = "cancelled by request"
                     ) -> WorkflowRun:
        """Cancel the run: running nodes' tasks are cancelled (their provider calls aborted), waiting
        approvals closed, nothing starts after. A finished run stays as it is."""
        run = await self.get_run(run_id, tenant_id=tenant_id)
        if run.status == "running":
            await self._record(run, [RunCancelled(reason, self.clock())])
        await self.drive(run_id)
        return await self.get_run(run_id, tenant_id=tenant_id)

