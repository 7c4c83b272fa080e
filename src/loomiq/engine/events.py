"""Task lifecycle events, and the in-process hub that delivers task events live.

A task's event log holds, in `seq` order, the runtime's events (`run_started`, `step_started`,
`text_delta`, `step_finished`, `agent_failed_over`, `run_finished`; their `to_dict()` form) and the
lifecycle events below. Every task's log ends with exactly one `task_finished`.

Delivery. Events of a task leased by this process get their `seq` here and reach this process's
subscribers at once, before the batch that logs them commits; events written by a transaction
(submission, claim, finish, cancellation) reach them when it commits. Other processes see the log:
PostgreSQL wakes them with NOTIFY, SQLite by polling. `TaskEngine.events` joins the two into one
stream with no gap and no duplicate.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, ClassVar

from .task import TaskEvent


@dataclass(frozen=True, slots=True)
class TaskQueued:
    """The task was accepted and is ready to be claimed."""

    type: ClassVar[str] = "task_queued"
    priority: str

    def to_dict(self) -> dict[str, Any]:
        """JSON form."""
        return {"type": self.type, "priority": self.priority}


@dataclass(frozen=True, slots=True)
class TaskWaiting:
    """The task was accepted and waits for the tasks it depends on."""

    type: ClassVar[str] = "task_waiting"
    after: tuple[str, ...]

    def to_dict(self) -> dict[str, Any]:
        """JSON form."""
        return {"type": self.type, "after": list(self.after)}


@dataclass(frozen=True, slots=True)
class TaskReady:
    """Every dependency completed: the task is queued."""

    type: ClassVar[str] = "task_ready"

    def to_dict(self) -> dict[str, Any]:
        """JSON form."""
        return {"type": self.type}


@dataclass(frozen=True, slots=True)
class TaskStarted:
    """A holder claimed the task (`resumed`: an earlier holder ran it, whose lease expired, who handed
    it back, or whose attempt failed and is retried; the run replays what that journal holds, as
    `Claim.resumed` says)."""

    type: ClassVar[str] = "task_started"
    attempt: int
    epoch: int
    worker: str
    resumed: bool

    def to_dict(self) -> dict[str, Any]:
        """JSON form."""
        return {"type": self.type, "attempt": self.attempt, "epoch": self.epoch, "worker": self.worker,
                "resumed": self.resumed}


@dataclass(frozen=True, slots=True)
class TaskRetrying:
    """A run failed and the task is queued again after `delay_s`."""

    type: ClassVar[str] = "task_retrying"
    attempt: int
    error: str | None
    delay_s: float

    def to_dict(self) -> dict[str, Any]:
        """JSON form."""
        return {"type": self.type, "attempt": self.attempt, "error": self.error, "delay_s": self.delay_s}


@dataclass(frozen=True, slots=True)
class TaskHandedBack:
    """A stopping worker released the task; the next claim resumes it from its journal."""

    type: ClassVar[str] = "task_handed_back"
    attempt: int
    worker: str

    def to_dict(self) -> dict[str, Any]:
        """JSON form."""
        return {"type": self.type, "attempt": self.attempt, "worker": self.worker}


@dataclass(frozen=True, slots=True)
class TaskFinished:
    """The task ended for good: the last event of its log."""

    type: ClassVar[str] = "task_finished"
    status: str
    error: str | None
    output: str
    usage: dict[str, int]
    cost_usd: float
    dead: bool = False

    def to_dict(self) -> dict[str, Any]:
        """JSON form."""
        return {"type": self.type, "status": self.status, "error": self.error, "output": self.output,
                "usage": self.usage, "cost_usd": self.cost_usd, "dead": self.dead}


LifecycleEvent = TaskQueued | TaskWaiting | TaskReady | TaskStarted | TaskRetrying | TaskHandedBack | TaskFinished
"""Every lifecycle event the engine logs."""

FINAL_EVENT = TaskFinished.type

MAX_SEQ = 2**31 - 1
"""The largest event sequence number a log can hold (``events.seq`` is a 32-bit INTEGER on
PostgreSQL): a position past it is past every event."""

_POKE = None  # a queue item meaning "the log changed elsewhere: read it again"


class EventHub:
    """In-process fan-out of task events to subscribers, and the "work is available" signal.

    Lives on one event loop (the store's). Publishing costs a dict lookup when nobody listens.
    """

    def __init__(self) -> None:
        self._subs: dict[str, set[asyncio.Queue[TaskEvent | None]]] = {}
        self.work_listeners: set[Callable[[], None]] = set()
        """Called when a task may have become claimable (workers register their wake-up here)."""
        self.on_followed: Callable[[bool], None] | None = None
        """Called with True when the first subscription starts, False when the last one ends (a
        store listens for other processes' events only while someone here follows a task)."""

    @property
    def followed(self) -> bool:
        """Whether anyone in this process follows any task."""
        return bool(self._subs)

    def subscribe(self, task_id: str) -> asyncio.Queue[TaskEvent | None]:
        """A queue receiving the task's events (and None when the log changed in another process)."""
        q: asyncio.Queue[TaskEvent | None] = asyncio.Queue()
        first = not self._subs
        self._subs.setdefault(task_id, set()).add(q)
        if first and self.on_followed is not None:
            self.on_followed(True)
        return q

    def unsubscribe(self, task_id: str, q: asyncio.Queue[TaskEvent | None]) -> None:
        """Stop delivering to `q`."""
        subs = self._subs.get(task_id)
        if subs is not None:
            subs.discard(q)
            if not subs:
                del self._subs[task_id]
                if not self._subs and self.on_followed is not None:
                    self.on_followed(False)

    def listening(self, task_id: str) -> bool:
        """Whether someone in this process follows the task's events."""
        return task_id in self._subs

    def publish(self, event: TaskEvent) -> None:
        """Deliver `event` to the task's subscribers."""
        subs = self._subs.get(event.task_id)
        if subs:
            for q in subs:
                q.put_nowait(event)

    def publish_all(self, events: Iterable[TaskEvent]) -> None:
        """Deliver several events, in order."""
        for e in events:
            self.publish(e)

    def poke(self, task_ids: Iterable[str]) -> None:
        """Tell the tasks' subscribers their log changed outside this process."""
        for tid in task_ids:
            for q in self._subs.get(tid, ()):
                q.put_nowait(_POKE)

    def poke_all(self) -> None:
        """Tell every subscriber to read its log again (after notifications may have been missed)."""
        self.poke(list(self._subs))

    def notify_work(self) -> None:
        """Wake the workers of this process: a task may be ready to claim."""
        for listener in list(self.work_listeners):
            listener()
