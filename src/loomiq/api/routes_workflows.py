"""``/api/workflows``, ``/api/workflow-runs``, ``/api/approvals``: durable workflow runs and their
human approvals (`loomiq.engine.WorkflowRuns`).

Workflows are registered as text (YAML or JSON), each registration a new version of its name. A run
answers 202 once it is stored and its first nodes are submitted; workers run the nodes, and a run
waiting on approvals holds nothing but rows. Everything belongs to the caller's tenant: another
tenant's workflow, run or approval answers 404, as an unknown one does. An approval is answered by
one of its approvers (the caller's subject, or a role the caller's role includes: admin includes
operator and viewer): 403 for anyone else, 409 for an answer that contradicts the decision, and the
same ``Idempotency-Key`` replays the first answer.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Annotated, Any, Literal, get_args
from weakref import WeakKeyDictionary

from fastapi import APIRouter, Depends, Header, Query, Response, status
from pydantic import BaseModel, ConfigDict, Field
from sse_starlette import EventSourceResponse, ServerSentEvent

from ..engine import (
    ApprovalConflict,
    ApprovalForbidden,
    ApprovalNotFound,
    EngineClosed,
    TaskEngine,
    WorkflowNotFound,
    WorkflowRun,
    WorkflowRunNotFound,
    WorkflowRuns,
)
from ..runtime import WorkflowEvent, WorkflowFinished, type_of
from ..runtime.event_json import dumps
from ..workflows import WorkflowError
from ._openapi import AUTHENTICATED, header, problems
from .auth import Principal
from .deps import OperatorDep, PrincipalDep, StateDep
from .problems import Problem

router = APIRouter(tags=["workflows"])

_RUNS: WeakKeyDictionary[TaskEngine, WorkflowRuns] = WeakKeyDictionary()
_RANKED = ("viewer", "operator", "admin")

Name = Annotated[str, Field(min_length=1, max_length=200)]


def runs_for(engine: TaskEngine) -> WorkflowRuns:
    """The process's `WorkflowRuns` on `engine` (one, so its watchers are shared)."""
    runs = _RUNS.get(engine)
    if runs is None:
        runs = _RUNS[engine] = WorkflowRuns(engine)
    return runs


async def get_runs(state: StateDep) -> WorkflowRuns:
    """The workflow runs of this server; 503 when it runs no durable tasks."""
    if not state.settings.tasks_enabled or not state.orchestrator.has_engine:
        raise Problem(503, "This server does not run durable tasks (LOOMIQ_TASKS=0), so it runs no workflows.")
    return runs_for(state.orchestrator.engine)


RunsDep = Annotated[WorkflowRuns, Depends(get_runs)]


class Registration(BaseModel):
    """A workflow definition to register (a new version of its name)."""

    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [
        {"source": "name: hello\nnodes:\n  greet: {kind: task, prompt: Say hello}\n"}]})
    source: str = Field(min_length=1, max_length=1_000_000, description="The definition, YAML or JSON text.")


class Registered(BaseModel):
    name: str
    version: int


class WorkflowSummary(BaseModel):
    name: str
    version: int = Field(description="The latest version.")
    created_at: float


class WorkflowList(BaseModel):
    workflows: list[WorkflowSummary]


class WorkflowSource(BaseModel):
    name: str
    version: int
    source: str


