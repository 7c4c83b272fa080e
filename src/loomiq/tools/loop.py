"""The tool loop: model turns and tool rounds until the model answers without asking for a tool.

`ToolLoop` is independent of the runtime: it is given a ``call_model(request)`` coroutine (the
runtime passes its resilient agent call), the tools an agent may use, a `ToolContext`, and
optionally an observer of `ToolCallEvent`s and a `ToolJournal`. Every failure of a call goes back to
the model as an error result: a tool outside the allow-list (never run: refused and recorded),
arguments that are not JSON or do not match the schema, a tool that raises or reports an error, a
tool that runs past its timeout (cancelled). Only too many rounds end the call with an error
(`ToolRoundsExceeded`).

The calls of one turn run concurrently where their footprints are disjoint and in the model's order
where they overlap (`schedule`). With a journal, model turns and finished tool calls are looked up
by their deterministic keys first and recorded once done, so a resumed run neither repeats a tool's
side effect nor pays for a model turn twice.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any, Protocol

from ..models import Message, ModelRequest, ModelResponse, ToolCall, Usage
from ..observe import genai
from .base import EXCLUSIVE, PURE, Footprint, Tool, ToolContext, ToolError, ToolUnavailable
from .records import (
    ErrorKind,
    ToolCallEvent,
    ToolCallFinished,
    ToolCallRecord,
    ToolCallRefused,
    ToolCallSerialized,
    ToolCallStarted,
    call_key,
    turn_key,
)
from .schedule import schedule

DEFAULT_MAX_ROUNDS = 8
"""Tool rounds one agent call may take before it ends with `ToolRoundsExceeded`."""

CallModel = Callable[[ModelRequest], Awaitable[ModelResponse]]
"""One model turn: the request in, the finished response out (errors propagate)."""

Observer = Callable[[ToolCallEvent], None]
"""Receives each tool-call event as it happens."""

_DEFAULT_CONTEXT = ToolContext()


class ToolJournal(Protocol):
    """Where a durable run keeps finished model turns and tool calls, by key (`turn_key`,
    `call_key`). `put` returns once the entry is stored for good (committed)."""

    async def get(self, key: str) -> ModelResponse | ToolCallRecord | None:
        """The entry stored under `key`, or None."""
        ...

    async def put(self, key: str, value: ModelResponse | ToolCallRecord) -> None:
        """Store `value` under `key`."""
        ...


class MemoryJournal:
    """A `ToolJournal` in a dict: for tests, and to resume a loop within one process."""

    def __init__(self) -> None:
        self.entries: dict[str, ModelResponse | ToolCallRecord] = {}

    async def get(self, key: str) -> ModelResponse | ToolCallRecord | None:
        """The entry under `key`, or None."""
        return self.entries.get(key)

    async def put(self, key: str, value: ModelResponse | ToolCallRecord) -> None:
        """Keep `value` under `key`."""
        self.entries[key] = value


class ToolRoundsExceeded(Exception):
    """The model still asked for tools after the maximum number of rounds; what the call did so far
    (records, usage, cost) is kept on the exception."""

    def __init__(self, max_rounds: int, records: Sequence[ToolCallRecord], usage: Usage, cost_usd: float) -> None:
        super().__init__(
            f"the model still asked for tools after {max_rounds} tool round(s) (max_tool_rounds={max_rounds}); "
            "the call was stopped"
        )
        self.max_rounds = max_rounds
        self.records = tuple(records)
        self.usage = usage
        self.cost_usd = cost_usd


@dataclass(frozen=True, slots=True)
class ToolLoopResult:
    """How an agent call with tools ended.

    Attributes:
        response: the final model response (no tool calls).
        tool_calls: every tool call, in order (turn, then model order).
        usage: tokens of every model turn.
        cost_usd: cost of every model turn.
        turns: model turns made (replayed ones included).
        messages: the whole conversation, the final answer excluded.
    """

    response: ModelResponse
    tool_calls: tuple[ToolCallRecord, ...]
    usage: Usage
    cost_usd: float
    turns: int
    messages: tuple[Message, ...]


@dataclass(slots=True)
class _Planned:
    """One call of a turn, ready to run."""

    index: int
    key: str
    call: ToolCall
    tool: Tool
    arguments: Mapping[str, Any]


class ToolLoop:
    """Runs an agent call with tools: model turns, and the tool rounds between them.

    Build one per set of allowed tools (it holds their specs) and call `run` for each agent call.

    Args:
        tools: the tools the model is offered; a call to any other name is refused, never run.
        max_rounds: tool rounds allowed before `ToolRoundsExceeded`.
    """

    def __init__(self, tools: Iterable[Tool], *, max_rounds: int = DEFAULT_MAX_ROUNDS) -> None:
        if max_rounds < 0:
            raise ValueError("max_rounds must be >= 0")
        self.tools: dict[str, Tool] = {}
        for t in tools:
            if t.name in self.tools:
                raise ValueError(f"two tools are named {t.name!r}")
            self.tools[t.name] = t
        self.specs = tuple(t.spec() for t in self.tools.values())
        self.max_rounds = max_rounds

    async def run(
        self,
        call_model: CallModel,
        request: ModelRequest,
        ctx: ToolContext = _DEFAULT_CONTEXT,
        *,
        observer: Observer | None = None,
        journal: ToolJournal | None = None,
        key: str = "",
    ) -> ToolLoopResult:
        """Run model turns and tool rounds until the model answers without a tool call.

        Args:
            call_model: one model turn (the agent's resilient call); its errors propagate.
            request: the conversation so far; its `tools` are replaced by this loop's.
            ctx: what the tools may use besides their arguments.
            observer: receives each `ToolCallEvent`.
            journal: where finished turns and calls are looked up first, and recorded.
            key: prefix of every journal key (e.g. the strategy step's key and a slash).
        """
        messages = list(request.messages)
        records: list[ToolCallRecord] = []
        usage = Usage()
        cost = 0.0
        turn = 0
        while True:
            response: ModelResponse | None = None
            if journal is not None:
                stored = await journal.get(turn_key(key, turn))
                response = stored if isinstance(stored, ModelResponse) else None
            if response is None:
                response = await call_model(ModelRequest(tuple(messages), self.specs, request.settings))
                if journal is not None:
                    await journal.put(turn_key(key, turn), response)
            usage = usage + response.usage
            cost += response.cost_usd
            calls = response.tool_calls
            if not calls:
                return ToolLoopResult(response, tuple(records), usage, cost, turn + 1, tuple(messages))
            if turn >= self.max_rounds:
                raise ToolRoundsExceeded(self.max_rounds, records, usage, cost)
            if not all(c.id for c in calls):
                # Some compatible servers send no call id: give each one, so results match their calls.
                calls = tuple(c if c.id else replace(c, id=f"call_{turn}_{i}") for i, c in enumerate(calls))
            messages.append(Message("assistant", response.text, tool_calls=calls))
            done = await self._round(turn, calls, ctx, observer, journal, key)
            records.extend(done)
            messages.extend(Message("tool", r.content, tool_call_id=r.call_id, name=r.name) for r in done)
            turn += 1

    async def call(
        self, name: str, arguments: Mapping[str, Any], ctx: ToolContext = _DEFAULT_CONTEXT, *, call_id: str = "call"
    ) -> ToolCallRecord:
        """One tool call outside a model turn (``loomiq tool run``, the API), exactly as a model's
        call would run: allow-list, validation, footprint, timeout, errors as an error result."""
        (record,) = await self._round(0, [ToolCall(call_id, name, dict(arguments))], ctx, None, None, "")
        return record

    async def _round(
        self,
        turn: int,
        calls: Sequence[ToolCall],
        ctx: ToolContext,
        observer: Observer | None,
        journal: ToolJournal | None,
        prefix: str,
    ) -> list[ToolCallRecord]:
        """Run one turn's tool calls; their records in the model's order."""
        records: list[ToolCallRecord | None] = [None] * len(calls)
        footprints: list[Footprint] = [PURE] * len(calls)
        planned: list[_Planned] = []
        for i, call in enumerate(calls):
            k = call_key(prefix, turn, i)
            tool = self.tools.get(call.name)
            if tool is None:
                records[i] = self._refuse(k, turn, i, call, observer)
                continue
            if call.error is not None:
                records[i] = _failed(k, turn, i, call, "malformed_arguments", call.error)
                continue
            try:
                arguments = tool.validate(call.arguments)
            except ToolError as exc:
                records[i] = _failed(k, turn, i, call, "invalid_arguments", str(exc))
                continue
            try:
                footprints[i] = tool.footprint(arguments)
            except Exception:  # noqa: BLE001 - a broken declaration must not break the call: run it alone
                footprints[i] = EXCLUSIVE
            planned.append(_Planned(i, k, call, tool, arguments))
        if observer is not None:
            for rec in records:
                if rec is not None and rec.status == "finished":  # arguments rejected: an error result
                    observer(ToolCallFinished(rec))
        if journal is not None:
            planned = await self._replay(planned, records, journal)
        waits = schedule(footprints) if len(calls) > 1 else ((),)
        if len(planned) == 1 and not waits[planned[0].index]:
            p = planned[0]
            records[p.index] = await self._execute(p, turn, (), ctx, observer, journal)
        elif planned:
            await self._run_concurrently(planned, waits, records, turn, ctx, observer, journal)
        return [r for r in records if r is not None]

    async def _replay(
        self, planned: list[_Planned], records: list[ToolCallRecord | None], journal: ToolJournal
    ) -> list[_Planned]:
        """Drop the calls the journal has finished already (their records come from it)."""
        live: list[_Planned] = []
        for p in planned:
            stored = await journal.get(p.key)
            if isinstance(stored, ToolCallRecord):
                records[p.index] = stored
            else:
                live.append(p)
        return live

    async def _run_concurrently(
        self,
        planned: list[_Planned],
        waits: Sequence[tuple[int, ...]],
        records: list[ToolCallRecord | None],
        turn: int,
        ctx: ToolContext,
        observer: Observer | None,
        journal: ToolJournal | None,
    ) -> None:
        loop = asyncio.get_running_loop()
        finished: dict[int, asyncio.Future[None]] = {p.index: loop.create_future() for p in planned}

        async def one(p: _Planned) -> None:
            before = waits[p.index]
            try:
                if before:
                    if observer is not None:
                        observer(ToolCallSerialized(p.key, p.call.name, before))
                    for j in before:
                        pending = finished.get(j)
                        if pending is not None:
                            await pending
                records[p.index] = await self._execute(p, turn, before, ctx, observer, journal)
            finally:
                done = finished[p.index]
                if not done.done():
                    done.set_result(None)

        await asyncio.gather(*(one(p) for p in planned))

    async def _execute(
        self,
        p: _Planned,
        turn: int,
        waited_for: tuple[int, ...],
        ctx: ToolContext,
        observer: Observer | None,
        journal: ToolJournal | None,
    ) -> ToolCallRecord:
        """Run one call: its timeout, every failure turned into an error result, its events."""
        tool, call = p.tool, p.call
        if observer is not None:
            observer(ToolCallStarted(p.key, call.name, call.arguments))
        error: str | None = None
        kind: ErrorKind | None = None
        data: Any = None
        started = time.perf_counter()
        limit = tool.timeout_s
        deadline = asyncio.timeout(limit) if limit else None
        try:
            with genai.execute_tool(call.name, call.id):
                if deadline is None:
                    result = await tool.run(p.arguments, ctx)
                else:
                    async with deadline:
                        result = await tool.run(p.arguments, ctx)
            content, data = result.content, result.data
            if result.is_error:
                error, kind = content, "tool_error"
        except TimeoutError as exc:
            if deadline is not None and deadline.expired():
                error, kind = f"tool {call.name!r} did not finish within {limit:g}s; it was cancelled", "timeout"
            else:
                error, kind = _exception_text(exc), "exception"
            content = f"Error: {error}"
        except ToolUnavailable as exc:
            error, kind = str(exc), "unavailable"
            content = f"Error: {error}"
        except ToolError as exc:
            error, kind = str(exc), "tool_error"
            content = f"Error: {error}"
        except Exception as exc:  # noqa: BLE001 - whatever a tool raises goes back to the model
            error, kind = _exception_text(exc), "exception"
            content = f"Error: {error}"
        duration = (time.perf_counter() - started) * 1000
        record = ToolCallRecord(
            p.key, turn, p.index, call.id, call.name, call.arguments, "finished", content, error, kind,
            duration, waited_for, data,
        )
        if journal is not None:
            await journal.put(p.key, record)
        if observer is not None:
            observer(ToolCallFinished(record))
        return record

    def _refuse(self, key: str, turn: int, index: int, call: ToolCall, observer: Observer | None) -> ToolCallRecord:
        allowed = ", ".join(self.tools) or "none"
        error = f"tool {call.name!r} is not allowed here (allowed: {allowed}); it was not run"
        record = ToolCallRecord(
            key, turn, index, call.id, call.name, call.arguments, "refused", f"Error: {error}", error, "refused"
        )
        if observer is not None:
            observer(ToolCallRefused(record))
        return record


def _failed(key: str, turn: int, index: int, call: ToolCall, kind: ErrorKind, error: str) -> ToolCallRecord:
    """The record of a call whose arguments were rejected before it could run."""
    return ToolCallRecord(
        key, turn, index, call.id, call.name, call.arguments, "finished", f"Error: {error}", error, kind
    )


def _exception_text(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__
