"""JSON and row codecs: the only place where engine records meet their stored form.

A journalled `StepResult` must come back exactly as it was (a replay returns it to the strategy), so
its codec is lossless, unlike `StepResult.to_dict()` which rounds for display.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

from ..models import Usage
from ..runtime import StepResult
from .task import Attempt, Task, TaskEvent, TaskID, TaskRequest, TaskRetry, TenantID, WorkerID, WorkerInfo

dumps = json.JSONEncoder(ensure_ascii=False, separators=(",", ":")).encode
loads = json.loads


def step_to_json(s: StepResult) -> str:
    """Lossless JSON of a step, for the journal."""
    return dumps([
        s.key, s.agent, s.role, s.output, s.usage.input_tokens, s.usage.output_tokens, s.cost_usd,
        s.duration_ms, s.error, s.attempts, [list(p) for p in s.failed_over_from], s.model, s.offline,
    ])


def step_from_json(text: str) -> StepResult:
    """The step `step_to_json` stored."""
    (key, agent, role, output, tin, tout, cost, duration, error, attempts, fo, model, offline) = loads(text)
    return StepResult(
        key, agent, role, output, Usage(tin, tout), cost, duration, error, attempts,
        tuple((a, e) for a, e in fo), model, offline,
    )


def request_to_json(r: TaskRequest) -> str:
    """JSON of a task request (its context and options must be JSON-serialisable)."""
    return dumps({
        "prompt": r.prompt, "strategy": r.strategy, "agents": list(r.agents),
        "capabilities": list(r.capabilities), "options": dict(r.options), "context": dict(r.context),
        "priority": r.priority, "after": list(r.after), "timeout_s": r.timeout_s,
        "retry": [r.retry.max_attempts, r.retry.backoff_s, r.retry.backoff_factor, r.retry.max_backoff_s],
        "idempotency_key": r.idempotency_key, "tenant_id": r.tenant_id, "reason": r.reason,
    })


def request_from_json(text: str) -> TaskRequest:
    """The request `request_to_json` stored."""
    d = loads(text)
    return TaskRequest(
        d["prompt"], d["strategy"], tuple(d["agents"]), tuple(d["capabilities"]), d["options"],
        d["context"], d["priority"], tuple(TaskID(a) for a in d["after"]), d["timeout_s"],
        TaskRetry(*d["retry"]), d["idempotency_key"], TenantID(d["tenant_id"]), d["reason"],
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
