"""JSON and row codecs: the only place where engine records meet their stored form.

A journalled `StepResult` must come back exactly as it was (a replay returns it to the strategy), so
its codec is lossless, unlike `StepResult.to_dict()` which rounds for display.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Mapping, Sequence
from json.encoder import encode_basestring
from typing import Any

from ..models import ModelResponse, ToolCall, Usage
from ..runtime import RunResult, StepResult
from ..runtime.events import RunEvent, RunFinished, RunStarted, StepFinished, StepStarted
from ..tools import ToolCallRecord
from .events import LifecycleEvent, TaskFinished, TaskQueued, TaskStarted
from .task import Attempt, Task, TaskEvent, TaskID, TaskRequest, TaskRetry, TenantID, WorkerID, WorkerInfo

dumps = json.JSONEncoder(ensure_ascii=False, separators=(",", ":")).encode
loads = json.loads

json_str = _str = encode_basestring
"""A str as a JSON string literal (the C encoder `dumps` uses; it raises TypeError for a non-str)."""


def _val(v: Any) -> str:
    """A scalar as JSON, as `dumps` writes it."""
    t = type(v)
    if t is str:
        return _str(v)
    if t is int:
        return int.__repr__(v)
    if t is float and math.isfinite(v):
        return float.__repr__(v)
    if v is None:
        return "null"
    if v is True:
        return "true"
    if v is False:
        return "false"
    return dumps(v)


# The runtime events a durable run logs, encoded straight from their objects: the same JSON as
# ``dumps(event.to_dict())`` once parsed (tested against it), at a fraction of its cost (no dict is
# built, no float goes through a Python callback). A value of an unexpected type makes them raise,
# and `encode_event` falls back to ``dumps(to_dict())``.


def _usage_json(u: Usage) -> str:
    return (f'{{"input_tokens":{_val(u.input_tokens)},"output_tokens":{_val(u.output_tokens)},'
            f'"total_tokens":{_val(u.total_tokens)}}}')


_INF = math.inf


def _tool_calls_json(s: StepResult) -> str:
    calls = s.tool_calls
    return "[" + ",".join(dumps(c.to_dict()) for c in calls) + "]" if calls else "[]"


def _step_fields(s: StepResult) -> str:
    # StepResult.to_dict() without its braces.
    fo = s.failed_over_from
    failed_over = "[" + ",".join(f'{{"agent":{_str(a)},"error":{_str(e)}}}' for a, e in fo) + "]" if fo else "[]"
    u = s.usage
    tin, tout = u.input_tokens, u.output_tokens
    cost, duration = round(s.cost_usd, 10), round(s.duration_ms, 3)
    attempts, error, offline = s.attempts, s.error, s.offline
    if (type(tin) is int and type(tout) is int and type(cost) is float and -_INF < cost < _INF
            and type(duration) is float and -_INF < duration < _INF and type(attempts) is int
            and (offline is True or offline is False)):
        # The usual types, written without a call per value (ints and finite floats as `dumps` does).
        return (
            f'"key":{_str(s.key)},"agent":{_str(s.agent)},"role":{_str(s.role)},"model":{_str(s.model)},'
            f'"output":{_str(s.output)},"usage":{{"input_tokens":{tin},"output_tokens":{tout},'
            f'"total_tokens":{tin + tout}}},"cost_usd":{cost!r},"duration_ms":{duration!r},'
            f'"error":{"null" if error is None else _str(error)},"attempts":{attempts},'
            f'"failed_over_from":{failed_over},"offline":{"true" if offline else "false"},'
            f'"tool_calls":{_tool_calls_json(s)}'
        )
    return (
        f'"key":{_str(s.key)},"agent":{_str(s.agent)},"role":{_str(s.role)},"model":{_str(s.model)},'
        f'"output":{_str(s.output)},"usage":{_usage_json(u)},"cost_usd":{_val(cost)},'
        f'"duration_ms":{_val(duration)},"error":{_val(error)},"attempts":{_val(attempts)},'
        f'"failed_over_from":{failed_over},"offline":{_val(offline)},"tool_calls":{_tool_calls_json(s)}'
    )


def result_to_json(r: RunResult, steps_json: Mapping[int, tuple[StepResult, str]] | None = None) -> str:
    """``dumps(r.to_dict())``, faster (falls back to it for values of unexpected types). `steps_json`:
    the fields of steps already encoded (by ``id()``, with the step), reused."""
    try:
        if steps_json:
            parts = []
            for s in r.steps:
                done = steps_json.get(id(s))
                parts.append("{" + (done[1] if done is not None and done[0] is s else _step_fields(s)) + "}")
            steps = ",".join(parts)
        else:
            steps = ",".join("{" + _step_fields(s) + "}" for s in r.steps)
        failed = ",".join(f"{_str(a)}:{_str(e)}" for a, e in r.failed.items())
        return (
            f'{{"task_id":{_str(r.task_id)},"status":{_str(r.status)},"strategy":{_str(r.strategy)},'
            f'"strategy_reason":{_str(r.strategy_reason)},"output":{_str(r.output)},"steps":[{steps}],'
            f'"usage":{_usage_json(r.usage)},"cost_usd":{_val(round(r.cost_usd, 10))},'
            f'"duration_ms":{_val(round(r.duration_ms, 3))},"answered":[{",".join(map(_str, r.answered))}],'
            f'"failed":{{{failed}}},"degraded":{_val(r.degraded)},"error":{_val(r.error)},'
            f'"notes":[{",".join(map(_str, r.notes))}],"offline":{_val(r.offline)}}}'
        )
    except (TypeError, ValueError):
        return dumps(r.to_dict())


def _run_started(e: RunStarted) -> str:
    return (f'{{"type":"run_started","run_id":{_str(e.run_id)},"strategy":{_str(e.strategy)},'
            f'"reason":{_str(e.reason)},"agents":[{",".join(map(_str, e.agents))}],"offline":{_val(e.offline)}}}')


def _step_started(e: StepStarted) -> str:
    return (f'{{"type":"step_started","run_id":{_str(e.run_id)},"step":{_str(e.step)},"agent":{_str(e.agent)},'
            f'"role":{_str(e.role)}}}')


def _step_finished(e: StepFinished) -> str:
    return f'{{"type":"step_finished","run_id":{_str(e.run_id)},{_step_fields(e.result)}}}'


def step_finished_json(e: StepFinished, steps_json: dict[int, tuple[StepResult, str]]) -> str:
    """`encode_event` of a ``step_finished``, keeping the step's fields in `steps_json` (for the run's
    result, which lists the step again)."""
    try:
        fields = _step_fields(e.result)
    except (TypeError, ValueError):
        return dumps(e.to_dict())
    steps_json[id(e.result)] = (e.result, fields)
    return f'{{"type":"step_finished","run_id":{_str(e.run_id)},{fields}}}'


def _run_finished(e: RunFinished) -> str:
    return f'{{"type":"run_finished","run_id":{_str(e.run_id)},"result":{result_to_json(e.result)}}}'


_EVENT_ENCODERS: dict[type, Callable[[Any], str]] = {
    RunStarted: _run_started, StepStarted: _step_started, StepFinished: _step_finished, RunFinished: _run_finished,
}


def encode_event(event: RunEvent) -> str:
    """``dumps(event.to_dict())`` of a runtime event, faster for the ones every run logs."""
    enc = _EVENT_ENCODERS.get(type(event))
    if enc is not None:
        try:
            return enc(event)
        except (TypeError, ValueError):
            pass
    return dumps(event.to_dict())


def lifecycle_json(ev: LifecycleEvent) -> str:
    """``dumps(ev.to_dict())`` of a lifecycle event, faster for the ones every task logs."""
    try:
        t = type(ev)
        if t is TaskStarted:
            return (f'{{"type":"task_started","attempt":{_val(ev.attempt)},"epoch":{_val(ev.epoch)},'
                    f'"worker":{_str(ev.worker)},"resumed":{_val(ev.resumed)}}}')
        if t is TaskQueued:
            return f'{{"type":"task_queued","priority":{_str(ev.priority)}}}'
        if t is TaskFinished and type(ev.usage) is dict and list(ev.usage) == _USAGE_KEYS:
            u = ev.usage
            return (f'{{"type":"task_finished","status":{_str(ev.status)},"error":{_val(ev.error)},'
                    f'"output":{_str(ev.output)},"usage":{{"input_tokens":{_val(u["input_tokens"])},'
                    f'"output_tokens":{_val(u["output_tokens"])},"total_tokens":{_val(u["total_tokens"])}}},'
                    f'"cost_usd":{_val(ev.cost_usd)},"dead":{_val(ev.dead)}}}')
    except (TypeError, ValueError):
        pass
    return dumps(ev.to_dict())


_USAGE_KEYS = ["input_tokens", "output_tokens", "total_tokens"]


def text_delta_json(run_id: str, step: str, agent: str, text: str) -> str:
    """The JSON of a logged ``text_delta`` event."""
    return (f'{{"type":"text_delta","run_id":{_str(run_id)},"step":{_str(step)},"agent":{_str(agent)},'
            f'"text":{_str(text)}}}')


def step_to_json(s: StepResult) -> str:
    """Lossless JSON of a step, for the journal."""
    try:
        fo = s.failed_over_from
        failed_over = ",".join(f"[{_str(a)},{_str(e)}]" for a, e in fo) if fo else ""
        u = s.usage
        calls = "," + dumps([c.to_json() for c in s.tool_calls]) if s.tool_calls else ""
        return (
            f"[{_str(s.key)},{_str(s.agent)},{_str(s.role)},{_str(s.output)},{_val(u.input_tokens)},"
            f"{_val(u.output_tokens)},{_val(s.cost_usd)},{_val(s.duration_ms)},{_val(s.error)},{_val(s.attempts)},"
            f"[{failed_over}],{_val(s.model)},{_val(s.offline)}{calls}]"
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