class RunRequest(BaseModel):
    """A run's inputs (checked against the workflow's `inputs`)."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False, json_schema_extra={"examples": [
        {"inputs": {"version": "2.0"}}]})
    inputs: dict[str, Any] = Field(default_factory=dict)
    version: int | None = Field(None, ge=1, le=2**31 - 1,
                                description="The registered version (default: the latest).")


class WorkflowRunBody(BaseModel):
    id: str
    tenant_id: str
    workflow: str
    version: int
    inputs: dict[str, Any]
    status: Literal["running", "succeeded", "failed", "cancelled"]
    paused: bool
    error: str | None
    outputs: dict[str, Any] | None
    created_at: float
    updated_at: float


class RunList(BaseModel):
    runs: list[WorkflowRunBody]


class ApprovalBody(BaseModel):
    id: str
    run_id: str
    tenant_id: str
    node: str
    round: int
    message: str
    approvers: dict[str, list[str]]
    require: str | int
    deadline: float | None
    status: Literal["pending", "approved", "rejected", "timed_out", "escalated", "cancelled"]
    decision: str | None
    comment: str | None
    decided_by: str | None
    created_at: float
    resolved_at: float | None
    answers: list[dict[str, Any]]


class RunDetail(WorkflowRunBody):
    nodes: dict[str, dict[str, Any]] = Field(description="Each node's kind, status, attempts, output, error, reason.")
    vars: dict[str, Any]
    path: list[str] = Field(description="The nodes that settled (skipped ones aside), in order.")
    pending_approvals: list[ApprovalBody]


class ApprovalList(BaseModel):
    approvals: list[ApprovalBody]


class AnswerRequest(BaseModel):
    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [
        {"decision": "approve", "comment": "Ship it"}]})
    decision: Literal["approve", "reject"]
    comment: str = Field("", max_length=10_000)


class AnswerBody(BaseModel):
    verdict: Literal["accepted", "duplicate", "replayed"] = Field(description=(
        "accepted: the answer counted; duplicate: this approver gave it before; replayed: the same "
        "Idempotency-Key was answered before (this is that answer)."))
    approval: ApprovalBody


IdempotencyKey = Annotated[str | None, Header(alias="Idempotency-Key", min_length=1, max_length=200,
                                              description="Answer safely more than once: same key, same answer.")]


def _not_found(exc: Exception) -> Problem:
    return Problem(404, f"{exc.args[0] if exc.args else exc} in this tenant.")


def _invalid(exc: WorkflowError) -> Problem:
    issues = [str(i) for i in getattr(exc, "issues", ())] or [str(exc)]
    return Problem(422, "The workflow is not valid: " + "; ".join(issues[:20]), issues=issues)


def _roles(principal: Principal) -> list[str]:
    return list(_RANKED[: _RANKED.index(principal.role) + 1]) if principal.role in _RANKED else [principal.role]


@router.post("/api/workflows", status_code=status.HTTP_201_CREATED, response_model=Registered,
             responses=problems(*AUTHENTICATED, 413, 422, s422="The definition is not a valid workflow."))
async def register_workflow(body: Registration, principal: OperatorDep, runs: RunsDep) -> dict[str, Any]:
    """Register a workflow (operator): validated, stored as the next version of its name."""
    try:
        name, version = await runs.register(body.source, tenant_id=principal.tenant)
    except WorkflowError as exc:
        raise _invalid(exc) from None
    return {"name": name, "version": version}


@router.get("/api/workflows", response_model=WorkflowList, responses=problems(*AUTHENTICATED))
async def list_workflows(principal: PrincipalDep, runs: RunsDep) -> dict[str, Any]:
    """The tenant's registered workflows (the latest version of each)."""
    return {"workflows": await runs.workflows(tenant_id=principal.tenant)}


@router.get("/api/workflows/{name}", response_model=WorkflowSource, responses=problems(*AUTHENTICATED, 404, 422))
async def get_workflow(name: str, principal: PrincipalDep, runs: RunsDep,
                       version: Annotated[int | None, Query(ge=1, le=2**31)] = None) -> dict[str, Any]:
    """A registered workflow's definition (the latest version unless ``version``)."""
    try:
        v, source = await runs.workflow(name, tenant_id=principal.tenant, version=version)
    except WorkflowNotFound as exc:
        raise _not_found(exc) from None
    return {"name": name, "version": v, "source": source}


@router.post("/api/workflows/{name}/runs", status_code=status.HTTP_202_ACCEPTED, response_model=WorkflowRunBody,
             responses={202: {"description": "Stored; its first nodes are submitted. Follow it at "
                                             "/api/workflow-runs/{id}/events.",
                              "headers": {"Location": header("The run: /api/workflow-runs/{id}.")}},
                        **problems(*AUTHENTICATED, 404, 413, 422, s422="The inputs do not fit the workflow.")})
