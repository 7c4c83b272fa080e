"""``/api/tasks``: durable tasks on the engine (`Orchestrator.submit` and friends).

Submitting answers 202 as soon as the task is committed (planning picks agents; no model is
called); workers (this process's embedded one, or ``loomiq worker`` processes) run it. Every task
belongs to the caller's tenant: another tenant's task id answers 404, as an unknown one does.
"""

from __future__ import annotations

import contextlib
import json
import math
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Annotated, Any, Literal

import anyio
from fastapi import APIRouter, Depends, Header, Query, Request, Response, WebSocket, WebSocketDisconnect, status
from pydantic import BaseModel, ConfigDict, Field, field_validator
from sse_starlette import EventSourceResponse

from ..agents import NoAgentAvailable, UnknownAgent
from ..engine import (
    MAX_SEQ,
    DependencyError,
    EngineClosed,
    IdempotencyConflict,
    InvalidTask,
    Priority,
    Submitted,
    Task,
    TaskNotFound,
    TaskStatus,
    check_text,
)
from ..orchestrator import Orchestrator
from ..strategies import StrategyError
from ._event_stream import event_json, sse_stream
from ._openapi import AUTHENTICATED, header, links, problems
from ._pagination import Cursor, paginate
from .auth import Principal
from .deps import OperatorDep, PrincipalDep, StateDep, authenticate, get_state
from .problems import Problem, planning_problem, refuse_websocket, validation_problem
from .schemas import EVENT_TYPES, TaskBody, TaskDetail, TaskEventData, TaskPage, sse_item

router = APIRouter(prefix="/api/tasks", tags=["tasks"])

IdempotencyKey = Annotated[
    str | None,
    Header(alias="Idempotency-Key", max_length=200, description="Repeat a submission safely: same key, same task."),
]


class StrategyOptions(BaseModel):
    """Options of the strategies, each bounded; a strategy given an option it does not take answers 422."""

    model_config = ConfigDict(extra="forbid")
    min_agents: int | None = Field(None, ge=1, le=64, description="consensus: the fewest analysts it runs with.")
    allow_fewer: bool | None = Field(None, description="consensus: run with fewer analysts than min_agents.")
    lead: str | None = Field(None, min_length=1, max_length=200, description="consensus: the agent that synthesises.")
    max_rounds: int | None = Field(None, ge=1, le=20, description="adaptive: the most routing rounds.")
    aggregate: Literal["concat", "vote"] | None = Field(None, description="parallel: how the answers combine.")


ToolName = Annotated[str, Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_-]+$")]


class TaskSubmission(BaseModel):
    """A task to run durably."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False, json_schema_extra={"examples": [
        {"prompt": "Should we shard the database now?", "strategy": "consensus"},
        {"prompt": "Write the migration plan", "strategy": "sequential", "priority": "high", "timeout_s": 300},
    ]})
    prompt: str = Field(min_length=1, max_length=200_000)
    strategy: str = Field("auto", description="single, sequential, parallel, consensus, adaptive or auto")
    agents: list[str] | None = Field(None, description="Agent ids to use, in order; default: the best ones.")
    capabilities: list[str] = Field([], description="Capabilities every agent must have.")
    options: StrategyOptions | None = Field(None, description="Strategy options.")
    priority: Priority = "medium"
    after: list[str] = Field([], max_length=100, description="Ids of tasks that must complete first.")
    timeout_s: float | None = Field(None, gt=0, le=7 * 86400)
    retry: int | None = Field(None, ge=1, le=20, description="Runs allowed in all when a run fails.")
    context: dict[str, Any] | None = Field(None, description="Material for the agents, stored with the task.")
    tools: list[ToolName] | None = Field(None, max_length=100, description=(
        "Tools (or MCP servers) the run allows, narrowing each agent's allow-list; GET /api/tools lists them. "
        "Default: each agent's own list."))
    allow_failover_outside: bool = Field(False, description=(
        "With `agents`: let failover use agents outside them. By default failover stays among the named agents, "
        "and a step none of them can answer fails, saying so."))

    @field_validator("context")
    @classmethod
    def _finite(cls, value: dict[str, Any] | None) -> dict[str, Any] | None:
        # Python's JSON parser reads NaN and Infinity, which no JSON column (nor JSON itself) can hold.
        pending: list[Any] = [value]
        while pending:
            item = pending.pop()
            if isinstance(item, float) and not math.isfinite(item):
                raise ValueError("numbers must be finite (JSON has no NaN or Infinity)")
            if isinstance(item, dict):
                pending.extend(item.values())
            elif isinstance(item, list):
                pending.extend(item)
        return value


class Collaboration(BaseModel):
    """A follow-up on a completed task: more agents work on its result."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False, json_schema_extra={"examples": [
        {"instruction": "Check the numbers and tighten the argument.", "strategy": "consensus"},
    ]})
    instruction: str = Field("", max_length=20_000, description="What to do with the result; default: improve it.")
    strategy: str = "consensus"
    agents: list[str] | None = None
    capabilities: list[str] = []
    options: StrategyOptions | None = Field(None, description="Strategy options, as for POST /api/tasks.")
    priority: Priority = "medium"
    timeout_s: float | None = Field(None, gt=0, le=7 * 86400)
    tools: list[ToolName] | None = Field(None, max_length=100, description=(
        "Tools (or MCP servers) the follow-up's run allows, narrowing each agent's allow-list, as for "
        "POST /api/tasks (every strategy); GET /api/tools lists them. Default: the task's own `tools`."))
    allow_failover_outside: bool = Field(False, description=(
        "With `agents`: let failover use agents outside them, as for POST /api/tasks."))


