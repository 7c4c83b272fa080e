"""Durable workflow runs on the engine's database (SQLite or PostgreSQL).

A run is rows, never a process: its definition (the source text, versioned), its inputs, and its
journal in ``workflow_events``. The journal holds the run's ``input`` events, which
`loomiq.workflows.replay` folds into its state and its actions, and its ``notice`` events (what its
stream shows: ``workflow_started``, ``node_started``, ``node_finished``, ``approval_requested``,
``approval_resolved``, ``workflow_finished``). Every row has a key unique within its run (a node's
result ``result/node/<id>[/<index>]/<attempt>``, an answer, a timeout), so whoever writes it first
writes it once and every later writer changes nothing.

`WorkflowRuns.drive(run_id)` replays a run and does what is due, idempotently, then stops:
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
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import logging
import time
import uuid
import weakref
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from ..workflows import (
    ApprovalAnswered,
    ApprovalTimedOut,
    CancelTask,
    Event,
    FinishRun,
    NodeFailed,
    NodeStatus,
    NodeSucceeded,
    RequestApproval,
    ResolveApproval,
    RunCancelled,
    RunPaused,
    RunResumed,
    RunStarted,
    RunState,
    StartSubworkflow,
    StartTask,
    SubworkflowNode,
    WorkflowDefinition,
    WorkflowError,
    bind_inputs,
    judge_answer,
    loads_workflow,
    replay,
)
from ..workflows.journal import event_from_json, event_to_json
from ._ops import Outcome, Stmt
from ._workflow_children import child_run_id, directory_of, find_child_source
from .errors import EngineClosed, EngineError, LeaseLost, StoreUnavailable
from .task import DEFAULT_TENANT

logger = logging.getLogger("loomiq.engine.workflows")

__all__ = [
    "Approval",
    "ApprovalClosed",
    "ApprovalConflict",
    "ApprovalForbidden",
    "ApprovalNotFound",
    "Answered",
    "WorkflowNotFound",
    "WorkflowRun",
    "WorkflowRunNotFound",
    "WorkflowRuns",
]

RUN_STATUSES = ("running", "succeeded", "failed", "cancelled")
_TERMINAL = frozenset({"succeeded", "failed", "cancelled"})


class WorkflowRunNotFound(EngineError, LookupError):
    """No run has this id in this tenant."""


class WorkflowNotFound(EngineError, LookupError):
    """No workflow is registered under this name in this tenant."""


class ApprovalNotFound(EngineError, LookupError):
    """No approval has this id in this tenant (404)."""


class ApprovalForbidden(EngineError, PermissionError):
    """The subject is not among the approval's approvers (403)."""


class ApprovalConflict(EngineError):
    """The answer contradicts the approver's earlier answer or the decision already taken (409)."""


class ApprovalClosed(ApprovalConflict):
    """The approval takes no more answers (decided, timed out, escalated or cancelled): 409."""


@dataclass(frozen=True, slots=True)
class WorkflowRun:
    """A run as stored."""

    id: str
    tenant_id: str
    workflow: str
    version: int
    inputs: Mapping[str, Any]
    status: str
    paused: bool
    error: str | None
    outputs: Mapping[str, Any] | None
    created_at: float
    updated_at: float

    def to_dict(self) -> dict[str, Any]:
        return {"id": self.id, "tenant_id": self.tenant_id, "workflow": self.workflow, "version": self.version,
                "inputs": dict(self.inputs), "status": self.status, "paused": self.paused, "error": self.error,
                "outputs": None if self.outputs is None else dict(self.outputs), "created_at": self.created_at,
                "updated_at": self.updated_at}


