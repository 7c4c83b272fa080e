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
from ..models import Message, ModelRequest, ModelSettings, Usage
from .events import AgentFailedOver, RunEvent, StepDelta, StepFinished, StepStarted
from .result import StepResult

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
        while True:
            on_delta = None
            if sink is not None:
                sink(StepStarted(self.run_id, key, current.id, role))
                if self.stream_text:
                    on_delta = self._delta_writer(key, current.id)
            try:
                response, n = await call_agent(current, self.request_for(current, prompt), on_delta)
            except AgentCallFailed as exc:
                attempts += exc.attempts
                tried.append((current.id, f"{exc.kind}: {exc.reason}"))
                stand_in = self._stand_in(current, tried) if len(tried) <= self.max_failovers else None
                if stand_in is None:
                    return self._finish(StepResult(
                        key, current.id, role, error=tried[-1][1], attempts=attempts,
                        failed_over_from=tuple(tried[:-1]),
                        duration_ms=(time.perf_counter() - started) * 1000,
                        model=current.config.model, offline=current.offline,
                    ))
                self.emit(AgentFailedOver(self.run_id, key, current.id, stand_in.id, tried[-1][1]))
                current = stand_in
                continue
            return self._finish(StepResult(
                key, current.id, role, response.text, response.usage, response.cost_usd,
                (time.perf_counter() - started) * 1000, None, attempts + n, tuple(tried),
                response.model, current.offline,
            ))

    def _delta_writer(self, key: str, agent_id: str) -> Callable[[str], None]:
        # Built only when someone listens; kept out of `call` so that a call nobody streams
        # allocates no closure cells (they add up under thousands of concurrent runs).
        sink = self._sink
        assert sink is not None
        run_id = self.run_id

        def on_delta(text: str) -> None:
            sink(StepDelta(run_id, key, agent_id, text))

        return on_delta

    def _stand_in(self, failed: Agent, tried: Sequence[tuple[str, str]]) -> Agent | None:
        """The best agent to take over from `failed`: outside the run's pool if possible."""
        tried_ids = {a for a, _ in tried}
        required = self.task.capabilities
        outside = self.registry.fallbacks(failed, required, exclude=tried_ids | self.pool)
        if outside:
            return outside[0]
        inside = self.registry.fallbacks(failed, required, exclude=tried_ids)
        return inside[0] if inside else None

    def _finish(self, step: StepResult) -> StepResult:
        self.steps.append(step)
        if self._sink is not None:
            self._sink(StepFinished(self.run_id, step))
        return step
