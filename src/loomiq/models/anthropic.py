"""The Anthropic Messages adapter, on the native API (not Anthropic's OpenAI-compatible endpoint).

The `anthropic` SDK does the HTTP; this module translates loomiq's types to Messages requests
(system prompt apart, ``tool_use`` / ``tool_result`` blocks, required ``max_tokens``) and back, and the
SDK's exceptions to `loomiq.models.errors`.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Mapping
from typing import Any

import anthropic
import httpx2

from ._guard import check_model_request
from ._http_errors import status_error
from ._types import FinishReason, Message, ModelRequest, ModelResponse, StreamPart, TextDelta, ToolCall, Usage
from .errors import (
    MalformedResponse,
    ModelError,
    ModelTimeout,
    ProviderUnavailable,
)
from .pricing import Pricing

#: `max_tokens` is required by the Messages API; used when the request leaves it unset.
DEFAULT_MAX_TOKENS = 1024

_NO_KEY = "not-needed"

# loomiq bounds each call itself (asyncio.timeout around it); this only catches a dead socket. Any
# explicit timeout also stops the SDK refusing large non-streaming `max_tokens` with a ValueError.
_SDK_TIMEOUT = anthropic.Timeout(900.0, connect=15.0)

_STOP: dict[str, FinishReason] = {
    "end_turn": "stop",
    "stop_sequence": "stop",
    "pause_turn": "stop",
    "max_tokens": "length",
    "model_context_window_exceeded": "length",
    "tool_use": "tool_calls",
    "refusal": "content_filter",
}


class AnthropicChatModel:
    """A `ChatModel` on Anthropic's Messages API.

    Args:
        model_name: the model to ask for, e.g. ``claude-sonnet-4-5``.
        api_key: the Anthropic key.
        base_url: the API root without ``/v1``; None for Anthropic's own endpoint.
        pricing: per-token prices; by default the model is looked up in genai-prices.
    """

    offline = False
    unsupported_settings: tuple[str, ...] = ("seed", "response_format")
    """`ModelSettings` the Messages API has no parameter for: a request that sets one is refused
    before it is sent (`loomiq.models.unsupported_settings`)."""

    def __init__(
        self,
        *,
        model_name: str,
        api_key: str | None = None,
        base_url: str | None = None,
        pricing: Pricing | None = None,
    ) -> None:
        self.provider = "anthropic"
        self.model_name = model_name
        self.pricing = pricing or Pricing(model=model_name, provider="anthropic")
        self._api_key = api_key or ""
        # An explicit key, even a placeholder, keeps the SDK from hunting for credential files.
        self._client = anthropic.AsyncAnthropic(
            api_key=api_key or _NO_KEY, base_url=base_url, max_retries=0, timeout=_SDK_TIMEOUT
        )
        self.base_url = str(self._client.base_url)

    def __repr__(self) -> str:
        return f"AnthropicChatModel(model={self.model_name!r}, url={self.base_url!r})"

    async def complete(self, request: ModelRequest) -> ModelResponse:
        """Send the request and wait for the whole answer."""
        check_model_request(self.provider, self.base_url)
        try:
            message = await self._client.messages.create(**self._params(request))
        except anthropic.AnthropicError as exc:
            raise self._error(exc) from self._cause(exc)
        except json.JSONDecodeError as exc:
            raise MalformedResponse(f"anthropic sent a body that is not JSON: {exc}") from exc
        try:
            blocks = [(b.type, b) for b in message.content]
            usage = _usage(message.usage)
            stop = message.stop_reason
        except (AttributeError, TypeError) as exc:
            raise MalformedResponse(f"anthropic sent an unusable message: {exc}") from exc
        text = "".join(b.text for kind, b in blocks if kind == "text")
        tool_calls = tuple(_tool_call(b.id, b.name, b.input) for kind, b in blocks if kind == "tool_use")
        return self._final(text, usage, stop, tool_calls, raw=message)

    async def stream(self, request: ModelRequest) -> AsyncIterator[StreamPart]:
        """Yield `TextDelta`s from the raw event stream, then one final `ModelResponse`."""
        check_model_request(self.provider, self.base_url)
        try:
            events = await self._client.messages.create(**self._params(request), stream=True)
        except anthropic.AnthropicError as exc:
            raise self._error(exc) from self._cause(exc)
        except json.JSONDecodeError as exc:
            raise MalformedResponse(f"anthropic sent a body that is not JSON: {exc}") from exc
        text: list[str] = []
        tools: dict[int, list[Any]] = {}  # block index -> [id, name, input, json parts]
        input_tokens = output_tokens = 0
        stop: str | None = None
        stopped = False
        try:
            async for event in events:
                kind = event.type
                if kind == "message_start":
                    usage = _usage(event.message.usage)
                    input_tokens, output_tokens = usage.input_tokens, usage.output_tokens
                elif kind == "content_block_start":
                    block = event.content_block
                    if block.type == "tool_use":
                        tools[event.index] = [block.id, block.name, block.input, []]
                    elif block.type == "text" and block.text:
                        text.append(block.text)
                        yield TextDelta(block.text)
                elif kind == "content_block_delta":
                    delta = event.delta
                    if delta.type == "text_delta" and delta.text:
                        text.append(delta.text)
                        yield TextDelta(delta.text)
                    elif delta.type == "input_json_delta" and event.index in tools:
                        tools[event.index][3].append(delta.partial_json)
                elif kind == "message_delta":
                    stop = event.delta.stop_reason or stop
                    output_tokens = event.usage.output_tokens or output_tokens
                    if event.usage.input_tokens is not None:
                        input_tokens = _usage(event.usage, output_tokens).input_tokens
                elif kind == "message_stop":
                    stopped = True
        except anthropic.AnthropicError as exc:
            raise self._error(exc, mid_stream=True) from self._cause(exc)
        except json.JSONDecodeError as exc:
            raise MalformedResponse(f"anthropic sent a stream event that is not JSON: {exc}") from exc
        except httpx2.TimeoutException as exc:
            raise ModelTimeout("anthropic stream timed out") from exc
        except httpx2.TransportError as exc:
            # The SDK does not wrap transport errors raised while reading the event stream.
            raise MalformedResponse(f"anthropic stream was cut off: {type(exc).__name__}") from exc
        finally:
            await events.close()
        if not stopped:
            raise MalformedResponse("anthropic stream ended without message_stop (truncated)")
        tool_calls = tuple(
            _tool_call(call_id, name, "".join(parts) if parts else given)
            for _, (call_id, name, given, parts) in sorted(tools.items())
        )
        yield self._final("".join(text), Usage(input_tokens, output_tokens), stop, tool_calls, raw=None)

    async def aclose(self) -> None:
        """Close the SDK's HTTP connections."""
        await self._client.close()

    def _params(self, request: ModelRequest) -> dict[str, Any]:
        system, messages = to_anthropic_messages(request.messages)
        settings = request.settings
        params: dict[str, Any] = {
            "model": self.model_name,
            "max_tokens": settings.max_tokens if settings.max_tokens is not None else DEFAULT_MAX_TOKENS,
            "messages": messages,
        }
        if system:
            params["system"] = system
        if request.tools:
            params["tools"] = [
                {"name": t.name, "description": t.description, "input_schema": t.parameters} for t in request.tools
            ]
        extra: dict[str, Any] = {}
        if settings.temperature is not None:
            # This SDK version has no `temperature` argument; the API still takes the field.
            extra["temperature"] = settings.temperature
        if settings.top_p is not None:
            extra["top_p"] = settings.top_p
        if settings.stop:
            extra["stop_sequences"] = list(settings.stop)
        if settings.tool_choice is not None and request.tools:
            extra["tool_choice"] = anthropic_tool_choice(settings.tool_choice)
        if extra:
            params["extra_body"] = extra
        return params

    def _final(
        self, text: str, usage: Usage, stop: str | None, tool_calls: tuple[ToolCall, ...], raw: Any
    ) -> ModelResponse:
        finish = _STOP.get(stop or "", "stop")
        if tool_calls and finish == "stop":
            finish = "tool_calls"
        return ModelResponse(
            text=text,
            model=self.model_name,
            usage=usage,
            finish_reason=finish,
            tool_calls=tool_calls,
            cost_usd=self.pricing.cost(usage),
            provider=self.provider,
            raw=raw,
        )

    def _cause(self, exc: BaseException) -> BaseException | None:
        # Chain the SDK error for debugging, unless its text would print the key in a traceback.
        return None if self._api_key and self._api_key in str(exc) else exc

    def _scrub(self, text: str) -> str:
        return text.replace(self._api_key, "***") if self._api_key else text

    def _error(self, exc: anthropic.AnthropicError, *, mid_stream: bool = False) -> ModelError:
        if isinstance(exc, anthropic.APITimeoutError):
            return ModelTimeout("anthropic request timed out")
        if isinstance(exc, anthropic.APIConnectionError):
            if mid_stream:
                return MalformedResponse(f"anthropic stream was cut off: {self._scrub(str(exc))}")
            return ProviderUnavailable(f"anthropic is unreachable: {self._scrub(str(exc))}")
        if isinstance(exc, anthropic.APIStatusError):
            message = self._scrub(exc.api_message or exc.message)
            if exc.status_code < 400:
                # An `error` event inside a stream whose HTTP status was 200: the server failed mid-answer.
                return ProviderUnavailable(f"anthropic failed mid-stream ({exc.type}): {message}")
            return status_error(self.provider, exc.status_code, message, exc.response.headers)
        if isinstance(exc, anthropic.APIResponseValidationError):
            return MalformedResponse(f"anthropic sent an unexpected response: {self._scrub(str(exc))}")
        return ModelError(f"anthropic client error: {self._scrub(str(exc))}")