def task_links(task_id: str) -> dict[str, str]:
    """Where to read, follow and cancel a task."""
    base = f"/api/tasks/{task_id}"
    return {"self": base, "events": f"{base}/events", "ws": f"{base}/ws", "cancel": f"{base}/cancel"}


def describe(task: Task, *, full: bool = False) -> dict[str, Any]:
    """A task's JSON form, `TaskBody` (`TaskDetail`, with the last run's full result, when `full`)."""
    body = {**task.to_dict(), "links": task_links(task.id)}
    if full:
        body["result"] = dict(task.result) if task.result is not None else None
    return body


async def get_orch(state: StateDep) -> Orchestrator:
    """The orchestrator, with the task engine open. 503 when this server has no task engine
    (``async def``: FastAPI would run a plain ``def`` dependency in its thread pool)."""
    if not state.settings.tasks_enabled:
        raise Problem(503, "This server does not run durable tasks (LOOMIQ_TASKS=0); use /v1/chat/completions "
                      "for in-process runs, or a server with tasks enabled.")
    return state.orchestrator


EngineDep = Annotated[Orchestrator, Depends(get_orch)]


async def find_task(orch: Orchestrator, task_id: str, principal: Principal) -> Task:
    """The caller's task, else a 404 problem (another tenant's task is not disclosed)."""
    try:
        task = await orch.get_task(task_id)
    except TaskNotFound:
        task = None
    except EngineClosed:
        raise Problem(503, "The task database is closed (the server is stopping). Retry shortly.") from None
    if task is None or task.tenant_id != principal.tenant:
        raise Problem(404, f"No task {task_id!r} in tenant {principal.tenant!r}. List tasks with GET /api/tasks.")
    return task


async def _submit(
    orch: Orchestrator,
    principal: Principal,
    prompt: str,
    key: str | None,
    *,
    strategy: str,
    agents: Sequence[str] | None,
    capabilities: Sequence[str],
    priority: Priority,
    timeout_s: float | None,
    options: Mapping[str, Any] | None = None,
    after: Sequence[str] = (),
    retry: int | None = None,
    context: Mapping[str, Any] | None = None,
    tools: Sequence[str] | None = None,
    allow_failover_outside: bool = False,
) -> Submitted:
    """Submit in the caller's tenant; `replayed` when the Idempotency-Key named an earlier task."""
    try:
        check_text("after", list(after))  # (before the lookups below: an id no task can have)
    except InvalidTask as exc:
        raise Problem(422, f"{exc}.", param=exc.field) from None
    for dependency in after:
        await find_task(orch, dependency, principal)  # a tenant may only depend on its own tasks
    try:
        submitted = await orch.submit(
            prompt, strategy=strategy, agents=agents, capabilities=capabilities, options=options, context=context,
            timeout_s=timeout_s, priority=priority, after=after, retry=retry, idempotency_key=key,
            tenant_id=principal.tenant, tools=tools, allow_failover_outside=allow_failover_outside,
        )
    except (StrategyError, UnknownAgent, NoAgentAvailable) as exc:
        raise planning_problem(exc, "agents" if isinstance(exc, UnknownAgent) else "strategy") from None
    except DependencyError as exc:
        raise Problem(422, f"{exc}. Fix the 'after' list.", param="after") from None
    except IdempotencyConflict as exc:
        raise Problem(422, f"The Idempotency-Key {key!r} was already used for task {exc.task_id} with a different "
                      f"{', '.join(exc.differs)}. Use a new key for a new request.",
                      slug="idempotency-key-reused") from None
    except InvalidTask as exc:
        raise Problem(422, f"{exc}.", param=exc.field) from None
    task = submitted.task
    if submitted.replayed and (task.request.prompt != prompt or task.tenant_id != principal.tenant):
        raise Problem(422, f"The Idempotency-Key {key!r} was used for a different request (task {task.id}). Use a "
                      "new key for a new request.", slug="idempotency-key-reused")
    return submitted


