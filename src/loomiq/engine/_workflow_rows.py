"""The rows of durable workflow runs (see `workflow_runs`): runs, approvals and their errors as
stored, appending to a run's journal (each row once by its key), and `RunsBase`, what the parts of
`WorkflowRuns` (`workflow_runs`, `_workflow_driver`, `_workflow_approvals`, `_workflow_children`)
share."""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal, cast, get_args

from ..runtime.event_json import EventDecodeError, decode_event, encode_event
from ..runtime.events import WorkflowEvent, WorkflowStarted
from ..workflows import (
    ApprovalAnswered,
    ApprovalTimedOut,
    Event,
    NodeFailed,
    NodeSucceeded,
    RunCancelled,
    RunStarted,
    RunState,
    StartSubworkflow,
    WorkflowDefinition,
)
from ._ops import Outcome, Stmt
from .errors import EngineError
from .task import DEFAULT_TENANT

__all__ = [
    "APPROVAL_COLUMNS",
    "RUN_COLUMNS",
    "RUN_STATUSES",
    "TERMINAL",
    "Answered",
    "Approval",
    "ApprovalClosed",
    "ApprovalConflict",
    "ApprovalForbidden",
    "ApprovalNotFound",
    "Journal",
    "RunsBase",
    "WorkflowNotFound",
    "WorkflowRun",
    "WorkflowRunEvent",
    "WorkflowRunNotFound",
    "append_rows",
    "approval_from_row",
    "approval_id",
    "dumps",
    "event_key",
    "notice",
    "plain",
    "run_from_row",
]

RUN_STATUSES = ("running", "succeeded", "failed", "cancelled")
TERMINAL = frozenset({"succeeded", "failed", "cancelled"})


class WorkflowRunNotFound(EngineError, LookupError):
    """No run has this id in this tenant."""


class WorkflowNotFound(EngineError, LookupError):
    """No workflow is registered under this name in this tenant."""


class ApprovalNotFound(EngineError, LookupError):
    """No approval has this id in this tenant (404)."""


class ApprovalForbidden(EngineError, PermissionError):
    """The subject is not among the approval's approvers (403)."""


class ApprovalConflict(EngineError):
    """The answer contradicts the approver's earlier answer or the decision already taken (409)."""


class ApprovalClosed(ApprovalConflict):
    """The approval takes no more answers (decided, timed out, escalated or cancelled): 409."""


@dataclass(frozen=True, slots=True)
class WorkflowRun:
    """A run as stored."""

    id: str
    tenant_id: str
    workflow: str
    version: int
    inputs: Mapping[str, Any]
    status: str
    paused: bool
    error: str | None
    outputs: Mapping[str, Any] | None
    created_at: float
    updated_at: float

    def to_dict(self) -> dict[str, Any]:
        return {"id": self.id, "tenant_id": self.tenant_id, "workflow": self.workflow, "version": self.version,
                "inputs": dict(self.inputs), "status": self.status, "paused": self.paused, "error": self.error,
                "outputs": None if self.outputs is None else dict(self.outputs), "created_at": self.created_at,
                "updated_at": self.updated_at}


@dataclass(frozen=True, slots=True)
class Approval:
    """An approval: which run and node (and round) it holds, who may answer, what is required, the
    deadline, and how it ended (`status`: pending, approved, rejected, timed_out, escalated, cancelled)."""

    id: str
    run_id: str
    tenant_id: str
    node: str
    round: int
    message: str
    roles: tuple[str, ...]
    subjects: tuple[str, ...]
    require: str | int
    deadline: float | None
    status: str
    decision: str | None
    comment: str | None
    decided_by: str | None
    created_at: float
    resolved_at: float | None
    answers: tuple[Mapping[str, Any], ...] = field(default=())

    def to_dict(self) -> dict[str, Any]:
        return {"id": self.id, "run_id": self.run_id, "tenant_id": self.tenant_id, "node": self.node,
                "round": self.round, "message": self.message,
                "approvers": {"roles": list(self.roles), "subjects": list(self.subjects)},
                "require": self.require, "deadline": self.deadline, "status": self.status,
                "decision": self.decision, "comment": self.comment, "decided_by": self.decided_by,
                "created_at": self.created_at, "resolved_at": self.resolved_at,
                "answers": [dict(a) for a in self.answers]}


