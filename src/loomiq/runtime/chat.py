"""One model turn of one agent on the caller's own request: the path of the OpenAI-compatible API
when ``model`` names an agent.

The request (messages, tools, settings) goes to the agent's model as the caller wrote it, through
the agent's resilient call (concurrency slot, per-call timeout, retries, circuit breaker,
statistics), and the model's answer comes back whole: text, the tool calls it asks for (which the
caller runs: nothing here executes a tool) and why it stopped. The named agent is a hard choice:
there is no failover to another agent. The turn is a run like any other for observers: it emits
`RunStarted`, `StepStarted`, `StepDelta`s (when streamed), `StepFinished` and `RunFinished`, as the
``single`` strategy does (step key ``single``, role ``answer``).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncGenerator
from dataclasses import dataclass

from ..agents import Agent, AgentCallFailed, call_agent
from ..models import ModelRequest, ModelResponse
from .context import EventSink
from .events import RunEvent, RunFinished, RunStarted, StepDelta, StepFinished, StepRestarted, StepStarted
from .result import RunResult, RunStatus, StepResult
from .runner import new_run_id

STEP_KEY = "single"
ROLE = "answer"
REASON = "the caller named the agent"


@dataclass(frozen=True, slots=True)
class ChatTurn:
    """A finished turn: the run's result, and the model's response when the agent answered."""

    result: RunResult
    response: ModelResponse | None


def _empty(response: ModelResponse) -> bool:
    # A model that stops with neither text nor a tool call gave no answer.
    return response.finish_reason == "stop" and not response.tool_calls and not response.text.strip()


async def chat_turn(
    agent: Agent,
    request: ModelRequest,
    *,
    run_id: str | None = None,
    sink: EventSink | None = None,
    stream: bool = False,
    timeout_s: float | None = None,
    cancellable: bool = False,
) -> ChatTurn:
    """Send `request` to `agent`'s model once (with the agent's retries) and return the turn.

    Never raises for a provider failure (it is the result's error, status ``failed``); a turn past
    `timeout_s` ends ``timed_out``. With `stream`, text deltas reach `sink` as `StepDelta` events as
    they arrive. With `cancellable`, a cancellation ends the turn ``cancelled`` instead of propagating.
    """
    rid = run_id or new_run_id()
    if sink is not None:
        sink(RunStarted(rid, "single", REASON, (agent.id,), agent.offline))
        sink(StepStarted(rid, STEP_KEY, agent.id, ROLE))
    on_delta = on_restart = None
    if stream and sink is not None:
        deliver = sink

        def on_delta(text: str) -> None:
            deliver(StepDelta(rid, STEP_KEY, agent.id, text))

        def on_restart(error: str, void_chars: int) -> None:
            deliver(StepRestarted(rid, STEP_KEY, agent.id, error, void_chars))

    started = time.perf_counter()
    status: RunStatus = "completed"
    response: ModelResponse | None = None
    error: str | None = None
    attempts = 1
    try:
        async with asyncio.timeout(timeout_s):
            response, attempts = await call_agent(agent, request, on_delta, on_restart)
    except AgentCallFailed as exc:
        status, error, attempts = "failed", f"{exc.kind}: {exc.reason}", exc.attempts
    except TimeoutError:
        status, error = "timed_out", f"the run did not finish within {timeout_s:g}s"
    except asyncio.CancelledError:
        if not cancellable:
            raise
        task = asyncio.current_task()
        if task is not None:
            task.uncancel()
        status, error = "cancelled", "cancelled by the caller"
    if response is not None and _empty(response):
        status, error = "failed", "empty_answer: the model stopped without text or a tool call"
    duration_ms = (time.perf_counter() - started) * 1000
    model = agent.config.model
    if response is not None:
        step = StepResult(STEP_KEY, agent.id, ROLE, response.text, response.usage, response.cost_usd, duration_ms,
                          error, attempts, (), response.model or model, agent.offline)
    else:
        step = StepResult(STEP_KEY, agent.id, ROLE, error=error, duration_ms=duration_ms, attempts=attempts,
                          model=model, offline=agent.offline)
    result = RunResult(
        task_id=rid, status=status, strategy="single", output=step.output if status == "completed" else "",
        steps=(step,), usage=step.usage, cost_usd=step.cost_usd, duration_ms=duration_ms, offline=agent.offline,
        strategy_reason=REASON, error=error,
    )
    if sink is not None:
        sink(StepFinished(rid, step))
        sink(RunFinished(rid, result))
    return ChatTurn(result, response if status == "completed" else None)


class ChatHandle:
    """A turn in progress in the background: iterate it for events, `await handle.turn()`, or
    `handle.cancel()`. Must be created with a running loop."""

    def __init__(self, agent: Agent, request: ModelRequest, *, run_id: str | None = None,
                 timeout_s: float | None = None) -> None:
        self.task_id = run_id or new_run_id()
        self._events: asyncio.Queue[RunEvent] = asyncio.Queue()
        self._task = asyncio.get_running_loop().create_task(chat_turn(
            agent, request, run_id=self.task_id, sink=self._events.put_nowait, stream=True, timeout_s=timeout_s,
            cancellable=True,
        ))

    def cancel(self) -> None:
        """Cancel the turn: the provider request is aborted and the result is marked ``cancelled``."""
        # Deferred one loop turn, so a turn cancelled at once still starts and ends with RunFinished.
        self._task.get_loop().call_soon(self._task.cancel)

    async def turn(self) -> ChatTurn:
        """Wait for the turn to end."""
        return await asyncio.shield(self._task)

    async def __aiter__(self) -> AsyncGenerator[RunEvent]:
        while True:
            event = await self._events.get()
            yield event
            if isinstance(event, RunFinished):
                return
