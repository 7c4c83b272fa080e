"""How `TaskEngine` turns a submission into a stored request, and reads back what it committed:
the request (checked and planned at submission, so that a resumed run replays the same step keys),
the retry policy, the task a fresh submission committed, and what a replay under an idempotency key
asks differently from the task that key names."""

from __future__ import annotations

from typing import Any

from ..observe import trace_carrier
from ..runtime import InvalidOptions, PlannedRun, Runner
from ._codec import check_json
from .errors import InvalidTask
from .events import FINAL_EVENT
from .task import SubmitOptions, Task, TaskEvent, TaskID, TaskRequest, TaskRetry, TaskStatus, TenantID

_NO_RETRY = TaskRetry()


def retry_policy(value: TaskRetry | int | None) -> TaskRetry:
    """`retry` as a policy: None is one attempt, an int that many attempts (`SubmitOptions` checks it)."""
    if value is None:
        return _NO_RETRY
    if isinstance(value, TaskRetry):
        return value
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidTask(f"retry must be a TaskRetry or a number of attempts, not {value!r}")
    return TaskRetry(max_attempts=value)


def build_request(runner: Runner[Any], prompt: str, opts: SubmitOptions, task_id: str
                  ) -> tuple[TaskRequest, PlannedRun]:
    """The stored request of a submission, and its plan (`runner.plan`). Raises `InvalidTask` for
    options the runner refuses or values JSON cannot hold."""
    try:
        if opts.context:
            check_json("context", opts.context)
        if opts.options:
            check_json("options", opts.options)
    except TypeError as exc:
        raise InvalidTask(str(exc)) from None
    try:
        plan = runner.plan(prompt, opts, run_id=task_id)
    except InvalidOptions as exc:  # the runner refuses an option (a tool list naming no tool)
        if isinstance(exc, InvalidTask):
            raise
        raise InvalidTask(str(exc)) from None
    stored = plan.stored()
    request = TaskRequest(
        prompt=prompt, strategy=stored.kind, agents=stored.agents, capabilities=stored.capabilities,
        options=dict(stored.options), context=dict(stored.context), priority=opts.priority,
        after=tuple(TaskID(a) for a in opts.after), timeout_s=opts.timeout_s, retry=opts.retry,
        idempotency_key=opts.idempotency_key, tenant_id=TenantID(opts.tenant_id), reason=stored.reason,
        trace=trace_carrier(),
        tools=stored.tools, failover_within=stored.failover_within,
    )
    return request, plan


def submitted_task(task_id: TaskID, request: TaskRequest, now: float, first: TaskEvent) -> Task:
    """The task a submission just committed, from its request and the first event of its log
    (`task_queued`, `task_waiting`, or `task_finished` when a dependency had already ended badly),
    exactly as `get_task` would read it back."""
    if first.type == FINAL_EVENT:
        status: TaskStatus = first.data["status"]
        return Task(task_id, status, request, now, finished_at=now, error=first.data["error"])
    return Task(task_id, "waiting" if first.type == "task_waiting" else "queued", request, now)


def request_differences(earlier: TaskRequest, new: TaskRequest, opts: SubmitOptions) -> list[str]:
    """What a new submission under an idempotency key asks differently from the task that key names.
    The strategy and agents count only when the caller named them (an ``auto`` plan may choose
    differently on another day without being another request)."""
    differs = [name for name, a, b in (
        ("prompt", earlier.prompt, new.prompt),
        ("capabilities", tuple(earlier.capabilities), tuple(new.capabilities)),
        ("options", dict(earlier.options), dict(new.options)),
        ("context", dict(earlier.context), dict(new.context)),
        ("priority", earlier.priority, new.priority),
        ("after", tuple(earlier.after), tuple(new.after)),
        ("timeout_s", earlier.timeout_s, new.timeout_s),
        ("retry", earlier.retry, new.retry),
        ("tools", earlier.tools, new.tools),
        ("allow_failover_outside", earlier.failover_within is None, new.failover_within is None),
    ) if a != b]
    if opts.strategy != "auto" and earlier.strategy != new.strategy:
        differs.insert(1, "strategy")
    if opts.agents is not None and tuple(earlier.agents) != tuple(new.agents):
        differs.insert(1, "agents")
    return differs
