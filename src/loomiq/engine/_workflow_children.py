"""Subworkflow nodes of durable workflow runs: finding the child's workflow, and the child run's id.

A subworkflow node's attempt starts one child run whose id is derived from the parent run, the node
and the attempt (`child_run_id`), so whoever drives the parent, however often, and whatever crashes,
starts it once (the row is inserted unless it is there). The child's ``workflow_started`` notice names
its parent; when the child ends, the same transaction sets the parent's ``wake_at`` to now, so the
parent, parked meanwhile, is driven again by any process (`WorkflowRuns.serve`).
"""

from __future__ import annotations

import contextlib
import json
from pathlib import Path

from ..runtime.event_json import decode_event
from ..runtime.events import SubworkflowFinished, SubworkflowStarted, WorkflowStarted
from ..workflows import (
    Event,
    NodeFailed,
    NodeStatus,
    NodeSucceeded,
    StartSubworkflow,
    SubworkflowNode,
    WorkflowError,
    replay,
)
from ._ops import Stmt
from ._workflow_rows import (
    RUN_COLUMNS,
    TERMINAL,
    Journal,
    RunsBase,
    WorkflowRun,
    WorkflowRunNotFound,
    notice,
    run_from_row,
)

__all__ = ["ChildrenMixin", "child_run_id", "directory_of", "find_child_source"]

_SUFFIXES = (".yaml", ".yml", ".json")


def child_run_id(parent_run: str, node: str, attempt: int) -> str:
    """The id of the child run of `node`'s attempt `attempt` in `parent_run` (stable across replays)."""
    return f"{parent_run}.{node}.{attempt}"


def directory_of(filename: str) -> str | None:
    """The directory of the file a run was started from (None unless it names an existing file)."""
    try:
        path = Path(filename)
        return str(path.resolve().parent) if path.is_file() else None
    except (OSError, ValueError):
        return None


async def find_child_source(runs: RunsBase, name: str, tenant_id: str, directory: str | None
                            ) -> tuple[str, int, str] | None:
    """(source, registered version or 0, filename) of the workflow `name`, as the loader resolves a
    subworkflow: a workflow registered in the tenant, else ``NAME.yaml|.yml|.json`` beside the parent's
    file (when it was started from one), else the shipped template; None when found nowhere."""
    store = runs.store
    row = await store.fetch(Stmt(
        "SELECT version, source FROM workflow_definitions WHERE tenant_id = ? AND name = ? "
        "ORDER BY version DESC LIMIT 1", (tenant_id, name), "one"))
    if row is not None:
        return row[1], int(row[0]), f"{name}.yaml"
    if directory is not None and name.isidentifier():
        for suffix in _SUFFIXES:
            path = Path(directory) / f"{name}{suffix}"
            if path.is_file():
                try:
                    return path.read_text(encoding="utf-8"), 0, str(path)
                except (OSError, UnicodeDecodeError):
                    return None
    from ..workflows.templates import template_names, template_text

    if name in template_names():
        return template_text(name), 0, f"template:{name}"
    return None


def _deadline(a: StartSubworkflow, child: WorkflowRun) -> float | None:
    """When the attempt's timeout runs out: the child run's start plus the node's timeout (None: none)."""
    return None if a.timeout_s is None else child.created_at + a.timeout_s


def _timeout_reason(a: StartSubworkflow) -> str:
    """Why a child run is cancelled when its node's timeout passed (its error then)."""
    return f"the timeout of its parent's node '{a.node}' ({a.timeout_s:g}s) passed"


class ChildrenMixin(RunsBase):
    """`WorkflowRuns`' subworkflow nodes: starting, reading and cancelling their child runs."""

    async def _started(self, run_id: str) -> WorkflowStarted | None:
        """The run's `WorkflowStarted` (None before it was written)."""
        data = await self.store.fetch(Stmt(
            "SELECT data FROM workflow_events WHERE run_id = ? AND key = 'notice/workflow_started'", (run_id,), "val"))
        if not data:
            return None
        event = decode_event({**json.loads(data), "type": "workflow_started"})
        return event if isinstance(event, WorkflowStarted) else None

    async def _parent_of(self, run_id: str) -> str | None:
        started = await self._started(run_id)
        parent = started.parent if started is not None else None
        return parent.get("run") if parent else None

    async def _child(self, run: WorkflowRun, a: StartSubworkflow, cid: str, notices: Journal,
                     wake: list[float] | None = None) -> Event | None:
        """Start the child run of `a` unless it exists; the node's result once the child ended, else None.
        With a `timeout`, the child's deadline is its start (its row's ``created_at``) plus the timeout:
        until then it is put in `wake` (when the parent must be driven again); once it passed, the child
        is cancelled and the attempt fails, saying so."""
        now = self.clock()
        key = f"{a.node}/{a.attempt}"
        row = await self.store.fetch(Stmt(f"SELECT {RUN_COLUMNS} FROM workflow_runs WHERE id = ?", (cid,), "one"))
        if row is None:
            started = await self._started(run.id)
            directory = started.directory if started is not None else None
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
            notices.append(notice(SubworkflowStarted(a.node, a.attempt, a.workflow, cid, _deadline(a, child)), key))
            if run.paused:
                await self.pause(cid, tenant_id=run.tenant_id)
            await self.drive(cid)
            child = await self.get_run(cid, tenant_id=None)
        else:
            child = run_from_row(row)
            # Its start and this notice are two transactions: a crash in between left the child without
            # it (written once now: its key makes a second write a no-op).
            nkey = f"notice/subworkflow_started/{key}"
            if not any(n[0] == nkey for n in notices) and await self.store.fetch(Stmt(
                    "SELECT seq FROM workflow_events WHERE run_id = ? AND key = ?", (run.id, nkey), "val")) is None:
                notices.append(notice(SubworkflowStarted(a.node, a.attempt, a.workflow, cid, _deadline(a, child)),
                                      key))
        deadline = _deadline(a, child)
        if child.status not in TERMINAL and deadline is not None:
            if deadline <= now:  # cancelled once whoever drives (a cancelled child stays cancelled)
                await self.cancel(cid, tenant_id=child.tenant_id, reason=_timeout_reason(a))
                child = await self.get_run(cid, tenant_id=None)
            elif wake is not None:
                wake.append(deadline)
        if child.status not in TERMINAL:
            return None
        notices.append(notice(SubworkflowFinished(a.node, a.attempt, a.workflow, cid, child.status, child.error), key))
        if child.status == "succeeded":
            return NodeSucceeded(a.node, a.attempt, dict(child.outputs or {}), now)
        if child.status == "cancelled" and child.error == _timeout_reason(a):
            return NodeFailed(a.node, a.attempt, f"subworkflow run {cid} timed out: the node's timeout "
                              f"({a.timeout_s:g}s) passed and the child run was cancelled", now)
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

