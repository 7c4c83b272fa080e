"""`DurableContext`: the `ExecutionContext` of a durable run.

The strategy code is the same as in an in-process run; only `call` differs. A step key already in
the task's journal returns the journalled `StepResult` without calling any model (replay); any other
step runs live (`ExecutionContext.call`, with failover) and returns only once its journal row has
committed under the holder's lease epoch. So a run resumed after a crash never pays again for a step
that finished, and a holder whose lease was taken over cannot record anything (`LeaseLost`).

Events go to the task's log through `TaskLog`, encoded to JSON straight from the event objects (their
dict form is only built for followers in this process); text deltas are coalesced per step (at most
one logged ``text_delta`` per step every `delta_flush_s`, and always before the step's next event).
A run started with ``run(durable=True)`` streams model text only while someone in this process
follows the task (its caller waits for the result; every step's text is in its ``step_finished``);
a worker's runs stream it always, for followers in other processes.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping
from typing import Any

from ..agents import Agent, AgentRegistry
from ..models import ModelResponse
from ..runtime import (
    ExecutionContext,
    RunEvent,
    RunFinished,
    RunResult,
    StepDelta,
    StepFinished,
    StepResult,
    TaskSpec,
)
from ..tools import ToolCallRecord
from ._codec import encode_event, result_to_json, run_finished_json, step_finished_json, text_delta_json
from .errors import LeaseLost, StoreUnavailable
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

    def emit_json(self, event: RunEvent, text: str) -> None:
        """`emit` a runtime event given with its JSON `text` (its dict form is only built when someone
        in this process follows the task)."""
        seq = self.next_seq
        self.next_seq = seq + 1
        self._store.put_event_row(self.tenant, self.task_id, self.epoch, seq, event.type, text)
        if self._hub.listening(self.task_id):
            self._hub.publish(TaskEvent(self.task_id, seq, event.type, event.to_dict()))

    @property
    def followed(self) -> bool:
        """Whether someone in this process follows the task's events."""
        return self._hub.listening(self.task_id)

    def reserve(self) -> int:
        """A sequence number for an event that a transaction writes (the task's last)."""
        seq = self.next_seq
        self.next_seq = seq + 1
        return seq


class _EventLog:
    """A durable run's event sink: encodes each event into the task's log, coalescing text deltas.

    Kept apart from the `DurableContext` so that the context's sink is not a bound method of the
    context itself (that cycle would keep every finished run's objects alive until a full garbage
    collection)."""

    __slots__ = ("log", "delta_flush_s", "deltas", "flush_handle", "result_json", "steps_json", "observe")

    def __init__(self, log: TaskLog, delta_flush_s: float,
                 observe: Callable[[RunEvent], None] | None = None) -> None:
        self.log = log
        self.observe = observe
        self.delta_flush_s = delta_flush_s
        self.deltas: dict[str, list[str]] = {}
        self.flush_handle: asyncio.TimerHandle | None = None
        self.result_json: tuple[RunResult, str] | None = None
        self.steps_json: dict[int, tuple[StepResult, str]] = {}
        """Each logged step's JSON fields by ``id()`` (with the step): the run's result lists them again."""

    def on_event(self, event: RunEvent) -> None:
        if type(event) is StepDelta:
            buf = self.deltas.get(event.step)
            if buf is None:
                self.deltas[event.step] = [event.agent, event.text]
                if self.flush_handle is None:
                    loop = asyncio.get_running_loop()
                    self.flush_handle = loop.call_later(self.delta_flush_s, self.flush_deltas)
            else:
                buf[1] += event.text
            return
        if self.deltas:
            self.flush_deltas()  # a step's text is logged before the step's next event
        if self.observe is not None:
            self.observe(event)
        if type(event) is StepFinished:
            text = step_finished_json(event, self.steps_json)
        elif type(event) is RunFinished:
            result = event.result
            text = result_to_json(result, self.steps_json)
            self.result_json = (result, text)  # the task's result column reuses it
            text = run_finished_json(event.run_id, text)
        else:
            text = encode_event(event)
        self.log.emit_json(event, text)

    def flush_deltas(self) -> None:
        if self.flush_handle is not None:
            self.flush_handle.cancel()
            self.flush_handle = None
        if not self.deltas:
            return
        emit, run_id = self.log.emit_json, self.log.task_id
        for step, (agent, text) in self.deltas.items():
            emit(StepDelta(run_id, step, agent, text), text_delta_json(run_id, step, agent, text))
        self.deltas.clear()

    def discard(self) -> None:
        if self.flush_handle is not None:
            self.flush_handle.cancel()
            self.flush_handle = None
        self.deltas.clear()


