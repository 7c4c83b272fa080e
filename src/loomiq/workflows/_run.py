"""The machinery of `semantics.advance`: one event applied to a working copy of a run's state, then
settled (every node that can be decided is decided) until nothing changes.

The rules it implements are specified in docs/workflows.md ("Semantics"); the comments here say
which rule a branch is. Nothing here waits, reads a clock or touches storage: time comes from the
events, and everything to do leaves as actions.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import replace
from typing import Any

from ._run_approvals import ApprovalRules
from ._run_check import check_output
from ._run_parallel import ParallelRules
from ._scope import NodesView
from .expressions import EvaluationError, render_value
from .model import (
    AnyNode,
    ApprovalNode,
    DecisionNode,
    ErrorHandlerNode,
    NodeId,
    ParallelNode,
    RetrySpec,
    SubworkflowNode,
    TaskNode,
    TaskOptions,
    WorkflowDefinition,
)
from .state import (
    SETTLED,
    Action,
    ApprovalAnswered,
    ApprovalTimedOut,
    CancelTask,
    Event,
    FinishRun,
    NodeFailed,
    NodeState,
    NodeStatus,
    NodeSucceeded,
    ResolveApproval,
    ResolvedTask,
    RunCancelled,
    RunPaused,
    RunResumed,
    RunStarted,
    RunState,
    RunStatus,
    StartSubworkflow,
    StartTask,
)

__all__ = ["Run", "check_output"]

S = NodeStatus
_PENDING = NodeState()


def _retry_of(node: AnyNode) -> RetrySpec | None:
    if isinstance(node, TaskNode | ParallelNode):
        return node.task.retry
    if isinstance(node, SubworkflowNode):
        return node.retry
    return None


class Run(ParallelRules, ApprovalRules):
    """A working copy of a run's state that one event changes; `freeze` gives the new `RunState`."""

    def __init__(self, definition: WorkflowDefinition, state: RunState) -> None:
        self.d = definition
        self.topo = definition.topology
        self.status = state.status
        self.paused = state.paused
        self.inputs = state.inputs
        self.vars = state.vars
        self.nodes: dict[NodeId, NodeState] = dict(state.nodes)
        if len(self.nodes) != len(definition.nodes):
            for node in definition.nodes:
                if node.id not in self.nodes:
                    self.nodes[node.id] = _PENDING
        self.now = state.now
        self.error = state.error
        self.outputs = state.outputs
        self.actions: list[Action] = []

    def freeze(self) -> RunState:
        """The state after the event."""
        return RunState(status=self.status, paused=self.paused, inputs=self.inputs, vars=self.vars,
                        nodes=self.nodes, now=self.now, error=self.error, outputs=self.outputs)

    # ---- scope and rendering -----------------------------------------------------------------------

    def scope(self, **extra: Any) -> dict[str, Any]:
        return {"inputs": self.inputs, "vars": self.vars, "nodes": NodesView(self.d, self.nodes), **extra}

    def resolve(self, task: TaskOptions, scope: Mapping[str, Any]) -> ResolvedTask:
        return ResolvedTask(prompt=task.prompt.render_text(scope), strategy=task.strategy, agents=task.agents,
                            capabilities=task.capabilities, tools=task.tools, timeout_s=task.timeout_s,
                            output_schema=task.output_schema)

    # ---- events --------------------------------------------------------------------------------------

    def apply(self, event: Event) -> str | None:
        """Apply one event; returns why it changed nothing, or None."""
        if self.status in (RunStatus.SUCCEEDED, RunStatus.FAILED, RunStatus.CANCELLED):
            return "the run is over"
        if isinstance(event, RunStarted):
            if self.status != RunStatus.PENDING:
                return "the run has already started"
            self.now = event.at
            return self.start(event.inputs)
        if self.status == RunStatus.PENDING:
            return "the run has not started"
        self.now = max(self.now, event.at)
        if isinstance(event, NodeSucceeded | NodeFailed):
            return self.task_result(event)
        if isinstance(event, ApprovalAnswered):
            return self.answer(event)
        if isinstance(event, ApprovalTimedOut):
            return self.timeout(event)
        if isinstance(event, RunPaused | RunResumed):
            paused = isinstance(event, RunPaused)
            if self.paused == paused:
                return f"the run is already {'paused' if paused else 'running'}"
            self.paused = paused
            return None
        assert isinstance(event, RunCancelled)
        self.stop(f"run cancelled: {event.reason}" if event.reason else "run cancelled")
        self.finish_with(RunStatus.CANCELLED, event.reason or "cancelled")
        return None

    def start(self, inputs: Mapping[str, Any]) -> str | None:
        self.status = RunStatus.RUNNING
        # Inputs come bound (`bind_inputs`); defaults of absent optional inputs are filled in all the same.
        self.inputs = {**{s.name: s.default for s in self.d.inputs if not s.required}, **inputs}
        values: dict[str, Any] = {}
        for name, value in self.d.vars.items():
            try:
                values[name] = render_value(value, {"inputs": self.inputs})
            except EvaluationError as exc:
                self.finish_with(RunStatus.FAILED, f"vars.{name}: {exc.message}")
                return None
        self.vars = values
        return None

    def task_result(self, event: NodeSucceeded | NodeFailed) -> str | None:
        node = self.d.by_id.get(event.node)
        if node is None:
            return f"unknown node '{event.node}'"
        ns = self.nodes[node.id]
        if event.index is not None:
            return self.item_result(node, ns, event)
        if ns.status != S.RUNNING or ns.attempts != event.attempt or isinstance(node, ParallelNode):
            return f"node '{node.id}' attempt {event.attempt} is not running (stale or duplicate result)"
        if isinstance(event, NodeFailed):
            self.failed(node.id, event.error)
            return None
        task = node.task if isinstance(node, TaskNode | ErrorHandlerNode) else None
        output, problem = check_output(task, event.output) if task is not None else (event.output, None)
        if problem is not None:
            self.failed(node.id, problem)
        else:
            self.succeed(node.id, output)
        return None

    # ---- outcomes ------------------------------------------------------------------------------------

    def succeed(self, node_id: NodeId, output: Any, *, decision: str | None = None) -> None:
        node = self.d.by_id[node_id]
        ns = self.nodes[node_id]
        self.nodes[node_id] = replace(ns, status=S.SUCCEEDED, output=output, decision=decision, error=None,
                                      finished_at=self.now)
        if isinstance(node, ErrorHandlerNode) and node.action == "route" and ns.handling is not None:
            # A route handler whose work succeeded recovers the failure it took over.
            self.nodes[ns.handling] = replace(self.nodes[ns.handling], handled_by=node_id)
        if isinstance(node, DecisionNode):
            # Routing: the targets of the cases not chosen are skipped (all of them when none matched).
            cases = (*node.cases, *((node.default,) if node.default else ()))
            chosen = next((c.then for c in cases if c.value == decision), ())
            for target in node.targets:
                if target not in chosen and self.nodes[target].status == S.PENDING:
                    self.skip(target, f"decision '{node_id}' chose '{decision}'" if decision is not None
                              else f"decision '{node_id}' matched no case")

    def skip(self, node_id: NodeId, reason: str) -> None:
        self.nodes[node_id] = replace(self.nodes[node_id], status=S.SKIPPED, reason=reason, restart=False,
                                      finished_at=self.now)

    def failed(self, node_id: NodeId, error: str, *, final: bool = False) -> None:
        """A node's attempt failed: retry it while its retry policy allows, else fail it for good."""
        node = self.d.by_id[node_id]
        ns = self.nodes[node_id]
        retry = _retry_of(node)
        # The node's own retries come first; an error handler's retry is one more attempt each, without them.
        if not final and retry is not None and ns.handler_retries == 0 and ns.attempts < retry.max_attempts \
                and not isinstance(node, ParallelNode):
            self.nodes[node_id] = replace(ns, status=S.PENDING, restart=True, error=error,
                                          not_before=self.now + retry.delay_s(ns.attempts))
            return
        self.nodes[node_id] = replace(ns, status=S.FAILED, error=error, finished_at=self.now)
        self.take_over(node_id, error)

    def take_over(self, node_id: NodeId, error: str) -> None:
        """The error-handler rule: the node's handler (if any, and not yet triggered) takes its failure."""
        handler_id = self.topo.handler_for.get(node_id)
        if handler_id is None:
            return
        handler = self.d.by_id[handler_id]
        assert isinstance(handler, ErrorHandlerNode)
        hs = self.nodes[handler_id]
        if hs.status != S.PENDING:
            return
        if handler.action == "retry":
            assert handler.retry is not None
            ns = self.nodes[node_id]
            if ns.handler_retries >= handler.retry.max_attempts:
                return
            retried = list((hs.output or {}).get("retried", []))
            if node_id not in retried:
                retried.append(node_id)
            self.nodes[handler_id] = replace(hs, output={"retried": retried}, handling=hs.handling or node_id)
            self.nodes[node_id] = replace(ns, status=S.PENDING, restart=True, handler_retries=ns.handler_retries + 1,
                                          not_before=self.now + handler.retry.delay_s(ns.handler_retries + 1))
            return
        if hs.handling is not None:
            return  # a handler takes over one failure; later ones stand
        info = {"node": node_id, "message": error}
        self.nodes[handler_id] = replace(hs, handling=node_id, error_info=info)
        if handler.action == "fail":
            self.fail_run_by(handler)

    def fail_run_by(self, handler: ErrorHandlerNode) -> None:
        hs = self.nodes[handler.id]
        info = dict(hs.error_info or {})
        message = f"node '{info.get('node')}' failed: {info.get('message')}"
        if handler.message is not None:
            try:
                message = handler.message.render_text(self.scope(error=info))
            except EvaluationError as exc:
                message = f"{message} (message: {exc.message})"
        self.nodes[handler.id] = replace(hs, status=S.SUCCEEDED, output=info, started_at=self.now,
                                         finished_at=self.now)
        self.stop(f"stopped by error handler '{handler.id}'")
        self.finish_with(RunStatus.FAILED, message)

    def stop(self, reason: str) -> None:
        """Cancel what runs and wait, and settle everything else as cancelled: nothing starts after."""
        for node_id in self.topo.order:
            ns = self.nodes[node_id]
            if ns.status in SETTLED:
                continue
            if ns.status == S.RUNNING:
                for item in ns.items:
                    if item.status == S.RUNNING:
                        self.actions.append(CancelTask(node=node_id, attempt=item.attempts, reason=reason,
                                                       index=item.index))
                if not isinstance(self.d.by_id[node_id], ParallelNode):
                    self.actions.append(CancelTask(node=node_id, attempt=ns.attempts, reason=reason))
            elif ns.status == S.WAITING_APPROVAL and ns.approval is not None:
                self.actions.append(ResolveApproval(node=node_id, round=ns.approval.round, outcome="cancelled",
                                                    decision=None, comment=reason, decided_by=None))
            items = tuple(replace(i, status=S.CANCELLED) if i.status not in SETTLED else i for i in ns.items)
            self.nodes[node_id] = replace(ns, status=S.CANCELLED, reason=reason, restart=False, items=items,
                                          finished_at=self.now)

    def finish_with(self, status: RunStatus, error: str | None, outputs: Mapping[str, Any] | None = None) -> None:
        self.status = status
        self.error = error
        self.outputs = outputs
        self.actions.append(FinishRun(status=status, outputs=outputs, error=error))

    # ---- settling ------------------------------------------------------------------------------------

    def settle(self) -> None:
        """Decide every node that can be decided, start what is ready, until nothing changes; finish the
        run when every node has settled."""
        nodes, by_id = self.nodes, self.d.by_id
        # Only unsettled nodes can change; a node settling now leaves the list after the pass (a node an
        # error handler retries was unsettled when this began, so it is still in it).
        open_ids = [i for i in self.topo.order if nodes[i].status not in SETTLED]
        changed = True
        while changed and self.status == RunStatus.RUNNING:
            changed = False
            for node_id in open_ids:
                if self.status != RunStatus.RUNNING:
                    return
                node = by_id[node_id]
                ns = nodes[node_id]
                if ns.status == S.RUNNING and isinstance(node, ParallelNode):
                    changed |= self.parallel_progress(node)
                if ns.status != S.PENDING:
                    continue
                if isinstance(node, ErrorHandlerNode):
                    changed |= self.settle_handler(node, ns)
                elif ns.restart:
                    if not self.paused:
                        self.start_node(node)
                        changed = True
                elif not self.paused:
                    changed |= self.decide(node)
            open_ids = [i for i in open_ids if nodes[i].status not in SETTLED]
        if self.status == RunStatus.RUNNING and not open_ids:
            self.finish()

    def settle_handler(self, node: ErrorHandlerNode, ns: NodeState) -> bool:
        if ns.handling is not None and node.action != "retry":
            if self.paused:
                return False
            self.start_node(node)
            return True
        covered = self.topo.covered.get(node.id, ())
        if any(self.nodes[c].status not in SETTLED for c in covered):
            return False
        # Nothing it covers can fail any more: a handler that never acted is skipped.
        if node.action == "retry" and ns.output:
            retried = ns.output.get("retried", [])
            still = [r for r in retried if self.nodes[r].status != S.SUCCEEDED]
            if still:
                self.nodes[node.id] = replace(ns, status=S.FAILED, finished_at=self.now,
                                              error=f"still failed after retries: {', '.join(still)}")
            else:
                self.nodes[node.id] = replace(ns, status=S.SUCCEEDED, finished_at=self.now)
        else:
            self.skip(node.id, "no failure to handle")
        return True

    def decide(self, node: AnyNode) -> bool:
        """The needs/on/if rule for a pending node whose needs have all settled: skip it, or start it."""
        nodes = self.nodes
        for dep in node.needs:
            if nodes[dep].status not in SETTLED:
                return False
        statuses = [(dep, nodes[dep].status) for dep in node.needs]
        if node.on == "success":
            bad = next(((dep, st) for dep, st in statuses if st != S.SUCCEEDED), None)
            if bad is not None:
                self.skip(node.id, f"'{bad[0]}' {_phrase(bad[1])}")
                return True
        elif node.on == "failure" and not any(st == S.FAILED for _, st in statuses):
            self.skip(node.id, "none of its needs failed")
            return True
        if node.if_ is not None:
            try:
                value = node.if_.evaluate(self.scope())
            except EvaluationError as exc:
                self.failed(node.id, f"if: {exc.message}", final=True)
                return True
            if not isinstance(value, bool):
                self.failed(node.id, f"if: must be a boolean, got {json.dumps(value, default=str)[:80]}", final=True)
                return True
            if not value:
                self.skip(node.id, f"if is false: {node.if_.source}")
                return True
        self.start_node(node)
        return True

    def start_node(self, node: AnyNode) -> None:
        ns = self.nodes[node.id]
        not_before = ns.not_before if ns.restart else None
        attempt = ns.attempts + 1
        ns = replace(ns, status=S.RUNNING, attempts=attempt, restart=False, not_before=None,
                     started_at=ns.started_at if ns.started_at is not None else self.now)
        self.nodes[node.id] = ns
        try:
            if isinstance(node, TaskNode):
                task = self.resolve(node.task, self.scope())
                self.actions.append(StartTask(node=node.id, attempt=attempt, task=task, not_before=not_before))
            elif isinstance(node, DecisionNode):
                value = self.choose(node)
                self.succeed(node.id, value, decision=value)
            elif isinstance(node, ParallelNode):
                self.start_parallel(node, ns)
            elif isinstance(node, ApprovalNode):
                self.request_approval(node, ns)
            elif isinstance(node, SubworkflowNode):
                inputs = {k: render_value(v, self.scope()) for k, v in node.inputs.items()}
                self.actions.append(StartSubworkflow(node=node.id, attempt=attempt, workflow=node.workflow,
                                                     inputs=inputs, not_before=not_before, timeout_s=node.timeout_s))
            elif isinstance(node, ErrorHandlerNode):
                self.start_handler(node, ns)
        except EvaluationError as exc:
            self.failed(node.id, f"{_field_of(node)}: {exc.message}", final=True)

    def choose(self, node: DecisionNode) -> str | None:
        scope = self.scope()
        for i, case in enumerate(node.cases):
            assert case.when is not None
            value = case.when.evaluate(scope)
            if not isinstance(value, bool):
                raise EvaluationError(f"cases[{i}].when must be a boolean, got {json.dumps(value, default=str)[:80]}")
            if value:
                return case.value
        return node.default.value if node.default is not None else None

    def start_handler(self, node: ErrorHandlerNode, ns: NodeState) -> None:
        info = dict(ns.error_info or {})
        if node.task is None:  # a route handler without work recovers at once
            self.succeed(node.id, info)
            return
        task = self.resolve(node.task, self.scope(error=info))
        self.actions.append(StartTask(node=node.id, attempt=ns.attempts, task=task))

    def finish(self) -> None:
        """Every node settled: the run failed if a failure was not recovered, else it succeeded."""
        for node_id in self.topo.order:
            ns = self.nodes[node_id]
            if ns.status == S.FAILED and ns.handled_by is None:
                self.finish_with(RunStatus.FAILED, f"node '{node_id}' failed: {ns.error}")
                return
        try:
            outputs = {k: render_value(v, self.scope()) for k, v in self.d.outputs.items()}
        except EvaluationError as exc:
            self.finish_with(RunStatus.FAILED, f"outputs: {exc.message}")
            return
        self.finish_with(RunStatus.SUCCEEDED, None, outputs)


def _phrase(status: NodeStatus) -> str:
    return {S.FAILED: "failed", S.SKIPPED: "was skipped", S.CANCELLED: "was cancelled"}.get(status, str(status))


def _field_of(node: AnyNode) -> str:
    if isinstance(node, TaskNode):
        return "prompt"
    if isinstance(node, DecisionNode):
        return "cases"
    if isinstance(node, ParallelNode):
        return "for_each" if node.for_each is not None else "matrix"
    if isinstance(node, ApprovalNode):
        return "message"
    if isinstance(node, SubworkflowNode):
        return "inputs"
    return "prompt"

