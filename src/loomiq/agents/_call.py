"""One resilient agent call: concurrency slot, per-call timeout, retries with backoff that honour
`Retry-After`, the circuit breaker, and the agent's statistics.

This is the innermost hot path of every run: keep it free of allocation it does not need.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

from ..models import ModelRequest, ModelResponse, TextDelta
from ..models.errors import EmptyAnswer, ModelError, ModelTimeout
from ..observe import genai
from ._deadline import watch_for
from .agent import Agent


class AgentCallFailed(Exception):
    """An agent could not answer: its retries are spent, the error is not retryable, or its
    circuit is open. `kind` is a short machine-readable reason."""

    def __init__(self, agent_id: str, kind: str, message: str, attempts: int) -> None:
        super().__init__(f"{agent_id}: {message}")
        self.agent_id = agent_id
        self.kind = kind
        self.reason = message
        self.attempts = attempts


async def _stream(agent: Agent, request: ModelRequest, on_delta: Callable[[str], None]) -> ModelResponse:
    final: ModelResponse | None = None
    async for part in agent.model.stream(request):
        if isinstance(part, TextDelta):
            on_delta(part.text)
        else:
            final = part
    if final is None:
        raise ModelError(f"{agent.model.provider} stream ended without a final response")
    return final


async def call_agent(
    agent: Agent,
    request: ModelRequest,
    on_delta: Callable[[str], None] | None = None,
    on_restart: Callable[[str, int], None] | None = None,
) -> tuple[ModelResponse, int]:
    """Call `agent` until it answers or gives up; returns the response and the attempts it took.

    `on_delta` gets the streamed text; when an attempt that streamed some fails and is retried,
    `on_restart` gets the error and how many characters the failed attempt streamed (void: the next
    attempt's text starts over).

    Raises `AgentCallFailed` when the agent cannot answer, and lets `asyncio.CancelledError` through
    (cancelling aborts the provider request at once).
    """
    stats = agent.stats
    breaker = agent.breaker
    policy = agent.config.retry
    timeout = agent.config.timeout_s
    watch = watch_for(asyncio.get_running_loop())
    attempt = 0
    streamed = 0
    delta = on_delta
    if on_delta is not None and on_restart is not None:
        inner = on_delta

        def delta(text: str) -> None:
            nonlocal streamed
            streamed += len(text)
            inner(text)

    while True:
        if not agent.enabled:
            raise AgentCallFailed(agent.id, "offline", "agent is offline", attempt)
        if not breaker.allow():
            raise AgentCallFailed(agent.id, "circuit_open", "circuit breaker is open", attempt)
        error: ModelError
        streamed = 0  # characters this attempt streamed (counted only for `on_restart`)
        async with agent.slots:
            stats.in_flight += 1
            stats.calls += 1
            started = time.perf_counter()
            deadline = watch.add(timeout)
            try:
                with genai.chat(agent.config.provider, agent.config.model, agent.id) as span:
                    if delta is None:
                        response = await agent.model.complete(request)
                    else:
                        response = await _stream(agent, request, delta)
                    if span is not None:
                        genai.record_response(span, response)
            except ModelError as exc:
                error = exc
            except asyncio.CancelledError:
                # Only our own deadline's cancellation becomes a timeout; any other propagates.
                if not deadline.absorb():
                    breaker.release_probe()
                    raise
                error = ModelTimeout(f"no answer within {timeout:g}s")
            else:
                text = response.text
                usage = response.usage
                stats.input_tokens += usage.input_tokens
                stats.output_tokens += usage.output_tokens
                stats.cost_usd += response.cost_usd
                if text and not text.isspace() or response.tool_calls:
                    breaker.record_success()
                    stats.successes += 1
                    stats.total_latency_s += time.perf_counter() - started
                    return response, attempt + 1
                # Nothing to use (no text, no tool call): a failure, so the step fails over instead of
                # "answering" nothing. Its tokens were paid for all the same.
                error = EmptyAnswer(
                    f"the model answered with no text and no tool call (finish_reason {response.finish_reason})"
                )
            finally:
                watch.remove(deadline)
                stats.in_flight -= 1
        breaker.record_failure()
        stats.failures += 1
        stats.last_error = f"{error.kind}: {error}"
        delay = policy.delay(attempt, error.retry_after) if error.retryable else None
        attempt += 1
        if delay is None:
            raise AgentCallFailed(agent.id, error.kind, str(error), attempt)
        if streamed and on_restart is not None:
            on_restart(f"{error.kind}: {error}", streamed)
        await asyncio.sleep(delay)
