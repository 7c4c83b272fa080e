"""JSON and row codecs: the only place where engine records meet their stored form. Events have
one JSON form, `loomiq.runtime.event_json`'s (re-exported here for the engine's writers).

A journalled `StepResult` must come back exactly as it was (a replay returns it to the strategy), so
its codec is lossless, unlike `StepResult.to_dict()` which rounds for display.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from ..models import ModelResponse, ToolCall, Usage
from ..runtime import StepResult
from ..runtime.event_json import (
    dumps,
    encode_event,
    json_str,
    json_value,
    loads,
    result_to_json,
    run_finished_json,
    step_fields_json,
    text_delta_json,
)
from ..runtime.event_json import step_finished_json as _step_finished_json
from ..runtime.events import StepFinished
from ..tools import ToolCallRecord

__all__ = [  # the event codec's names the engine's writers use, with this module's own
    "ATTEMPT_COLUMNS", "TASK_COLUMNS", "WORKER_COLUMNS", "JournalEntry", "attempt_from_row", "check_json",
    "dumps", "encode_event", "event_from_row", "journal_entry_from_json", "json_str", "json_value", "lifecycle_json",
    "loads", "request_from_json", "request_to_json", "result_to_json", "run_finished_json", "step_fields_json",
    "step_finished_json", "step_from_json", "step_to_json", "task_from_row", "text_delta_json", "tool_entry_to_json",
    "worker_from_row",
]
from .task import Attempt, Task, TaskEvent, TaskID, TaskRequest, TaskRetry, TenantID, WorkerID, WorkerInfo


def step_finished_json(e: StepFinished, steps_json: dict[int, tuple[StepResult, str]]) -> str:
    """`encode_event` of a ``step_finished``, keeping the step's fields in `steps_json` (for the run's
    result, which lists the step again)."""
    try:
        fields = step_fields_json(e.result)
    except (TypeError, ValueError):
        return encode_event(e)
    steps_json[id(e.result)] = (e.result, fields)
    return _step_finished_json(e.run_id, fields)


lifecycle_json = encode_event
"""A lifecycle event's JSON (the one codec's `encode_event`)."""


def step_to_json(s: StepResult) -> str:
    """Lossless JSON of a step, for the journal."""
    try:
        fo = s.failed_over_from
        failed_over = ",".join(f"[{json_str(a)},{json_str(e)}]" for a, e in fo) if fo else ""
        u = s.usage
        calls = "," + dumps([c.to_json() for c in s.tool_calls]) if s.tool_calls else ""
        return (
            f"[{json_str(s.key)},{json_str(s.agent)},{json_str(s.role)},{json_str(s.output)},{json_value(u.input_tokens)},"
            f"{json_value(u.output_tokens)},{json_value(s.cost_usd)},{json_value(s.duration_ms)},{json_value(s.error)},{json_value(s.attempts)},"
            f"[{failed_over}],{json_value(s.model)},{json_value(s.offline)}{calls}]"
        )
    except (TypeError, ValueError):
        pass
    row = [
        s.key, s.agent, s.role, s.output, s.usage.input_tokens, s.usage.output_tokens, s.cost_usd,
        s.duration_ms, s.error, s.attempts, [list(p) for p in s.failed_over_from], s.model, s.offline,
    ]
    if s.tool_calls:
        row.append([c.to_json() for c in s.tool_calls])
    return dumps(row)


def step_from_json(text: str) -> StepResult:
    """The step `step_to_json` stored (its tool calls are a 14th item, absent when it made none)."""
    row = loads(text)
    (key, agent, role, output, tin, tout, cost, duration, error, attempts, fo, model, offline) = row[:13]
    calls = tuple(ToolCallRecord.from_json(c) for c in row[13]) if len(row) > 13 else ()
    return StepResult(
        key, agent, role, output, Usage(tin, tout), cost, duration, error, attempts,
        tuple((a, e) for a, e in fo), model, offline, calls,
    )


JournalEntry = StepResult | ModelResponse | ToolCallRecord
"""A journal row: a strategy step, or inside a step's tool loop a model turn or a finished tool call."""


def tool_entry_to_json(value: ModelResponse | ToolCallRecord) -> str:
    """Lossless JSON of a tool loop's journal entry (an object; a step is an array)."""
    if isinstance(value, ToolCallRecord):
        return dumps({"tool_call": value.to_json()})
    u = value.usage
    return dumps({"model_turn": {
        "text": value.text, "model": value.model, "usage": [u.input_tokens, u.output_tokens],
        "finish_reason": value.finish_reason, "cost_usd": value.cost_usd, "provider": value.provider,
        "tool_calls": [[c.id, c.name, c.arguments, c.raw_arguments, c.error] for c in value.tool_calls],
    }})


