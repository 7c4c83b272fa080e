"""The state of a workflow run, the events that change it and the actions it asks for.

`advance(definition, state, event) -> Transition(state, actions)` (in `semantics`) is the whole of a
run's logic. A runner feeds it events (a node's task finished, an approval was answered, a deadline
passed, cancel), performs the actions it returns (start a task, request an approval, cancel a task,
finish the run), and journals the events; replaying a run is folding its journalled events again,
which gives the same states and the same actions. Everything here is immutable data; times are
seconds since the epoch on the runner's clock, carried by the events, so replay is deterministic.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, ClassVar, Literal

from .model import Approvers, NodeId, Require

__all__ = [
    "SETTLED",
    "Action",
    "Answer",
    "ApprovalAnswered",
    "ApprovalState",
    "ApprovalTimedOut",
    "CancelTask",
    "Event",
    "FinishRun",
    "ItemState",
    "NodeFailed",
    "NodeState",
    "NodeStatus",
    "NodeSucceeded",
    "RequestApproval",
    "ResolveApproval",
    "ResolvedTask",
    "RunCancelled",
    "RunPaused",
    "RunResumed",
    "RunStarted",
    "RunState",
    "RunStatus",
    "StartSubworkflow",
    "StartTask",
    "Transition",
]


class NodeStatus(StrEnum):
    """Where a node (or a parallel item) is in its life."""

    PENDING = "pending"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    SKIPPED = "skipped"
    WAITING_APPROVAL = "waiting_approval"
    CANCELLED = "cancelled"


SETTLED = frozenset({NodeStatus.SUCCEEDED, NodeStatus.FAILED, NodeStatus.SKIPPED, NodeStatus.CANCELLED})
"""The statuses a node never leaves (unless an error handler retries a failed node)."""


class RunStatus(StrEnum):
    """Where a run is: not started, running, or finished one of three ways."""

    PENDING = "pending"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"


@dataclass(frozen=True, slots=True)
class Answer:
    """One approver's answer, as counted: who, with which roles, which way, and why."""

    subject: str
    roles: tuple[str, ...]
    decision: Literal["approve", "reject"]
    comment: str
    at: float


@dataclass(frozen=True, slots=True)
class ApprovalState:
    """A requested approval: its round (2 after an escalation), who may answer, what is required,
    the deadline, the answers counted so far, and the outcome once decided."""

    round: int
    message: str
    approvers: Approvers
    require: Require
    requested_at: float
    deadline: float | None
    escalated: bool = False
    answers: tuple[Answer, ...] = ()
    decision: Literal["approved", "rejected"] | None = None
    comment: str = ""
    decided_by: str | None = None
    timed_out: bool = False


@dataclass(frozen=True, slots=True)
class ItemState:
    """One item of a parallel node: the value it runs for, and how it went."""

    index: int
    value: Any
    status: NodeStatus = NodeStatus.PENDING
    attempts: int = 0
    output: Any = None
    error: str | None = None
    not_before: float | None = None


@dataclass(frozen=True, slots=True)
class NodeState:
    """One node's state. `reason` says why a node was skipped or cancelled; `handled_by` names the
    error handler that recovered the node's failure (a route handler whose work succeeded)."""

    status: NodeStatus = NodeStatus.PENDING
    attempts: int = 0
    output: Any = None
    error: str | None = None
    reason: str | None = None
    decision: str | None = None
    items: tuple[ItemState, ...] = ()
    approval: ApprovalState | None = None
    handled_by: NodeId | None = None
    handler_retries: int = 0
    restart: bool = False
    """The node failed and is to be started again (its retries or its handler's)."""
    not_before: float | None = None
    handling: NodeId | None = None
    """For an error handler: the node whose failure it took over."""
    error_info: Mapping[str, Any] | None = None
    """For an error handler: the failure it handles (``node``, ``message``), the ``error`` variable."""
    started_at: float | None = None
    finished_at: float | None = None


@dataclass(frozen=True, slots=True)
class RunState:
    """A run's state: status, inputs and variables, every node's state, the clock of the last event."""

    status: RunStatus = RunStatus.PENDING
    paused: bool = False
    inputs: Mapping[str, Any] = field(default_factory=dict)
    vars: Mapping[str, Any] = field(default_factory=dict)
    nodes: Mapping[NodeId, NodeState] = field(default_factory=dict)
    now: float = 0.0
    error: str | None = None
    outputs: Mapping[str, Any] | None = None

    @property
    def finished(self) -> bool:
        """True once the run succeeded, failed or was cancelled."""
        return self.status in (RunStatus.SUCCEEDED, RunStatus.FAILED, RunStatus.CANCELLED)


# ---- events -------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class RunStarted:
    """The run begins with these inputs (already checked by `bind_inputs`)."""

    type: ClassVar[str] = "run_started"
    inputs: Mapping[str, Any]
    at: float


@dataclass(frozen=True, slots=True)
class NodeSucceeded:
    """A task (or subworkflow) a `StartTask`/`StartSubworkflow` asked for finished with `output`.
    `index` is the parallel item, None otherwise; `attempt` must match the start's."""

    type: ClassVar[str] = "node_succeeded"
    node: NodeId
    attempt: int
    output: Any
    at: float
    index: int | None = None


