"""The OpenAI Chat Completions adapter: OpenAI itself and every server that speaks its wire format
(Groq, Mistral, OpenRouter, Together, DeepSeek, Ollama, vLLM, llama.cpp).

The `openai` SDK does the HTTP; this module only translates loomiq's types to the wire format and
back, and the SDK's exceptions to `loomiq.models.errors`.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import openai

from ._guard import check_model_request
from ._http_errors import status_error
from ._types import (
    ZERO_USAGE,
    FinishReason,
    Message,
    ModelRequest,
    ModelResponse,
    StreamPart,
    TextDelta,
    ToolCall,
    ToolSpec,
    Usage,
)
from .errors import (
    MalformedResponse,
    ModelError,
    ModelTimeout,
    ProviderUnavailable,
)
from .pricing import Pricing

#: Sent as the key to local servers that need none: the SDK refuses to start without one.
NO_KEY = "not-needed"

# loomiq bounds each call itself (asyncio.timeout around it); this only catches a dead socket.
_SDK_TIMEOUT = openai.Timeout(900.0, connect=15.0)

_FINISH: dict[str, FinishReason] = {
    "stop": "stop",
    "length": "length",
    "tool_calls": "tool_calls",
    "function_call": "tool_calls",
    "content_filter": "content_filter",
}


class OpenAIChatModel:
    """A `ChatModel` on the OpenAI Chat Completions API, for OpenAI and compatible servers.

    Args:
        model_name: the model to ask for, e.g. ``gpt-4o-mini`` or ``llama3.1:8b``.
        api_key: the provider key; None for local servers that need none.
        base_url: the API root (ending in ``/v1``); None for OpenAI's own endpoint.
        provider: loomiq's provider id, reported on every response and checked by the guard.
        pricing: per-token prices; by default the model is looked up in genai-prices.
    """

    offline = False

    def __init__(
        self,
        *,
        model_name: str,
        api_key: str | None = None,
        base_url: str | None = None,
        provider: str = "openai",
        pricing: Pricing | None = None,
    ) -> None:
        self.provider = provider
        self.model_name = model_name
        self.pricing = pricing or Pricing(model=model_name, provider=provider)
        self._api_key = api_key or ""
        self._client = openai.AsyncOpenAI(
            api_key=api_key or NO_KEY, base_url=base_url, max_retries=0, timeout=_SDK_TIMEOUT
        )
        # The URL the SDK will really call (it falls back to OPENAI_BASE_URL, then api.openai.com).
        self.base_url = str(self._client.base_url)

    def __repr__(self) -> str:
        return f"OpenAIChatModel(provider={self.provider!r}, model={self.model_name!r}, url={self.base_url!r})"

    async def complete(self, request: ModelRequest) -> ModelResponse:
        """Send the request and wait for the whole answer."""
        check_model_request(self.provider, self.base_url)
        try:
            completion = await self._client.chat.completions.create(**self._params(request))
        except openai.OpenAIError as exc:
            raise translate_error(exc, self.provider, self._api_key) from _cause(exc, self._api_key)
        except json.JSONDecodeError as exc:
            raise MalformedResponse(f"{self.provider} sent a body that is not JSON: {exc}") from exc
        return self._response(completion)

    async def stream(self, request: ModelRequest) -> AsyncIterator[StreamPart]:
        """Yield `TextDelta`s as the server sends them, then one final `ModelResponse`."""
        check_model_request(self.provider, self.base_url)
        try:
            chunks = await self._client.chat.completions.create(
                **self._params(request), stream=True, stream_options={"include_usage": True}
            )
        except openai.OpenAIError as exc:
            raise translate_error(exc, self.provider, self._api_key) from _cause(exc, self._api_key)
        except json.JSONDecodeError as exc:
            raise MalformedResponse(f"{self.provider} sent a body that is not JSON: {exc}") from exc
        state = _StreamState()
        try:
            async for chunk in chunks:
                text = state.add(chunk)
                if text:
                    yield TextDelta(text)
        except openai.OpenAIError as exc:
            raise translate_error(exc, self.provider, self._api_key, mid_stream=True) from _cause(exc, self._api_key)
        except json.JSONDecodeError as exc:
            raise MalformedResponse(f"{self.provider} sent a stream event that is not JSON: {exc}") from exc
        finally:
            await chunks.close()
        if state.finish_reason is None:
            raise MalformedResponse(f"{self.provider} stream ended without a finish_reason (truncated)")
        tool_calls = tuple(
            parse_tool_call(c["id"], c["name"], "".join(c["arguments"]), self.provider)
            for _, c in sorted(state.tool_calls.items())
        )
        yield self._final("".join(state.text), state.usage, state.finish_reason, tool_calls, raw=None)

    async def aclose(self) -> None:
        """Close the SDK's HTTP connections."""
        await self._client.close()

    def _params(self, request: ModelRequest) -> dict[str, Any]:
        params: dict[str, Any] = {
            "model": self.model_name,
            "messages": [to_openai_message(m) for m in request.messages],
        }
        if request.tools:
            params["tools"] = [to_openai_tool(t) for t in request.tools]
        settings = request.settings
        if settings.temperature is not None:
            params["temperature"] = settings.temperature
        if settings.max_tokens is not None:
            # OpenAI deprecated `max_tokens` (its reasoning models reject it); compatible servers
            # mostly know only `max_tokens`.
            key = "max_completion_tokens" if self.provider == "openai" else "max_tokens"
            params[key] = settings.max_tokens
        if settings.top_p is not None:
            params["top_p"] = settings.top_p
        if settings.stop:
            params["stop"] = list(settings.stop)
        if settings.seed is not None:
            params["seed"] = settings.seed
        if settings.response_format is not None:
            params["response_format"] = dict(settings.response_format)
        if settings.tool_choice is not None and request.tools:
            params["tool_choice"] = settings.tool_choice
        return params

    def _response(self, completion: Any) -> ModelResponse:
        try:
            choice = completion.choices[0]
            message = choice.message
            text = message.content or ""
            calls = [
                (c.id, c.function.name, c.function.arguments)
                for c in (message.tool_calls or ())
                if getattr(c, "function", None) is not None
            ]
            reason = choice.finish_reason
            usage = _usage(completion.usage)
        except (AttributeError, IndexError, TypeError) as exc:
            raise MalformedResponse(f"{self.provider} sent an unusable completion: {exc}") from exc
        tool_calls = tuple(parse_tool_call(i, n, a, self.provider) for i, n, a in calls)
        return self._final(text, usage, _FINISH.get(reason or "", "stop"), tool_calls, raw=completion)

    def _final(
        self, text: str, usage: Usage, finish: FinishReason, tool_calls: tuple[ToolCall, ...], raw: Any
    ) -> ModelResponse:
        if tool_calls and finish == "stop":
            # Some compatible servers report "stop" even when the turn ends in tool calls.
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


