"""Coarse per-call timeouts that cost a dict insert and delete instead of a timer per call.

`asyncio.timeout()` schedules and cancels a timer-heap entry on every agent call, which is a third
of loomiq's whole per-call overhead. LLM timeouts are seconds long, so a deadline enforced within
`RESOLUTION_S` of its due time is as good: one periodic tick per event loop, running only while
calls are in flight, cancels the tasks whose deadline has passed.
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
        self._ticking = False

    def add(self, timeout_s: float) -> Deadline:
        """Watch the current task: it is cancelled about `timeout_s` from now unless removed."""
        task = asyncio.current_task(self._loop)
        assert task is not None, "deadlines are for code running in a task"
        entry = Deadline(self._loop.time() + timeout_s, task, next(self._keys))
        self._entries[entry.key] = entry
        if not self._ticking:
            self._ticking = True
            self._loop.call_later(RESOLUTION_S, self._tick)
        return entry

    def remove(self, entry: Deadline) -> None:
        """Stop watching (the call ended, one way or another)."""
        self._entries.pop(entry.key, None)

    def _tick(self) -> None:
        now = self._loop.time()
        expired = [e for e in self._entries.values() if e.due <= now]
        for entry in expired:
            del self._entries[entry.key]
            entry.expired = True
            entry.task.cancel()
        if self._entries:
            self._loop.call_later(RESOLUTION_S, self._tick)
        else:
            self._ticking = False


_watches: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, DeadlineWatch] = weakref.WeakKeyDictionary()


def watch_for(loop: asyncio.AbstractEventLoop) -> DeadlineWatch:
    """The deadline watch of `loop`, created on first use."""
    watch = _watches.get(loop)
    if watch is None:
        watch = _watches[loop] = DeadlineWatch(loop)
    return watch
