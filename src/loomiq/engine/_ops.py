"""The engine's transactions, written once for every dialect.

Each operation is a generator: it yields `Stmt`s and receives their results, and returns a value.
A dialect drives it inside one savepoint of its current group-commit batch: SQLite synchronously,
PostgreSQL with awaits on the batch's connection. The logic (who may write what, state transitions,
fencing, dependency propagation) lives here only; the drivers only run SQL. The two operations every
durable run queues (its claimed submission and its end) also come as records (`_records`) that a
dialect writes set-wide for a whole batch, handing a record it could not write to its operation.
Statements, operations, dialects, outcomes and claims are defined in `_stmt` (and importable from here).

Invariants every operation keeps:
- A holder's write names its lease epoch and changes nothing unless the task is still ``running``
  under that epoch (fencing): a holder whose lease was taken over gets `LeaseLost`.
- Events of a task not leased by the writer get ``seq = MAX(seq) + 1`` after the writer has locked or
  written the task's row, so two writers never compute the same number.
- Rows are locked in a fixed order where several are (dependents in id order) to avoid deadlocks.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from ._codec import TASK_COLUMNS, lifecycle_json, request_from_json, task_from_row
from ._queue import after_run, sort_key
from ._stmt import Claim as Claim
from ._stmt import Dialect as Dialect
from ._stmt import Op as Op
from ._stmt import Outcome as Outcome
from ._stmt import Stmt as Stmt
from .errors import DependencyError, LeaseLost, TaskNotFound
from .events import (
    LifecycleEvent,
    TaskFinished,
    TaskHandedBack,
    TaskQueued,
    TaskReady,
    TaskRetrying,
    TaskStarted,
    TaskWaiting,
)
from .task import Task, TaskEvent, TaskID, TaskRequest, TaskRetry, WorkerID


def _event(
    d: Dialect, task_id: str, tenant: str, epoch: int, ev: LifecycleEvent, now: float, seq: int | None = None
) -> Op[TaskEvent]:
    if seq is None:
        # The next number and the row in one statement (one round trip on PostgreSQL); the caller has
        # locked or written the task's row, so no other writer numbers this task's events meanwhile.
        seq = yield Stmt(_INSERT_NEXT_EVENT, (task_id, tenant, epoch, ev.type, lifecycle_json(ev), now, task_id), "val")
    else:
        yield Stmt(
            "INSERT INTO events (task_id, seq, tenant_id, epoch, type, data, created_at) VALUES (?, ?, ?, ?, ?, ?, ?)",
            (task_id, seq, tenant, epoch, ev.type, lifecycle_json(ev), now),
        )
    return TaskEvent(TaskID(task_id), seq, ev.type, ev.to_dict())


_INSERT_NEXT_EVENT = (
    "INSERT INTO events (task_id, seq, tenant_id, epoch, type, data, created_at) "
    "SELECT CAST(? AS TEXT), COALESCE(MAX(seq), 0) + 1, CAST(? AS TEXT), CAST(? AS INTEGER), CAST(? AS TEXT), "
    "CAST(? AS TEXT), CAST(? AS DOUBLE PRECISION) FROM events WHERE task_id = ? RETURNING seq"
)


def _finished(status: str, error: str | None, dead: bool = False) -> TaskFinished:
    return TaskFinished(status, error, "", {"input_tokens": 0, "output_tokens": 0, "total_tokens": 0}, 0.0, dead)


def submit(
    d: Dialect,
    task_id: str,
    r: TaskRequest,
    request_json: str,
    now: float,
    aging_s: float,
    holder: WorkerID | None = None,
    lease_s: float = 0.0,
    check_cycles: bool = False,
    claim: Claim | None = None,
) -> Op[Outcome]:
    """Insert a task (or find the one with the same idempotency key). With `holder`, a ready task is
    claimed by it in the same transaction (``run(durable=True)``); the outcome's value is then a
    `Claim` (`claim` when given: the caller's `claimed_at_submission`), else the task id."""
    out = Outcome()
    if r.idempotency_key is not None:
        existing = yield Stmt(
            "SELECT id FROM tasks WHERE tenant_id = ? AND idempotency_key = ?", (r.tenant_id, r.idempotency_key), "val"
        )
        if existing is not None:
            out.value = TaskID(existing)
            return out
    status, error = "queued", None
    if r.after:
        ids = list(dict.fromkeys(r.after))
        if task_id in ids:
            raise DependencyError(f"task {task_id} cannot depend on itself")
        where, args = d.in_("id", ids)
        # FOR SHARE: a dependency finishing concurrently waits for this insert, then sees it.
        rows = yield Stmt(f"SELECT id, status, tenant_id FROM tasks WHERE {where}{d.for_share}", args, "all")
        found = {row[0]: row[1] for row in rows if row[2] == r.tenant_id}
        missing = [i for i in ids if i not in found]
        if missing:
            raise DependencyError(f"unknown task id(s) in after: {', '.join(missing)}")
        if check_cycles:
            # Only a caller-chosen id can already be depended upon; walk up from the dependencies.
            frontier, seen = ids, set(ids)
            while frontier:
                where, args = d.in_("task_id", frontier)
                edges = yield Stmt(f"SELECT task_id, depends_on FROM task_dependencies WHERE {where}", args, "all")
                frontier = []
                for _, dep in edges:
                    if dep == task_id:
                        raise DependencyError(f"dependency cycle: task {task_id} would depend on itself")
                    if dep not in seen:
                        seen.add(dep)
                        frontier.append(dep)
        for dep in ids:
            st = found[dep]
            if st in ("failed", "timed_out"):
                status, error = "failed", f"dependency {dep} {st.replace('_', ' ')}"
                break
            if st == "cancelled":
                status, error = "cancelled", f"dependency {dep} was cancelled"
                break
            if st != "completed":
                status = "waiting"
    claimed = holder is not None and status == "queued"
    final = status in ("failed", "cancelled")
    if claimed and d.name == "postgresql" and not r.after and r.idempotency_key is None:
        # A task claimed at submission (``run(durable=True)``): its row, attempt and first two events
        # in one statement (one round trip).
        assert holder is not None
        started = TaskStarted(1, 1, holder, False)
        queued = TaskQueued(r.priority)
        yield Stmt(_PG_SUBMIT_CLAIMED, (
            task_id, r.tenant_id, r.priority, sort_key(r.priority, now, aging_s), now, request_json, now, holder,
            now + lease_s, now, r.timeout_s, now + r.timeout_s if r.timeout_s is not None else None,
            queued.type, lifecycle_json(queued), started.type, lifecycle_json(started),
        ), "val")
        tid = TaskID(task_id)
        out.events.append(TaskEvent(tid, 1, queued.type, queued.to_dict()))
        out.events.append(TaskEvent(tid, 2, started.type, started.to_dict()))
        out.value = claim if claim is not None else claimed_at_submission(tid, r, now, holder)
        return out
    inserted = yield Stmt(
        "INSERT INTO tasks (id, tenant_id, status, priority, sort_key, ready_at, request, idempotency_key, "
        "created_at, error, finished_at, attempts, lease_owner, lease_expires, lease_epoch, started_at, "
        "timeout_s, deadline_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) "
        "ON CONFLICT (tenant_id, idempotency_key) WHERE idempotency_key IS NOT NULL DO NOTHING RETURNING id",
        (
            task_id, r.tenant_id, "running" if claimed else status, r.priority,
            sort_key(r.priority, now, aging_s), now, request_json, r.idempotency_key, now, error,
            now if final else None, 1 if claimed else 0, holder if claimed else None,
            now + lease_s if claimed else None, 1 if claimed else 0, now if claimed else None, r.timeout_s,
            now + r.timeout_s if claimed and r.timeout_s is not None else None,
        ),
        "val",
    )
    if inserted is None:
        # Another transaction inserted the same idempotency key first (PostgreSQL waited for it).
        out.value = TaskID((yield Stmt(
            "SELECT id FROM tasks WHERE tenant_id = ? AND idempotency_key = ?", (r.tenant_id, r.idempotency_key), "val"
        )))
        return out
    if r.after:
        yield Stmt(
            "INSERT INTO task_dependencies (task_id, depends_on, tenant_id) VALUES (?, ?, ?)",
            [(task_id, dep, r.tenant_id) for dep in dict.fromkeys(r.after)], "many",
        )
    first: LifecycleEvent
    if final:
        first = _finished(status, error)
    elif status == "waiting":
        first = TaskWaiting(tuple(r.after))
    else:
        first = TaskQueued(r.priority)
    tid = TaskID(task_id)
    if not claimed:
        out.events.append((yield from _event(d, task_id, r.tenant_id, 0, first, now, 1)))
        out.value = tid
        out.work = status == "queued"
        if out.work and (n := d.notify("tasks", "")) is not None:
            yield n
        return out
    assert holder is not None
    yield Stmt(
        "INSERT INTO attempts (task_id, attempt, tenant_id, epoch, worker_id, started_at, status) "
        "VALUES (?, 1, ?, 1, ?, ?, 'running')", (task_id, r.tenant_id, holder, now),
    )
    started = TaskStarted(1, 1, holder, False)
    yield Stmt(  # both first events in one statement
        "INSERT INTO events (task_id, seq, tenant_id, epoch, type, data, created_at) "
        "VALUES (?, 1, ?, 0, ?, ?, ?), (?, 2, ?, 1, ?, ?, ?)",
        (task_id, r.tenant_id, first.type, lifecycle_json(first), now,
         task_id, r.tenant_id, started.type, lifecycle_json(started), now),
    )
    out.events.append(TaskEvent(tid, 1, first.type, first.to_dict()))
    out.events.append(TaskEvent(tid, 2, started.type, started.to_dict()))
    out.value = claim if claim is not None else claimed_at_submission(tid, r, now, holder)
    return out


_PG_SUBMIT_CLAIMED = (
    "WITH t AS (INSERT INTO tasks (id, tenant_id, status, priority, sort_key, ready_at, request, created_at, "
    "attempts, lease_owner, lease_expires, lease_epoch, started_at, timeout_s, deadline_at) "
    "VALUES (?, ?, 'running', ?, ?, ?, ?, ?, 1, ?, ?, 1, ?, ?, ?) RETURNING id, tenant_id, created_at, lease_owner), "
    "a AS (INSERT INTO attempts (task_id, attempt, tenant_id, epoch, worker_id, started_at, status) "
    "SELECT id, 1, tenant_id, 1, lease_owner, created_at, 'running' FROM t), "
    "e AS (INSERT INTO events (task_id, seq, tenant_id, epoch, type, data, created_at) "
    "SELECT t.id, v.seq, t.tenant_id, v.epoch, v.type, v.data, t.created_at FROM t, "
    "(VALUES (1, 0, ?::text, ?::text), (2, 1, ?::text, ?::text)) AS v(seq, epoch, type, data)) "
    "SELECT id FROM t"
)


def claimed_at_submission(task_id: TaskID, r: TaskRequest, now: float, holder: WorkerID) -> Claim:
    """The claim `submit` gives `holder` for a fresh, ready task (known before the commit)."""
    task = Task(task_id, "running", r, now, now, attempts=1, lease_owner=holder, lease_epoch=1)
    return Claim(task, 1, 3, now + r.timeout_s if r.timeout_s is not None else None)


def claim(d: Dialect, holder: WorkerID, n: int, now: float, lease_s: float,
          max_running: int | None = None) -> Op[Outcome]:
    """Claim up to `n` tasks for `holder`: first running tasks whose lease expired (their holder is
    gone), then queued tasks in rank order (see `_queue`). The value is a list of `Claim`.

    `max_running`: the most tasks running at once on the whole database. Taking over an expired
    lease does not change how many run; queued tasks are claimed only while fewer run, under the
    ``engine_locks`` row of claims, so that concurrent claimers in other processes cannot both take
    the last room."""
    out = Outcome(value=[])
    rows = yield Stmt(
        f"SELECT id FROM tasks WHERE status = 'running' AND lease_expires < ? ORDER BY lease_expires "
        f"LIMIT ?{d.skip_locked}", (now, n), "all",
    )
    ids = [row[0] for row in rows]
    room = n - len(ids)
    if room > 0 and max_running is not None:
        yield Stmt(f"SELECT name FROM engine_locks WHERE name = 'claim'{d.for_update}", (), "val")
        running = yield Stmt("SELECT count(*) FROM tasks WHERE status = 'running'", (), "val")
        room = min(room, max_running - running)
    if room > 0:
        rows = yield Stmt(
            f"SELECT id FROM tasks WHERE status = 'queued' AND ready_at <= ? ORDER BY sort_key, created_at, id "
            f"LIMIT ?{d.skip_locked}", (now, room), "all",
        )
        ids.extend(row[0] for row in rows)
    for tid in ids:
        row = yield Stmt(
            f"UPDATE tasks SET status = 'running', lease_owner = ?, lease_expires = ?, lease_epoch = lease_epoch + 1, "
            f"attempts = attempts + 1, started_at = COALESCE(started_at, ?), "
            f"deadline_at = COALESCE(deadline_at, ? + timeout_s) WHERE id = ? RETURNING {TASK_COLUMNS}, deadline_at",
            (holder, now + lease_s, now, now, tid), "one",
        )
        task = task_from_row(row[:-1])
        tenant = task.tenant_id
        yield Stmt(
            "UPDATE attempts SET status = 'lost', finished_at = ? WHERE task_id = ? AND status = 'running'", (now, tid)
        )
        yield Stmt(
            "INSERT INTO attempts (task_id, attempt, tenant_id, epoch, worker_id, started_at, status) "
            "VALUES (?, ?, ?, ?, ?, ?, 'running')", (tid, task.attempts, tenant, task.lease_epoch, holder, now),
        )
        resumed = task.lease_epoch > 1  # an earlier holder ran it: its journal replays
        ev = yield from _event(
            d, tid, tenant, task.lease_epoch, TaskStarted(task.attempts, task.lease_epoch, holder, resumed), now
        )
        out.events.append(ev)
        out.value.append(Claim(task, task.lease_epoch, ev.seq + 1, row[-1]))
    return out


def renew(d: Dialect, leases: Sequence[tuple[str, int, str]], now: float, lease_s: float) -> Op[Outcome]:
    """Extend the leases (task id, epoch, holder) still held; the value is the set of task ids
    whose lease was taken over (or that ended), which their holder must abandon."""
    lost: set[str] = set()
    for tid, epoch, holder in leases:
        n = yield Stmt(
            "UPDATE tasks SET lease_expires = ? WHERE id = ? AND lease_epoch = ? AND lease_owner = ? "
            "AND status = 'running'", (now + lease_s, tid, epoch, holder),
        )
        if not n:
            lost.add(tid)
    return Outcome(value=lost)


@dataclass(frozen=True, slots=True)
class RunEnd:
    """How a holder's run of a task ended, for `finish`."""

    status: str
    error: str | None
    output: str
    input_tokens: int
    output_tokens: int
    cost_usd: float
    result_json: str | None


@dataclass(frozen=True, slots=True)
class ClaimNext:
    """A finish that makes dependents ready also claims the next task for `holder` (the worker whose
    run ended, and whose slot it frees) in the same transaction: a chain of tasks goes on without a
    wake-up and a claim of its own per link. The claim is `claim`'s for one task (expired leases first,
    then the queue in rank order, under `max_running`), so it takes the dependent only when no other
    task comes first."""

    holder: WorkerID
    lease_s: float
    max_running: int | None


def finish(
    d: Dialect, task_id: str, epoch: int, seq: int, end: RunEnd, now: float, aging_s: float,
    retry: TaskRetry | None = None, claim_next: ClaimNext | None = None,
) -> Op[Outcome]:
    """Record the end of a run under lease `epoch`: the task's final state (and dependents'), or a
    retry when the run failed and attempts are left. Raises `LeaseLost` if the lease is gone.
    `retry`: the task's retry policy when the caller has its request (else it is read). With
    `claim_next`, a finish that makes dependents ready claims one task for its holder (see
    `ClaimNext`); the outcome's value is then the list of `Claim` (else None)."""
    if end.status != "failed":
        return (yield from _finish_final(d, task_id, epoch, seq, end, now, aging_s, claim_next))
    row = yield Stmt(
        f"SELECT failures, attempts, priority, tenant_id{'' if retry is not None else ', request'} FROM tasks "
        f"WHERE id = ? AND lease_epoch = ? AND status = 'running'{d.for_update}", (task_id, epoch), "one",
    )
    if row is None:
        raise LeaseLost(f"task {task_id}: lease epoch {epoch} was taken over; its end was not recorded")
    failures, attempt, priority, tenant = row[:4]
    if retry is None:
        retry = request_from_json(row[4]).retry
    decision = after_run(end.status, failures, retry)
    out = Outcome()
    attempt_status = end.status
    yield Stmt(
        "UPDATE attempts SET status = ?, finished_at = ?, error = ? WHERE task_id = ? AND attempt = ?",
        (attempt_status, now, end.error, task_id, attempt),
    )
    if decision[0] == "retry":
        delay = decision[1]
        yield Stmt(
            "UPDATE tasks SET status = 'queued', failures = failures + 1, lease_owner = NULL, lease_expires = NULL, "
            "ready_at = ?, sort_key = ?, error = ?, input_tokens = ?, output_tokens = ?, cost_usd = ?, result = ? "
            "WHERE id = ?",
            (now + delay, sort_key(priority, now + delay, aging_s), end.error, end.input_tokens,
             end.output_tokens, end.cost_usd, end.result_json, task_id),
        )
        # Failed steps are tried again on the next attempt; answered ones replay.
        yield Stmt("DELETE FROM steps WHERE task_id = ? AND ok = 0", (task_id,))
        out.events.append((yield from _event(
            d, task_id, tenant, epoch, TaskRetrying(attempt, end.error, delay), now, seq
        )))
        out.work = True
        return out
    _, status, dead = decision
    yield Stmt(
        "UPDATE tasks SET status = ?, finished_at = ?, error = ?, output = ?, input_tokens = ?, output_tokens = ?, "
        "cost_usd = ?, result = ?, dead = ?, failures = failures + ?, lease_owner = NULL, lease_expires = NULL "
        "WHERE id = ?",
        (status, now, end.error, end.output, end.input_tokens, end.output_tokens, end.cost_usd, end.result_json,
         int(dead), int(status == "failed"), task_id),
    )
    usage = {"input_tokens": end.input_tokens, "output_tokens": end.output_tokens,
             "total_tokens": end.input_tokens + end.output_tokens}
    out.events.append((yield from _event(
        d, task_id, tenant, epoch, TaskFinished(status, end.error, end.output, usage, end.cost_usd, dead), now, seq
    )))
    if status == "completed":
        yield from _promote_dependents(d, task_id, now, aging_s, out, claim_next)
    else:
        yield from _cascade(d, task_id, status, now, out)
    return out


def _finish_final(d: Dialect, task_id: str, epoch: int, seq: int, end: RunEnd, now: float, aging_s: float,
                  claim_next: ClaimNext | None = None) -> Op[Outcome]:
    """`finish` of a run that did not fail: the task ends as the run did whatever its failures
    (`_queue.after_run`), so the fence and the update are one statement (on PostgreSQL, with the
    attempt and the event: one round trip)."""
    status = end.status
    usage = {"input_tokens": end.input_tokens, "output_tokens": end.output_tokens,
             "total_tokens": end.input_tokens + end.output_tokens}
    ev = TaskFinished(status, end.error, end.output, usage, end.cost_usd, False)
    text = lifecycle_json(ev)
    columns = (status, now, end.error, end.output, end.input_tokens, end.output_tokens, end.cost_usd, end.result_json)
    if d.name == "postgresql":
        row = yield Stmt(_PG_FINISH_FINAL, (*columns, task_id, epoch, seq, text), "one")
    else:
        row = yield Stmt(
            "UPDATE tasks SET status = ?, finished_at = ?, error = ?, output = ?, input_tokens = ?, output_tokens = ?, "
            "cost_usd = ?, result = ?, lease_owner = NULL, lease_expires = NULL "
            "WHERE id = ? AND lease_epoch = ? AND status = 'running' "
            "RETURNING attempts, tenant_id, EXISTS (SELECT 1 FROM task_dependencies WHERE depends_on = id)",
            (*columns, task_id, epoch), "one",
        )
    if row is None:
        raise LeaseLost(f"task {task_id}: lease epoch {epoch} was taken over; its end was not recorded")
    attempt, tenant, dependents = row
    if d.name != "postgresql":
        yield Stmt(
            "UPDATE attempts SET status = ?, finished_at = ?, error = ? WHERE task_id = ? AND attempt = ?",
            (status, now, end.error, task_id, attempt),
        )
        yield Stmt(
            "INSERT INTO events (task_id, seq, tenant_id, epoch, type, data, created_at) VALUES (?, ?, ?, ?, ?, ?, ?)",
            (task_id, seq, tenant, epoch, ev.type, text, now),
        )
    out = Outcome()
    out.events.append(TaskEvent(TaskID(task_id), seq, ev.type, ev.to_dict()))
    if dependents:
        if status == "completed":
            yield from _promote_dependents(d, task_id, now, aging_s, out, claim_next)
        else:
            yield from _cascade(d, task_id, status, now, out)
    return out


_PG_FINISH_FINAL = (
    "WITH t AS (UPDATE tasks SET status = ?, finished_at = ?, error = ?, output = ?, input_tokens = ?, "
    "output_tokens = ?, cost_usd = ?, result = ?, lease_owner = NULL, lease_expires = NULL "
    "WHERE id = ? AND lease_epoch = ? AND status = 'running' RETURNING id, attempts, tenant_id, status, finished_at, "
    "error, lease_epoch), "
    "a AS (UPDATE attempts SET status = t.status, finished_at = t.finished_at, error = t.error FROM t "
    "WHERE attempts.task_id = t.id AND attempts.attempt = t.attempts), "
    "e AS (INSERT INTO events (task_id, seq, tenant_id, epoch, type, data, created_at) "
    "SELECT t.id, ?, t.tenant_id, t.lease_epoch, 'task_finished', ?, t.finished_at FROM t) "
    "SELECT attempts, tenant_id, EXISTS (SELECT 1 FROM task_dependencies WHERE depends_on = t.id) FROM t"
)


def _promote_dependents(d: Dialect, task_id: str, now: float, aging_s: float, out: Outcome,
                        claim_next: ClaimNext | None = None) -> Op[None]:
    rows = yield Stmt(
        "SELECT td.task_id FROM task_dependencies td JOIN tasks t ON t.id = td.task_id "
        "WHERE td.depends_on = ? AND t.status = 'waiting' ORDER BY td.task_id", (task_id,), "all",
    )
    for (dep_id,) in rows:
        # Lock the dependent first: two dependencies finishing at once then see each other's commit.
        row = yield Stmt(
            f"SELECT priority, tenant_id FROM tasks WHERE id = ? AND status = 'waiting'{d.for_update}", (dep_id,), "one"
        )
        if row is None:
            continue
        left = yield Stmt(
            "SELECT COUNT(*) FROM task_dependencies td JOIN tasks t ON t.id = td.depends_on "
            "WHERE td.task_id = ? AND t.status <> 'completed'", (dep_id,), "val",
        )
        if left:
            continue
        priority, tenant = row
        yield Stmt(
            "UPDATE tasks SET status = 'queued', ready_at = ?, sort_key = ? WHERE id = ?",
            (now, sort_key(priority, now, aging_s), dep_id),
        )
        out.events.append((yield from _event(d, dep_id, tenant, 0, TaskReady(), now)))
        out.work = True
    if out.work and claim_next is not None:
        took = yield from claim(d, claim_next.holder, 1, now, claim_next.lease_s, claim_next.max_running)
        out.value = took.value
        out.events.extend(took.events)
    if out.work and (n := d.notify("tasks", "")) is not None:
        yield n


def _cascade(d: Dialect, task_id: str, status: str, now: float, out: Outcome) -> Op[None]:
    """End every task waiting (directly or not) on `task_id`, naming the dependency that ended it."""
    frontier = [(task_id, status)]
    while frontier:
        dep, dep_status = frontier.pop()
        rows = yield Stmt(
            "SELECT td.task_id, t.tenant_id FROM task_dependencies td JOIN tasks t ON t.id = td.task_id "
            "WHERE td.depends_on = ? AND t.status = 'waiting' ORDER BY td.task_id", (dep,), "all",
        )
        for dependent, tenant in rows:
            if dep_status == "cancelled":
                new_status, error = "cancelled", f"dependency {dep} was cancelled"
            else:
                new_status, error = "failed", f"dependency {dep} {dep_status.replace('_', ' ')}"
            n = yield Stmt(
                "UPDATE tasks SET status = ?, error = ?, finished_at = ? WHERE id = ? AND status = 'waiting'",
                (new_status, error, now, dependent),
            )
            if n:
                out.events.append((yield from _event(d, dependent, tenant, 0, _finished(new_status, error), now)))
                frontier.append((dependent, new_status))


def hand_back(d: Dialect, task_id: str, epoch: int, seq: int, holder: WorkerID, now: float) -> Op[Outcome]:
    """Release a task held under `epoch` so that another holder claims it at once (it keeps its place
    in the queue, and its journal)."""
    row = yield Stmt(
        "UPDATE tasks SET status = 'queued', lease_owner = NULL, lease_expires = NULL, ready_at = ? "
        "WHERE id = ? AND lease_epoch = ? AND status = 'running' RETURNING attempts, tenant_id",
        (now, task_id, epoch), "one",
    )
    if row is None:
        raise LeaseLost(f"task {task_id}: lease epoch {epoch} was taken over; not handed back")
    attempt, tenant = row
    yield Stmt(
        "UPDATE attempts SET status = 'handed_back', finished_at = ? WHERE task_id = ? AND attempt = ?",
        (now, task_id, attempt),
    )
    out = Outcome(work=True)
    out.events.append((yield from _event(d, task_id, tenant, epoch, TaskHandedBack(attempt, holder), now, seq)))
    if (n := d.notify("tasks", "")) is not None:
        yield n
    return out


def cancel(d: Dialect, task_id: str, now: float) -> Op[Outcome]:
    """Cancel a task: a queued or waiting one ends ``cancelled`` here (with its dependents); a
    running one is marked, and its holder ends it. The value is the status the task had."""
    row = yield Stmt(f"SELECT status, tenant_id FROM tasks WHERE id = ?{d.for_update}", (task_id,), "one")
    if row is None:
        raise TaskNotFound(f"no task {task_id}")
    status, tenant = row
    out = Outcome(value=status)
    if status in ("queued", "waiting"):
        error = "cancelled by request"
        yield Stmt(
            "UPDATE tasks SET status = 'cancelled', error = ?, finished_at = ? WHERE id = ?", (error, now, task_id)
        )
        out.events.append((yield from _event(d, task_id, tenant, 0, _finished("cancelled", error), now)))
        yield from _cascade(d, task_id, "cancelled", now, out)
    elif status == "running":
        yield Stmt("UPDATE tasks SET cancel_requested = 1 WHERE id = ?", (task_id,))
        if (n := d.notify("cancel", task_id)) is not None:
            yield n
    return out


def register_worker(
    d: Dialect, worker_id: str, host: str, pid: int, concurrency: int, now: float, tenant: str = "default"
) -> Op[Outcome]:
    """Insert (or restart) a worker's heartbeat row."""
    yield Stmt(
        "INSERT INTO workers (id, tenant_id, host, pid, concurrency, running, started_at, heartbeat_at, status) "
        "VALUES (?, ?, ?, ?, ?, 0, ?, ?, 'running') ON CONFLICT (id) DO UPDATE SET status = 'running', "
        "heartbeat_at = excluded.heartbeat_at",
        (worker_id, tenant, host, pid, concurrency, now, now),
    )
    return Outcome()


def heartbeat(d: Dialect, worker_id: str, running: int, now: float, status: str = "running") -> Op[Outcome]:
    """Update a worker's heartbeat row."""
    yield Stmt(
        "UPDATE workers SET heartbeat_at = ?, running = ?, status = ? WHERE id = ?", (now, running, status, worker_id)
    )
    return Outcome()