@dataclass(slots=True)
class _StreamState:
    """What the chunks of one stream add up to."""

    text: list[str] = field(default_factory=list)
    tool_calls: dict[int, dict[str, Any]] = field(default_factory=dict)
    finish_reason: FinishReason | None = None
    usage: Usage = ZERO_USAGE

    def add(self, chunk: Any) -> str:
        """Fold one chunk in; return its text, if any."""
        if getattr(chunk, "usage", None) is not None:
            self.usage = _usage(chunk.usage)
        text = ""
        for choice in getattr(chunk, "choices", None) or ():
            delta = choice.delta
            if delta is not None and delta.content:
                text += delta.content
            for part in (delta.tool_calls if delta is not None else None) or ():
                index = getattr(part, "index", None)
                call = self.tool_calls.setdefault(
                    len(self.tool_calls) if index is None else index,
                    {"id": "", "name": "", "arguments": []},
                )
                if part.id:
                    call["id"] = part.id
                if part.function is not None:
                    name = part.function.name
                    if name and name != call["name"]:
                        # Usually sent once; some servers repeat it whole, a few split it.
                        call["name"] += name
                    if part.function.arguments:
                        call["arguments"].append(part.function.arguments)
            if choice.finish_reason:
                self.finish_reason = _FINISH.get(choice.finish_reason, "stop")
        if text:
            self.text.append(text)
        return text