@dataclass(frozen=True, slots=True)
class NodeFailed:
    """A task (or subworkflow) a start asked for failed (after the engine's own retries)."""

    type: ClassVar[str] = "node_failed"
    node: NodeId
    attempt: int
    error: str
    at: float
    index: int | None = None


@dataclass(frozen=True, slots=True)
class ApprovalAnswered:
    """Someone answered an approval. Who may answer, and whether it counts, is decided by
    `semantics.judge_answer`; an answer that does not count changes nothing."""

    type: ClassVar[str] = "approval_answered"
    node: NodeId
    round: int
    subject: str
    roles: tuple[str, ...]
    decision: Literal["approve", "reject"]
    comment: str
    at: float


@dataclass(frozen=True, slots=True)
class ApprovalTimedOut:
    """The deadline of an approval's round passed (`at` must not be before it)."""

    type: ClassVar[str] = "approval_timed_out"
    node: NodeId
    round: int
    at: float


@dataclass(frozen=True, slots=True)
class RunPaused:
    """Start nothing new until resumed (running tasks go on; approvals still take answers)."""

    type: ClassVar[str] = "run_paused"
    at: float


@dataclass(frozen=True, slots=True)
class RunResumed:
    """Undo a pause."""

    type: ClassVar[str] = "run_resumed"
    at: float


@dataclass(frozen=True, slots=True)
class RunCancelled:
    """Stop: running tasks are cancelled, nothing starts again, the run ends `cancelled`."""

    type: ClassVar[str] = "run_cancelled"
    reason: str
    at: float


Event = (RunStarted | NodeSucceeded | NodeFailed | ApprovalAnswered | ApprovalTimedOut | RunPaused | RunResumed
         | RunCancelled)
"""Everything that can happen to a run."""


# ---- actions ------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ResolvedTask:
    """A task with its prompt rendered: what the runner submits (as a journalled step)."""

    prompt: str
    strategy: str
    agents: tuple[str, ...]
    capabilities: tuple[str, ...]
    tools: tuple[str, ...]
    timeout_s: float | None
    output_schema: Mapping[str, Any] | None


@dataclass(frozen=True, slots=True)
class StartTask:
    """Run a task for a node (or a parallel item, `index`), not before `not_before` when set (a retry's
    backoff). `step_key` is unique per node, item and attempt: the journal key of the step."""

    type: ClassVar[str] = "start_task"
    node: NodeId
    attempt: int
    task: ResolvedTask
    index: int | None = None
    not_before: float | None = None

    @property
    def step_key(self) -> str:
        """``node/<id>[/<index>]/<attempt>``."""
        item = f"/{self.index}" if self.index is not None else ""
        return f"node/{self.node}{item}/{self.attempt}"


@dataclass(frozen=True, slots=True)
class StartSubworkflow:
    """Run another workflow by name with these inputs; its outputs come back as `NodeSucceeded.output`."""

    type: ClassVar[str] = "start_subworkflow"
    node: NodeId
    attempt: int
    workflow: str
    inputs: Mapping[str, Any]
    not_before: float | None = None
    timeout_s: float | None = None
    """The node's `timeout`: the child run of this attempt is cancelled, and the attempt fails, once it
    has run this long (a durable runner enforces it)."""

    @property
    def step_key(self) -> str:
        """``node/<id>/<attempt>``."""
        return f"node/{self.node}/{self.attempt}"


@dataclass(frozen=True, slots=True)
class RequestApproval:
    """Ask people: an approval (its id is the runner's, one per node and round) with the rendered
    message, who may answer, what is required, and the deadline (None: none)."""

    type: ClassVar[str] = "request_approval"
    node: NodeId
    round: int
    message: str
    approvers: Approvers
    require: Require
    deadline: float | None

    @property
    def approval_key(self) -> str:
        """``approval/<node>/<round>``: stable across replays, the basis of the approval's id."""
        return f"approval/{self.node}/{self.round}"


@dataclass(frozen=True, slots=True)
class ResolveApproval:
    """An approval round is over: approved, rejected, timed out (then rejected or failed), escalated to
    a second round, or cancelled with the run."""

    type: ClassVar[str] = "resolve_approval"
    node: NodeId
    round: int
    outcome: Literal["approved", "rejected", "timed_out", "escalated", "cancelled"]
    decision: Literal["approved", "rejected"] | None
    comment: str
    decided_by: str | None


@dataclass(frozen=True, slots=True)
class CancelTask:
    """Cancel a running task (of a node, or of a parallel item)."""

    type: ClassVar[str] = "cancel_task"
    node: NodeId
    attempt: int
    reason: str
    index: int | None = None


@dataclass(frozen=True, slots=True)
class FinishRun:
    """The run is over: its status, its outputs (on success) and the reason (otherwise)."""

    type: ClassVar[str] = "finish_run"
    status: RunStatus
    outputs: Mapping[str, Any] | None
    error: str | None


Action = StartTask | StartSubworkflow | RequestApproval | ResolveApproval | CancelTask | FinishRun
"""Everything a run can ask its runner to do."""


@dataclass(frozen=True, slots=True)
class Transition:
    """What `advance` returns: the new state and the actions to perform, in order. `note` says why an
    event changed nothing (a stale result, an answer that does not count), for logs and tests."""

    state: RunState
    actions: tuple[Action, ...] = ()
    note: str | None = None