class _ToolJournal:
    """A `loomiq.tools.ToolJournal` over a durable run's journal (see `DurableContext.tool_journal`)."""

    __slots__ = ("_ctx",)

    def __init__(self, ctx: DurableContext) -> None:
        self._ctx = ctx

    async def get(self, key: str) -> ModelResponse | ToolCallRecord | None:
        journal = self._ctx._journal
        found = journal.get(key) if journal is not None else None
        return found if isinstance(found, ModelResponse | ToolCallRecord) else None

    async def put(self, key: str, value: ModelResponse | ToolCallRecord) -> None:
        await self._ctx._put_tool_entry(key, value)


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
        observe: called with every run event but text deltas (`TaskEngine.run_observers`: metrics).
        stream_text: whether model calls stream their text into the log (``text_delta`` events) even
            when nobody in this process follows the task (for followers in other processes). False:
            only while someone here follows it (`EventHub.listening`); every step's text is in its
            ``step_finished`` event either way.
    """

    def __init__(
        self,
        run_id: TaskID,
        task: TaskSpec,
        registry: AgentRegistry,
        *,
        store: Store,
        log: TaskLog,
        journal: Mapping[str, StepResult | ModelResponse | ToolCallRecord] | None = None,
        on_lease_lost: Callable[[], object] | None = None,
        hold: Callable[[str], Any] | None = None,
        delta_flush_s: float = 0.05,
        stream_text: bool = True,
        observe: Callable[[RunEvent], None] | None = None,
    ) -> None:
        self._store = store
        self._log = log
        self._journal = dict(journal) if journal else None
        self._on_lost = on_lease_lost
        self._hold = hold
        self._always_stream = stream_text
        self._events = _EventLog(log, delta_flush_s, observe)
        self.replayed = 0
        """Steps this run returned from the journal instead of calling a model."""
        super().__init__(run_id, task, registry, self._events.on_event)
        self.tenant_id = log.tenant

    @property
    def log(self) -> TaskLog:
        """The task's event log."""
        return self._log

    @property
    def stream_text(self) -> bool:  # type: ignore[override]
        """Whether model calls stream their text now (see the class docstring)."""
        return self._always_stream or self._log.followed

    async def call(self, key: str, agent: Agent, role: str, prompt: str) -> StepResult:
        """Replay the journalled step `key`, or run it live and journal it before returning."""
        if self._journal is not None:
            done = self._journal.get(key)
            if type(done) is StepResult:
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
        except (LeaseLost, StoreUnavailable):
            if self._on_lost is not None:
                self._on_lost()
            raise
        return step

    def tool_journal(self, key: str) -> _ToolJournal:
        """The journal of step `key`'s tool loop: its finished model turns and tool calls are read back
        from the task's journal on resume, and each one is committed (under the lease epoch) before the
        loop goes on, so a resumed run neither repeats a tool's side effect nor pays a turn twice."""
        return _ToolJournal(self)

    async def _put_tool_entry(self, key: str, value: ModelResponse | ToolCallRecord) -> None:
        log = self._log
        try:
            await self._store.put_tool_entry(log.tenant, self.run_id, log.epoch, key, value)
        except (LeaseLost, StoreUnavailable):
            if self._on_lost is not None:
                self._on_lost()
            raise

    def result_json(self, result: RunResult) -> str:
        """``dumps(result.to_dict())``: the JSON already logged with ``run_finished`` when it is that
        result's."""
        done = self._events.result_json
        if done is not None and done[0] is result:
            return done[1]
        return result_to_json(result)

    def flush_deltas(self) -> None:
        """Log the text streamed since the last flush, one ``text_delta`` per step."""
        self._events.flush_deltas()

    def discard(self) -> None:
        """Drop unlogged text and stop the flush timer (the run was abandoned)."""
        self._events.discard()
