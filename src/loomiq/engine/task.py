"""The durable engine's domain types: tasks, their requests, attempts and logged events.

Plain frozen dataclasses with `NewType` ids; JSON only at the storage edge (`_codec`).
"""

from __future__ import annotations

import os
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, NewType

from ..models import Usage
from ..runtime import Event, InvalidOptions, RunOptions, decode_event
from ..runtime.options import names
from .errors import InvalidTask

TaskID = NewType("TaskID", str)
"""A task's id (32 hex characters unless the caller chose one)."""
WorkerID = NewType("WorkerID", str)
"""A lease holder: a `Worker`, or the engine of a process running `run(durable=True)`."""
TenantID = NewType("TenantID", str)
"""The tenant a record belongs to; every table carries it."""

DEFAULT_TENANT = TenantID("default")


def new_task_id() -> TaskID:
    """A fresh task id: 32 hex characters, time-ordered (microseconds, then 72 random bits), so new
    rows land at the end of the database's indexes instead of all over them."""
    return TaskID(f"{time.time_ns() // 1000:014x}{os.urandom(9).hex()}")

TaskStatus = Literal["queued", "waiting", "running", "completed", "failed", "cancelled", "timed_out"]
TASK_STATUSES: tuple[TaskStatus, ...] = (
    "queued", "waiting", "running", "completed", "failed", "cancelled", "timed_out",
)
TERMINAL_STATUSES: frozenset[str] = frozenset({"completed", "failed", "cancelled", "timed_out"})
"""Statuses a task never leaves."""

Priority = Literal["critical", "high", "medium", "low"]
PRIORITY_LEVELS: Mapping[str, int] = {"critical": 0, "high": 1, "medium": 2, "low": 3}
"""Priority name -> rank (lower starts first)."""

AttemptStatus = Literal["running", "completed", "failed", "cancelled", "timed_out", "lost", "handed_back"]


@dataclass(frozen=True, slots=True)
class TaskRetry:
    """How often a task whose run *failed* is run again, and how long to wait in between.

    `max_attempts` counts runs, the first included (1 = never retry). Only a ``failed`` run is
    retried; ``timed_out`` and ``cancelled`` are final. The n-th retry waits
    ``min(max_backoff_s, backoff_s * backoff_factor ** (n - 1))``.
    """

    max_attempts: int = 1
    backoff_s: float = 1.0
    backoff_factor: float = 2.0
    max_backoff_s: float = 300.0

    def delay(self, failures: int) -> float | None:
        """Seconds before the next run after `failures` failed runs, or None when none is left."""
        if failures >= self.max_attempts:
            return None
        return min(self.max_backoff_s, self.backoff_s * self.backoff_factor ** max(0, failures - 1))


@dataclass(frozen=True, slots=True, init=False)
class SubmitOptions(RunOptions):
    """How to run a durable task, taken as keyword arguments only: `RunOptions`, and where the task
    sits in the queue. Raises `InvalidTask` (an `InvalidOptions`) naming the argument for a value the
    engine cannot use.

    Attributes:
        priority: ``critical``, ``high``, ``medium`` or ``low``.
        after: ids of tasks that must complete first (a tuple; one string is one id).
        retry: how often a failed run is run again.
        idempotency_key: submitting the same key again (in the tenant) returns the first task.
        tenant_id: the tenant the task belongs to.
    """

    priority: Priority
    after: tuple[str, ...]
    retry: TaskRetry
    idempotency_key: str | None
    tenant_id: str

    def __init__(
        self,
        *,
        strategy: str = "auto",
        agents: str | Sequence[str] | None = None,
        capabilities: str | Sequence[str] = (),
        options: Mapping[str, Any] | None = None,
        context: Mapping[str, Any] | None = None,
        timeout_s: float | None = None,
        tools: str | Sequence[str] | None = None,
        allow_failover_outside: bool = False,
        priority: Priority = "medium",
        after: str | Sequence[str] = (),
        retry: TaskRetry = TaskRetry(),
        idempotency_key: str | None = None,
        tenant_id: str = DEFAULT_TENANT,
    ) -> None:
        try:
            RunOptions.__init__(self, strategy=strategy, agents=agents, capabilities=capabilities, options=options,
                                context=context, timeout_s=timeout_s, tools=tools,
                                allow_failover_outside=allow_failover_outside)
            deps = names("after", after)
        except InvalidOptions as exc:
            raise InvalidTask(str(exc)) from None
        if priority not in PRIORITY_LEVELS:
            raise InvalidTask(f"unknown priority {priority!r} (choose from {', '.join(PRIORITY_LEVELS)})")
        r = retry
        if not isinstance(r, TaskRetry) or r.max_attempts < 1 or r.backoff_s < 0 or r.backoff_factor < 1:
            raise InvalidTask(f"bad retry policy {retry}: max_attempts >= 1, backoff_s >= 0, backoff_factor >= 1")
        if idempotency_key is not None and (not isinstance(idempotency_key, str) or not idempotency_key.strip()):
            raise InvalidTask(f"idempotency_key must be a non-empty string, not {idempotency_key!r}")
        if not isinstance(tenant_id, str) or not tenant_id:
            raise InvalidTask("tenant_id is empty")
        put = object.__setattr__
        put(self, "priority", priority)
        put(self, "after", deps)
        put(self, "retry", retry)
        put(self, "idempotency_key", idempotency_key)
        put(self, "tenant_id", tenant_id)


