"""Every event loomiq emits, in process or durably: one closed union, `Event`, of small frozen
slotted dataclasses, each with a ``type: Literal[...]`` discriminator (its last field, defaulted).

- Run events (`RunEvent`): what a run reports while it works.
- Lifecycle events (`LifecycleEvent`): what the durable engine logs about a task (queued, started,
  retried, handed back, finished).
- Tool events (`ToolEvent`, run events too): what an agent's tool calls did (the tool loop's own
  observer events, `loomiq.tools.ToolCallEvent`, become these inside a run).
- Workflow events (`WorkflowEvent`): what a durable workflow run's log shows (started, a node
  started or finished, an approval requested or resolved, a child run, paused, resumed, finished).

Their JSON form is defined once, in `loomiq.runtime.event_json` (`encode_event`, `event_to_dict`,
`decode_event`); ``event.to_dict()`` is a shortcut to it. The CLI's display, the API's SSE and
WebSocket streams and the metrics all match on these classes. `docs/events.md` lists every type.

Adding a type: define its class here (fields of JSON types: str, int, float, bool, None, tuples and
dicts of them), with ``type: Literal["name"] = "name"`` last, and add it to its union below and to
`Event`. The codec handles it from its fields; a field holding another record needs one entry in
`event_json`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal, get_args

from ..tools import ToolCallRecord
from .result import RunResult, StepResult


class _JsonForm:
    """`to_dict()` for every event: the codec's dict form (the one definition of an event's JSON)."""

    __slots__ = ()

    def to_dict(self) -> dict[str, Any]:
        """JSON form (a dict), as `loomiq.runtime.event_json.event_to_dict` makes it."""
        from .event_json import event_to_dict  # noqa: PLC0415 - the codec imports this module

        return event_to_dict(self)  # type: ignore[arg-type]  # every subclass is an `Event`


# -- run events ---------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class RunStarted(_JsonForm):
    """A run began: which strategy (and why), and the agents it will use."""

    run_id: str
    strategy: str
    reason: str
    agents: tuple[str, ...]
    offline: bool
    type: Literal["run_started"] = "run_started"


@dataclass(frozen=True, slots=True)
class StepStarted(_JsonForm):
    """An agent began a step (`role` is the part it plays: analyst, lead, refiner...)."""

    run_id: str
    step: str
    agent: str
    role: str
    type: Literal["step_started"] = "step_started"


@dataclass(frozen=True, slots=True)
class StepDelta(_JsonForm):
    """A piece of text an agent streamed while working on a step (durably, the text of one step
    streamed since the last flush, coalesced)."""

    run_id: str
    step: str
    agent: str
    text: str
    type: Literal["text_delta"] = "text_delta"


@dataclass(frozen=True, slots=True)
class StepRestarted(_JsonForm):
    """A model call of `agent` failed after it had streamed text, and the agent makes it again (its retry
    policy): the last `void_chars` characters of the step's streamed text (what the failed call
    streamed) are void; the ``text_delta`` events after this one are the new call's, from its start."""

    run_id: str
    step: str
    agent: str
    error: str
    void_chars: int
    type: Literal["step_restarted"] = "step_restarted"


@dataclass(frozen=True, slots=True)
class AgentFailedOver(_JsonForm):
    """An agent failed a step and another agent with the same capabilities takes it over: the text the
    failed agent streamed for the step is void (the stand-in's ``step_started`` and text follow)."""

    run_id: str
    step: str
    from_agent: str
    to_agent: str
    error: str
    type: Literal["agent_failed_over"] = "agent_failed_over"


@dataclass(frozen=True, slots=True)
class StepFinished(_JsonForm):
    """A step ended, answered or failed; `result` has its output, usage, cost and error (its JSON
    has the step's fields beside ``run_id``)."""

    run_id: str
    result: StepResult
    type: Literal["step_finished"] = "step_finished"


@dataclass(frozen=True, slots=True)
class RunFinished(_JsonForm):
    """The run ended (completed, failed, cancelled or timed out) with its full result."""

    run_id: str
    result: RunResult
    type: Literal["run_finished"] = "run_finished"


@dataclass(frozen=True, slots=True)
class ToolStarted(_JsonForm):
    """A tool call an agent asked for starts running (after the calls it waited for, if any)."""

    run_id: str
    step: str
    agent: str
    call: str
    """The call's key (``<step>/turn/<t>/call/<i>``)."""
    name: str
    arguments: dict[str, Any]
    type: Literal["tool_call_started"] = "tool_call_started"


