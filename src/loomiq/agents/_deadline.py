"""Coarse per-call timeouts that cost a dict insert and delete instead of a timer per call.

`asyncio.timeout()` schedules and cancels a timer-heap entry on every agent call, which is a third
of loomiq's whole per-call overhead. Instead each event loop has one timer, armed at the earliest
pending deadline: adding a deadline later than it (the usual case, as every call of an agent has the
same timeout) costs a dict insert, and removing one a dict delete. The timer never ticks
periodically: extra loop wake-ups would make every model round-trip end late (the loop rounds its
next wait up to whole milliseconds after each wake-up).
"""

from __future__ import annotations

import asyncio
import itertools
import weakref

RESOLUTION_S = 0.02


class Deadline:
    """One watched call: its due time (loop clock), its task, and whether the tick cancelled it."""

    __slots__ = ("due", "task", "expired", "key", "cancelling")

    def __init__(self, due: float, task: asyncio.Task[object], key: int) -> None:
        self.due = due
        self.task = task
        self.expired = False
        self.key = key
        self.cancelling = task.cancelling()
        """Cancellation requests pending on the task when the deadline was set."""

    def absorb(self) -> bool:
        """After a CancelledError: True if it was only this deadline's own cancellation (which is
        then withdrawn), False if someone else also cancelled the task and it must propagate."""
        return self.expired and self.task.uncancel() <= self.cancelling


class DeadlineWatch:
    """The deadlines of one event loop."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._entries: dict[int, Deadline] = {}
        self._keys = itertools.count()
        self._timer: asyncio.TimerHandle | None = None
        self._armed_at = float("inf")

    def add(self, timeout_s: float) -> Deadline:
        """Watch the current task: it is cancelled about `timeout_s` from now unless removed."""
        task = asyncio.current_task(self._loop)
        assert task is not None, "deadlines are for code running in a task"
        entry = Deadline(self._loop.time() + timeout_s, task, next(self._keys))
        self._entries[entry.key] = entry
        if entry.due + RESOLUTION_S < self._armed_at:
            self._arm(entry.due)
        return entry

    def _arm(self, due: float) -> None:
        if self._timer is not None:
            self._timer.cancel()
        # A little slack lets one wake-up expire a cluster of deadlines that fall close together.
        self._armed_at = due + RESOLUTION_S
        self._timer = self._loop.call_at(self._armed_at, self._tick)

    def remove(self, entry: Deadline) -> None:
        """Stop watching (the call ended, one way or another)."""
        self._entries.pop(entry.key, None)

    def _tick(self) -> None:
        self._timer = None
        self._armed_at = float("inf")
        now = self._loop.time()
        expired = [e for e in self._entries.values() if e.due <= now]
        for entry in expired:
            del self._entries[entry.key]
            entry.expired = True
            entry.task.cancel()
        if self._entries:
            self._arm(min(e.due for e in self._entries.values()))


_watches: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, DeadlineWatch] = weakref.WeakKeyDictionary()


def watch_for(loop: asyncio.AbstractEventLoop) -> DeadlineWatch:
    """The deadline watch of `loop`, created on first use."""
    watch = _watches.get(loop)
    if watch is None:
        watch = _watches[loop] = DeadlineWatch(loop)
    return watch
