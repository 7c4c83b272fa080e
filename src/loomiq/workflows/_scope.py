"""What ``nodes.<id>`` offers to expressions, in one place for both sides: the static type the
validator checks against (`node_type`) and the value a run reads (`node_view`). A test keeps the two
field sets equal for every node kind."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

from ._types import ANY, BOOLEAN, NUMBER, STRING, Type, enum, list_of, obj
from .model import (
    AnyNode,
    ApprovalNode,
    DecisionNode,
    ErrorHandlerNode,
    NodeId,
    ParallelNode,
    SubworkflowNode,
    TaskNode,
    TaskOptions,
    WorkflowDefinition,
)
from .state import NodeState, NodeStatus

__all__ = ["NodesView", "node_type", "node_view", "schema_type"]

_STATUS = enum(*(s.value for s in NodeStatus))
_DECISION = enum("approved", "rejected")


def schema_type(schema: Mapping[str, Any] | None) -> Type:
    """The type of a value matching a JSON schema, as far as the schema says (``any`` otherwise)."""
    if not isinstance(schema, Mapping):
        return ANY
    kind = schema.get("type")
    if "enum" in schema and all(isinstance(v, str) for v in schema["enum"]):
        return enum(*schema["enum"])
    if kind == "object":
        props = schema.get("properties")
        fields = {k: schema_type(v) for k, v in props.items()} if isinstance(props, Mapping) else {}
        return obj(fields, closed=schema.get("additionalProperties") is False, label="the output")
    if kind == "array":
        return list_of(schema_type(schema.get("items")))
    if kind in ("integer", "number"):
        return NUMBER
    if kind in ("string", "boolean"):
        return STRING if kind == "string" else BOOLEAN
    return ANY


def _task_output(task: TaskOptions | None) -> Type:
    if task is None:
        return ANY
    return schema_type(task.output_schema) if task.output_schema is not None else STRING


def node_type(node: AnyNode, sub_outputs: Mapping[str, Type] | None = None) -> Type:
    """The static type of ``nodes.<id>`` for this node (`sub_outputs`: a subworkflow's known outputs)."""
    fields: dict[str, Type] = {"status": _STATUS, "error": STRING}
    if isinstance(node, TaskNode):
        fields.update(output=_task_output(node.task), attempts=NUMBER)
    elif isinstance(node, DecisionNode):
        fields.update(decision=enum(*node.values), output=enum(*node.values))
    elif isinstance(node, ParallelNode):
        item = _task_output(node.task)
        fields.update(outputs=list_of(item), output=list_of(item), items=list_of(ANY))
    elif isinstance(node, ApprovalNode):
        fields.update(decision=_DECISION, output=_DECISION, comment=STRING, approved_by=list_of(STRING),
                      decided_by=STRING, timed_out=BOOLEAN)
    elif isinstance(node, SubworkflowNode):
        fields.update(output=obj(sub_outputs, closed=True, label=f"the outputs of workflow {node.workflow!r}")
                      if sub_outputs is not None else obj())
    elif isinstance(node, ErrorHandlerNode):
        fields.update(handled=STRING, output=_task_output(node.task) if node.task else obj())
    return obj(fields, closed=True, label=f"nodes.{node.id}")


def node_view(node: AnyNode, ns: NodeState) -> dict[str, Any]:
    """The value of ``nodes.<id>`` in a run (the same fields as `node_type`)."""
    view: dict[str, Any] = {"status": ns.status.value, "error": ns.error, "output": ns.output}
    if isinstance(node, TaskNode):
        view["attempts"] = ns.attempts
    elif isinstance(node, DecisionNode):
        view["decision"] = ns.decision
    elif isinstance(node, ParallelNode):
        outputs = [item.output for item in ns.items]
        view.update(outputs=outputs, output=outputs, items=[item.value for item in ns.items])
    elif isinstance(node, ApprovalNode):
        approval = ns.approval
        view.update(
            decision=ns.decision, output=ns.decision,
            comment=approval.comment if approval else None,
            approved_by=[a.subject for a in approval.answers if a.decision == "approve"] if approval else [],
            decided_by=approval.decided_by if approval else None,
            timed_out=approval.timed_out if approval else False,
        )
    elif isinstance(node, ErrorHandlerNode):
        view["handled"] = ns.handling
    return view


class NodesView(Mapping[str, Any]):
    """``nodes`` in a run's expressions: each node's view, built when read."""

    def __init__(self, definition: WorkflowDefinition, nodes: Mapping[NodeId, NodeState]) -> None:
        self._definition = definition
        self._nodes = nodes

    def __getitem__(self, key: str) -> Any:
        node = self._definition.by_id[NodeId(key)]
        return node_view(node, self._nodes.get(node.id, NodeState()))

    def __iter__(self) -> Iterator[str]:
        return iter(self._definition.by_id)

    def __len__(self) -> int:
        return len(self._definition.by_id)