def _accepted(submitted: Submitted, response: Response) -> dict[str, Any]:
    response.headers["Location"] = f"/api/tasks/{submitted.id}"
    if submitted.replayed:
        response.headers["Idempotent-Replayed"] = "true"
    return describe(submitted.task)


_ON_TASK = links({"GetTask": "get_task", "TaskEvents": "task_events", "CancelTask": "cancel_task",
                  "Collaborate": "collaborate"}, "task_id")
"""Links from a task in a response to the operations on it."""

_ACCEPTED = {
    "description": "Stored and queued; workers run it. Follow it at `links.events`.",
    "headers": {
        "Location": header("The task: /api/tasks/{id}."),
        "Idempotent-Replayed": header("'true' when the Idempotency-Key named an earlier task, which is answered."),
    },
    "links": _ON_TASK,
}


@router.post("", status_code=status.HTTP_202_ACCEPTED, response_model=TaskBody, responses={
    202: _ACCEPTED,
    **problems(*AUTHENTICATED, 404, 413, 422, 503, s404="A task named in `after` does not exist in this tenant.",
               s503="No healthy agent can run it now, the server runs no tasks (LOOMIQ_TASKS=0), or the task "
                    "database cannot be reached: retry after Retry-After seconds."),
})
async def submit_task(
    body: TaskSubmission,
    principal: OperatorDep,
    orch: EngineDep,
    response: Response,
    idempotency_key: IdempotencyKey = None,
) -> dict[str, Any]:
    """Queue a task (operator). Answers 202 with its id and ``Location`` once it is stored."""
    submitted = await _submit(
        orch, principal, body.prompt, idempotency_key, strategy=body.strategy, agents=body.agents,
        capabilities=body.capabilities, priority=body.priority, after=body.after,
        options=body.options.model_dump(exclude_none=True) if body.options else None,
        timeout_s=body.timeout_s, retry=body.retry, context=body.context, tools=body.tools,
        allow_failover_outside=body.allow_failover_outside,
    )
    return _accepted(submitted, response)


@router.get("", response_model=TaskPage, responses={
    200: {"headers": {"Link": header('The next page: <...?cursor=...>; rel="next" (absent on the last page).')}},
    **problems(*AUTHENTICATED, 422),
})
async def list_tasks(
    principal: PrincipalDep,
    orch: EngineDep,
    response: Response,
    request: Request,
    status_: Annotated[list[TaskStatus] | None, Query(alias="status", description="Any of these statuses")] = None,
    dead: bool | None = None,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
    cursor: Annotated[str | None, Query(max_length=1000, description="`next_cursor` of the previous page.")] = None,
) -> dict[str, Any]:
    """The tenant's tasks, newest first, a page at a time: pass ``next_cursor`` back as ``cursor``."""
    try:
        position = Cursor.decode(cursor) if cursor else None
    except ValueError:
        raise validation_problem([{"loc": ("query", "cursor"), "msg": "not a cursor from this API: pass "
                                   "next_cursor back unchanged"}]) from None

    async def fetch(offset: int, count: int) -> list[Task]:
        return await orch.list_tasks(tenant_id=principal.tenant, status=status_, dead=dead, limit=count,
                                     offset=offset)

    tasks, following = await paginate(fetch, limit, position)
    next_cursor = following.encode() if following else None
    if next_cursor:
        response.headers["Link"] = f'<{request.url.include_query_params(cursor=next_cursor)}>; rel="next"'
    return {"tasks": [describe(t) for t in tasks], "next_cursor": next_cursor}