def anthropic_tool_choice(choice: str | Mapping[str, Any]) -> dict[str, Any]:
    """OpenAI's ``tool_choice`` in the Messages API's form (``none``, ``auto``, ``any``, or one tool)."""
    if isinstance(choice, str):
        return {"type": {"required": "any"}.get(choice, choice)}
    function = choice.get("function")
    name = function.get("name") if isinstance(function, Mapping) else None
    return {"type": "tool", "name": name} if name else {"type": "auto"}


def to_anthropic_messages(messages: tuple[Message, ...]) -> tuple[str, list[dict[str, Any]]]:
    """Split loomiq messages into the ``system`` text and Messages-API turns.

    Tool results become ``tool_result`` blocks in a user turn, and consecutive turns of the same role
    are merged, because the API wants every result of one assistant turn in the next user turn.
    """
    system: list[str] = []
    turns: list[dict[str, Any]] = []
    for m in messages:
        if m.role == "system":
            system.append(m.content)
            continue
        blocks: list[dict[str, Any]] = []
        if m.role == "tool":
            role = "user"
            blocks.append({"type": "tool_result", "tool_use_id": m.tool_call_id or "", "content": m.content})
        else:
            role = m.role
            if m.content:
                blocks.append({"type": "text", "text": m.content})
            blocks.extend({"type": "tool_use", "id": c.id, "name": c.name, "input": c.arguments} for c in m.tool_calls)
        if turns and turns[-1]["role"] == role:
            turns[-1]["content"].extend(blocks)
        else:
            turns.append({"role": role, "content": blocks})
    return "\n\n".join(system), turns


def _tool_call(call_id: str, name: str, arguments: object) -> ToolCall:
    # Input that is not a JSON object gives a call with `error` set, answered by the tool loop.
    raw = arguments if isinstance(arguments, str) else None
    if isinstance(arguments, str):
        try:
            arguments = json.loads(arguments) if arguments.strip() else {}
        except json.JSONDecodeError as exc:
            return ToolCall(call_id, name, {}, raw, f"arguments are not valid JSON: {exc}")
    if not isinstance(arguments, dict):
        return ToolCall(call_id, name, {}, raw if raw is not None else json.dumps(arguments),
                        "arguments are not a JSON object")
    return ToolCall(id=call_id, name=name, arguments=arguments)


def _usage(usage: Any, output_tokens: int | None = None) -> Usage:
    # Cached prompt tokens are billed input too; the API counts them apart from `input_tokens`.
    inputs = (
        (usage.input_tokens or 0)
        + (getattr(usage, "cache_creation_input_tokens", None) or 0)
        + (getattr(usage, "cache_read_input_tokens", None) or 0)
    )
    if output_tokens is None:
        output_tokens = usage.output_tokens or 0
    return Usage(inputs, output_tokens)
