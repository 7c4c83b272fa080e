"""Factories shared by the test packages: ``from tests.factories import make_agent``."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Iterable
from typing import Any

from loomiq.agents import Agent, AgentConfig, RetryPolicy
from loomiq.models import ChatModel, ModelError, ModelRequest, ModelResponse, ScriptedModel, StreamPart

#: Retries with delays of a millisecond or two, so retrying tests stay fast.
FAST_RETRY = RetryPolicy(max_attempts=3, base_delay_s=0.001, max_delay_s=0.004, max_retry_after_s=1.0)
#: A single attempt: the first failure is final.
NO_RETRY = RetryPolicy(max_attempts=1, base_delay_s=0.001, max_delay_s=0.004, max_retry_after_s=1.0)


def make_agent(
    agent_id: str,
    caps: Iterable[str] = (),
    *,
    model: ChatModel | None = None,
    name: str = "",
    retry: RetryPolicy = FAST_RETRY,
    timeout_s: float = 5.0,
    max_concurrency: int = 4,
    breaker_threshold: int = 5,
    breaker_cooldown_s: float = 30.0,
    system_prompt: str = "",
    **scripted_kwargs: Any,
) -> Agent:
    """`Agent(AgentConfig(...), ScriptedModel(**scripted_kwargs))` with fast retries.

    Pass `model` to use another `ChatModel` (then `scripted_kwargs` must be empty).
    """
    if model is None:
        model = ScriptedModel(model_name=f"scripted-{agent_id}", **scripted_kwargs)
    elif scripted_kwargs:
        raise TypeError("scripted options given together with a model")
    config = AgentConfig(
        id=agent_id,
        provider=model.provider,
        model=model.model_name,
        name=name,
        capabilities=frozenset(caps),
        timeout_s=timeout_s,
        max_concurrency=max_concurrency,
        system_prompt=system_prompt,
        retry=retry,
        breaker_threshold=breaker_threshold,
        breaker_cooldown_s=breaker_cooldown_s,
    )
    return Agent(config, model)


def scripted(agent: Agent) -> ScriptedModel:
    """The agent's model, typed as the `ScriptedModel` it is in these tests."""
    assert isinstance(agent.model, ScriptedModel)
    return agent.model


class PromptLog:
    """A `ScriptedModel.replies` function that records every prompt and answers with `answer`.

    `answer` is a string, or a function of the call index returning one.
    """

    def __init__(self, answer: str | Callable[[int], str]) -> None:
        self.answer = answer
        self.prompts: list[str] = []

    def __call__(self, request: ModelRequest, index: int) -> str:
        self.prompts.append(request.prompt_text())
        return self.answer(index) if callable(self.answer) else self.answer


class RaisingModel:
    """A `ChatModel` whose every call raises `error` (e.g. a non-retryable `AuthenticationFailed`)."""

    provider = "fake"
    model_name = "raising"
    offline = True

    def __init__(self, error: ModelError) -> None:
        self.error = error
        self.calls = 0

    async def complete(self, request: ModelRequest) -> ModelResponse:
        self.calls += 1
        raise self.error

    async def stream(self, request: ModelRequest) -> AsyncIterator[StreamPart]:
        self.calls += 1
        raise self.error
        yield  # pragma: no cover - makes this an async generator

    async def aclose(self) -> None:
        """Nothing to release."""
