"""The two operations every durable run queues, as records a store writes set-wide.

A durable run submits its task claimed (`submit` with a holder) and records its end (`finish`). The
engine queues those operations together with their parameters as one of the two records below, and
a store writes the records of a whole batch with a few set-wide statements (one `executemany` per
table on SQLite, one statement for all on PostgreSQL) instead of driving each operation. A record the
set-wide statements did not write (a task id that exists already, a lease taken over, a task others
depend on) is handed to its operation, which then runs as usual and decides.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from ._codec import lifecycle_json
from ._ops import ClaimNext, RunEnd, finish, submit
from ._queue import sort_key
from ._stmt import Claim, Dialect, Op, Outcome
from .events import TaskFinished, TaskQueued, TaskStarted
from .task import TaskEvent, TaskID, TaskRequest, TaskRetry, WorkerID


@dataclass(slots=True)
class SubmitClaimed:
    """`submit` of a fresh task claimed at submission by `holder`: no dependency, no idempotency key."""

    task_id: str
    tenant: str
    priority: str
    sort_key: float
    now: float
    request_json: str
    holder: str
    lease_expires: float
    timeout_s: float | None
    deadline_at: float | None
    claim: Claim

    def task_row(self) -> tuple[Any, ...]:
        """The values of `SUBMIT_TASK_COLUMNS`."""
        now = self.now
        return (self.task_id, self.tenant, self.priority, self.sort_key, now, self.request_json, now, self.holder,
                self.lease_expires, now, self.timeout_s, self.deadline_at)

    def event_rows(self) -> tuple[tuple[Any, ...], tuple[Any, ...]]:
        """The task's first two events (queued, started) as rows of the events table."""
        tid, tenant, now = self.task_id, self.tenant, self.now
        return ((tid, 1, tenant, 0, "task_queued", _queued_json(self.priority), now),
                (tid, 2, tenant, 1, "task_started", _first_start_json(self.holder), now))

    def outcome(self, listening: Callable[[str], bool]) -> Outcome:
        """What the `submit` operation would have returned (its events only when someone in this
        process follows the task: they are only delivered here)."""
        tid = self.claim.task.id
        if not listening(tid):
            return Outcome(self.claim)
        return Outcome(self.claim, [
            TaskEvent(tid, 1, "task_queued", TaskQueued(self.priority).to_dict()),
            TaskEvent(tid, 2, "task_started", TaskStarted(1, 1, self.holder, False).to_dict()),
        ])



_QUEUED_JSON: dict[str, str] = {}
_FIRST_START_JSON: dict[str, str] = {}


def _queued_json(priority: str) -> str:
    """The JSON of `TaskQueued(priority)` (the same few texts for every submission: kept)."""
    text = _QUEUED_JSON.get(priority)
    if text is None:
        text = _QUEUED_JSON[priority] = lifecycle_json(TaskQueued(priority))
    return text


def _first_start_json(holder: str) -> str:
    """The JSON of a first attempt's `TaskStarted` under `holder` (a process has a few holders: kept,
    up to a bound)."""
    text = _FIRST_START_JSON.get(holder)
    if text is None:
        text = lifecycle_json(TaskStarted(1, 1, holder, False))
        if len(_FIRST_START_JSON) < 1024:
            _FIRST_START_JSON[holder] = text
    return text


SUBMIT_TASK_COLUMNS = (
    "id, tenant_id, priority, sort_key, ready_at, request, created_at, lease_owner, lease_expires, started_at, "
    "timeout_s, deadline_at"
)
"""The columns of `SubmitClaimed.task_row` (the others: status running, attempts 1, lease_epoch 1)."""


def submit_claimed(
    d: Dialect, task_id: str, r: TaskRequest, request_json: str, now: float, aging_s: float, holder: WorkerID,
    lease_s: float, claim: Claim,
) -> tuple[Op[Outcome], SubmitClaimed]:
    """The `submit` operation of a task claimed at submission by `holder`, and its record."""
    op = submit(d, task_id, r, request_json, now, aging_s, holder=holder, lease_s=lease_s, claim=claim)
    fast = SubmitClaimed(
        task_id, r.tenant_id, r.priority, sort_key(r.priority, now, aging_s), now, request_json, holder,
        now + lease_s, r.timeout_s, now + r.timeout_s if r.timeout_s is not None else None, claim,
    )
    return op, fast


@dataclass(slots=True)
class FinishFinal:
    """`finish` of a run that did not fail (its task ends as the run did)."""

    task_id: str
    epoch: int
    seq: int
    status: str
    now: float
    error: str | None
    output: str
    input_tokens: int
    output_tokens: int
    cost_usd: float
    result_json: str | None
    event: TaskFinished
    event_json: str
    """The ``task_finished`` event, and its JSON."""

    def task_row(self) -> tuple[Any, ...]:
        """(id, epoch, then the values of `FINISH_TASK_COLUMNS`)."""
        return (self.task_id, self.epoch, self.status, self.now, self.error, self.output, self.input_tokens,
                self.output_tokens, self.cost_usd, self.result_json)

    def outcome(self, listening: Callable[[str], bool]) -> Outcome:
        """What the `finish` operation would have returned (its event only when someone here follows
        the task)."""
        if not listening(self.task_id):
            return Outcome()
        return Outcome(None, [TaskEvent(TaskID(self.task_id), self.seq, "task_finished", self.event.to_dict())])


FINISH_TASK_COLUMNS = (
    "status", "finished_at", "error", "output", "input_tokens", "output_tokens", "cost_usd", "result",
)
"""The columns a `FinishFinal` sets (and lease_owner, lease_expires to NULL)."""


def finish_op(
    d: Dialect, task_id: str, epoch: int, seq: int, end: RunEnd, now: float, aging_s: float, retry: TaskRetry | None,
    claim_next: ClaimNext | None = None,
) -> tuple[Op[Outcome], FinishFinal | None]:
    """The `finish` operation, and its record when the run did not fail (None: it runs as it is). The
    record is written only for a task no other depends on, so `claim_next` only reaches the operation."""
    op = finish(d, task_id, epoch, seq, end, now, aging_s, retry, claim_next)
    if end.status == "failed":
        return op, None
    usage = {"input_tokens": end.input_tokens, "output_tokens": end.output_tokens,
             "total_tokens": end.input_tokens + end.output_tokens}
    ev = TaskFinished(end.status, end.error, end.output, usage, end.cost_usd, False)
    return op, FinishFinal(task_id, epoch, seq, end.status, now, end.error, end.output, end.input_tokens,
                           end.output_tokens, end.cost_usd, end.result_json, ev, lifecycle_json(ev))


FastOp = SubmitClaimed | FinishFinal
"""An operation's record (see above)."""