@dataclass(frozen=True, slots=True)
class Approval:
    """An approval: which run and node (and round) it holds, who may answer, what is required, the
    deadline, and how it ended (`status`: pending, approved, rejected, timed_out, escalated, cancelled)."""

    id: str
    run_id: str
    tenant_id: str
    node: str
    round: int
    message: str
    roles: tuple[str, ...]
    subjects: tuple[str, ...]
    require: str | int
    deadline: float | None
    status: str
    decision: str | None
    comment: str | None
    decided_by: str | None
    created_at: float
    resolved_at: float | None
    answers: tuple[Mapping[str, Any], ...] = field(default=())

    def to_dict(self) -> dict[str, Any]:
        return {"id": self.id, "run_id": self.run_id, "tenant_id": self.tenant_id, "node": self.node,
                "round": self.round, "message": self.message,
                "approvers": {"roles": list(self.roles), "subjects": list(self.subjects)},
                "require": self.require, "deadline": self.deadline, "status": self.status,
                "decision": self.decision, "comment": self.comment, "decided_by": self.decided_by,
                "created_at": self.created_at, "resolved_at": self.resolved_at,
                "answers": [dict(a) for a in self.answers]}


@dataclass(frozen=True, slots=True)
class Answered:
    """The outcome of an answer: `accepted` (it counted), `duplicate` (the same approver gave it
    before), or `replayed` (the same Idempotency-Key: the first outcome again), and the approval after."""

    verdict: Literal["accepted", "duplicate", "replayed"]
    approval: Approval


_APPROVAL_COLUMNS = ("id, run_id, tenant_id, node, round, message, approvers, require, deadline, status, decision, "
                     "comment, decided_by, created_at, resolved_at")
_RUN_COLUMNS = "id, tenant_id, workflow, version, inputs, status, paused, error, outputs, created_at, updated_at"


def _approval(row: Sequence[Any], answers: Iterable[Mapping[str, Any]] = ()) -> Approval:
    approvers = json.loads(row[6])
    require = json.loads(row[7])
    return Approval(row[0], row[1], row[2], row[3], int(row[4]), row[5], tuple(approvers.get("roles", ())),
                    tuple(approvers.get("subjects", ())), require, row[8], row[9], row[10], row[11], row[12],
                    row[13], row[14], tuple(answers))


def _run(row: Sequence[Any]) -> WorkflowRun:
    return WorkflowRun(row[0], row[1], row[2], int(row[3]), json.loads(row[4]), row[5], bool(row[6]), row[7],
                       None if row[8] is None else json.loads(row[8]), row[9], row[10])


def approval_id(run_id: str, node: str, round_: int) -> str:
    """The id of the approval of `node`'s round `round_` in run `run_id` (stable across replays)."""
    return f"{run_id}.{node}.{round_}"