def to_openai_message(message: Message) -> dict[str, Any]:
    """One loomiq message in the Chat Completions format."""
    if message.role == "tool":
        return {"role": "tool", "tool_call_id": message.tool_call_id or "", "content": message.content}
    out: dict[str, Any] = {"role": message.role, "content": message.content}
    if message.name and message.role == "user":
        out["name"] = message.name
    if message.role == "assistant" and message.tool_calls:
        out["content"] = message.content or None
        out["tool_calls"] = [
            {
                "id": c.id,
                "type": "function",
                # A call whose arguments did not parse is sent back as the model wrote it.
                "function": {
                    "name": c.name,
                    "arguments": c.raw_arguments if c.error is not None else json.dumps(c.arguments),
                },
            }
            for c in message.tool_calls
        ]
    return out


def to_openai_tool(tool: ToolSpec) -> dict[str, Any]:
    """One loomiq tool in the Chat Completions ``tools`` format."""
    return {
        "type": "function",
        "function": {"name": tool.name, "description": tool.description, "parameters": tool.parameters},
    }


def parse_tool_call(call_id: str | None, name: str | None, arguments: str | None, provider: str) -> ToolCall:
    """A `ToolCall` from the wire. Arguments that are not a JSON object give a call with `error` set
    (the tool loop answers it with an error result); a call without a name raises `MalformedResponse`."""
    if not name:
        raise MalformedResponse(f"{provider} sent a tool call without a function name")
    try:
        parsed = json.loads(arguments) if arguments and arguments.strip() else {}
    except json.JSONDecodeError as exc:
        return ToolCall(call_id or "", name, {}, arguments, f"arguments are not valid JSON: {exc}")
    if not isinstance(parsed, dict):
        return ToolCall(call_id or "", name, {}, arguments, "arguments are not a JSON object")
    return ToolCall(id=call_id or "", name=name, arguments=parsed)


def _usage(usage: Any) -> Usage:
    if usage is None:
        return ZERO_USAGE
    return Usage(usage.prompt_tokens or 0, usage.completion_tokens or 0)


def scrub(text: str, secret: str) -> str:
    """`text` with every occurrence of `secret` masked, so keys never reach logs or results."""
    return text.replace(secret, "***") if secret and secret != NO_KEY else text


def _cause(exc: BaseException, secret: str) -> BaseException | None:
    # Chain the SDK error for debugging, unless its text would print the key in a traceback.
    return None if secret and secret != NO_KEY and secret in str(exc) else exc


def _body_message(body: object, fallback: str) -> str:
    err = body.get("error", body) if isinstance(body, dict) else body
    message = err.get("message") if isinstance(err, dict) else None
    if isinstance(message, str):
        return message
    if isinstance(err, str) and err:
        return err
    return fallback


def translate_error(exc: openai.OpenAIError, provider: str, api_key: str, *, mid_stream: bool = False) -> ModelError:
    """The loomiq `ModelError` for an `openai` SDK exception."""
    if isinstance(exc, openai.APITimeoutError):
        return ModelTimeout(f"{provider} request timed out")
    if isinstance(exc, openai.APIConnectionError):
        if mid_stream:
            return MalformedResponse(f"{provider} stream was cut off: {scrub(str(exc), api_key)}")
        return ProviderUnavailable(f"{provider} is unreachable: {scrub(str(exc), api_key)}")
    if isinstance(exc, openai.APIStatusError):
        return status_error(
            provider,
            exc.status_code,
            scrub(_body_message(exc.body, exc.message), api_key),
            exc.response.headers,
        )
    if isinstance(exc, openai.APIResponseValidationError):
        return MalformedResponse(f"{provider} sent an unexpected response: {scrub(str(exc), api_key)}")
    if isinstance(exc, openai.APIError):
        # An error event inside a stream that had started fine: the server failed mid-answer.
        return ProviderUnavailable(f"{provider} failed mid-stream: {scrub(str(exc), api_key)}")
    return ModelError(f"{provider} client error: {scrub(str(exc), api_key)}")
