"""Data that crosses the `ChatModel` seam: requests, responses, usage and stream parts.

These are plain frozen dataclasses with slots: they are built on every model call, so they must cost
next to nothing (no validation here; validation happens at the edges, in config and HTTP bodies).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

Role = Literal["system", "user", "assistant", "tool"]
FinishReason = Literal["stop", "length", "tool_calls", "content_filter", "error", "cancelled"]


@dataclass(frozen=True, slots=True)
class ToolCall:
    """A function call the model asked for; `arguments` is the parsed JSON object.

    A provider sometimes sends arguments that are not a JSON object. Such a call still comes back
    (the tool loop answers it with an error result the model can correct) instead of failing the
    whole model call: `error` says what is wrong, `raw_arguments` keeps the text as sent, and
    `arguments` is empty.
    """

    id: str
    name: str
    arguments: dict[str, Any]
    raw_arguments: str | None = None
    error: str | None = None


@dataclass(frozen=True, slots=True)
class Message:
    """One chat message. `tool_calls` only on assistant messages, `tool_call_id` only on tool results."""

    role: Role
    content: str
    tool_calls: tuple[ToolCall, ...] = ()
    tool_call_id: str | None = None
    name: str | None = None


@dataclass(frozen=True, slots=True)
class ToolSpec:
    """A function the model may call, described by a JSON Schema for its arguments.

    `read_only` says the tool changes nothing (MCP's ``readOnlyHint``); it is not sent to providers,
    but the offline scripted model only calls such tools on its own.
    """

    name: str
    description: str
    parameters: dict[str, Any]
    read_only: bool = False


@dataclass(frozen=True, slots=True)
class ModelSettings:
    """Per-request generation settings; `None` (or empty) leaves the provider's default.

    `stop` holds up to four stop sequences; `response_format` and `tool_choice` are in OpenAI's
    Chat Completions form (``{"type": "json_object"}``; ``"auto"``, ``"none"``, ``"required"`` or
    ``{"type": "function", "function": {"name": ...}}``): each adapter maps them to its provider,
    and a provider without the setting lists it in its model's `unsupported_settings`.
    """

    temperature: float | None = None
    max_tokens: int | None = None
    top_p: float | None = None
    stop: tuple[str, ...] = ()
    seed: int | None = None
    response_format: Mapping[str, Any] | None = None
    tool_choice: str | Mapping[str, Any] | None = None

    def given(self) -> tuple[str, ...]:
        """The names of the settings that are set (not left to the provider)."""
        return tuple(name for name in _SETTING_NAMES if getattr(self, name) not in (None, ()))


_SETTING_NAMES = ("temperature", "max_tokens", "top_p", "stop", "seed", "response_format", "tool_choice")


@dataclass(frozen=True, slots=True)
class ModelRequest:
    """What an agent sends to a model: the messages, the tools offered, and settings."""

    messages: tuple[Message, ...]
    tools: tuple[ToolSpec, ...] = ()
    settings: ModelSettings = ModelSettings()

    def prompt_text(self) -> str:
        """All message contents joined, for models that take plain text (scripted, tests)."""
        return "\n\n".join(m.content for m in self.messages)


@dataclass(frozen=True, slots=True)
class Usage:
    """Token counts of one call, or summed over many."""

    input_tokens: int = 0
    output_tokens: int = 0

    @property
    def total_tokens(self) -> int:
        """Input plus output tokens."""
        return self.input_tokens + self.output_tokens

    def __add__(self, other: Usage) -> Usage:
        return Usage(self.input_tokens + other.input_tokens, self.output_tokens + other.output_tokens)

    def as_dict(self) -> dict[str, int]:
        """JSON form used by the CLI and the API."""
        return {
            "input_tokens": self.input_tokens,
            "output_tokens": self.output_tokens,
            "total_tokens": self.total_tokens,
        }


ZERO_USAGE = Usage()


@dataclass(frozen=True, slots=True)
class ModelResponse:
    """A finished model call. `cost_usd` is filled by the adapter from its price table."""

    text: str
    model: str
    usage: Usage = ZERO_USAGE
    finish_reason: FinishReason = "stop"
    tool_calls: tuple[ToolCall, ...] = ()
    cost_usd: float = 0.0
    provider: str = ""
    raw: Any = field(default=None, repr=False, compare=False)


@dataclass(frozen=True, slots=True)
class TextDelta:
    """A piece of text streamed by the model, before the call has finished."""

    text: str


#: What `ChatModel.stream` yields: text deltas, then exactly one final `ModelResponse`.
StreamPart = TextDelta | ModelResponse