async def start_run(name: str, body: RunRequest, principal: OperatorDep, runs: RunsDep,
                    response: Response) -> dict[str, Any]:
    """Start a run of a registered workflow (operator). Answers 202 with the run."""
    try:
        v, source = await runs.workflow(name, tenant_id=principal.tenant, version=body.version)
    except WorkflowNotFound as exc:
        raise _not_found(exc) from None
    try:
        json.dumps(body.inputs)
        run = await runs.start(source, body.inputs, tenant_id=principal.tenant, version=v, filename=name)
    except WorkflowError as exc:
        raise Problem(422, f"The inputs do not fit workflow {name!r}: {exc}", param="inputs") from None
    except (TypeError, ValueError) as exc:
        raise Problem(422, f"The inputs cannot be stored: {exc}", param="inputs") from None
    response.headers["Location"] = f"/api/workflow-runs/{run.id}"
    return run.to_dict()


@router.get("/api/workflow-runs", response_model=RunList, responses=problems(*AUTHENTICATED, 422))
async def list_runs(principal: PrincipalDep, runs: RunsDep,
                    status_: Annotated[Literal["running", "succeeded", "failed", "cancelled"] | None,
                                       Query(alias="status")] = None,
                    limit: Annotated[int, Query(ge=1, le=200)] = 50) -> dict[str, Any]:
    """The tenant's workflow runs, newest first."""
    found = await runs.list_runs(tenant_id=principal.tenant, status=status_, limit=limit)
    return {"runs": [r.to_dict() for r in found]}


@router.get("/api/workflow-runs/{run_id}", response_model=RunDetail, responses=problems(*AUTHENTICATED, 404))
async def get_run(run_id: str, principal: PrincipalDep, runs: RunsDep) -> dict[str, Any]:
    """A run with its nodes' states, variables, path and pending approvals."""
    try:
        return await runs.status(run_id, tenant_id=principal.tenant)
    except WorkflowRunNotFound as exc:
        raise _not_found(exc) from None


async def _control(runs: WorkflowRuns, verb: str, run_id: str, principal: Principal) -> dict[str, Any]:
    try:
        run = await runs.get_run(run_id, tenant_id=principal.tenant)
        if run.status != "running":
            raise Problem(409, f"Run {run_id} already ended ({run.status}); there is nothing to {verb}.")
        ended: WorkflowRun = await getattr(runs, verb)(run_id, tenant_id=principal.tenant)
        return ended.to_dict()
    except WorkflowRunNotFound as exc:
        raise _not_found(exc) from None
    except EngineClosed:
        raise Problem(503, "The database is closed (the server is stopping). Retry shortly.") from None


_CONTROL = problems(*AUTHENTICATED, 404, 409, s409="The run already ended.")


@router.post("/api/workflow-runs/{run_id}/pause", response_model=WorkflowRunBody, responses=_CONTROL)
async def pause_run(run_id: str, principal: OperatorDep, runs: RunsDep) -> dict[str, Any]:
    """Pause a run (operator): nothing new starts; running nodes finish; approvals still take answers."""
    return await _control(runs, "pause", run_id, principal)


@router.post("/api/workflow-runs/{run_id}/resume", response_model=WorkflowRunBody, responses=_CONTROL)
async def resume_run(run_id: str, principal: OperatorDep, runs: RunsDep) -> dict[str, Any]:
    """Resume a paused run (operator)."""
    return await _control(runs, "resume", run_id, principal)


@router.post("/api/workflow-runs/{run_id}/cancel", response_model=WorkflowRunBody, responses=_CONTROL)
async def cancel_run(run_id: str, principal: OperatorDep, runs: RunsDep) -> dict[str, Any]:
    """Cancel a run (operator): running nodes are cancelled, approvals closed, nothing starts after."""
    return await _control(runs, "cancel", run_id, principal)


_EVENT_SCHEMA = {"type": "object", "properties": {
    "seq": {"type": "integer"}, "type": {"type": "string"}, "data": {"type": "object"}, "at": {"type": "number"}}}


_FINISHED = type_of(WorkflowFinished)
"""The type of a run's last event."""


async def _notices(runs: WorkflowRuns, run_id: str, tenant: str, after: int) -> AsyncIterator[ServerSentEvent]:
    yield ServerSentEvent(comment=f"events of workflow run {run_id} after {after}", retry=2000, sep="\n")
    while True:
        for entry in await runs.events(run_id, after=after, tenant_id=tenant):
            after = entry.seq
            yield ServerSentEvent(data=dumps(entry.to_dict()), event=entry.type, id=str(after), sep="\n")
            if entry.type == _FINISHED:
                return
        await asyncio.sleep(0.25)


