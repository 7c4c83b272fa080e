"""Suite-wide guards: no real model request, no provider key or endpoint from the environment."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest

from loomiq.agents import Agent
from loomiq.models import model_requests_allowed, set_model_requests_allowed

from .factories import make_agent as _make_agent

#: Variables that would point loomiq at a real provider (or at a config file) if left set.
PROVIDER_ENV = (
    "OPENAI_API_KEY",
    "ANTHROPIC_API_KEY",
    "GROQ_API_KEY",
    "MISTRAL_API_KEY",
    "OPENROUTER_API_KEY",
    "TOGETHER_API_KEY",
    "DEEPSEEK_API_KEY",
    "OLLAMA_BASE_URL",
    "VLLM_BASE_URL",
    "LLAMACPP_BASE_URL",
    "LOOMIQ_CONFIG",
    "LOOMIQ_DEFAULT_MODEL",
    # Read by the vendor SDKs themselves: an endpoint, credential or header a test must not inherit.
    "OPENAI_BASE_URL",
    "OPENAI_ORG_ID",
    "OPENAI_PROJECT_ID",
    "OPENAI_ADMIN_KEY",
    "OPENAI_CUSTOM_HEADERS",
    "ANTHROPIC_BASE_URL",
    "ANTHROPIC_AUTH_TOKEN",
    "ANTHROPIC_CUSTOM_HEADERS",
    "ANTHROPIC_PROFILE",
    "ANTHROPIC_CONFIG_DIR",
)


@pytest.fixture(scope="session", autouse=True)
def _offline_session() -> Iterator[None]:
    """Forbid requests to non-loopback providers and hide provider keys for the whole session."""
    before = model_requests_allowed()
    with pytest.MonkeyPatch.context() as mp:
        for name in PROVIDER_ENV:
            mp.delenv(name, raising=False)
        set_model_requests_allowed(False)
        try:
            yield
        finally:
            set_model_requests_allowed(before)


@pytest.fixture
def make_agent() -> Callable[..., Agent]:
    """`tests.factories.make_agent`: an `Agent` on a `ScriptedModel` with fast retries."""
    return _make_agent
