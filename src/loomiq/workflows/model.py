"""The workflow definition: small frozen dataclasses, the same whether it came from YAML, JSON or the
Python builder.

A definition is inert data. Strings that hold ``${{ }}`` are parsed once into `Template`s and
conditions into `Expression`s; durations are seconds. `load_workflow` (YAML/JSON, through a pydantic
edge model) and `Workflow` (the builder) both produce a `WorkflowDefinition`; `validate` checks it;
`advance` runs it as a pure state machine. docs/workflows.md specifies every field.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import cached_property
from typing import TYPE_CHECKING, Any, ClassVar, Literal, NewType

from .expressions import Expression, Template

if TYPE_CHECKING:
    from ._graph import Topology

__all__ = [
    "NODE_KINDS",
    "AnyNode",
    "ApprovalNode",
    "Approvers",
    "DecisionCase",
    "DecisionNode",
    "ErrorHandlerNode",
    "Escalation",
    "InputSpec",
    "InputType",
    "NodeBase",
    "NodeId",
    "ParallelNode",
    "RetrySpec",
    "SubworkflowNode",
    "TaskNode",
    "TaskOptions",
    "WorkflowDefinition",
    "format_duration",
    "parse_duration",
]

NodeId = NewType("NodeId", str)
"""A node's name inside its workflow (``draft``, ``approve``)."""

InputType = Literal["string", "integer", "number", "boolean", "list", "object"]
RunOn = Literal["success", "failure", "always"]
Require = Literal["any", "all"] | int
OnTimeout = Literal["reject", "escalate", "fail"]
HandlerAction = Literal["retry", "compensate", "route", "fail"]
Join = Literal["all", "any"]

NODE_KINDS = ("task", "decision", "parallel", "approval", "error_handler", "subworkflow")
"""Every node kind, in the order the documentation presents them."""

_DURATION_PART = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h|d|w)")
_UNIT_S = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0, "w": 604800.0}


def parse_duration(value: str | int | float) -> float:
    """Seconds in a duration: ``72h``, ``30m``, ``1h30m``, ``500ms``, ``2d``, or a number of seconds.

    Raises `ValueError` for anything else, or a duration that is not positive.
    """
    if isinstance(value, bool):
        raise ValueError(f"not a duration: {value!r}")
    if isinstance(value, int | float):
        seconds = float(value)
    else:
        text = value.strip()
        pos, seconds = 0, 0.0
        while pos < len(text):
            match = _DURATION_PART.match(text, pos)
            if match is None:
                raise ValueError(f"not a duration: {value!r} (write e.g. 72h, 30m, 1h30m, 45s, 500ms)")
            seconds += float(match.group(1)) * _UNIT_S[match.group(2)]
            pos = match.end()
        if not text:
            raise ValueError("not a duration: empty")
    if not seconds > 0 or seconds != seconds or seconds == float("inf"):
        raise ValueError(f"a duration must be positive, not {value!r}")
    return seconds


def format_duration(seconds: float) -> str:
    """A short form of a duration in seconds, in the units definitions use: ``72h``, ``1h30m``, ``45s``."""
    if seconds < 1 or not float(seconds).is_integer():
        return f"{seconds:g}s"
    out, rest = [], int(seconds)
    for unit, size in (("h", 3600), ("m", 60), ("s", 1)):
        if rest >= size:
            out.append(f"{rest // size}{unit}")
            rest %= size
    return "".join(out)


@dataclass(frozen=True, kw_only=True)
class InputSpec:
    """A workflow input: its type, whether it is required, its default and allowed values."""

    name: str
    type: InputType = "string"
    required: bool = True
    default: Any = None
    description: str = ""
    enum: tuple[Any, ...] | None = None
    items: InputType | None = None
    """For a list: the type of each element (None: any)."""


@dataclass(frozen=True, kw_only=True)
class RetrySpec:
    """How often to try again and how long to wait between attempts (exponential, capped)."""

    max_attempts: int = 3
    """Attempts in all, the first included (for a node); extra attempts (for an error handler)."""
    backoff_s: float = 1.0
    factor: float = 2.0
    max_backoff_s: float = 300.0

    def delay_s(self, retry: int) -> float:
        """Seconds to wait before retry number `retry` (1 for the first retry)."""
        return min(self.max_backoff_s, self.backoff_s * self.factor ** (retry - 1))


@dataclass(frozen=True, kw_only=True)
class TaskOptions:
    """What a loomiq task of a node runs: the prompt (a template) and how to run it."""

    prompt: Template
    strategy: str = "auto"
    agents: tuple[str, ...] = ()
    capabilities: tuple[str, ...] = ()
    tools: tuple[str, ...] = ()
    timeout_s: float | None = None
    retry: RetrySpec | None = None
    output_schema: Mapping[str, Any] | None = None
    """A JSON schema; when set, the task's output is parsed as JSON and must match it."""


@dataclass(frozen=True, kw_only=True)
class NodeBase:
    """What every node has: its id, the nodes it needs, and when it runs (`on`, then `if_`)."""

    kind: ClassVar[str]
    id: NodeId
    needs: tuple[NodeId, ...] = ()
    if_: Expression | None = None
    on: RunOn = "success"
    description: str = ""


