"""Validation of every expression of a definition in its context, and of reachability.

Each expression is checked with the variables its place offers: ``inputs`` and ``vars`` everywhere
(``vars`` themselves see only ``inputs``), ``nodes.<id>`` only for nodes upstream of the node that
evaluates it, ``item``/``index`` or ``matrix``/``index`` inside a parallel node's task, ``error``
inside an error handler, every node in the workflow's ``outputs``. A node that can never run (an
``if`` that is always false, needs that a decision never chooses together, or an on-success need on
such a node) is reported as unreachable.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from typing import Any

from ._graph import Topology
from ._scope import node_type
from ._types import ANY, BOOLEAN, NUMBER, STRING, Checker, Type, list_of, obj, of_kind
from .errors import Path, ValidationIssue
from .expressions import EvaluationError, Expression, Template
from .model import (
    ApprovalNode,
    DecisionNode,
    ErrorHandlerNode,
    NodeId,
    ParallelNode,
    SubworkflowNode,
    TaskNode,
    WorkflowDefinition,
)

__all__ = ["check_expressions", "check_reachability"]


def _dotted(path: Path) -> str:
    return ".".join(str(p) for p in path)


def _input_type(definition: WorkflowDefinition) -> Type:
    fields: dict[str, Type] = {}
    for spec in definition.inputs:
        t = of_kind(spec.type)
        if spec.type == "list" and spec.items:
            t = list_of(of_kind(spec.items))
        if spec.type == "string" and spec.enum and all(isinstance(v, str) for v in spec.enum):
            t = Type("string", values=frozenset(spec.enum))
        fields[spec.name] = t
    return obj(fields, closed=True, label="inputs")


def _walk_values(value: Any, path: Path) -> Iterator[tuple[Template, Path]]:
    if isinstance(value, Template):
        yield value, path
    elif isinstance(value, Mapping):
        for k, v in value.items():
            yield from _walk_values(v, (*path, k))
    elif isinstance(value, list | tuple):
        for i, v in enumerate(value):
            yield from _walk_values(v, (*path, i))


class _Context:
    """Checks expressions of a definition, collecting issues."""

    def __init__(self, definition: WorkflowDefinition, topology: Topology,
                 sub_outputs: Callable[[SubworkflowNode], Mapping[str, Type] | None]) -> None:
        self.definition = definition
        self.topology = topology
        self.issues: list[ValidationIssue] = []
        self.inputs = _input_type(definition)
        self.vars = obj({k: self.value_type(v) for k, v in definition.vars.items()}, closed=True, label="vars")
        self.types = {n.id: node_type(n, sub_outputs(n) if isinstance(n, SubworkflowNode) else None)
                      for n in definition.nodes}

    def value_type(self, value: Any) -> Type:
        if isinstance(value, Template):
            return ANY if value.single is not None else STRING
        if isinstance(value, bool):
            return BOOLEAN
        if isinstance(value, int | float):
            return NUMBER
        if isinstance(value, str):
            return Type("string", values=frozenset([value]))
        if isinstance(value, list | tuple):
            return list_of()
        return obj() if isinstance(value, Mapping) else ANY

    def roots(self, **extra: Type) -> dict[str, Type]:
        return {"inputs": self.inputs, "vars": self.vars, **extra}

    def check(self, expr: Expression, path: Path, roots: Mapping[str, Type], visible: frozenset[NodeId] | None,
              reader: str) -> Type:
        """Check one expression; `visible` is the set of node ids it may read (None: all of them)."""

        def node_ref(name: str, pos: int) -> Type | None:
            if name not in self.types:
                checker.error(f"unknown node '{name}'", pos)
                return None
            if visible is not None and name not in visible:
                if name == reader:
                    checker.error(f"node '{reader}' cannot read its own fields", pos)
                else:
                    checker.error(f"nodes.{name} is not upstream of '{reader}' (add '{name}' to its needs)", pos)
                return None
            return self.types[NodeId(name)]

        checker = Checker(roots, node_ref)
        result = checker.check(expr.ast)
        for message, pos in checker.errors:
            self.issues.append(ValidationIssue(f"{_dotted(path)}: {message}", path, offset=expr.offset + pos))
        return result

    def template(self, template: Template, path: Path, roots: Mapping[str, Type],
                 visible: frozenset[NodeId] | None, reader: str) -> Type:
        types = [self.check(e, path, roots, visible, reader) for e in template.expressions]
        return types[0] if template.single is not None else STRING

    def condition(self, expr: Expression | None, path: Path, roots: Mapping[str, Type],
                  visible: frozenset[NodeId] | None, reader: str) -> None:
        if expr is None:
            return
        t = self.check(expr, path, roots, visible, reader)
        if t.kind not in ("boolean", "any", "null"):
            self.issues.append(ValidationIssue(
                f"{_dotted(path)}: a condition must be a boolean, not {t.describe()} "
                "(compare it, e.g. == 'x', or test len(...) > 0)", path, offset=expr.offset))

    def values(self, value: Any, path: Path, roots: Mapping[str, Type], visible: frozenset[NodeId] | None,
               reader: str) -> Type:
        if isinstance(value, Template):
            return self.template(value, path, roots, visible, reader)
        for template, sub in _walk_values(value, path):
            self.template(template, sub, roots, visible, reader)
        return self.value_type(value)

    def list_value(self, value: Any, path: Path, roots: Mapping[str, Type], visible: frozenset[NodeId],
                   reader: str) -> Type:
        t = self.values(value, path, roots, visible, reader)
        if t.kind not in ("list", "any", "null"):
            offset = value.expressions[0].offset if isinstance(value, Template) and value.expressions else None
            self.issues.append(ValidationIssue(f"{_dotted(path)}: must be a list, not {t.describe()}", path,
                                               offset=offset))
        return t


def check_expressions(definition: WorkflowDefinition, topology: Topology,
                      sub_outputs: Callable[[SubworkflowNode], Mapping[str, Type] | None]) -> list[ValidationIssue]:
    """Check every expression of an acyclic definition in its context."""
    ctx = _Context(definition, topology, sub_outputs)
    for name, value in definition.vars.items():
        ctx.values(value, ("vars", name), {"inputs": ctx.inputs}, frozenset(), f"vars.{name}")
    roots = ctx.roots(nodes=obj())
    for node in definition.nodes:
        path: Path = ("nodes", node.id)
        visible = topology.ancestors[node.id]
        if isinstance(node, ErrorHandlerNode):
            covered = topology.covered.get(node.id, ())
            common = frozenset.intersection(*(topology.ancestors[c] for c in covered)) if covered else frozenset()
            visible = common | frozenset(covered)
            error = obj({"node": STRING, "message": STRING}, closed=True, label="error")
            handler_roots = ctx.roots(nodes=obj(), error=error)
            if node.task is not None:
                ctx.template(node.task.prompt, (*path, "prompt"), handler_roots, visible, node.id)
            if node.message is not None:
                ctx.template(node.message, (*path, "message"), handler_roots, visible, node.id)
            continue
        ctx.condition(node.if_, (*path, "if"), roots, visible, node.id)
        if isinstance(node, TaskNode):
            ctx.template(node.task.prompt, (*path, "prompt"), roots, visible, node.id)
        elif isinstance(node, DecisionNode):
            for i, case in enumerate(node.cases):
                ctx.condition(case.when, (*path, "cases", i, "when"), roots, visible, node.id)
        elif isinstance(node, ApprovalNode):
            ctx.template(node.message, (*path, "message"), roots, visible, node.id)
        elif isinstance(node, SubworkflowNode):
            for key, value in node.inputs.items():
                ctx.values(value, (*path, "inputs", key), roots, visible, node.id)
        elif isinstance(node, ParallelNode):
            body_roots: dict[str, Type]
            if node.for_each is not None:
                t = ctx.list_value(node.for_each, (*path, "for_each"), roots, visible, node.id)
                item = (t.elem or ANY) if t.kind == "list" else ANY
                body_roots = ctx.roots(nodes=obj(), item=item, index=NUMBER)
            else:
                fields = {}
                for key, value in (node.matrix or {}).items():
                    t = ctx.list_value(value, (*path, "matrix", key), roots, visible, node.id)
                    fields[key] = (t.elem or ANY) if t.kind == "list" else ANY
                body_roots = ctx.roots(nodes=obj(), matrix=obj(fields, closed=True, label="matrix"), index=NUMBER)
            ctx.template(node.task.prompt, (*path, "task", "prompt"), body_roots, visible, node.id)
    every = frozenset(n.id for n in definition.nodes)
    for name, value in definition.outputs.items():
        ctx.values(value, ("outputs", name), roots, every, "outputs")
    return ctx.issues


def _always_false(expr: Expression | None) -> bool:
    if expr is None or not expr.is_constant:
        return False
    try:
        return expr.evaluate({}) is False
    except EvaluationError:
        return False


def check_reachability(definition: WorkflowDefinition, topology: Topology) -> list[ValidationIssue]:
    """Nodes that can never run, each with the reason."""
    issues: list[ValidationIssue] = []
    unreachable: dict[NodeId, str] = {}
    branches: dict[NodeId, dict[NodeId, frozenset[int]]] = {}  # target -> decision -> case indexes
    for node in definition.nodes:
        if isinstance(node, DecisionNode):
            cases = (*node.cases, *((node.default,) if node.default else ()))
            for i, case in enumerate(cases):
                for target in case.then:
                    prev = branches.setdefault(target, {}).get(node.id, frozenset())
                    branches[target][node.id] = prev | {i}
    for node_id in topology.order:
        node = definition.by_id[node_id]
        if isinstance(node, ErrorHandlerNode):
            continue
        reason = None
        if _always_false(node.if_):
            reason = "its if is always false"
        elif node.on == "success":
            dead = next((d for d in node.needs if d in unreachable), None)
            if dead is not None:
                reason = f"it needs '{dead}', which can never run"
            else:
                for decision in {d for need in node.needs for d in branches.get(need, {})}:
                    routed = [need for need in dict.fromkeys(node.needs) if decision in branches.get(need, {})]
                    common = frozenset.intersection(*(branches[need][decision] for need in routed))
                    if len(routed) > 1 and not common:
                        reason = (f"it needs {', '.join(repr(r) for r in routed)}, which decision '{decision}' "
                                  "never chooses together")
                        break
        if reason is not None:
            unreachable[node_id] = reason
            issues.append(ValidationIssue(f"nodes.{node_id}: unreachable: {reason}", ("nodes", node_id)))
    return issues