def journal_entry_from_json(text: str) -> JournalEntry:
    """The entry `step_to_json` or `tool_entry_to_json` stored."""
    if text.startswith("["):
        return step_from_json(text)
    data = loads(text)
    call = data.get("tool_call")
    if call is not None:
        return ToolCallRecord.from_json(call)
    t = data["model_turn"]
    return ModelResponse(
        t["text"], t["model"], Usage(*t["usage"]), t["finish_reason"],
        tuple(ToolCall(i, n, a, r, e) for i, n, a, r, e in t["tool_calls"]), t["cost_usd"], t["provider"],
    )


def request_to_json(r: TaskRequest) -> str:
    """JSON of a task request (its context and options must be JSON-serialisable)."""
    return dumps({
        "prompt": r.prompt, "strategy": r.strategy, "agents": list(r.agents),
        "capabilities": list(r.capabilities), "options": dict(r.options), "context": dict(r.context),
        "priority": r.priority, "after": list(r.after), "timeout_s": r.timeout_s,
        "retry": [r.retry.max_attempts, r.retry.backoff_s, r.retry.backoff_factor, r.retry.max_backoff_s],
        "idempotency_key": r.idempotency_key, "tenant_id": r.tenant_id, "reason": r.reason,
        **({"trace": dict(r.trace)} if r.trace else {}),
        "tools": None if r.tools is None else list(r.tools),
        **({"failover_within": list(r.failover_within)} if r.failover_within is not None else {}),
    })


def request_from_json(text: str) -> TaskRequest:
    """The request `request_to_json` stored."""
    d = loads(text)
    return TaskRequest(
        prompt=d["prompt"], strategy=d["strategy"], agents=tuple(d["agents"]), capabilities=tuple(d["capabilities"]),
        options=d["options"], context=d["context"], priority=d["priority"],
        after=tuple(TaskID(a) for a in d["after"]), timeout_s=d["timeout_s"], retry=TaskRetry(*d["retry"]),
        idempotency_key=d["idempotency_key"], tenant_id=TenantID(d["tenant_id"]), reason=d["reason"],
        trace=d.get("trace") or {},
        tools=None if d.get("tools") is None else tuple(d["tools"]),
        failover_within=None if d.get("failover_within") is None else tuple(d["failover_within"]),
    )


TASK_COLUMNS = (
    "id, status, request, created_at, started_at, finished_at, attempts, failures, dead, error, output, "
    "input_tokens, output_tokens, cost_usd, result, lease_owner, lease_epoch, cancel_requested"
)
"""The columns `task_from_row` reads, in order."""


def task_from_row(row: Sequence[Any]) -> Task:
    """A `Task` from a row of `TASK_COLUMNS`."""
    (tid, status, request, created, started, finished, attempts, failures, dead, error, output,
     tin, tout, cost, result, owner, epoch, cancel) = row
    return Task(
        TaskID(tid), status, request_from_json(request), created, started, finished, attempts, failures,
        bool(dead), error, output, Usage(tin, tout), cost, loads(result) if result else None,
        WorkerID(owner) if owner else None, epoch, bool(cancel),
    )


ATTEMPT_COLUMNS = "task_id, attempt, epoch, worker_id, started_at, finished_at, status, error"


def attempt_from_row(row: Sequence[Any]) -> Attempt:
    """An `Attempt` from a row of `ATTEMPT_COLUMNS`."""
    tid, attempt, epoch, worker, started, finished, status, error = row
    return Attempt(TaskID(tid), attempt, epoch, WorkerID(worker), started, finished, status, error)


def event_from_row(task_id: str, row: Sequence[Any]) -> TaskEvent:
    """A `TaskEvent` from a (seq, type, data) row."""
    seq, type_, data = row
    return TaskEvent(TaskID(task_id), seq, type_, loads(data))


WORKER_COLUMNS = "id, host, pid, concurrency, started_at, heartbeat_at, status, running"


def worker_from_row(row: Sequence[Any]) -> WorkerInfo:
    """A `WorkerInfo` from a row of `WORKER_COLUMNS`."""
    wid, host, pid, conc, started, beat, status, running = row
    return WorkerInfo(WorkerID(wid), host, pid, conc, started, beat, status, running)


def check_json(name: str, value: Mapping[str, Any]) -> None:
    """Raise `TypeError` naming `name` when `value` cannot be stored as JSON."""
    try:
        dumps(value)
    except (TypeError, ValueError) as exc:
        raise TypeError(f"{name} is not JSON-serialisable: {exc}") from None