@dataclass(frozen=True, slots=True, kw_only=True)
class TaskRequest:
    """What was submitted: everything a worker needs to run the task, as the caller gave it,
    plus the plan resolved at submission (`strategy` is never ``auto`` after planning). Built with
    keyword arguments only."""

    prompt: str
    strategy: str
    agents: tuple[str, ...]
    """The agents of the resolved plan, in the strategy's order."""
    capabilities: tuple[str, ...] = ()
    options: Mapping[str, Any] = field(default_factory=dict)
    context: Mapping[str, Any] = field(default_factory=dict)
    priority: Priority = "medium"
    after: tuple[TaskID, ...] = ()
    timeout_s: float | None = None
    retry: TaskRetry = TaskRetry()
    idempotency_key: str | None = None
    tenant_id: TenantID = DEFAULT_TENANT
    reason: str = ""
    """Why the strategy was chosen: ``auto``'s reason, or "chosen by the caller" (empty in tasks
    stored before that was recorded)."""
    trace: Mapping[str, str] = field(default_factory=dict)
    """The submitter's trace context (W3C ``traceparent``/``tracestate``) when tracing is on, so that the
    worker's spans join the submitter's trace; empty otherwise."""
    tools: tuple[str, ...] | None = None
    """The tools the run allows, narrowing each agent's allow-list; None: each agent's own list."""
    failover_within: tuple[str, ...] | None = None
    """The agents failover may use (those the caller named, unless it allowed failover outside them);
    None: any agent with the capabilities."""


@dataclass(frozen=True, slots=True)
class Task:
    """A task as stored: its request, where it is in its lifecycle, and what it produced."""

    id: TaskID
    status: TaskStatus
    request: TaskRequest
    created_at: float
    started_at: float | None = None
    finished_at: float | None = None
    attempts: int = 0
    """Runs started (claims), crash resumptions included."""
    failures: int = 0
    """Runs that ended ``failed``; compared with `TaskRetry.max_attempts`."""
    dead: bool = False
    """Failed with no retry left (a dead letter)."""
    error: str | None = None
    output: str = ""
    usage: Usage = Usage()
    cost_usd: float = 0.0
    result: Mapping[str, Any] | None = None
    """The last run's `RunResult.to_dict()`, once it ended."""
    lease_owner: WorkerID | None = None
    lease_epoch: int = 0
    cancel_requested: bool = False

    @property
    def tenant_id(self) -> TenantID:
        """The tenant the task belongs to."""
        return self.request.tenant_id

    @property
    def terminal(self) -> bool:
        """True when the task has ended and will never run again."""
        return self.status in TERMINAL_STATUSES

    def to_dict(self) -> dict[str, Any]:
        """JSON form, for the CLI and the API."""
        r = self.request
        return {
            "id": self.id, "tenant_id": r.tenant_id, "status": self.status, "prompt": r.prompt,
            "strategy": r.strategy, "agents": list(r.agents), "capabilities": list(r.capabilities),
            "priority": r.priority, "after": list(r.after), "timeout_s": r.timeout_s,
            "idempotency_key": r.idempotency_key, "created_at": self.created_at,
            "started_at": self.started_at, "finished_at": self.finished_at, "attempts": self.attempts,
            "failures": self.failures, "dead": self.dead, "error": self.error, "output": self.output,
            "usage": self.usage.as_dict(), "cost_usd": round(self.cost_usd, 10),
            "cancel_requested": self.cancel_requested,
            "tools": None if r.tools is None else list(r.tools),
        }


@dataclass(frozen=True, slots=True)
class Submitted:
    """What `TaskEngine.submit` answers: the task as committed, and whether the submission was an
    idempotent replay (its key named an earlier task, which `task` then is; nothing was queued)."""

    task: Task
    replayed: bool = False

    @property
    def id(self) -> TaskID:
        """The task's id."""
        return self.task.id


@dataclass(frozen=True, slots=True)
class Attempt:
    """One run of a task by one lease holder (a crash leaves it ``lost``; the next claim adds one)."""

    task_id: TaskID
    attempt: int
    epoch: int
    worker_id: WorkerID
    started_at: float
    finished_at: float | None
    status: AttemptStatus
    error: str | None = None


@dataclass(frozen=True, slots=True)
class TaskEvent:
    """One entry of a task's event log: `seq` orders it within the task (1, 2, 3... without gaps),
    `type` and `data` are the event's `to_dict()` form (runtime events and lifecycle events)."""

    task_id: TaskID
    seq: int
    type: str
    data: Mapping[str, Any]

    def to_dict(self) -> dict[str, Any]:
        """JSON form: the event's own fields plus its task id and sequence number."""
        return {**self.data, "task_id": self.task_id, "seq": self.seq}

    @property
    def event(self) -> Event:
        """The typed event this entry logs (`decode_event` of `data`; raises `EventDecodeError` for
        data that is no event)."""
        return decode_event(self.data)


@dataclass(frozen=True, slots=True)
class WorkerInfo:
    """A worker's heartbeat row."""

    id: WorkerID
    host: str
    pid: int
    concurrency: int
    started_at: float
    heartbeat_at: float
    status: Literal["running", "stopped"]
    running: int = 0
