"""`DurableContext`: the `ExecutionContext` of a durable run.

The strategy code is the same as in an in-process run; only `call` differs. A step key already in
the task's journal returns the journalled `StepResult` without calling any model (replay); any other
step runs live (`ExecutionContext.call`, with failover) and returns only once its journal row has
committed under the holder's lease epoch. So a run resumed after a crash never pays again for a step
that finished, and a holder whose lease was taken over cannot record anything (`LeaseLost`).

Events go to the task's log through `TaskLog`; text deltas are coalesced per step (at most one
logged ``text_delta`` per step every `delta_flush_s`, and always before the step's next event).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping
from typing import Any

from ..agents import Agent, AgentRegistry
from ..runtime import ExecutionContext, RunEvent, StepDelta, StepResult, TaskSpec
from .errors import LeaseLost
from .store import Store
from .task import TaskEvent, TaskID


class TaskLog:
    """The event log of a task this process holds: numbers each event, queues it for the next batch
    (fenced by the lease epoch), and delivers it to this process's subscribers at once."""

    __slots__ = ("task_id", "tenant", "epoch", "next_seq", "_store", "_hub")

    def __init__(self, store: Store, task_id: TaskID, tenant: str, epoch: int, next_seq: int) -> None:
        self.task_id = task_id
        self.tenant = tenant
        self.epoch = epoch
        self.next_seq = next_seq
        self._store = store
        self._hub = store.hub

    def emit(self, type_: str, data: Mapping[str, Any]) -> TaskEvent:
        """Log and deliver one event; returns it with its sequence number."""
        seq = self.next_seq
        self.next_seq = seq + 1
        event = TaskEvent(self.task_id, seq, type_, data)
        # Queued before it is published: a subscriber that sees a gap can flush the writer to fill it.
        self._store.put_event(self.tenant, self.task_id, self.epoch, event)
        self._hub.publish(event)
        return event

    def reserve(self) -> int:
        """A sequence number for an event that a transaction writes (the task's last)."""
        seq = self.next_seq
        self.next_seq = seq + 1
        return seq


class DurableContext(ExecutionContext):
    """Runs a strategy's steps with a journal: replay what finished, record what runs.

    Args:
        run_id: the task id.
        task: the task's prompt, capabilities and context.
        registry: the agents.
        store: where steps are journalled.
        log: the task's event log, under the holder's lease epoch.
        journal: finished steps by key (empty for a task's first run).
        on_lease_lost: called when a write is refused because the lease was taken over.
        hold: an optional ``hold(agent_id)`` async context manager that waits for the agent's
            cross-worker concurrency and rate limits before a live step (`limits.AgentLimiter`).
        delta_flush_s: the longest a streamed text delta waits to be logged.
    """

    def __init__(
        self,
        run_id: TaskID,
        task: TaskSpec,
        registry: AgentRegistry,
        *,
        store: Store,
        log: TaskLog,
        journal: Mapping[str, StepResult] | None = None,
        on_lease_lost: Callable[[], None] | None = None,
        hold: Callable[[str], Any] | None = None,
        delta_flush_s: float = 0.05,
    ) -> None:
        self._store = store
        self._log = log
        self._journal = dict(journal or {})
        self._on_lost = on_lease_lost
        self._hold = hold
        self._delta_flush_s = delta_flush_s
        self._deltas: dict[str, list[str]] = {}
        self._flush_handle: asyncio.TimerHandle | None = None
        self.replayed = 0
        """Steps this run returned from the journal instead of calling a model."""
        super().__init__(run_id, task, registry, self._on_event)

    @property
    def log(self) -> TaskLog:
        """The task's event log."""
        return self._log

    async def call(self, key: str, agent: Agent, role: str, prompt: str) -> StepResult:
        """Replay the journalled step `key`, or run it live and journal it before returning."""
        done = self._journal.get(key)
        if done is not None:
            self.steps.append(done)
            self.replayed += 1
            return done
        if self._hold is None:
            step = await super().call(key, agent, role, prompt)
        else:
            async with self._hold(agent.id):
                step = await super().call(key, agent, role, prompt)
        log = self._log
        try:
            await self._store.put_step(log.tenant, self.run_id, log.epoch, step)
        except LeaseLost:
            if self._on_lost is not None:
                self._on_lost()
            raise
        return step

    def _on_event(self, event: RunEvent) -> None:
        if type(event) is StepDelta:
            buf = self._deltas.get(event.step)
            if buf is None:
                self._deltas[event.step] = [event.agent, event.text]
                if self._flush_handle is None:
                    loop = asyncio.get_running_loop()
                    self._flush_handle = loop.call_later(self._delta_flush_s, self.flush_deltas)
            else:
                buf[1] += event.text
            return
        if self._deltas:
            self.flush_deltas()  # a step's text is logged before the step's next event
        self._log.emit(event.type, event.to_dict())

    def flush_deltas(self) -> None:
        """Log the text streamed since the last flush, one ``text_delta`` per step."""
        if self._flush_handle is not None:
            self._flush_handle.cancel()
            self._flush_handle = None
        if not self._deltas:
            return
        emit, run_id = self._log.emit, self.run_id
        for step, (agent, text) in self._deltas.items():
            emit("text_delta", {"type": "text_delta", "run_id": run_id, "step": step, "agent": agent, "text": text})
        self._deltas.clear()

    def discard(self) -> None:
        """Drop unlogged text and stop the flush timer (the run was abandoned)."""
        if self._flush_handle is not None:
            self._flush_handle.cancel()
            self._flush_handle = None
        self._deltas.clear()
