"""Task lifecycle events, and the in-process hub that delivers task events live.

A task's event log holds, in `seq` order, the runtime's events (`run_started`, `step_started`,
`text_delta`, `step_restarted`, `step_finished`, `agent_failed_over`, `run_finished`) and the lifecycle events
(`TaskQueued`, `TaskStarted`... defined with every other event in `loomiq.runtime.events`), in the
JSON form `loomiq.runtime.event_json` defines. Every task's log ends with exactly one `task_finished`.

Delivery. Events of a task leased by this process get their `seq` here and reach this process's
subscribers at once, before the batch that logs them commits; events written by a transaction
(submission, claim, finish, cancellation) reach them when it commits. Other processes see the log:
PostgreSQL wakes them with NOTIFY, SQLite by polling. `TaskEngine.events` joins the two into one
stream with no gap and no duplicate.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterable

from ..runtime.events import (
    LifecycleEvent,
    TaskFinished,
    TaskHandedBack,
    TaskQueued,
    TaskReady,
    TaskRetrying,
    TaskStarted,
    TaskWaiting,
)
from .task import TaskEvent

__all__ = [
    "FINAL_EVENT", "MAX_SEQ", "EventHub", "LifecycleEvent", "TaskFinished", "TaskHandedBack", "TaskQueued",
    "TaskReady", "TaskRetrying", "TaskStarted", "TaskWaiting",
]


FINAL_EVENT = "task_finished"
"""The ``type`` of a log's last event (`TaskFinished`)."""

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
