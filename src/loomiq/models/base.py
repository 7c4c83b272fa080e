"""The `ChatModel` protocol: the one seam between loomiq and every LLM provider."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Protocol, runtime_checkable

from ._types import ModelRequest, ModelResponse, ModelSettings, StreamPart


@runtime_checkable
class ChatModel(Protocol):
    """A chat model loomiq can call: one request in, one response (or a stream of parts) out.

    Implementations raise only `loomiq.models.errors.ModelError` subclasses for provider failures,
    and let `asyncio.CancelledError` through untouched so that cancelling a run aborts the request.
    """

    provider: str
    """Provider id, e.g. ``openai``, ``anthropic``, ``groq``, ``scripted``."""
    model_name: str
    """The provider's model name."""
    offline: bool
    """True when answers do not come from a real model (the scripted model)."""

    async def complete(self, request: ModelRequest) -> ModelResponse:
        """Run the request to completion."""
        ...

    def stream(self, request: ModelRequest) -> AsyncIterator[StreamPart]:
        """Yield `TextDelta` parts as they arrive, then exactly one final `ModelResponse`."""
        ...

    async def aclose(self) -> None:
        """Release connections held by the model."""
        ...


def unsupported_settings(model: ChatModel, settings: ModelSettings) -> tuple[str, ...]:
    """The settings `settings` sets that `model`'s provider has no parameter for (a model lists them
    in an optional ``unsupported_settings`` attribute), so a caller can refuse instead of dropping them."""
    refused = getattr(model, "unsupported_settings", ())
    return tuple(name for name in settings.given() if name in refused)