@dataclass(frozen=True, slots=True)
class ToolSerialized(_JsonForm):
    """A tool call waits for earlier calls of its turn whose footprints overlap its own (their
    indexes in `waits_for`)."""

    run_id: str
    step: str
    agent: str
    call: str
    name: str
    waits_for: tuple[int, ...]
    type: Literal["tool_call_serialized"] = "tool_call_serialized"


@dataclass(frozen=True, slots=True)
class ToolFinished(_JsonForm):
    """A tool call ended, an error result included; `record` has its result, error and duration (its
    JSON has the record's fields beside ``step``, its key as ``call``)."""

    run_id: str
    step: str
    agent: str
    record: ToolCallRecord
    type: Literal["tool_call_finished"] = "tool_call_finished"


@dataclass(frozen=True, slots=True)
class ToolRefused(_JsonForm):
    """A model asked for a tool outside the allow-list; it was not run, and the refusal went back to
    the model."""

    run_id: str
    step: str
    agent: str
    record: ToolCallRecord
    type: Literal["tool_call_refused"] = "tool_call_refused"


RunEvent = (RunStarted | StepStarted | StepDelta | StepRestarted | AgentFailedOver | ToolStarted | ToolSerialized
            | ToolFinished | ToolRefused | StepFinished | RunFinished)
"""Every event a run can emit."""


# -- task lifecycle events (the durable engine logs them) ---------------------------------------


@dataclass(frozen=True, slots=True)
class TaskQueued(_JsonForm):
    """The task was accepted and is ready to be claimed."""

    priority: str
    type: Literal["task_queued"] = "task_queued"


@dataclass(frozen=True, slots=True)
class TaskWaiting(_JsonForm):
    """The task was accepted and waits for the tasks it depends on."""

    after: tuple[str, ...]
    type: Literal["task_waiting"] = "task_waiting"


@dataclass(frozen=True, slots=True)
class TaskReady(_JsonForm):
    """Every dependency completed: the task is queued."""

    type: Literal["task_ready"] = "task_ready"


@dataclass(frozen=True, slots=True)
class TaskStarted(_JsonForm):
    """A holder claimed the task (`resumed`: an earlier holder ran it, whose lease expired, who handed
    it back, or whose attempt failed and is retried; the run replays what that journal holds, as
    `Claim.resumed` says)."""

    attempt: int
    epoch: int
    worker: str
    resumed: bool
    type: Literal["task_started"] = "task_started"


@dataclass(frozen=True, slots=True)
class TaskRetrying(_JsonForm):
    """A run failed and the task is queued again after `delay_s`."""

    attempt: int
    error: str | None
    delay_s: float
    type: Literal["task_retrying"] = "task_retrying"


@dataclass(frozen=True, slots=True)
class TaskHandedBack(_JsonForm):
    """A stopping worker released the task; the next claim resumes it from its journal."""

    attempt: int
    worker: str
    type: Literal["task_handed_back"] = "task_handed_back"


@dataclass(frozen=True, slots=True)
class TaskFinished(_JsonForm):
    """The task ended for good (completed, failed, cancelled, timed out): the last event of its log.
    A cancellation ends a task with ``status: "cancelled"``; `dead`: it failed every attempt."""

    status: str
    error: str | None
    output: str
    usage: dict[str, int] = field(default_factory=dict)
    cost_usd: float = 0.0
    dead: bool = False
    type: Literal["task_finished"] = "task_finished"


LifecycleEvent = TaskQueued | TaskWaiting | TaskReady | TaskStarted | TaskRetrying | TaskHandedBack | TaskFinished
"""Every lifecycle event the engine logs."""


# -- workflow run events (a durable workflow run's stream) --------------------------------------
# A workflow run's log (`loomiq.engine.WorkflowRuns.events`) holds these, each once, numbered by the
# run's journal; the run they belong to is the log's (the API's SSE frame carries it beside them).


@dataclass(frozen=True, slots=True)
class WorkflowStarted(_JsonForm):
    """A workflow run began: the workflow (its registered `version`, 0 when it was not registered),
    its checked inputs, the directory of the file it was started from (where its subworkflows are
    looked up; None when not started from a file) and, for a subworkflow's child run, its `parent`
    (``{run, node, attempt}``)."""

    workflow: str
    version: int
    inputs: dict[str, Any]
    directory: str | None = None
    parent: dict[str, Any] | None = None
    type: Literal["workflow_started"] = "workflow_started"


@dataclass(frozen=True, slots=True)
class NodeStarted(_JsonForm):
    """A task node's attempt (of item `index` for a parallel node) was submitted as the engine task
    `task_id`."""

    node: str
    attempt: int
    index: int | None
    task_id: str
    type: Literal["node_started"] = "node_started"


