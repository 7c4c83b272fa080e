"""The execution context: the one thing a strategy talks to.

A strategy asks the context to `call` an agent under a deterministic step key. The ephemeral context
(here) just calls, with failover; a durable context (the task engine) subclasses it to look the key
up in its journal first and to record the step once committed, so the same strategy code runs
in-process or durably with nothing else changed.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from ..agents import Agent, AgentCallFailed, AgentRegistry, call_agent
from ..models import Message, ModelRequest, ModelResponse, ModelSettings, Usage
from ..observe import genai
from ..tools import (
    ToolCallEvent,
    ToolCallFinished,
    ToolCallRecord,
    ToolCallRefused,
    ToolCallSerialized,
    ToolCallStarted,
    ToolContext,
    ToolError,
    ToolJournal,
    ToolLoop,
    ToolRoundsExceeded,
)
from .events import (
    AgentFailedOver,
    RunEvent,
    StepDelta,
    StepFinished,
    StepRestarted,
    StepStarted,
    ToolFinished,
    ToolRefused,
    ToolSerialized,
    ToolStarted,
)
from .result import StepResult
from .tooling import RunTools

EventSink = Callable[[RunEvent], None]


@dataclass(frozen=True, slots=True)
class TaskSpec:
    """What a run is asked to do: the prompt, the capabilities its agents need, and free context."""

    prompt: str
    capabilities: tuple[str, ...] = ()
    context: dict[str, Any] = field(default_factory=dict)


def background_message(context: dict[str, Any]) -> Message | None:
    """What every agent of a task must know besides its prompt: the outputs of the tasks it depends
    on (``context["dependencies"]``, id -> output), as one system message; None when there are none."""
    deps = context.get("dependencies")
    if not deps:
        return None
    parts = "\n\n".join(f"Result of task {task_id}:\n{output}" for task_id, output in deps.items())
    return Message("system", f"This task builds on earlier tasks.\n\n{parts}")


_TURN_ROLES = ("system", "user", "assistant")
_SETTING_KEYS = ("temperature", "max_tokens", "top_p", "stop", "seed", "response_format")


def conversation_of(context: dict[str, Any]) -> tuple[tuple[Message, ...], dict[str, Any]]:
    """What a run continues: the earlier turns of a conversation (``context["messages"]``, a list of
    ``{"role": "system" | "user" | "assistant", "content": str}``), which every agent of the run gets
    before its step's prompt, and generation settings for every agent call (``context["model_settings"]``:
    ``temperature``, ``max_tokens``, ``top_p``, ``stop``, ``seed``, ``response_format``; they take
    precedence over each agent's own). The OpenAI-compatible ``/v1`` API fills both."""
    turns = context.get("messages") or ()
    history = tuple(
        Message(t["role"], t["content"]) for t in turns
        if isinstance(t, dict) and t.get("role") in _TURN_ROLES and isinstance(t.get("content"), str)
    )
    given = context.get("model_settings") or {}
    settings = {k: given[k] for k in _SETTING_KEYS if isinstance(given, dict) and given.get(k) is not None}
    if "stop" in settings:
        settings["stop"] = tuple(settings["stop"])
    return history, settings