@router.get("/{task_id}", response_model=TaskDetail, responses=problems(*AUTHENTICATED, 404))
async def get_task(task_id: str, principal: PrincipalDep, orch: EngineDep) -> dict[str, Any]:
    """One task, with its last run's full result once it ended."""
    return describe(await find_task(orch, task_id, principal), full=True)


@router.post("/{task_id}/cancel", status_code=status.HTTP_202_ACCEPTED, response_model=TaskBody, responses={
    200: {"model": TaskBody, "description": "The task ended at once (it was not running).",
          "links": links({"GetTask": "get_task"}, "task_id")},
    202: {"description": "Cancellation requested: its worker aborts the run; `task_finished` follows.",
          "links": links({"GetTask": "get_task", "TaskEvents": "task_events"}, "task_id")},
    **problems(*AUTHENTICATED, 404, 409, s409="The task already ended: there is nothing to cancel."),
})
async def cancel_task(task_id: str, principal: OperatorDep, orch: EngineDep, response: Response) -> dict[str, Any]:
    """Cancel a task (operator): a waiting one ends now, a running one is aborted by its worker."""
    task = await find_task(orch, task_id, principal)
    if task.terminal:
        raise Problem(409, f"Task {task_id} already ended ({task.status}); there is nothing to cancel.")
    task = await orch.cancel_task(task_id)
    if task.terminal:
        response.status_code = status.HTTP_200_OK
    return describe(task)


@router.post("/{task_id}/collaborate", status_code=status.HTTP_202_ACCEPTED, response_model=TaskBody, responses={
    202: {**_ACCEPTED, "description": "The follow-up task, stored and queued (it runs after the task)."},
    **problems(*AUTHENTICATED, 404, 409, 413, 422, 503,
               s409="The task has not completed (or failed, or was cancelled): only a completed result can be "
                    "worked on."),
})
async def collaborate(
    task_id: str, body: Collaboration, principal: OperatorDep, orch: EngineDep, response: Response,
    idempotency_key: IdempotencyKey = None,
) -> dict[str, Any]:
    """Queue a follow-up task in which more agents (by default a consensus) review and improve a
    completed task's result (operator). It runs after the task and records it in ``after``. Its
    ``tools`` narrow the agents' tools as a task's do; by default it keeps the task's."""
    source = await find_task(orch, task_id, principal)
    if source.status != "completed":
        if source.terminal:
            what = (f"it ended {source.status} and will never complete, so there is no result to work on. Submit "
                    "the task again (POST /api/tasks), then collaborate on it once it completes")
        else:
            what = "follow its events and try again once it completes"
        raise Problem(409, f"Task {task_id} is {source.status}; agents can collaborate on a completed task's result "
                      f"only: {what}.")
    instruction = body.instruction or ("Review the previous result: keep what is right, fix what is wrong, and give "
                                       "the full improved answer.")
    prompt = (f"{source.request.prompt}\n\nPrevious result (task {task_id}, strategy {source.request.strategy}):\n"
              f"{source.output}\n\n{instruction}")
    submitted = await _submit(
        orch, principal, prompt, idempotency_key, strategy=body.strategy, agents=body.agents,
        capabilities=body.capabilities, priority=body.priority, timeout_s=body.timeout_s, after=[task_id],
        context={"collaborates_on": task_id},
        options=body.options.model_dump(exclude_none=True) if body.options else None,
        tools=body.tools if body.tools is not None else source.request.tools,
        allow_failover_outside=body.allow_failover_outside,
    )
    return _accepted(submitted, response)


_SSE_FORMAT = """Server-sent events, one frame per task event:

```
id: <seq>
event: <type>
data: <the event as one line of JSON: its fields plus task_id and seq>
```

Types (docs/events.md lists each one's fields): task_queued, task_waiting, task_ready, task_started,
run_started, step_started, text_delta, step_restarted, tool_call_started, tool_call_serialized,
tool_call_finished, tool_call_refused, step_finished, agent_failed_over, run_finished, task_retrying, task_handed_back,
task_finished (always the last). Lines starting with `:` are comments (a greeting, and `: ping`
heartbeats); `retry:` tells browsers how long to wait before reconnecting. The stream ends after
`task_finished`, at once when the client already has it. The same events come as JSON text frames from the WebSocket
`/api/tasks/{task_id}/ws?after=<seq>` (credentials in headers, or `?access_token=<JWT or lq_ key>` for
browsers); send `{"type": "cancel"}` on it to cancel (operator)."""


