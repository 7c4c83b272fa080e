"""Validation of a definition before anything runs.

`validate` returns every problem at once, each a `ValidationIssue` with the key path it concerns:
names, duplicate ids, unknown or cyclic `needs`, inputs whose defaults do not fit their type, node
options that cannot work together (an approval nobody can give, a decision routing to a node that
does not need it, an error handler waiting on itself...), undefined variables and type errors in
expressions, unreachable nodes. The loader gives each issue its file, line and column.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Callable, Mapping
from dataclasses import replace
from typing import Any, Literal

import jsonschema_rs

from ..strategies import STRATEGY_NAMES
from ._check_exprs import check_expressions, check_reachability
from ._graph import Topology, find_cycle
from ._types import ANY, Type, of_kind
from .errors import Path, ValidationIssue
from .expressions import Template
from .inputs import input_value_problem
from .model import (
    ApprovalNode,
    Approvers,
    DecisionCase,
    DecisionNode,
    ErrorHandlerNode,
    NodeId,
    ParallelNode,
    Require,
    SubworkflowNode,
    TaskNode,
    TaskOptions,
    WorkflowDefinition,
)

__all__ = ["Resolver", "validate"]

Resolver = Callable[[str], WorkflowDefinition | None]
"""Finds a workflow by name (for subworkflows): a definition, or None when there is none by that name."""

_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_WORKFLOW_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")


def _dotted(path: Path) -> str:
    return ".".join(str(p) for p in path)


class _Validator:
    def __init__(self, definition: WorkflowDefinition, resolver: Resolver | None, strict: bool) -> None:
        self.d = definition
        self.resolver = resolver
        self.strict = strict
        self.issues: list[ValidationIssue] = []
        self.ids = {n.id for n in definition.nodes}

    def add(self, path: Path, message: str, *, key: bool = False,
            severity: Literal["error", "warning"] = "error") -> None:
        self.issues.append(ValidationIssue(f"{_dotted(path)}: {message}", path, severity=severity, at_key=key))

    def name(self, value: str, path: Path, what: str) -> None:
        if not _NAME.match(value):
            self.add(path, f"{what} '{value}' must be a letter or '_' followed by letters, digits and '_' "
                           "(expressions read it as a name)", key=True)

    def run(self) -> list[ValidationIssue]:
        d = self.d
        if not _WORKFLOW_NAME.match(d.name):
            self.add(("name",), "a workflow name is letters, digits, '.', '_' and '-', starting with a letter or digit")
        if not d.nodes:
            self.add(("nodes",), "a workflow needs at least one node")
        self.inputs()
        for key in d.vars:
            self.name(key, ("vars", key), "variable")
        for key in d.outputs:
            self.name(key, ("outputs", key), "output")
        seen: set[str] = set()
        for node in d.nodes:
            path: Path = ("nodes", node.id)
            self.name(node.id, path, "node id")
            if node.id in seen:
                self.add(path, f"duplicate node '{node.id}'", key=True)
            seen.add(node.id)
            self.needs(node.id, node.needs, node.on)
            self.node(node)
        if self.graph() and len(seen) == len(d.nodes):
            # Needs naming unknown nodes were reported; leave them out so the rest is still checked.
            known = d
            if any(x not in self.ids or x == n.id for n in d.nodes for x in n.needs):
                known = replace(d, nodes=tuple(
                    replace(n, needs=tuple(x for x in n.needs if x in self.ids and x != n.id)) for n in d.nodes))
            topology = Topology.of(known)
            self.handlers(topology)
            self.issues.extend(check_expressions(known, topology, self.sub_outputs))
            self.issues.extend(check_reachability(known, topology))
        return self.issues

    # ---- inputs and needs --------------------------------------------------------------------------

    def inputs(self) -> None:
        seen: set[str] = set()
        for spec in self.d.inputs:
            path: Path = ("inputs", spec.name)
            self.name(spec.name, path, "input")
            if spec.name in seen:
                self.add(path, f"duplicate input '{spec.name}'", key=True)
            seen.add(spec.name)
            if spec.items is not None and spec.type != "list":
                self.add((*path, "items"), "items is only for inputs of type list")
            for i, value in enumerate(spec.enum or ()):
                problem = input_value_problem(spec, value, check_enum=False)
                if problem:
                    self.add((*path, "enum", i), problem)
            if not spec.required and spec.default is not None:
                problem = input_value_problem(spec, spec.default)
                if problem:
                    self.add((*path, "default"), f"default {problem}")

    def needs(self, node_id: NodeId, needs: tuple[NodeId, ...], on: str) -> None:
        path: Path = ("nodes", node_id, "needs")
        seen: set[str] = set()
        for i, dep in enumerate(needs):
            if dep == node_id:
                self.add((*path, i), "a node cannot need itself")
            elif dep not in self.ids:
                self.add((*path, i), f"unknown node '{dep}'{_suggest(dep, self.ids)}")
            elif dep in seen:
                self.add((*path, i), f"'{dep}' is listed twice")
            seen.add(dep)
        if on == "failure" and not needs and not isinstance(self.d.by_id.get(node_id), ErrorHandlerNode):
            self.add(("nodes", node_id, "on"), "on: failure runs after a need fails, but this node needs nothing")

    def graph(self) -> bool:
        needs = {n.id: tuple(d for d in n.needs if d in self.ids and d != n.id) for n in self.d.nodes}
        cycle = find_cycle(needs)
        if cycle:
            self.add(("nodes", cycle[0], "needs"), f"cycle: {' -> '.join(cycle)}")
        return cycle is None

    # ---- nodes ---------------------------------------------------------------------------------------

    def node(self, node: Any) -> None:
        path: Path = ("nodes", node.id)
        if isinstance(node, TaskNode):
            self.task(node.task, path)
        elif isinstance(node, DecisionNode):
            self.decision(node, path)
        elif isinstance(node, ParallelNode):
            self.parallel(node, path)
        elif isinstance(node, ApprovalNode):
            self.approval(node, path)
        elif isinstance(node, SubworkflowNode):
            self.subworkflow(node, path)
        elif isinstance(node, ErrorHandlerNode):
            self.handler_shape(node, path)

    def task(self, task: TaskOptions, path: Path) -> None:
        if task.strategy not in STRATEGY_NAMES:
            self.add((*path, "strategy"), f"unknown strategy '{task.strategy}' (strategies: "
                                          f"{', '.join(STRATEGY_NAMES)})")
        if task.output_schema is not None:
            try:
                jsonschema_rs.meta.validate(dict(task.output_schema))
            except (jsonschema_rs.ValidationError, jsonschema_rs.ReferencingError, ValueError) as exc:
                first = str(exc).splitlines()[0] if str(exc) else "invalid"
                self.add((*path, "output_schema"), f"not a valid JSON schema: {first}")

    def decision(self, node: DecisionNode, path: Path) -> None:
        values: set[str] = set()
        cases: list[tuple[Path, DecisionCase]] = [(("cases", i), c) for i, c in enumerate(node.cases)]
        if node.default is not None:
            cases.append((("default",), node.default))
        for where, case in cases:
            if case.value in values:
                self.add((*path, *where, "value"), f"duplicate decision value '{case.value}'")
            values.add(case.value)
            for j, target in enumerate(case.then):
                tpath = (*path, *where, "then", j)
                if target not in self.ids:
                    self.add(tpath, f"unknown node '{target}'{_suggest(target, self.ids)}")
                elif target == node.id:
                    self.add(tpath, "a decision cannot route to itself")
                elif node.id not in self.d.by_id[target].needs:
                    self.add(tpath, f"node '{target}' is a branch of decision '{node.id}' but does not need it "
                                    f"(add '{node.id}' to its needs)")

    def parallel(self, node: ParallelNode, path: Path) -> None:
        if (node.for_each is None) == (node.matrix is None):
            self.add(path, "a parallel node has exactly one of 'for_each' and 'matrix'")
        if node.matrix is not None:
            if not node.matrix:
                self.add((*path, "matrix"), "a matrix needs at least one key")
            for key in node.matrix:
                self.name(key, (*path, "matrix", key), "matrix key")
        self.task(node.task, (*path, "task"))

    def approvers(self, approvers: Approvers, require: Require, path: Path, require_path: Path) -> None:
        if not approvers.roles and not approvers.subjects:
            self.add(path, "nobody can answer: give roles or subjects")
        elif isinstance(require, int) and not approvers.roles and require > len(set(approvers.subjects)):
            self.add(require_path, f"require: {require} can never be met by {len(set(approvers.subjects))} "
                                   "listed subject(s) and no roles")

    def approval(self, node: ApprovalNode, path: Path) -> None:
        self.approvers(node.approvers, node.require, (*path, "approvers"), (*path, "require"))
        if node.on_timeout != "reject" and node.timeout_s is None:
            self.add((*path, "on_timeout"), f"on_timeout: {node.on_timeout} needs a timeout")
        if node.on_timeout == "escalate" and node.escalate_to is None:
            self.add((*path, "on_timeout"), "on_timeout: escalate needs escalate_to (roles or subjects, and "
                                            "its own timeout)")
        if node.escalate_to is not None:
            if node.on_timeout != "escalate":
                self.add((*path, "escalate_to"), "escalate_to is used only with on_timeout: escalate")
            e = node.escalate_to
            self.approvers(e.approvers, e.require, (*path, "escalate_to"), (*path, "escalate_to", "require"))
            if e.on_timeout != "reject" and e.timeout_s is None:
                self.add((*path, "escalate_to", "on_timeout"), f"on_timeout: {e.on_timeout} needs a timeout")

    def handler_shape(self, node: ErrorHandlerNode, path: Path) -> None:
        if node.needs:
            self.add((*path, "needs"), "an error_handler has no needs: it runs when a node it handles fails")
        if node.if_ is not None:
            self.add((*path, "if"), "an error_handler has no if")
        if node.on != "success":
            self.add((*path, "on"), "an error_handler has no on")
        if node.action == "retry":
            if node.retry is None:
                self.add(path, "action: retry needs retry (e.g. retry: 2, or {max_attempts: 2, backoff: 30s})")
            if node.task is not None:
                self.add((*path, "prompt"), "action: retry re-runs the failed node; it takes no prompt")
        elif node.retry is not None:
            self.add((*path, "retry"), f"retry is only for action: retry (this is action: {node.action})")
        if node.action == "compensate" and node.task is None:
            self.add(path, "action: compensate runs a task: give it a prompt")
        if node.action == "fail" and node.task is not None:
            self.add((*path, "prompt"), "action: fail stops the workflow; it runs no task (use message)")
        if node.message is not None and node.action != "fail":
            self.add((*path, "message"), "message is only for action: fail")
        if node.task is not None:
            self.task(node.task, path)
        for i, target in enumerate(node.handles):
            if target not in self.ids:
                self.add((*path, "handles", i), f"unknown node '{target}'{_suggest(target, self.ids)}")
            elif isinstance(self.d.by_id[target], ErrorHandlerNode):
                self.add((*path, "handles", i), "an error handler cannot handle another error handler")

    def handlers(self, topology: Topology) -> None:
        owner: dict[str, str] = {}
        wide: str | None = None
        for node in self.d.nodes:
            if not isinstance(node, ErrorHandlerNode):
                continue
            path: Path = ("nodes", node.id)
            if not node.handles:
                if wide is not None:
                    self.add((*path, "handles"), f"only one error handler may cover the whole workflow "
                                                 f"('{wide}' already does); name the nodes in handles")
                wide = node.id
            for i, target in enumerate(node.handles):
                if target not in topology.ancestors:
                    continue
                if node.id in topology.ancestors[target]:
                    self.add((*path, "handles", i), f"'{target}' comes after this handler, so it would wait "
                                                    "for its own handler")
                elif target in owner and owner[target] != node.id:
                    self.add((*path, "handles", i), f"'{target}' is already handled by '{owner[target]}'")
                owner.setdefault(target, node.id)

    def subworkflow(self, node: SubworkflowNode, path: Path) -> None:
        if not _WORKFLOW_NAME.match(node.workflow):
            self.add((*path, "workflow"), f"'{node.workflow}' is not a workflow name")
            return
        if node.workflow == self.d.name:
            self.add((*path, "workflow"), "a workflow cannot run itself as a subworkflow")
            return
        if self.resolver is None:
            return
        child = self.resolver(node.workflow)
        if child is None:
            self.add((*path, "workflow"), f"unknown workflow '{node.workflow}'",
                     severity="error" if self.strict else "warning")
            return
        cycle = _subworkflow_cycle(self.d.name, child, self.resolver)
        if cycle:
            self.add((*path, "workflow"), f"subworkflow cycle: {' -> '.join(cycle)}")
        specs = child.input_specs
        for key, value in node.inputs.items():
            if key not in specs:
                self.add((*path, "inputs", key), f"workflow '{child.name}' has no input '{key}'"
                                                 f"{_suggest(key, set(specs))}", key=True)
            elif not _has_template(value):
                problem = input_value_problem(specs[key], _plain(value))
                if problem:
                    self.add((*path, "inputs", key), problem)
        for spec in child.inputs:
            if spec.required and spec.name not in node.inputs:
                self.add((*path, "inputs"), f"workflow '{child.name}' needs input '{spec.name}'")

    def sub_outputs(self, node: SubworkflowNode) -> Mapping[str, Type] | None:
        child = self.resolver(node.workflow) if self.resolver is not None else None
        if child is None:
            return None
        return {name: _value_kind(value) for name, value in child.outputs.items()}


def _value_kind(value: Any) -> Type:
    if isinstance(value, bool):
        return of_kind("boolean")
    if isinstance(value, int | float):
        return of_kind("number")
    if isinstance(value, str):
        return of_kind("string")
    return ANY


def _has_template(value: Any) -> bool:
    if isinstance(value, Template):
        return True
    if isinstance(value, Mapping):
        return any(_has_template(v) for v in value.values())
    if isinstance(value, list | tuple):
        return any(_has_template(v) for v in value)
    return False


def _plain(value: Any) -> Any:
    if isinstance(value, tuple):
        return [_plain(v) for v in value]
    if isinstance(value, Mapping):
        return {k: _plain(v) for k, v in value.items()}
    return value


def _subworkflow_cycle(root: str, child: WorkflowDefinition, resolver: Resolver) -> list[str] | None:
    graph: dict[str, tuple[str, ...]] = {}
    todo = [child]
    while todo and len(graph) < 200:
        current = todo.pop()
        if current.name in graph:
            continue
        calls = tuple(n.workflow for n in current.nodes if isinstance(n, SubworkflowNode))
        graph[current.name] = calls
        for name in calls:
            if name != root and name not in graph:
                found = resolver(name)
                if found is not None:
                    todo.append(found)
    graph[root] = (child.name,)
    cycle = find_cycle({k: tuple(c for c in v if c in graph) for k, v in graph.items()})
    if not cycle or root not in cycle:
        return None
    start = cycle.index(root)  # name the cycle from the workflow being validated
    return [*cycle[start:-1], *cycle[:start], root]


def _suggest(name: str, known: set[str] | Any) -> str:
    close = difflib.get_close_matches(name, sorted(known), n=1)
    return f" (did you mean '{close[0]}'?)" if close else ""


def validate(definition: WorkflowDefinition, *, resolver: Resolver | None = None,
             strict_subworkflows: bool = True) -> list[ValidationIssue]:
    """Every problem of `definition`, in no particular order (empty when it is valid).

    `resolver` finds subworkflows by name, to check their inputs and outputs and to catch cycles;
    without one, subworkflow names are not checked. An unknown subworkflow is an error, or a warning
    with ``strict_subworkflows=False`` (a registry the caller cannot see may know it).
    """
    return _Validator(definition, resolver, strict_subworkflows).run()
