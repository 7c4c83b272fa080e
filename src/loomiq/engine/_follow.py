"""The shared follower of task event logs: one poll of the log per store for every task followed here.

`TaskEngine.events` gets events of tasks this process runs from the store's `EventHub` the moment
they are created, and on PostgreSQL a NOTIFY pokes it when another process logged some. What
remains is the safety net for events nobody announced (another SQLite process; a missed NOTIFY; an
event published in this process just before a follower subscribed, which its first read of the log
could not see yet). Instead of each follower re-reading its task's log every `Store.follow_poll_s`,
one `LogFollower` per store does it for all of them: every ``follow_poll_s`` it reads, in one
query, the events after the last one delivered for every followed task whose followers wait on an
empty queue, and publishes them through the hub. Followers skip what they already have (by
``seq``), so a published event that was already delivered costs nothing but a comparison.

The follower runs only while someone follows a task; it stops when the last follower leaves.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import weakref
from collections.abc import AsyncGenerator, Awaitable, Callable, Sequence
from typing import Any

from ._codec import event_from_row
from ._stmt import Stmt
from .errors import EngineClosed
from .events import FINAL_EVENT, MAX_SEQ
from .store import Store
from .task import TERMINAL_STATUSES, Task, TaskEvent

logger = logging.getLogger("loomiq.engine")

ROWS_PER_POLL = 5000
"""At most this many events per query; when a query returns that many, the next poll follows at once."""

_TASKS_PER_QUERY = 400
"""SQLite: followed tasks per query (two parameters each, well under SQLite's parameter limit)."""

_ON_LOOP_TASKS = 64
"""SQLite: a poll of up to this many tasks runs on the loop thread (index probes); a larger one on
the store's reader threads."""

_PG_SQL = (
    "SELECT e.task_id, e.seq, e.type, e.data FROM unnest(?::text[], ?::bigint[]) AS w(task_id, after) "
    "JOIN events AS e ON e.task_id = w.task_id AND e.seq > w.after ORDER BY e.task_id, e.seq LIMIT ?"
)


def _sqlite_sql(n: int) -> str:
    values = ",".join(["(?,?)"] * n)
    return (
        f"WITH w(task_id, after) AS (VALUES {values}) SELECT e.task_id, e.seq, e.type, e.data FROM w "
        "JOIN events AS e ON e.task_id = w.task_id AND e.seq > w.after ORDER BY e.task_id, e.seq LIMIT ?"
    )


class Watch:
    """One follower of a task: its hub queue, the seq of the last event it took, and whether it
    waits on its queue (a follower reading the log, or whose client is busy, is not to be helped)."""

    __slots__ = ("last", "queue", "task_id", "waiting")

    def __init__(self, task_id: str, queue: asyncio.Queue[TaskEvent | None], last: int) -> None:
        self.task_id = task_id
        self.queue = queue
        self.last = last
        self.waiting = False


class LogFollower:
    """Polls a store's event log for every task followed in this process (see the module docstring).

    Use `follower_for` to get a store's follower.
    """

    def __init__(self, store: Store) -> None:
        self._store = store
        self._watches: dict[str, set[Watch]] = {}
        self._runner: asyncio.Task[None] | None = None
        self._failing = False
        self.polls = 0
        """How many polls read the log (each one query per `_TASKS_PER_QUERY` tasks)."""

    @property
    def followed(self) -> int:
        """How many tasks are followed."""
        return len(self._watches)

    def watch(self, task_id: str, queue: asyncio.Queue[TaskEvent | None], last: int) -> Watch:
        """Register a follower of `task_id` whose hub queue is `queue`, having yielded up to `last`."""
        watch = Watch(task_id, queue, last)
        self._watches.setdefault(task_id, set()).add(watch)
        if self._runner is None or self._runner.done():
            self._runner = asyncio.get_running_loop().create_task(self._run(), name="loomiq-event-follower")
        return watch

    def unwatch(self, watch: Watch) -> None:
        """Stop following for `watch`; the last one leaving stops the poll."""
        watches = self._watches.get(watch.task_id)
        if watches is not None:
            watches.discard(watch)
            if not watches:
                del self._watches[watch.task_id]
        if not self._watches and self._runner is not None:
            self._runner.cancel()
            self._runner = None

    async def _run(self) -> None:
        store = self._store
        more = False
        while self._watches:
            await asyncio.sleep(0 if more else store.follow_poll_s)
            try:
                more = await self.poll()
            except EngineClosed:
                self._poke_all()  # the followers read the log themselves and see the store closed
                return
            except Exception:  # noqa: BLE001 - the followers fall back to reading their log themselves
                if not self._failing:
                    logger.warning("polling the event log failed; followers read it themselves", exc_info=True)
                self._failing = True
                more = False
                self._poke_all()
            else:
                self._failing = False

    def _poke_all(self) -> None:
        # Into the followers' queues only: the hub would also wake `wait` callers, who need nothing.
        for watches in self._watches.values():
            for watch in watches:
                watch.queue.put_nowait(None)

    async def poll(self) -> bool:
        """Read the log once for every followed task whose followers wait on an empty queue, and
        publish what they have not yielded. True when a query was cut at `ROWS_PER_POLL`."""
        # Only followers blocked on an empty queue: one with queued items wakes by itself (and reads
        # the log if they leave a gap), one reading the log or feeding a slow client comes back to
        # its queue later, and is helped then if it still lacks something.
        after: dict[str, int] = {}
        for task_id, watches in self._watches.items():
            low = min((w.last for w in watches if w.waiting and w.queue.empty()), default=None)
            if low is not None:
                after[task_id] = low
        if not after:
            return False
        self.polls += 1
        store = self._store
        items = list(after.items())
        if store.dialect.name == "postgresql":
            chunks: Sequence[list[tuple[str, int]]] = [items]
        else:
            chunks = [items[i:i + _TASKS_PER_QUERY] for i in range(0, len(items), _TASKS_PER_QUERY)]
        cut = False
        for chunk in chunks:
            off_loop = store.dialect.name == "sqlite" and len(chunk) > _ON_LOOP_TASKS
            rows = await store.fetch(self._stmt(chunk), blocking=off_loop)
            cut = cut or len(rows) >= ROWS_PER_POLL
            self._publish(rows)
        return cut

    def _stmt(self, chunk: list[tuple[str, int]]) -> Stmt:
        if self._store.dialect.name == "postgresql":
            return Stmt(_PG_SQL, ([t for t, _ in chunk], [a for _, a in chunk], ROWS_PER_POLL), "all")
        args: list[Any] = [x for pair in chunk for x in pair]
        args.append(ROWS_PER_POLL)
        return Stmt(_sqlite_sql(len(chunk)), args, "all")

    def _publish(self, rows: Sequence[Sequence[Any]]) -> None:
        if not rows:
            return
        hub = self._store.hub
        for task_id, seq, type_, data in rows:
            # In task and seq order, each task's events without gaps: its subscribers skip those
            # they have, and take the rest in order.
            hub.publish(event_from_row(task_id, (seq, type_, data)))


_followers: weakref.WeakKeyDictionary[Store, LogFollower] = weakref.WeakKeyDictionary()


def follower_for(store: Store) -> LogFollower:
    """The store's `LogFollower` (one per store, made on first use)."""
    follower = _followers.get(store)
    if follower is None:
        follower = _followers[store] = LogFollower(store)
    return follower


async def follow_task(store: Store, task_id: str, after: int = 0) -> AsyncGenerator[TaskEvent]:
    """`TaskEngine.events`: the task's events with ``seq > after``, from the log, then live.

    A follower whose `after` is past the end of the log (a client that claims events not logged yet,
    or never to be) is "ahead": events up to `after` are skipped, a skipped ``task_finished`` ends
    the stream, and while ahead it checks the task's status every ``follow_poll_s`` (at least 0.2 s;
    the status commits with ``task_finished``), so it never waits for an event that cannot come.
    `after` is taken within 0 and `MAX_SEQ` (a position past `MAX_SEQ` is past every event)."""
    after = min(max(after, 0), MAX_SEQ)
    hub = store.hub
    q = hub.subscribe(task_id)
    follower = follower_for(store)
    watch = follower.watch(task_id, q, after)
    page = 1000
    event: TaskEvent | None
    try:
        last = after
        ahead = False
        while True:
            read = 0
            while True:
                batch = await store.read_events(task_id, last, page)
                read += len(batch)
                for event in batch:
                    watch.last = last = event.seq
                    ahead = False
                    yield event
                    if event.type == FINAL_EVENT:
                        return
                if len(batch) < page:
                    break
            if not read and last == after > 0 and not ahead:
                # Nothing after `after` yet: is `after` itself logged (the usual reconnect)?
                at = await store.read_events(task_id, after - 1, 1)
                if at and at[0].type == FINAL_EVENT:
                    return  # the client has the task's last event
                ahead = not at
            # Follow live until the log must be read again (a poke, or a gap to fill).
            check = ahead
            while True:
                if check:
                    check = False
                    task = await store.get_task(task_id)
                    if task is not None and task.terminal:
                        # Its log is complete: whatever it holds after `last` is all there is.
                        while batch := await store.read_events(task_id, last, page):
                            for event in batch:
                                last = event.seq
                                yield event
                        return
                watch.waiting = True
                try:
                    if ahead:
                        try:
                            event = await asyncio.wait_for(q.get(), max(store.follow_poll_s, 0.2))
                        except TimeoutError:
                            check = True
                            continue
                    else:
                        event = await q.get()
                finally:
                    watch.waiting = False
                if event is None:
                    break
                if event.seq <= last:
                    if event.type == FINAL_EVENT:
                        return  # the task ended at or before `after`: the client has everything
                    if event.seq == last:
                        ahead = False
                    continue
                if event.seq != last + 1:
                    # Its predecessors are queued in this process's writer: commit, then read them.
                    await store.flush()
                    q.put_nowait(event)
                    break
                watch.last = last = event.seq
                ahead = False
                yield event
                if event.type == FINAL_EVENT:
                    return
    finally:
        follower.unwatch(watch)
        hub.unsubscribe(task_id, q)


async def wait_for_end(store: Store, get_task: Callable[[str], Awaitable[Task]], task_id: str,
                       timeout_s: float | None) -> Task:
    """`TaskEngine.wait`: read the task (`get_task`) until it has ended, woken by its final event in
    this process's hub (or every `follow_poll_s`, at least 0.2 s, for an end made elsewhere)."""
    q = store.hub.subscribe(task_id)
    poll = max(store.follow_poll_s, 0.2)
    try:
        async with asyncio.timeout(timeout_s):
            while True:
                task = await get_task(task_id)
                if task.status in TERMINAL_STATUSES:
                    return task
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(poll):
                        while True:
                            event = await q.get()
                            if event is None or event.type == FINAL_EVENT:
                                break
    finally:
        store.hub.unsubscribe(task_id, q)