@dataclass(frozen=True, slots=True)
class Answered:
    """The outcome of an answer: `accepted` (it counted), `duplicate` (the same approver gave it
    before), or `replayed` (the same Idempotency-Key: the first outcome again), and the approval after."""

    verdict: Literal["accepted", "duplicate", "replayed"]
    approval: Approval


APPROVAL_COLUMNS = ("id, run_id, tenant_id, node, round, message, approvers, require, deadline, status, decision, "
                     "comment, decided_by, created_at, resolved_at")
RUN_COLUMNS = "id, tenant_id, workflow, version, inputs, status, paused, error, outputs, created_at, updated_at"


def approval_from_row(row: Sequence[Any], answers: Iterable[Mapping[str, Any]] = ()) -> Approval:
    approvers = json.loads(row[6])
    require = json.loads(row[7])
    return Approval(row[0], row[1], row[2], row[3], int(row[4]), row[5], tuple(approvers.get("roles", ())),
                    tuple(approvers.get("subjects", ())), require, row[8], row[9], row[10], row[11], row[12],
                    row[13], row[14], tuple(answers))


def run_from_row(row: Sequence[Any]) -> WorkflowRun:
    return WorkflowRun(row[0], row[1], row[2], int(row[3]), json.loads(row[4]), row[5], bool(row[6]), row[7],
                       None if row[8] is None else json.loads(row[8]), row[9], row[10])


def approval_id(run_id: str, node: str, round_: int) -> str:
    """The id of the approval of `node`'s round `round_` in run `run_id` (stable across replays)."""
    return f"{run_id}.{node}.{round_}"