@dataclass(frozen=True, kw_only=True)
class TaskNode(NodeBase):
    """Runs one loomiq task (a strategy over agents) with a rendered prompt."""

    kind: ClassVar[str] = "task"
    task: TaskOptions


@dataclass(frozen=True, kw_only=True)
class DecisionCase:
    """One branch of a decision: taken when `when` is true (the first true case wins); its `value`
    becomes the decision, and the nodes in `then` run while the other cases' nodes are skipped.
    The default case has no `when`."""

    when: Expression | None
    value: str
    then: tuple[NodeId, ...] = ()


@dataclass(frozen=True, kw_only=True)
class DecisionNode(NodeBase):
    """Chooses a branch: evaluates its cases in order, at once, without running a task."""

    kind: ClassVar[str] = "decision"
    cases: tuple[DecisionCase, ...]
    default: DecisionCase | None = None

    @property
    def values(self) -> tuple[str, ...]:
        """Every value the decision can take, in order."""
        out = [c.value for c in self.cases]
        if self.default is not None:
            out.append(self.default.value)
        return tuple(dict.fromkeys(out))

    @property
    def targets(self) -> tuple[NodeId, ...]:
        """Every node some case routes to."""
        cases = (*self.cases, *((self.default,) if self.default else ()))
        return tuple(dict.fromkeys(t for c in cases for t in c.then))


@dataclass(frozen=True, kw_only=True)
class ParallelNode(NodeBase):
    """Fans a task out over a list (`for_each`, each element is ``item``) or the product of the lists
    of a `matrix` (``matrix.<key>``), then joins: `all` items must succeed, or `any` one."""

    kind: ClassVar[str] = "parallel"
    for_each: Any = None
    matrix: Mapping[str, Any] | None = None
    task: TaskOptions
    join: Join = "all"
    max_parallel: int | None = None


@dataclass(frozen=True, kw_only=True)
class Approvers:
    """Who may answer an approval: holders of any of `roles`, or any of `subjects`."""

    roles: tuple[str, ...] = ()
    subjects: tuple[str, ...] = ()


@dataclass(frozen=True, kw_only=True)
class Escalation:
    """Where an approval goes when its first deadline passes with ``on_timeout: escalate``: a second
    round for other approvers, with its own requirement, deadline and final `on_timeout`."""

    approvers: Approvers
    require: Require = "any"
    timeout_s: float | None = None
    on_timeout: Literal["reject", "fail"] = "reject"


@dataclass(frozen=True, kw_only=True)
class ApprovalNode(NodeBase):
    """Waits for people: `require` approvals from `approvers` (any rejection rejects), or a deadline."""

    kind: ClassVar[str] = "approval"
    message: Template
    approvers: Approvers
    require: Require = "any"
    timeout_s: float | None = None
    on_timeout: OnTimeout = "reject"
    escalate_to: Escalation | None = None


@dataclass(frozen=True, kw_only=True)
class ErrorHandlerNode(NodeBase):
    """Takes over when a node it handles has failed for good (its own retries spent). `handles` names
    the nodes; empty means every node of the workflow that is not a handler or after one."""

    kind: ClassVar[str] = "error_handler"
    handles: tuple[NodeId, ...] = ()
    action: HandlerAction
    retry: RetrySpec | None = None
    task: TaskOptions | None = None
    message: Template | None = None


@dataclass(frozen=True, kw_only=True)
class SubworkflowNode(NodeBase):
    """Runs another workflow, by name, with rendered inputs; its outputs are this node's output."""

    kind: ClassVar[str] = "subworkflow"
    workflow: str
    inputs: Mapping[str, Any] = field(default_factory=dict)
    timeout_s: float | None = None
    retry: RetrySpec | None = None


AnyNode = TaskNode | DecisionNode | ParallelNode | ApprovalNode | ErrorHandlerNode | SubworkflowNode
"""Any node of a definition."""


@dataclass(frozen=True, kw_only=True)
class WorkflowDefinition:
    """A whole workflow. Nodes keep their declared order, which breaks ties wherever order matters."""

    name: str
    description: str = ""
    inputs: tuple[InputSpec, ...] = ()
    vars: Mapping[str, Any] = field(default_factory=dict)
    nodes: tuple[AnyNode, ...] = ()
    outputs: Mapping[str, Any] = field(default_factory=dict)

    @cached_property
    def by_id(self) -> Mapping[NodeId, AnyNode]:
        """The nodes by id (the first one, if the definition has duplicates)."""
        out: dict[NodeId, AnyNode] = {}
        for node in self.nodes:
            out.setdefault(node.id, node)
        return out

    @cached_property
    def input_specs(self) -> Mapping[str, InputSpec]:
        """The inputs by name."""
        return {spec.name: spec for spec in self.inputs}

    @cached_property
    def topology(self) -> Topology:
        """Order, ancestors, dependents and handler coverage; computed once. Needs an acyclic graph."""
        from ._graph import Topology

        return Topology.of(self)

    def node(self, node_id: str) -> AnyNode:
        """The node with this id. Raises `KeyError`."""
        return self.by_id[NodeId(node_id)]
