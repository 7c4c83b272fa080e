"""The shape of a workflow's graph, computed once per definition: a stable topological order, each
node's ancestors and dependents, and which error handler covers which node.

Edges are `needs`. An error handler has no `needs`: it is triggered by the failure of a node it
covers. A handler given `handles` covers those nodes; one without covers every node that is neither a
handler nor downstream of one (a recovery path after a handler is not covered by the workflow-wide
handler, so a handler never waits on itself). A node's own handler wins over the workflow-wide one.
"""

from __future__ import annotations

import heapq
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, TypeVar

if TYPE_CHECKING:
    from .model import NodeId, WorkflowDefinition

__all__ = ["Topology", "find_cycle"]

_Id = TypeVar("_Id", bound=str)


def find_cycle(needs: Mapping[_Id, Sequence[_Id]]) -> list[_Id] | None:
    """A cycle in the `needs` graph as a list of ids (first == last), or None. Unknown ids are ignored."""
    WHITE, GREY, BLACK = 0, 1, 2
    color = dict.fromkeys(needs, WHITE)
    for root in needs:
        if color[root] != WHITE:
            continue
        stack: list[tuple[_Id, int]] = [(root, 0)]
        path = [root]
        color[root] = GREY
        while stack:
            node, i = stack[-1]
            deps = [d for d in needs[node] if d in needs]
            if i < len(deps):
                stack[-1] = (node, i + 1)
                dep = deps[i]
                if color[dep] == GREY:
                    return [*path[path.index(dep):], dep]
                if color[dep] == WHITE:
                    color[dep] = GREY
                    stack.append((dep, 0))
                    path.append(dep)
            else:
                color[node] = BLACK
                stack.pop()
                path.pop()
    return None


@dataclass(frozen=True, slots=True)
class Topology:
    """Precomputed graph facts of an acyclic definition."""

    order: tuple[NodeId, ...]
    """Every node, each after all of its needs; ties keep the declared order."""
    ancestors: Mapping[NodeId, frozenset[NodeId]]
    """Everything a node needs, directly or not."""
    dependents: Mapping[NodeId, tuple[NodeId, ...]]
    """The nodes that list a node in their `needs`."""
    handlers: tuple[NodeId, ...]
    """The error handlers, in declared order."""
    covered: Mapping[NodeId, tuple[NodeId, ...]]
    """The nodes each handler covers."""
    handler_for: Mapping[NodeId, NodeId]
    """The handler that takes over a node's failure, for nodes that have one."""
    routed_by: Mapping[NodeId, tuple[NodeId, ...]]
    """The decisions whose cases route to a node."""

    @classmethod
    def of(cls, definition: WorkflowDefinition) -> Topology:
        """Compute the topology. Raises `ValueError` if `needs` has a cycle or an unknown id."""
        from .model import DecisionNode, ErrorHandlerNode

        needs = {n.id: n.needs for n in definition.nodes}
        for node in definition.nodes:
            for dep in node.needs:
                if dep not in needs:
                    raise ValueError(f"node {node.id!r} needs unknown node {dep!r}")
        cycle = find_cycle(needs)
        if cycle:
            raise ValueError(f"cycle: {' -> '.join(cycle)}")
        position = {n.id: i for i, n in enumerate(definition.nodes)}
        dependents: dict[NodeId, list[NodeId]] = {n.id: [] for n in definition.nodes}
        for node in definition.nodes:
            for dep in dict.fromkeys(node.needs):
                dependents[dep].append(node.id)
        # Kahn's algorithm, always taking the earliest declared ready node: a stable order.
        remaining = {n.id: len(set(n.needs)) for n in definition.nodes}
        ready = [(position[i], i) for i, c in remaining.items() if c == 0]
        heapq.heapify(ready)
        order: list[NodeId] = []
        while ready:
            _, current = heapq.heappop(ready)
            order.append(current)
            for dep in dependents[current]:
                remaining[dep] -= 1
                if remaining[dep] == 0:
                    heapq.heappush(ready, (position[dep], dep))
        ancestors: dict[NodeId, frozenset[NodeId]] = {}
        for node_id in order:
            acc: set[NodeId] = set()
            for dep in needs[node_id]:
                acc.add(dep)
                acc |= ancestors[dep]
            ancestors[node_id] = frozenset(acc)
        handlers = tuple(n.id for n in definition.nodes if isinstance(n, ErrorHandlerNode))
        after_handlers = {n for n in order if ancestors[n] & set(handlers)}
        plain = tuple(n for n in order if n not in handlers and n not in after_handlers)
        covered: dict[NodeId, tuple[NodeId, ...]] = {}
        handler_for: dict[NodeId, NodeId] = {}
        workflow_wide: NodeId | None = None
        for node in definition.nodes:
            if not isinstance(node, ErrorHandlerNode):
                continue
            if node.handles:
                covered[node.id] = tuple(h for h in dict.fromkeys(node.handles) if h in needs)
                for target in covered[node.id]:
                    handler_for.setdefault(target, node.id)
            elif workflow_wide is None:
                workflow_wide = node.id
                covered[node.id] = ()
            else:
                covered[node.id] = ()
        if workflow_wide is not None:
            rest = tuple(n for n in plain if n not in handler_for)
            covered[workflow_wide] = rest
            for target in rest:
                handler_for[target] = workflow_wide
        routed: dict[NodeId, list[NodeId]] = {}
        for node in definition.nodes:
            if isinstance(node, DecisionNode):
                for target in node.targets:
                    routed.setdefault(target, []).append(node.id)
        return cls(
            order=tuple(order),
            ancestors=ancestors,
            dependents={k: tuple(v) for k, v in dependents.items()},
            handlers=handlers,
            covered=covered,
            handler_for=handler_for,
            routed_by={k: tuple(v) for k, v in routed.items()},
        )