@dataclass(frozen=True, slots=True)
class NodeFinished(_JsonForm):
    """A task node's attempt ended with its engine task's `status` (completed, failed, cancelled,
    timed_out) and `error`."""

    node: str
    attempt: int
    index: int | None
    status: str
    error: str | None
    type: Literal["node_finished"] = "node_finished"


@dataclass(frozen=True, slots=True)
class ApprovalRequested(_JsonForm):
    """An approval node's round waits for answers: the approval's id (``<run>.<node>.<round>``), its
    message, who may answer (``{roles, subjects}``), what is required (``any``, ``all`` or a count)
    and its deadline (epoch seconds, or None)."""

    approval_id: str
    node: str
    round: int
    message: str
    approvers: dict[str, Any]
    require: str | int
    deadline: float | None
    type: Literal["approval_requested"] = "approval_requested"


@dataclass(frozen=True, slots=True)
class ApprovalResolved(_JsonForm):
    """An approval closed: `outcome` (approved, rejected, timed_out, escalated, cancelled), the
    decision taken, its comment and who decided (None when nobody did)."""

    approval_id: str
    node: str
    round: int
    outcome: str
    decision: str | None
    comment: str | None
    decided_by: str | None
    type: Literal["approval_resolved"] = "approval_resolved"


@dataclass(frozen=True, slots=True)
class SubworkflowStarted(_JsonForm):
    """A subworkflow node's attempt started its child run (`run_id`: the child's id,
    ``<run>.<node>.<attempt>``) of `workflow`; `deadline` (epoch s): when the node's `timeout` cancels
    the child and fails the attempt (None: no timeout)."""

    node: str
    attempt: int
    workflow: str
    run_id: str
    deadline: float | None = None
    type: Literal["subworkflow_started"] = "subworkflow_started"


@dataclass(frozen=True, slots=True)
class SubworkflowFinished(_JsonForm):
    """A subworkflow node's child run ended (`status`: succeeded, failed, cancelled; `error` why)."""

    node: str
    attempt: int
    workflow: str
    run_id: str
    status: str
    error: str | None
    type: Literal["subworkflow_finished"] = "subworkflow_finished"


@dataclass(frozen=True, slots=True)
class WorkflowPaused(_JsonForm):
    """The run was paused: nothing new starts until it is resumed (running nodes finish)."""

    type: Literal["workflow_paused"] = "workflow_paused"


@dataclass(frozen=True, slots=True)
class WorkflowResumed(_JsonForm):
    """The run was resumed after a pause."""

    type: Literal["workflow_resumed"] = "workflow_resumed"


@dataclass(frozen=True, slots=True)
class WorkflowFinished(_JsonForm):
    """The run ended (`status`: succeeded, failed, cancelled) with its error and outputs: the last
    event of its log."""

    status: str
    error: str | None
    outputs: dict[str, Any] | None
    type: Literal["workflow_finished"] = "workflow_finished"


WorkflowEvent = (WorkflowStarted | NodeStarted | NodeFinished | ApprovalRequested | ApprovalResolved
                 | SubworkflowStarted | SubworkflowFinished | WorkflowPaused | WorkflowResumed | WorkflowFinished)
"""Every event of a durable workflow run's log."""

ToolEvent = ToolStarted | ToolSerialized | ToolFinished | ToolRefused
"""The run events about tool calls."""

Event = (
    RunStarted | StepStarted | StepDelta | StepRestarted | AgentFailedOver | StepFinished | RunFinished
    | TaskQueued | TaskWaiting | TaskReady | TaskStarted | TaskRetrying | TaskHandedBack | TaskFinished
    | ToolStarted | ToolSerialized | ToolFinished | ToolRefused
    | WorkflowStarted | NodeStarted | NodeFinished | ApprovalRequested | ApprovalResolved | SubworkflowStarted
    | SubworkflowFinished | WorkflowPaused | WorkflowResumed | WorkflowFinished
)
"""The closed union of every event loomiq emits; ``type`` tells them apart."""

EVENT_CLASSES: dict[str, type[Any]] = {
    cls.__dataclass_fields__["type"].default: cls for cls in get_args(Event)
}
"""Each event class by its ``type``."""

EVENT_TYPES: tuple[str, ...] = tuple(EVENT_CLASSES)
"""Every event ``type``, in the union's order."""


def type_of(cls: type[Any]) -> str:
    """The ``type`` of an event class (``type_of(TaskFinished) == "task_finished"``)."""
    return str(cls.__dataclass_fields__["type"].default)