def _dumps(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"), default=str)


Journal = list[tuple[str, str, str, str]]
"""Rows to append: (key, kind, type, data)."""


def _append(d: Any, run_id: str, tenant: str, rows: Journal, now: float) -> Any:
    """Append `rows` to the run's journal, each unless its key is there already; value: the keys written."""
    yield Stmt(f"SELECT id FROM workflow_runs WHERE id = ?{d.for_update}", (run_id,), "val")
    seq = yield Stmt("SELECT COALESCE(MAX(seq), 0) FROM workflow_events WHERE run_id = ?", (run_id,), "val")
    written = []
    for key, kind, type_, data in rows:
        n = yield Stmt(
            "INSERT INTO workflow_events (run_id, seq, key, tenant_id, kind, type, data, created_at) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING",
            (run_id, seq + 1, key, tenant, kind, type_, data, now),
        )
        if n:
            seq += 1
            written.append(key)
    return Outcome(value=written)


def _event_key(event: Event) -> str:
    """The journal key of an input event: what makes writing it twice a no-op."""
    if isinstance(event, NodeSucceeded | NodeFailed):
        item = f"/{event.index}" if event.index is not None else ""
        return f"result/node/{event.node}{item}/{event.attempt}"
    if isinstance(event, ApprovalTimedOut):
        return f"timeout/{event.node}/{event.round}"
    if isinstance(event, ApprovalAnswered):
        return f"answer/{event.node}/{event.round}/{event.subject}"
    if isinstance(event, RunStarted):
        return "start"
    if isinstance(event, RunCancelled):
        return "cancel"
    return f"{event.type}/{uuid.uuid4().hex}"  # pause and resume may repeat


class WorkflowRuns:
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
        # Parsed once per distinct text (runs of one workflow share it), whatever the run or version.
        key = (name, hashlib.sha256(source.encode()).hexdigest())
        d = self._defs.get(key)
        if d is None:
            if len(self._defs) >= 256:
                self._defs.clear()
            d = self._defs[key] = loads_workflow(source, f"{name}.yaml")
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
        definition = loads_workflow(source, filename)
        bound = bind_inputs(definition, dict(inputs or {}), from_strings=from_strings)
        rid = run_id or f"wr-{uuid.uuid4().hex[:16]}"
        now = self.clock()
        self._defs.setdefault((definition.name, hashlib.sha256(source.encode()).hexdigest()), definition)
        event = RunStarted(bound, now)
        rows: Journal = [("start", "input", event.type, event_to_json(event)),
                         ("notice/workflow_started", "notice", "workflow_started",
                          _dumps({"workflow": definition.name, "version": version, "inputs": bound,
                                  "directory": directory_of(filename),
                                  **({"parent": dict(parent)} if parent else {})}))]
        insert = Stmt(
            "INSERT INTO workflow_runs (id, tenant_id, workflow, version, source, inputs, status, paused, "
            "active_tasks, wake_at, created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, 'running', 0, 0, ?, ?, ?)"
            + (" ON CONFLICT DO NOTHING" if parent else ""),
            (rid, tenant_id, definition.name, version, source, _dumps(bound), now, now, now))

        def op() -> Any:
            yield insert
            return (yield from _append(self.store.dialect, rid, tenant_id, rows, now))

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
        row = await self.store.fetch(Stmt(f"SELECT {_RUN_COLUMNS} FROM workflow_runs WHERE id = ?", (run_id,), "one"))
        if row is None or (tenant_id is not None and row[1] != tenant_id):
            raise WorkflowRunNotFound(f"no workflow run {run_id}")
        return _run(row)

    async def list_runs(self, *, tenant_id: str = DEFAULT_TENANT, status: str | None = None, limit: int = 100
                        ) -> list[WorkflowRun]:
        """Runs of the tenant, newest first."""
        where, args = "tenant_id = ?", [tenant_id]
        if status is not None:
            where += " AND status = ?"
            args.append(status)
        rows = await self.store.fetch(Stmt(
            f"SELECT {_RUN_COLUMNS} FROM workflow_runs WHERE {where} ORDER BY created_at DESC, id LIMIT ?",
            (*args, limit), "all"))
        return [_run(r) for r in rows]

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
                     ) -> list[dict[str, Any]]:
        """The run's notices after sequence number `after`: {seq, type, data, at}."""
        await self.get_run(run_id, tenant_id=tenant_id)
        rows = await self.store.fetch(Stmt(
            "SELECT seq, type, data, created_at FROM workflow_events WHERE run_id = ? AND kind = 'notice' AND seq > ? "
            "ORDER BY seq", (run_id, after), "all"))
        return [{"seq": int(r[0]), "type": r[1], "data": json.loads(r[2]), "at": r[3]} for r in rows]

    async def approvals(self, *, tenant_id: str = DEFAULT_TENANT, status: str | None = None,
                        run_id: str | None = None, limit: int = 100) -> list[Approval]:
        """The tenant's approvals, oldest first."""
        where, args = "tenant_id = ?", [tenant_id]
        if status is not None:
            where += " AND status = ?"
            args.append(status)
        if run_id is not None:
            where += " AND run_id = ?"
            args.append(run_id)
        rows = await self.store.fetch(Stmt(
            f"SELECT {_APPROVAL_COLUMNS} FROM workflow_approvals WHERE {where} ORDER BY created_at, id LIMIT ?",
            (*args, limit), "all"))
        return [_approval(r) for r in rows]

    async def get_approval(self, approval_id_: str, *, tenant_id: str = DEFAULT_TENANT) -> Approval:
        """The approval with its answers. Raises `ApprovalNotFound` (also for another tenant's)."""
        row = await self.store.fetch(Stmt(
            f"SELECT {_APPROVAL_COLUMNS} FROM workflow_approvals WHERE id = ?", (approval_id_,), "one"))
        if row is None or row[2] != tenant_id:
            raise ApprovalNotFound(f"no approval {approval_id_}")
        a = _approval(row)
        state = await self.state(a.run_id, tenant_id=None)
        ns = state.nodes.get(a.node)  # type: ignore[call-overload]
        answers: list[Mapping[str, Any]] = []
        if ns is not None and ns.approval is not None and ns.approval.round == a.round:
            answers = [{"subject": x.subject, "decision": x.decision, "comment": x.comment, "at": x.at}
                       for x in ns.approval.answers]
        return _approval(row, answers)

    async def definition(self, run_id: str, *, tenant_id: str | None = DEFAULT_TENANT) -> WorkflowDefinition:
        """The definition the run follows (its nodes and edges, for a graph). Raises `WorkflowRunNotFound`."""
        return (await self._load(run_id, tenant_id))[1]

    async def _load(self, run_id: str, tenant_id: str | None) -> tuple[WorkflowRun, WorkflowDefinition]:
        row = await self.store.fetch(Stmt(
            f"SELECT {_RUN_COLUMNS}, source FROM workflow_runs WHERE id = ?", (run_id,), "one"))
        if row is None or (tenant_id is not None and row[1] != tenant_id):
            raise WorkflowRunNotFound(f"no workflow run {run_id}")
        run = _run(row)
        return run, self._definition(run.workflow, row[11])

    # ---- commands ---------------------------------------------------------------------------------

    async def _record(self, run: WorkflowRun, events: Sequence[Event], notices: Sequence[tuple[str, str, str, str]] = ()
                      ) -> list[str]:
        rows: Journal = [(_event_key(e), "input", e.type, event_to_json(e)) for e in events]
        out = await self.store.run_op(_append(self.store.dialect, run.id, run.tenant_id, [*rows, *notices],
                                              self.clock()))
        keys: list[str] = out.value
        return keys

    async def pause(self, run_id: str, *, tenant_id: str = DEFAULT_TENANT) -> WorkflowRun:
        """Start nothing new until `resume` (running nodes finish; approvals still take answers)."""
        run = await self.get_run(run_id, tenant_id=tenant_id)
        if run.status == "running" and not run.paused:
            await self._record(run, [RunPaused(self.clock())])
        for cid in await self._children(run_id, tenant_id):
            with contextlib.suppress(WorkflowRunNotFound):
                await self.pause(cid, tenant_id=tenant_id)
        await self.drive(run_id)
        return await self.get_run(run_id, tenant_id=tenant_id)

    async def resume(self, run_id: str, *, tenant_id: str = DEFAULT_TENANT) -> WorkflowRun:
        """Release what a pause held back."""
        run = await self.get_run(run_id, tenant_id=tenant_id)
        if run.status == "running" and run.paused:
            await self._record(run, [RunResumed(self.clock())])
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

    async def answer(self, approval_id_: str, *, subject: str, roles: Sequence[str] = (),
                     decision: Literal["approve", "reject"], comment: str = "", tenant_id: str = DEFAULT_TENANT,
                     idempotency_key: str | None = None) -> Answered:
        """Answer an approval as `subject` holding `roles`. The first valid answer decides (with
        ``require: all`` or N, each distinct approver counts once). Raises `ApprovalNotFound` (404),
        `ApprovalForbidden` (403), `ApprovalConflict`/`ApprovalClosed` (409). The same
        `idempotency_key` replays the first outcome that counted (``replayed``)."""
        if decision not in ("approve", "reject"):
            raise ValueError("decision must be 'approve' or 'reject'")
        approval = await self.get_approval(approval_id_, tenant_id=tenant_id)
        run, d = await self._load(approval.run_id, None)
        event = ApprovalAnswered(approval.node, approval.round, subject, tuple(roles), decision,  # type: ignore[arg-type]
                                 comment, self.clock())
        # Judged and written in one transaction under the run's row lock: concurrent answers (from any
        # process) are judged one after the other, each against the journal the previous one left.
        out = await self.store.run_op(self._answer_op(run, d, approval, event, idempotency_key))
        verdict = out.value
        if verdict in ("accepted", "duplicate", "replayed"):
            await self.drive(approval.run_id)  # the decision is applied (the approval row closed) before answering
            return Answered(verdict, await self.get_approval(approval_id_, tenant_id=tenant_id))
        if verdict == "forbidden":
            raise ApprovalForbidden(f"{subject} is not among the approvers of {approval_id_}")
        if verdict == "conflict":
            raise ApprovalConflict(f"approval {approval_id_} was already answered otherwise "
                                   f"({approval.decision or 'by this approver'})")
        raise ApprovalClosed(f"approval {approval_id_} takes no more answers (it is {approval.status})")

    def _answer_op(self, run: WorkflowRun, d: WorkflowDefinition, approval: Approval, event: ApprovalAnswered,
                   key: str | None) -> Any:
        dialect = self.store.dialect
        yield Stmt(f"SELECT id FROM workflow_runs WHERE id = ?{dialect.for_update}", (run.id,), "val")
        if key is not None:
            seen = yield Stmt("SELECT seq FROM workflow_events WHERE run_id = ? AND key = ?",
                              (run.id, f"idempotency/{approval.id}/{key}"), "val")
            if seen is not None:
                return Outcome(value="replayed")
        rows = yield Stmt("SELECT type, data FROM workflow_events WHERE run_id = ? AND kind = 'input' ORDER BY seq",
                          (run.id,), "all")
        state, _ = replay(d, [event_from_json(r[0], r[1]) for r in rows])
        verdict = judge_answer(state, approval.node, event.subject, event.roles, event.decision, round=approval.round)
        journal: Journal = []
        if verdict == "accepted":
            journal.append((_event_key(event), "input", event.type, event_to_json(event)))
        if verdict in ("accepted", "duplicate"):
            journal += self._verdict_row(approval, key, event.subject, event.decision, event.comment, verdict)
        if journal:
            yield from _append(dialect, run.id, run.tenant_id, journal, event.at)
        return Outcome(value=verdict)

    def _verdict_row(self, approval: Approval, key: str | None, subject: str, decision: str, comment: str,
                     verdict: str) -> Journal:
        if key is None:
            return []
        data = _dumps({"approval": approval.id, "subject": subject, "decision": decision, "comment": comment,
                       "verdict": verdict})
        return [(f"idempotency/{approval.id}/{key}", "answer", "answer", data)]

    # ---- driving ----------------------------------------------------------------------------------

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
        if run.status in _TERMINAL:
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
                                _dumps({"node": a.node, "attempt": a.attempt, "index": a.index, "task_id": task.id})))
            if task.terminal:
                if task.status == "completed":
                    events.append(NodeSucceeded(a.node, a.attempt, task.output, now, a.index))
                else:
                    events.append(NodeFailed(a.node, a.attempt, task.error or task.status, now, a.index))
                notices.append((f"notice/node_finished/{key}", "notice", "node_finished",
                                _dumps({"node": a.node, "attempt": a.attempt, "index": a.index, "status": task.status,
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
                    f"INSERT INTO workflow_approvals ({_APPROVAL_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, "
                    "'pending', NULL, NULL, NULL, ?, NULL) ON CONFLICT DO NOTHING",
                    (aid, run_id, run.tenant_id, a.node, a.round, a.message,
                     _dumps({"roles": list(a.approvers.roles), "subjects": list(a.approvers.subjects)}),
                     _dumps(a.require), a.deadline, now)))
                notices.append((f"notice/approval_requested/{aid}", "notice", "approval_requested",
                                _dumps({"approval_id": aid, "node": a.node, "round": a.round, "message": a.message,
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
                                _dumps({"approval_id": aid, "node": a.node, "round": a.round, "outcome": a.outcome,
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
                            _dumps({"status": str(finish.status), "error": finish.error, "outputs": finish.outputs})))
            updates.append(Stmt(
                "UPDATE workflow_runs SET status = ?, error = ?, outputs = ?, paused = ?, active_tasks = 0, "
                "wake_at = NULL, updated_at = ? WHERE id = ?",
                (str(finish.status), finish.error, None if finish.outputs is None else _dumps(finish.outputs),
                 int(state.paused), now, run_id)))
        else:
            updates.append(Stmt(
                "UPDATE workflow_runs SET paused = ?, active_tasks = ?, wake_at = ?, updated_at = ? WHERE id = ?",
                (int(state.paused), active, min(wake) if wake else None, now, run_id)))
        # One transaction: the approval rows and the run's row, then the journal.
        rows: Journal = [*((_event_key(e), "input", e.type, event_to_json(e)) for e in events), *notices]
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
                return (yield from _append(dialect, run.id, run.tenant_id, rows, now))
            return Outcome(value=[])

        written = (await self.store.run_op(op())).value
        if parent is not None:
            self._wake.set()
        return any(not k.startswith("notice/") for k in written)

    async def _started(self, run_id: str) -> dict[str, Any]:
        data = await self.store.fetch(Stmt(
            "SELECT data FROM workflow_events WHERE run_id = ? AND key = 'notice/workflow_started'", (run_id,), "val"))
        return json.loads(data) if data else {}

    async def _parent_of(self, run_id: str) -> str | None:
        parent = (await self._started(run_id)).get("parent")
        return parent.get("run") if isinstance(parent, dict) else None

    async def _child(self, run: WorkflowRun, a: StartSubworkflow, cid: str, notices: Journal) -> Event | None:
        """Start the child run of `a` unless it exists; the node's result once the child ended, else None."""
        now = self.clock()
        key = f"{a.node}/{a.attempt}"
        row = await self.store.fetch(Stmt(f"SELECT {_RUN_COLUMNS} FROM workflow_runs WHERE id = ?", (cid,), "one"))
        if row is None:
            directory = (await self._started(run.id)).get("directory")
            found = await find_child_source(self, a.workflow, run.tenant_id, directory)
            if found is None:
                return NodeFailed(a.node, a.attempt, f"subworkflow '{a.workflow}' was found nowhere (not registered "
                                  "in the tenant, not beside the workflow's file, not a template)", now)
            source, version, filename = found
            try:
                child = await self.start(source, a.inputs, tenant_id=run.tenant_id, run_id=cid, version=version,
                                         filename=filename, drive=False,
                                         parent={"run": run.id, "node": a.node, "attempt": a.attempt})
            except WorkflowError as exc:
                return NodeFailed(a.node, a.attempt, f"subworkflow '{a.workflow}': {exc}", now)
            for hook in self.on_node_start:
                hook(run.id, f"node/{key}")
            notices.append((f"notice/subworkflow_started/{key}", "notice", "subworkflow_started",
                            _dumps({"node": a.node, "attempt": a.attempt, "workflow": a.workflow, "run_id": cid})))
            if run.paused:
                await self.pause(cid, tenant_id=run.tenant_id)
            await self.drive(cid)
            child = await self.get_run(cid, tenant_id=None)
        else:
            child = _run(row)
        if child.status not in _TERMINAL:
            return None
        notices.append((f"notice/subworkflow_finished/{key}", "notice", "subworkflow_finished",
                        _dumps({"node": a.node, "attempt": a.attempt, "workflow": a.workflow, "run_id": cid,
                                "status": child.status, "error": child.error})))
        if child.status == "succeeded":
            return NodeSucceeded(a.node, a.attempt, dict(child.outputs or {}), now)
        return NodeFailed(a.node, a.attempt, f"subworkflow run {cid} {child.status}: {child.error}", now)

    async def _cancel_child(self, cid: str, reason: str) -> None:
        with contextlib.suppress(WorkflowRunNotFound):
            child = await self.get_run(cid, tenant_id=None)
            await self.cancel(cid, tenant_id=child.tenant_id, reason=reason)

    async def _children(self, run_id: str, tenant_id: str) -> list[str]:
        """The child runs of the run's subworkflow nodes that are running now."""
        run, d = await self._load(run_id, tenant_id)
        state, _ = replay(d, await self._journal(run_id))
        return [child_run_id(run_id, n.id, state.nodes[n.id].attempts) for n in d.nodes
                if isinstance(n, SubworkflowNode) and state.nodes[n.id].status == NodeStatus.RUNNING]

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
                if run.status in _TERMINAL or (until is not None and until(run)):
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