@router.get("/api/workflow-runs/{run_id}/events", response_class=EventSourceResponse, responses={
    200: {"description": "The run's events as SSE (`id:` is the seq, `event:` the type, `data:` `{seq, type, data, "
                         "at}`, `data` holding the event's fields as docs/events.md lists them): "
                         + ", ".join(type_of(c) for c in get_args(WorkflowEvent)) + " (the last).",
          "content": {"text/event-stream": {"schema": _EVENT_SCHEMA}}},
    **problems(*AUTHENTICATED, 404, 422),
})
async def run_events(
    run_id: str, principal: PrincipalDep, runs: RunsDep, state: StateDep,
    last_event_id: Annotated[int | None, Header(alias="Last-Event-ID", ge=0, le=2**62,
                                                description="The seq of the last event received.")] = None,
    after: Annotated[int | None, Query(ge=0, le=2**62, description="Replay events after this seq.")] = None,
) -> EventSourceResponse:
    """The run's events as SSE, replayed after ``Last-Event-ID`` (or ``after``), then live, ending after
    ``workflow_finished``."""
    try:
        await runs.get_run(run_id, tenant_id=principal.tenant)
    except WorkflowRunNotFound as exc:
        raise _not_found(exc) from None
    start = last_event_id if last_event_id is not None else after or 0
    return EventSourceResponse(_notices(runs, run_id, principal.tenant, start), sep="\n",
                               ping=state.settings.sse_ping_s or 0)


@router.get("/api/approvals", response_model=ApprovalList, responses=problems(*AUTHENTICATED, 422))
async def list_approvals(
    principal: PrincipalDep, runs: RunsDep,
    status_: Annotated[Literal["pending", "approved", "rejected", "timed_out", "escalated", "cancelled"] | None,
                       Query(alias="status")] = None,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
) -> dict[str, Any]:
    """The tenant's approvals (``?status=pending``: those waiting for an answer), oldest first."""
    found = await runs.approvals(tenant_id=principal.tenant, status=status_, limit=limit)
    return {"approvals": [a.to_dict() for a in found]}


@router.get("/api/approvals/{approval_id}", response_model=ApprovalBody, responses=problems(*AUTHENTICATED, 404))
async def get_approval(approval_id: str, principal: PrincipalDep, runs: RunsDep) -> dict[str, Any]:
    """One approval with the answers counted so far."""
    try:
        return (await runs.get_approval(approval_id, tenant_id=principal.tenant)).to_dict()
    except ApprovalNotFound as exc:
        raise _not_found(exc) from None


@router.post("/api/approvals/{approval_id}", response_model=AnswerBody, responses={
    200: {"headers": {"Idempotent-Replayed": header("'true' when the Idempotency-Key was answered before.")}},
    **problems(*AUTHENTICATED, 404, 409, 422,
               s403="The caller is not among the approval's approvers (or lacks a role to call).",
               s409="The answer contradicts the decision (or this approver's earlier answer), or the approval "
                    "takes no more answers."),
})
async def answer_approval(approval_id: str, body: AnswerRequest, principal: PrincipalDep, runs: RunsDep,
                          response: Response, idempotency_key: IdempotencyKey = None) -> dict[str, Any]:
    """Approve or reject, as the caller. The first valid answer decides; the same Idempotency-Key
    replays the first answer."""
    try:
        answered = await runs.answer(approval_id, subject=principal.subject, roles=_roles(principal),
                                     decision=body.decision, comment=body.comment, tenant_id=principal.tenant,
                                     idempotency_key=idempotency_key)
    except ApprovalNotFound as exc:
        raise _not_found(exc) from None
    except ApprovalForbidden as exc:
        raise Problem(403, f"{exc}: only its approvers may answer it.") from None
    except ApprovalConflict as exc:
        raise Problem(409, f"{exc}.") from None
    if answered.verdict == "replayed":
        response.headers["Idempotent-Replayed"] = "true"
    return {"verdict": answered.verdict, "approval": answered.approval.to_dict()}