def dumps(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"), default=str)


def plain(value: Any) -> Any:
    """`value` as its JSON stores it (a value JSON has no form for becomes its text): what a workflow
    event holds, so that the event read back is equal to the one written."""
    return json.loads(dumps(value))


Journal = list[tuple[str, str, str, str]]
"""Rows to append: (key, kind, type, data)."""


def notice(event: WorkflowEvent, key: str = "") -> tuple[str, str, str, str]:
    """The journal row of a workflow event (kind ``notice``): its key ``notice/<type>[/<key>]`` (what
    makes writing it twice a no-op), its type, and its JSON as `loomiq.runtime.event_json` writes it."""
    return (f"notice/{event.type}/{key}" if key else f"notice/{event.type}", "notice", event.type,
            encode_event(event))


_WORKFLOW_EVENTS = get_args(WorkflowEvent)


@dataclass(frozen=True, slots=True)
class WorkflowRunEvent:
    """One entry of a workflow run's log (`WorkflowRuns.events`): `seq` orders it within the run (its
    journal's sequence number: increasing, with gaps where input rows sit), `type` and `data` are the
    event's JSON form (`data`: its fields, without ``type``), `at` when it was written (epoch s)."""

    run_id: str
    seq: int
    type: str
    data: Mapping[str, Any]
    at: float

    @property
    def event(self) -> WorkflowEvent:
        """The typed event (`decode_event`; raises `EventDecodeError` for data that is no workflow
        event, such as a newer writer's type)."""
        event = decode_event({**self.data, "type": self.type})
        if not isinstance(event, _WORKFLOW_EVENTS):
            raise EventDecodeError(f"a workflow run's log holds no {self.type!r} event")
        return cast("WorkflowEvent", event)  # the isinstance above, over the union's classes

    def to_dict(self) -> dict[str, Any]:
        """The wire form (an SSE frame's data): ``{seq, type, data, at}``."""
        return {"seq": self.seq, "type": self.type, "data": dict(self.data), "at": self.at}

    @classmethod
    def from_row(cls, run_id: str, row: Sequence[Any]) -> WorkflowRunEvent:
        """The entry of a ``(seq, type, data, created_at)`` row of ``workflow_events``."""
        data = json.loads(row[2])
        data.pop("type", None)  # rows written before the events were typed have no "type" in their data
        return cls(run_id, int(row[0]), row[1], data, row[3])


def append_rows(d: Any, run_id: str, tenant: str, rows: Journal, now: float) -> Any:
    """Append `rows` to the run's journal, each unless its key is there already; value: the keys written."""
    yield Stmt(f"SELECT id FROM workflow_runs WHERE id = ?{d.for_update}", (run_id,), "val")
    seq = yield Stmt("SELECT COALESCE(MAX(seq), 0) FROM workflow_events WHERE run_id = ?", (run_id,), "val")
    written = []
    for key, kind, type_, data in rows:
        n = yield Stmt(
            "INSERT INTO workflow_events (run_id, seq, key, tenant_id, kind, type, data, created_at) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING",
            (run_id, seq + 1, key, tenant, kind, type_, data, now),
        )
        if n:
            seq += 1
            written.append(key)
    return Outcome(value=written)


def event_key(event: Event) -> str:
    """The journal key of an input event: what makes writing it twice a no-op."""
    if isinstance(event, NodeSucceeded | NodeFailed):
        item = f"/{event.index}" if event.index is not None else ""
        return f"result/node/{event.node}{item}/{event.attempt}"
    if isinstance(event, ApprovalTimedOut):
        return f"timeout/{event.node}/{event.round}"
    if isinstance(event, ApprovalAnswered):
        return f"answer/{event.node}/{event.round}/{event.subject}"
    if isinstance(event, RunStarted):
        return "start"
    if isinstance(event, RunCancelled):
        return "cancel"
    return f"{event.type}/{uuid.uuid4().hex}"  # pause and resume may repeat


class RunsBase:
    """The attributes and methods the parts of `WorkflowRuns` use of one another (declared for the
    type checker; `WorkflowRuns` is all of them)."""

    engine: Any
    store: Any
    clock: Callable[[], float]
    poll_s: float
    on_node_start: list[Callable[[str, str], None]]

    if TYPE_CHECKING:
        async def start(self, source: str, inputs: Mapping[str, Any] | None = None, *,
                        tenant_id: str = DEFAULT_TENANT, from_strings: bool = False, run_id: str | None = None,
                        version: int = 0, drive: bool = True, filename: str = "<workflow>",
                        parent: Mapping[str, Any] | None = None) -> WorkflowRun: ...

        async def get_run(self, run_id: str, *, tenant_id: str | None = DEFAULT_TENANT) -> WorkflowRun: ...

        async def state(self, run_id: str, *, tenant_id: str | None = DEFAULT_TENANT) -> RunState: ...

        async def pause(self, run_id: str, *, tenant_id: str = DEFAULT_TENANT) -> WorkflowRun: ...

        async def cancel(self, run_id: str, *, tenant_id: str = DEFAULT_TENANT,
                         reason: str = "cancelled by request") -> WorkflowRun: ...

        async def approvals(self, *, tenant_id: str = DEFAULT_TENANT, status: str | None = None,
                            run_id: str | None = None, limit: int = 100) -> list[Approval]: ...

        async def drive(self, run_id: str) -> None: ...

        def _definition(self, name: str, source: str) -> WorkflowDefinition: ...

        async def _load(self, run_id: str, tenant_id: str | None) -> tuple[WorkflowRun, WorkflowDefinition]: ...

        async def _journal(self, run_id: str) -> list[Event]: ...

        async def _started(self, run_id: str) -> WorkflowStarted | None: ...

        async def _parent_of(self, run_id: str) -> str | None: ...

        async def _child(self, run: WorkflowRun, a: StartSubworkflow, cid: str, notices: Journal,
                         wake: list[float] | None = None) -> Event | None: ...

        async def _cancel_child(self, cid: str, reason: str) -> None: ...

        async def _children(self, run_id: str, tenant_id: str) -> list[str]: ...
