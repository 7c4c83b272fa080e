"""The parallel-node rules of a run (a mixin of `_run.Run`): expanding the items of `for_each` or of a
`matrix` (the product of its lists, in key order), starting them within `max_parallel`, retrying an
item by the task's own `retry`, and joining: with `join: all` no item starts after one failed for good
and the node succeeds only if every item did; with `join: any` every item runs and one success is
enough. The node's output is the list of the items' outputs, in item order (null where one failed).
"""

from __future__ import annotations

import json
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from ._run_check import check_output
from .expressions import EvaluationError, render_value
from .model import AnyNode, NodeId, ParallelNode, TaskOptions, WorkflowDefinition
from .state import Action, ItemState, NodeFailed, NodeState, NodeStatus, NodeSucceeded, ResolvedTask, StartTask

if TYPE_CHECKING:
    from collections.abc import Mapping

__all__ = ["ParallelRules"]

S = NodeStatus


class ParallelRules:
    """Parallel nodes and their items."""

    if TYPE_CHECKING:  # provided by `Run`
        d: WorkflowDefinition
        nodes: dict[NodeId, NodeState]
        now: float
        paused: bool
        actions: list[Action]

        def scope(self, **extra: Any) -> dict[str, Any]: ...
        def resolve(self, task: TaskOptions, scope: Mapping[str, Any]) -> ResolvedTask: ...
        def succeed(self, node_id: NodeId, output: Any, *, decision: str | None = None) -> None: ...
        def failed(self, node_id: NodeId, error: str, *, final: bool = False) -> None: ...

    def item_result(self, node: AnyNode, ns: NodeState, event: NodeSucceeded | NodeFailed) -> str | None:
        index = event.index
        if not isinstance(node, ParallelNode) or ns.status != S.RUNNING or not (0 <= (index or 0) < len(ns.items)):
            return f"node '{node.id}' has no running item {index}"
        assert index is not None
        item = ns.items[index]
        if item.status != S.RUNNING or item.attempts != event.attempt:
            return f"item {index} of '{node.id}' attempt {event.attempt} is not running (stale or duplicate result)"
        if isinstance(event, NodeSucceeded):
            output, problem = check_output(node.task, event.output)
            error = problem
        else:
            output, error = None, event.error
        if error is None:
            item = replace(item, status=S.SUCCEEDED, output=output, error=None)
        elif node.task.retry is not None and item.attempts < node.task.retry.max_attempts:
            item = replace(item, status=S.PENDING, error=error,
                           not_before=self.now + node.task.retry.delay_s(item.attempts))
        else:
            item = replace(item, status=S.FAILED, error=error)
        items = list(ns.items)
        items[index] = item
        self.nodes[node.id] = replace(ns, items=tuple(items))
        self.parallel_progress(node)
        return None

    def start_parallel(self, node: ParallelNode, ns: NodeState) -> None:
        if ns.items:  # an error handler's retry: run again what did not succeed
            items = tuple(i if i.status == S.SUCCEEDED else replace(i, status=S.PENDING, error=None, not_before=None)
                          for i in ns.items)
        else:
            items = tuple(ItemState(index=i, value=v) for i, v in enumerate(self.expand(node)))
        self.nodes[node.id] = replace(ns, items=items)
        self.parallel_progress(node)

    def expand(self, node: ParallelNode) -> list[Any]:
        scope = self.scope()
        if node.for_each is not None:
            values = render_value(node.for_each, scope)
            if not isinstance(values, list | tuple):
                raise EvaluationError(f"for_each must be a list, got {json.dumps(values, default=str)[:80]}")
            return list(values)
        combos: list[dict[str, Any]] = [{}]
        for key, raw in (node.matrix or {}).items():
            values = render_value(raw, scope)
            if not isinstance(values, list | tuple):
                raise EvaluationError(f"matrix.{key} must be a list, got {json.dumps(values, default=str)[:80]}")
            combos = [{**c, key: v} for c in combos for v in values]
        return combos

    def parallel_progress(self, node: ParallelNode) -> bool:
        """Start items while the limit allows; join when no item runs any more. True if anything changed."""
        ns = self.nodes[node.id]
        items = list(ns.items)
        failed = [i for i in items if i.status == S.FAILED]
        stop_starting = node.join == "all" and bool(failed)
        running = sum(1 for i in items if i.status == S.RUNNING)
        changed = False
        if not stop_starting and not self.paused:
            limit = node.max_parallel or len(items)
            for pos, item in enumerate(items):
                if running >= limit:
                    break
                if item.status != S.PENDING:
                    continue
                attempt = item.attempts + 1
                scope = self.scope(index=item.index, **({"item": item.value} if node.for_each is not None
                                                        else {"matrix": item.value}))
                try:
                    task = self.resolve(node.task, scope)
                except EvaluationError as exc:
                    items[pos] = replace(item, status=S.FAILED, attempts=attempt, error=f"task.prompt: {exc.message}")
                    changed = True
                    continue
                items[pos] = replace(item, status=S.RUNNING, attempts=attempt, not_before=None)
                self.actions.append(StartTask(node=node.id, attempt=attempt, task=task, index=item.index,
                                              not_before=item.not_before))
                running += 1
                changed = True
            stop_starting = node.join == "all" and any(i.status == S.FAILED for i in items)
        self.nodes[node.id] = ns = replace(ns, items=tuple(items))
        if running or any(i.status == S.RUNNING for i in items):
            return changed
        pending = any(i.status == S.PENDING for i in items)
        if pending and not stop_starting:
            return changed  # paused with items left to start
        # Join: nothing runs any more.
        items = [replace(i, status=S.SKIPPED) if i.status == S.PENDING else i for i in items]
        self.nodes[node.id] = replace(ns, items=tuple(items))
        succeeded = [i for i in items if i.status == S.SUCCEEDED]
        failures = [i for i in items if i.status == S.FAILED]
        if (node.join == "all" and not failures) or (node.join == "any" and (succeeded or not items)):
            self.succeed(node.id, [i.output for i in items])
        else:
            first = failures[0]
            self.failed(node.id, f"item {first.index} failed: {first.error}")
        return True