@router.get("/{task_id}/events", response_class=EventSourceResponse, responses={
    200: {"description": _SSE_FORMAT, "content": {"text/event-stream": {
        "schema": sse_item(TaskEventData.model_json_schema(), events=list(EVENT_TYPES))}}},
    **problems(*AUTHENTICATED, 404, 422),
})
async def task_events(
    task_id: str,
    principal: PrincipalDep,
    state: StateDep,
    orch: EngineDep,
    last_event_id: Annotated[int | None, Header(
        alias="Last-Event-ID", ge=0, le=MAX_SEQ,
        description="The seq of the last event received (what a reconnecting EventSource sends).")] = None,
    after: Annotated[int | None, Query(ge=0, le=MAX_SEQ, description="Replay events after this seq")] = None,
) -> EventSourceResponse:
    """The task's events as SSE (``id:`` is the event's seq): replayed from the log after
    ``Last-Event-ID`` (or ``after``), then live, ending after ``task_finished`` (at once when the
    client already has it); heartbeats keep idle connections open."""
    await find_task(orch, task_id, principal)
    start = last_event_id if last_event_id is not None else after or 0
    return EventSourceResponse(sse_stream(orch, task_id, start), sep="\n", ping=state.settings.sse_ping_s or 0)


@router.websocket("/{task_id}/ws")
async def task_socket(websocket: WebSocket, task_id: str, after: Annotated[int, Query(ge=0, le=MAX_SEQ)] = 0) -> None:
    """The task's events as JSON text frames (replayed after ``after``, then live); the client may
    send ``{"type": "cancel"}`` (operator) to cancel the task. Closes with 1000 after
    ``task_finished``. Credentials: headers, or ``?access_token=`` for browsers."""
    try:
        state = await get_state(websocket)
        principal = await authenticate(websocket, state)
        orch = await get_orch(state)
        await find_task(orch, task_id, principal)
    except Problem as problem:
        await refuse_websocket(websocket, problem)
        return
    await websocket.accept()
    lock = anyio.Lock()

    async def send(text: str) -> None:
        async with lock:
            await websocket.send_text(text)

    # A client that leaves mid-stream is the normal end of a stream, not an error: a send to it
    # raises WebSocketDisconnect, which ends both halves quietly (it used to escape the task group
    # and be logged with its traceback for every client that left, ~26 KB of memory each).
    async with anyio.create_task_group() as group:

        async def pump() -> None:
            with contextlib.suppress(WebSocketDisconnect):
                async with contextlib.aclosing(orch.events(task_id, after)) as events:
                    async for event in events:
                        await send(event_json(event))
                async with lock:
                    await websocket.close(1000)
            group.cancel_scope.cancel()

        async def listen() -> None:
            with contextlib.suppress(WebSocketDisconnect):
                while True:
                    message = await websocket.receive()
                    if message["type"] == "websocket.disconnect":
                        break
                    text = message.get("text") or (message.get("bytes") or b"").decode(errors="replace")
                    await _command(text, orch, task_id, principal, send)
            group.cancel_scope.cancel()

        group.start_soon(pump)
        group.start_soon(listen)


async def _command(
    text: str, orch: Orchestrator, task_id: str, principal: Principal, send: Callable[[str], Awaitable[None]]
) -> None:
    """Answer one client message of the task WebSocket."""
    try:
        message = json.loads(text)
        kind = message.get("type") if isinstance(message, dict) else None
    except ValueError:
        kind = None
    if kind != "cancel":
        await send(json.dumps({"type": "error", "status": 422,
                               "detail": 'Unknown message: the only command is {"type": "cancel"}.'}))
        return
    if not principal.can("operator"):
        await send(json.dumps({"type": "error", "status": 403,
                               "detail": f"Cancelling needs the operator role; this caller is {principal.role}."}))
        return
    await send(json.dumps({"type": "cancel_requested", "task_id": task_id}))
    # Shielded: the run's end may close this socket (and cancel this reader) before the engine
    # returns, and the cancellation must be recorded all the same. Its end arrives as events.
    with anyio.CancelScope(shield=True):
        await orch.cancel_task(task_id)