class ExecutionContext:
    """Runs agent steps for one strategy run, in this process, with failover and events.

    Attributes:
        run_id: the run's (task's) id.
        task: what the run is asked to do.
        registry: where agents and their failover candidates come from.
        steps: every finished step, in finishing order.
    """

    max_failovers = 2
    stream_text = True
    """Whether model calls stream their text (`StepDelta` events) when someone listens to events;
    a subclass may decide per step (the durable context streams only for live followers)."""

    def __init__(
        self,
        run_id: str,
        task: TaskSpec,
        registry: AgentRegistry,
        sink: EventSink | None = None,
    ) -> None:
        self.run_id = run_id
        self.task = task
        self.registry = registry
        self.steps: list[StepResult] = []
        self.pool: frozenset[str] = frozenset()
        """Agents the strategy picked for this run; failover prefers agents outside it."""
        self.failover_within: frozenset[str] | None = None
        """The agents failover may use (the caller named them); None: any agent with the capabilities."""
        self.tools: RunTools | None = None
        """The tools agent calls may use (set by the runner); None: no tool is offered."""
        self.tool_filter: tuple[str, ...] | None = None
        """The run's tool list, narrowing each agent's allow-list; None: the run names none."""
        self.tenant_id = "default"
        """Whose run it is: tools that keep data (files, knowledge) scope it by tenant."""
        self._sink = sink
        self._background = background_message(task.context)
        self._history, self._settings = conversation_of(task.context) if task.context else ((), {})

    def emit(self, event: RunEvent) -> None:
        """Deliver an event to whoever listens (nothing is built when nobody does)."""
        if self._sink is not None:
            self._sink(event)

    @property
    def sink(self) -> EventSink | None:
        """Where this context's events go (None when nobody listens)."""
        return self._sink

    @property
    def streaming(self) -> bool:
        """Whether model calls stream their text now: someone listens to events, and `stream_text`."""
        return self._sink is not None and self.stream_text

    @property
    def usage(self) -> Usage:
        """Tokens used by the finished steps so far."""
        total = Usage()
        for s in self.steps:
            total = total + s.usage
        return total

    def request_for(self, agent: Agent, prompt: str) -> ModelRequest:
        """The model request for `prompt`, with the agent's system prompt and settings."""
        cfg = agent.config
        user = Message("user", prompt)
        messages = (Message("system", cfg.system_prompt), user) if cfg.system_prompt else (user,)
        if self._history:
            messages = (*messages[:-1], *self._history, user)
        if self._background is not None:
            messages = (*messages[:-1], self._background, user)
        if self._settings:
            return ModelRequest(messages, settings=ModelSettings(
                **{"temperature": cfg.temperature, "max_tokens": cfg.max_tokens, **self._settings}))
        if cfg.temperature is None and cfg.max_tokens is None:
            return ModelRequest(messages)
        return ModelRequest(messages, settings=ModelSettings(cfg.temperature, cfg.max_tokens))

    async def call(self, key: str, agent: Agent, role: str, prompt: str) -> StepResult:
        """Run one step: `agent` answers `prompt`, failing over to a stand-in if it cannot.

        Never raises for a provider failure: a step no agent could answer comes back with `error`
        set, and the strategy decides how to degrade. Cancellation propagates.
        """
        sink = self._sink
        started = time.perf_counter()
        tried: list[tuple[str, str]] = []
        current = agent
        attempts = 0
        calls: tuple[ToolCallRecord, ...] = ()
        while True:
            on_delta = None
            if sink is not None:
                sink(StepStarted(self.run_id, key, current.id, role))
                if self.stream_text:
                    on_delta = self._delta_writer(key, current.id)
            try:
                cfg = current.config
                with genai.invoke_agent(current.id, cfg.name, cfg.provider, cfg.model, key):
                    # Only an agent with an allow-list pays for the tool loop.
                    tools = self.tools if cfg.tools else None
                    loop = None if tools is None else await tools.loop_for(current, self.tool_filter)
                    restart = None if on_delta is None else self._restart_writer(key, current.id)
                    if loop is None:
                        response, n = await call_agent(current, self.request_for(current, prompt), on_delta,
                                                       restart)
                    else:
                        response, n, done = await self._call_with_tools(loop, key, current, prompt, on_delta)
                        calls = _joined(calls, done)
            except (ToolRoundsExceeded, ToolError) as exc:
                return self._finish(self._tool_failure(key, current, role, exc, calls, tried, attempts, started))
            except AgentCallFailed as exc:
                attempts += exc.attempts
                calls = _joined(calls, getattr(exc, "tool_calls", ()))  # what it ran before it failed
                tried.append((current.id, f"{exc.kind}: {exc.reason}"))
                stand_in = self._stand_in(current, tried) if len(tried) <= self.max_failovers else None
                if stand_in is None:
                    return self._finish(StepResult(
                        key, current.id, role, error=self._no_stand_in(current, tried), attempts=attempts,
                        failed_over_from=tuple(tried[:-1]),
                        duration_ms=(time.perf_counter() - started) * 1000,
                        model=current.config.model, offline=current.offline, tool_calls=calls,
                    ))
                self.emit(AgentFailedOver(self.run_id, key, current.id, stand_in.id, tried[-1][1]))
                current = stand_in
                continue
            return self._finish(StepResult(
                key, current.id, role, response.text, response.usage, response.cost_usd,
                (time.perf_counter() - started) * 1000, None, attempts + n, tuple(tried),
                response.model, current.offline, calls,
            ))

    def tool_journal(self, key: str) -> ToolJournal | None:
        """Where the tool loop of step `key` keeps its finished model turns and tool calls; None in an
        in-process run (a durable context journals them)."""
        return None

    async def _call_with_tools(
        self,
        loop: ToolLoop,
        key: str,
        agent: Agent,
        prompt: str,
        on_delta: Callable[[str], None] | None,
    ) -> tuple[ModelResponse, int, tuple[ToolCallRecord, ...]]:
        """One agent call with its tool rounds; the final response (usage and cost of every turn),
        the attempts (one, plus the retries of every turn), and the tool calls."""
        retries = 0

        async def call_model(request: ModelRequest) -> ModelResponse:
            nonlocal retries
            response, n = await call_agent(agent, request, on_delta,
                                           None if on_delta is None else self._restart_writer(key, agent.id))
            retries += n - 1
            return response

        ctx = ToolContext(tenant_id=self.tenant_id, run_id=self.run_id, agent_id=agent.id,
                          settings=self.tools.registry.settings if self.tools is not None else {})
        ran: list[ToolCallRecord] = []
        observer = self._tool_observer(key, agent.id, ran)
        try:
            out = await loop.run(call_model, self.request_for(agent, prompt), ctx, observer=observer,
                                 journal=self.tool_journal(key), key=f"{key}/")
        except AgentCallFailed as exc:
            exc.attempts += retries  # the retries of the turns answered before this one count too
            exc.tool_calls = tuple(ran)  # type: ignore[attr-defined]  # kept in the step (failover)
            raise
        final = out.response
        response = ModelResponse(final.text, final.model, out.usage, final.finish_reason, (), out.cost_usd,
                                 final.provider)
        return response, 1 + retries, out.tool_calls

    def _tool_observer(self, key: str, agent_id: str, ran: list[ToolCallRecord]) -> Callable[[ToolCallEvent], None]:
        """Keeps each ended call in `ran`, and turns the loop's events into the run's."""
        sink = self._sink
        run_id = self.run_id

        def observe(event: ToolCallEvent) -> None:
            t = type(event)
            if t is ToolCallFinished or t is ToolCallRefused:
                ran.append(event.record)  # type: ignore[union-attr]
            if sink is None:
                return
            if t is ToolCallFinished:
                sink(ToolFinished(run_id, key, agent_id, event.record))  # type: ignore[union-attr]
            elif t is ToolCallStarted:
                sink(ToolStarted(run_id, key, agent_id, event.key, event.name,  # type: ignore[union-attr]
                                 dict(event.arguments)))  # type: ignore[union-attr]
            elif t is ToolCallRefused:
                sink(ToolRefused(run_id, key, agent_id, event.record))  # type: ignore[union-attr]
            elif t is ToolCallSerialized:
                sink(ToolSerialized(run_id, key, agent_id, event.key, event.name,  # type: ignore[union-attr]
                                    event.waits_for))  # type: ignore[union-attr]

        return observe

    def _tool_failure(
        self,
        key: str,
        agent: Agent,
        role: str,
        exc: Exception,
        calls: tuple[ToolCallRecord, ...],
        tried: list[tuple[str, str]],
        attempts: int,
        started: float,
    ) -> StepResult:
        """The step of a call its tools ended: too many tool rounds (with what the call did so far),
        or a required tool source (MCP server) that could not start."""
        usage, cost = Usage(), 0.0
        if isinstance(exc, ToolRoundsExceeded):
            calls, usage, cost = _joined(calls, exc.records), exc.usage, exc.cost_usd
            error = f"max_tool_rounds: {exc}"
        else:
            error = f"tools: {exc}"
        return StepResult(
            key, agent.id, role, error=error, usage=usage, cost_usd=cost, attempts=max(attempts, 1),
            failed_over_from=tuple(tried), duration_ms=(time.perf_counter() - started) * 1000,
            model=agent.config.model, offline=agent.offline, tool_calls=calls,
        )

    def _delta_writer(self, key: str, agent_id: str) -> Callable[[str], None]:
        # Built only when someone listens; kept out of `call` so that a call nobody streams
        # allocates no closure cells (they add up under thousands of concurrent runs).
        sink = self._sink
        assert sink is not None
        run_id = self.run_id

        def on_delta(text: str) -> None:
            sink(StepDelta(run_id, key, agent_id, text))

        return on_delta

    def _restart_writer(self, key: str, agent_id: str) -> Callable[[str, int], None]:
        sink = self._sink
        assert sink is not None
        run_id = self.run_id

        def on_restart(error: str, void_chars: int) -> None:
            sink(StepRestarted(run_id, key, agent_id, error, void_chars))

        return on_restart

    def _stand_in(self, failed: Agent, tried: Sequence[tuple[str, str]]) -> Agent | None:
        """The best agent to take over from `failed`: outside the run's pool if possible, and never
        outside the agents the caller named (`failover_within`) unless it allowed that."""
        tried_ids = {a for a, _ in tried}
        required = self.task.capabilities
        within = self.failover_within
        registry = self.registry.visible_to(self.tenant_id)  # never another tenant's agent
        outside = registry.fallbacks(failed, required, exclude=tried_ids | self.pool)
        if within is not None:
            outside = [a for a in outside if a.id in within]
        if outside:
            return outside[0]
        inside = registry.fallbacks(failed, required, exclude=tried_ids)
        if within is not None:
            inside = [a for a in inside if a.id in within]
        return inside[0] if inside else None

    def _no_stand_in(self, failed: Agent, tried: Sequence[tuple[str, str]]) -> str:
        """The error of a step no agent could answer: the last agent's, and, when only the caller's
        restriction to the agents it named kept another agent from standing in, that it did."""
        error = tried[-1][1]
        within = self.failover_within
        if within is None or len(tried) > self.max_failovers:
            return error
        registry = self.registry.visible_to(self.tenant_id)
        if not registry.fallbacks(failed, self.task.capabilities, exclude={a for a, _ in tried}):
            return error  # nobody else could have stood in anyway
        named = ", ".join(sorted(within))
        return (f"{error} (failover stays within the agents named for this run: {named}; "
                "allow_failover_outside lets it use others)")

    def _finish(self, step: StepResult) -> StepResult:
        self.steps.append(step)
        if self._sink is not None:
            self._sink(StepFinished(self.run_id, step))
        return step


def _joined(earlier: tuple[ToolCallRecord, ...], more: Sequence[ToolCallRecord]) -> tuple[ToolCallRecord, ...]:
    """`earlier` then `more`, each call once: a stand-in in a durable run replays the journalled calls of
    the agent it took over from (the same records); in process it makes its own (the same keys)."""
    if not earlier:
        return tuple(more)
    return (*earlier, *(r for r in more if r not in earlier))
