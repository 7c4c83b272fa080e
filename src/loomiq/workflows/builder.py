"""The Python builder: the same definitions as YAML, written as calls.

    wf = (Workflow("release-notes")
          .input("version", type="string")
          .task("draft", prompt="Draft release notes for ${{ inputs.version }}", strategy="sequential")
          .approval("approve", needs=["draft"], message="Publish the notes for ${{ inputs.version }}?",
                    approvers={"roles": ["admin", "operator"]}, timeout="72h", on_timeout="reject")
          .build())

Every method takes the YAML keys as keyword arguments (``if_`` for ``if``), and `build` goes through the
very path a YAML file does (the edge model, then `validate`), so the result is the identical definition
and the same errors, located by key path instead of line.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Self

from .errors import ValidationIssue, WorkflowError
from .loader import workflow_from_data
from .model import WorkflowDefinition
from .validation import Resolver

__all__ = ["Workflow", "case"]

_UNSET: Any = object()


def case(when: str, value: str | None = None, then: Sequence[str] = ()) -> dict[str, Any]:
    """One case of a decision: taken when `when` is true; `value` is the decision (default: the first
    node of `then`); `then` are the nodes of its branch."""
    out: dict[str, Any] = {"when": when, "then": list(then)}
    if value is not None:
        out["value"] = value
    return out


def _given(**fields: Any) -> dict[str, Any]:
    """The keys actually given (so defaults stay the edge model's, as in YAML)."""
    out: dict[str, Any] = {}
    for key, value in fields.items():
        if value is _UNSET:
            continue
        out["if" if key == "if_" else key] = list(value) if isinstance(value, tuple) else value
    return out


class Workflow:
    """Builds a `WorkflowDefinition` step by step; each method returns the builder."""

    def __init__(self, name: str, description: str = "") -> None:
        self._data: dict[str, Any] = {"name": name, "inputs": {}, "vars": {}, "nodes": {}, "outputs": {}}
        if description:
            self._data["description"] = description

    def input(self, name: str, type: str = "string", *, default: Any = _UNSET, required: Any = _UNSET,
              description: Any = _UNSET, enum: Any = _UNSET, items: Any = _UNSET) -> Self:
        """Declare an input (a default makes it optional)."""
        self._data["inputs"][name] = _given(type=type, default=default, required=required, description=description,
                                            enum=enum, items=items)
        return self

    def var(self, name: str, value: Any) -> Self:
        """A variable computed from the inputs when the run starts (``vars.<name>``)."""
        self._data["vars"][name] = value
        return self

    def output(self, name: str, value: Any) -> Self:
        """An output of the run, computed when it succeeds."""
        self._data["outputs"][name] = value
        return self

    def _node(self, node_id: str, kind: str, fields: dict[str, Any]) -> Self:
        if node_id in self._data["nodes"]:
            raise WorkflowError([ValidationIssue(f"nodes.{node_id}: duplicate node '{node_id}'", ("nodes", node_id))])
        self._data["nodes"][node_id] = {"kind": kind, **fields}
        return self

    def task(self, node_id: str, *, prompt: str, strategy: Any = _UNSET, agents: Any = _UNSET,
             capabilities: Any = _UNSET, tools: Any = _UNSET, timeout: Any = _UNSET, retry: Any = _UNSET,
             output_schema: Any = _UNSET, needs: Any = _UNSET, if_: Any = _UNSET, on: Any = _UNSET,
             description: Any = _UNSET) -> Self:
        """A task node."""
        return self._node(node_id, "task", _given(
            needs=needs, if_=if_, on=on, description=description, prompt=prompt, strategy=strategy, agents=agents,
            capabilities=capabilities, tools=tools, timeout=timeout, retry=retry, output_schema=output_schema))

    def decision(self, node_id: str, *, cases: Sequence[Mapping[str, Any]], default: Any = _UNSET,
                 needs: Any = _UNSET, if_: Any = _UNSET, on: Any = _UNSET, description: Any = _UNSET) -> Self:
        """A decision node; build its cases with `case`."""
        return self._node(node_id, "decision", _given(
            needs=needs, if_=if_, on=on, description=description, cases=[dict(c) for c in cases], default=default))

    def parallel(self, node_id: str, *, task: Mapping[str, Any], for_each: Any = _UNSET, matrix: Any = _UNSET,
                 join: Any = _UNSET, max_parallel: Any = _UNSET, needs: Any = _UNSET, if_: Any = _UNSET,
                 on: Any = _UNSET, description: Any = _UNSET) -> Self:
        """A parallel node: `task` (a mapping of task keys) for each item of `for_each` or of `matrix`."""
        return self._node(node_id, "parallel", _given(
            needs=needs, if_=if_, on=on, description=description, for_each=for_each, matrix=matrix,
            task=dict(task), join=join, max_parallel=max_parallel))

    def approval(self, node_id: str, *, message: str, approvers: Mapping[str, Any], require: Any = _UNSET,
                 timeout: Any = _UNSET, on_timeout: Any = _UNSET, escalate_to: Any = _UNSET, needs: Any = _UNSET,
                 if_: Any = _UNSET, on: Any = _UNSET, description: Any = _UNSET) -> Self:
        """An approval node; `approvers` is ``{"roles": [...], "subjects": [...]}``."""
        return self._node(node_id, "approval", _given(
            needs=needs, if_=if_, on=on, description=description, message=message, approvers=dict(approvers),
            require=require, timeout=timeout, on_timeout=on_timeout, escalate_to=escalate_to))

    def error_handler(self, node_id: str, *, action: str, handles: Any = _UNSET, retry: Any = _UNSET,
                      prompt: Any = _UNSET, strategy: Any = _UNSET, agents: Any = _UNSET,
                      capabilities: Any = _UNSET, tools: Any = _UNSET, timeout: Any = _UNSET,
                      output_schema: Any = _UNSET, message: Any = _UNSET, description: Any = _UNSET) -> Self:
        """An error handler for the nodes in `handles` (none: the whole workflow)."""
        return self._node(node_id, "error_handler", _given(
            description=description, handles=handles, action=action, retry=retry, prompt=prompt, strategy=strategy,
            agents=agents, capabilities=capabilities, tools=tools, timeout=timeout, output_schema=output_schema,
            message=message))

    def subworkflow(self, node_id: str, *, workflow: str, inputs: Any = _UNSET, timeout: Any = _UNSET,
                    retry: Any = _UNSET, needs: Any = _UNSET, if_: Any = _UNSET, on: Any = _UNSET,
                    description: Any = _UNSET) -> Self:
        """A node that runs another workflow by name."""
        return self._node(node_id, "subworkflow", _given(
            needs=needs, if_=if_, on=on, description=description, workflow=workflow, inputs=inputs,
            timeout=timeout, retry=retry))

    def to_data(self) -> dict[str, Any]:
        """The definition as plain data: what a YAML or JSON file of it would hold."""
        return {k: v for k, v in self._data.items() if v or k in ("name", "nodes")}

    def build(self, *, resolver: Resolver | None = None) -> WorkflowDefinition:
        """The validated definition. Raises `WorkflowError` with every error (located by key path)."""
        return workflow_from_data(self.to_data(), resolver=resolver, source=f"workflow {self._data['name']!r}")
