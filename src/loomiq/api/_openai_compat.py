"""OpenAI Chat Completions wire format: request bodies, their validation, and pure functions from
loomiq's runs to OpenAI's response objects and stream chunks. No I/O here; `routes_openai` does the
running.

Decisions (docs/openai.md is the user's account of them):
- ``model`` names an agent id or a strategy name (``single``, ``sequential``, ``parallel``,
  ``consensus``, ``adaptive``, ``auto``); agent ids win a clash.
- An agent as the model: the messages (system and developer, user, assistant with its
  ``tool_calls``, ``tool`` results), the sampling parameters and the client's ``tools`` and
  ``tool_choice`` reach the agent's model as sent (after the agent's own system prompt, if it has
  one), in one model turn; the answer comes back whole, tool calls included, for the client to run.
- A strategy as the model: the last message is the user's request (the task); the messages before
  it are the conversation every agent of the run gets before its step's prompt, and the sampling
  parameters apply to every agent call. Tools, and a conversation holding tool calls, need an agent.
- Usage is summed over every agent step of the run; loomiq's details (strategy, agents, cost,
  offline) ride along in a ``loomiq`` member, which OpenAI SDKs keep as an extra field.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from ..models import Message, ModelRequest, ModelResponse, ModelSettings, ToolCall, ToolSpec, Usage
from ..runtime import RunResult

_FUNCTION_NAME = r"^[a-zA-Z0-9_-]{1,64}$"


class WireError(ValueError):
    """A request the schema accepts but that cannot be served as sent; `param` names the field."""

    def __init__(self, message: str, param: str, status: int = 422) -> None:
        super().__init__(message)
        self.param = param
        self.status = status


class TextPart(BaseModel):
    """One part of a message's content list; only text parts are accepted."""

    model_config = ConfigDict(extra="allow")
    type: Literal["text"]
    text: str


class FunctionCall(BaseModel):
    """The function of an assistant's tool call: its name and its arguments as JSON text."""

    model_config = ConfigDict(extra="allow")
    name: str = Field(pattern=_FUNCTION_NAME)
    arguments: str = Field(max_length=1_000_000)


class AssistantToolCall(BaseModel):
    """A tool call the assistant made earlier in the conversation."""

    model_config = ConfigDict(extra="allow")
    id: str = Field(min_length=1, max_length=256)
    type: Literal["function"] = "function"
    function: FunctionCall


class ChatMessage(BaseModel):
    """One message of the conversation."""

    model_config = ConfigDict(extra="allow")
    role: Literal["system", "developer", "user", "assistant", "tool"] = Field(
        description="The deprecated `function` role is not accepted: send `tool` messages.")
    content: str | list[TextPart] | None = None
    name: str | None = None
    tool_calls: list[AssistantToolCall] | None = Field(None, max_length=128,
                                                       description="On assistant messages only.")
    tool_call_id: str | None = Field(None, max_length=256, description="On tool messages only: the call answered.")

    def text(self) -> str:
        """The message's text (text parts joined)."""
        if self.content is None:
            return ""
        if isinstance(self.content, str):
            return self.content
        return "".join(part.text for part in self.content)


class FunctionDefinition(BaseModel):
    """A client-side function the model may call."""

    model_config = ConfigDict(extra="allow")
    name: str = Field(pattern=_FUNCTION_NAME, description="a-z, A-Z, 0-9, _ and -, at most 64 characters.")
    description: str | None = None
    parameters: dict[str, Any] | None = Field(None, description="A JSON Schema for the arguments.")
    strict: bool | None = None


class ToolDefinition(BaseModel):
    """One entry of ``tools``: only ``function`` tools exist in Chat Completions."""

    model_config = ConfigDict(extra="allow")
    type: Literal["function"]
    function: FunctionDefinition


class NamedFunction(BaseModel):
    """The function a named ``tool_choice`` forces."""

    name: str = Field(pattern=_FUNCTION_NAME)


class NamedToolChoice(BaseModel):
    """``tool_choice`` that forces one function."""

    type: Literal["function"]
    function: NamedFunction


class ResponseFormat(BaseModel):
    """``response_format``: plain text, any JSON object, or JSON matching a schema."""

    model_config = ConfigDict(extra="allow")
    type: Literal["text", "json_object", "json_schema"]
    json_schema: dict[str, Any] | None = Field(None, description="Required with type `json_schema`.")


class StreamOptions(BaseModel):
    """``stream_options``: only ``include_usage`` changes anything."""

    model_config = ConfigDict(extra="allow")
    include_usage: bool = False


class ChatCompletionRequest(BaseModel):
    """The body of ``POST /v1/chat/completions``, validated as OpenAI validates it. Fields not listed
    here are accepted and ignored (docs/openai.md lists what is supported)."""

    model_config = ConfigDict(extra="allow", json_schema_extra={"examples": [
        {"model": "consensus", "messages": [{"role": "user", "content": "Should we shard the database now?"}]},
        {"model": "auto", "messages": [{"role": "system", "content": "Be brief."},
                                       {"role": "user", "content": "Name one risk of sharding."}], "stream": True},
    ]})
    model: str = Field(min_length=1, description="An agent id or a strategy name (GET /v1/models lists them).")
    messages: list[ChatMessage] = Field(min_length=1, max_length=10_000)
    stream: bool = False
    stream_options: StreamOptions | None = None
    n: int | None = Field(None, ge=1, le=1, description="Only one choice is produced.")
    temperature: float | None = Field(None, ge=0, le=2)
    top_p: float | None = Field(None, ge=0, le=1)
    max_tokens: int | None = Field(None, ge=1, le=1_000_000, description="Deprecated by OpenAI; as "
                                   "max_completion_tokens.")
    max_completion_tokens: int | None = Field(None, ge=1, le=1_000_000)
    stop: str | list[str] | None = Field(None, description="Up to 4 sequences where the model stops.")
    seed: int | None = Field(None, ge=-(2**53 - 1), le=2**53 - 1, description="An integer JSON numbers "
                             "carry exactly (at most 2^53 - 1 either way).")
    response_format: ResponseFormat | None = None
    tools: list[ToolDefinition] | None = Field(None, max_length=128, description="Client-side functions: "
                                               "the model's calls come back for the client to run. Needs an "
                                               "agent as the model.")
    tool_choice: Literal["none", "auto", "required"] | NamedToolChoice | None = None
    logprobs: bool | None = Field(None, description="Not offered: only false.")
    presence_penalty: float | None = Field(None, ge=-2, le=2, description="Accepted and ignored.")
    frequency_penalty: float | None = Field(None, ge=-2, le=2, description="Accepted and ignored.")
    user: str | None = None

    @property
    def include_usage(self) -> bool:
        """Whether the stream ends with a usage chunk."""
        return bool(self.stream and self.stream_options and self.stream_options.include_usage)

    def settings(self) -> dict[str, Any]:
        """The generation settings the request sets, by `ModelSettings` name."""
        stop = [self.stop] if isinstance(self.stop, str) else self.stop
        choice = self.tool_choice
        out: dict[str, Any] = {
            "temperature": self.temperature,
            "max_tokens": self.max_completion_tokens if self.max_completion_tokens is not None else self.max_tokens,
            "top_p": self.top_p,
            "stop": tuple(stop) if stop else None,
            "seed": self.seed,
            "response_format": self.response_format.model_dump(exclude_none=True) if self.response_format else None,
            "tool_choice": choice.model_dump() if isinstance(choice, NamedToolChoice) else choice,
        }
        return {k: v for k, v in out.items() if v is not None}


def check_request(body: ChatCompletionRequest) -> None:
    """What the schema cannot say: raises `WireError` naming the field."""
    if body.logprobs:
        raise WireError("logprobs are not offered by loomiq: send logprobs false or leave it out.", "logprobs")
    if isinstance(body.stop, list) and len(body.stop) > 4:
        raise WireError(f"stop holds {len(body.stop)} sequences; at most 4 are allowed.", "stop")
    if body.response_format is not None and body.response_format.type == "json_schema" \
            and not body.response_format.json_schema:
        raise WireError("response_format of type json_schema needs a json_schema object.", "response_format")
    names = [t.function.name for t in body.tools or ()]
    if len(set(names)) != len(names):
        raise WireError("tools names a function twice: each function name must be unique.", "tools")
    if body.tool_choice is not None and not body.tools:
        raise WireError("tool_choice is only allowed when tools are given.", "tool_choice")
    if isinstance(body.tool_choice, NamedToolChoice) and body.tool_choice.function.name not in names:
        raise WireError(f"tool_choice names the function {body.tool_choice.function.name!r}, which is not in "
                        "tools.", "tool_choice")
    pending: set[str] = set()
    for i, m in enumerate(body.messages):
        if m.tool_calls and m.role != "assistant":
            raise WireError(f"messages[{i}] has tool_calls, which only assistant messages may have.",
                            f"messages[{i}].tool_calls")
        if m.role == "assistant":
            pending = {c.id for c in m.tool_calls or ()}
        elif m.role == "tool":
            if not m.tool_call_id:
                raise WireError(f"messages[{i}] is a tool message without tool_call_id: name the call it answers.",
                                f"messages[{i}].tool_call_id")
            if m.tool_call_id not in pending:
                raise WireError(f"messages[{i}] answers tool call {m.tool_call_id!r}, which the assistant message "
                                "before it did not make.", f"messages[{i}].tool_call_id")
        elif m.role in ("user", "system", "developer"):
            pending = set()


def uses_tools(body: ChatCompletionRequest) -> str | None:
    """The field that makes the request need an agent model (tools, or tool calls in the
    conversation), or None."""
    if body.tools:
        return "tools"
    if body.tool_choice is not None:
        return "tool_choice"
    for i, m in enumerate(body.messages):
        if m.tool_calls:
            return f"messages[{i}].tool_calls"
        if m.role == "tool":
            return f"messages[{i}]"
    return None


def model_request(body: ChatCompletionRequest, system_prompt: str, defaults: ModelSettings) -> ModelRequest:
    """The request an agent's model gets: the agent's system prompt, then the messages as sent; the
    client's tools; its settings over the agent's `defaults`."""
    messages: list[Message] = [Message("system", system_prompt)] if system_prompt else []
    for m in body.messages:
        if m.role == "tool":
            messages.append(Message("tool", m.text(), tool_call_id=m.tool_call_id))
        elif m.role == "assistant":
            calls = tuple(_tool_call(c) for c in m.tool_calls or ())
            messages.append(Message("assistant", m.text(), tool_calls=calls))
        else:
            role = "system" if m.role == "developer" else m.role
            messages.append(Message(role, m.text(), name=m.name if role == "user" else None))
    tools = tuple(
        ToolSpec(t.function.name, t.function.description or "",
                 t.function.parameters or {"type": "object", "properties": {}})
        for t in body.tools or ()
    )
    settings = {"temperature": defaults.temperature, "max_tokens": defaults.max_tokens, **body.settings()}
    return ModelRequest(tuple(messages), tools, ModelSettings(**settings))


def _tool_call(call: AssistantToolCall) -> ToolCall:
    try:
        arguments = json.loads(call.function.arguments) if call.function.arguments.strip() else {}
    except json.JSONDecodeError:
        arguments = None
    if isinstance(arguments, dict):
        return ToolCall(call.id, call.function.name, arguments)
    # Sent back to the model as the client had it.
    return ToolCall(call.id, call.function.name, {}, call.function.arguments, "arguments are not a JSON object")


def split_messages(messages: Sequence[ChatMessage]) -> tuple[str, list[dict[str, str]]]:
    """For a strategy: (the task: the last message, a user message with text; the messages before it
    as ``{role, content}``, developer as system). Raises `WireError` otherwise."""
    last = messages[-1]
    if last.role != "user" or not last.text().strip():
        raise WireError("With a strategy as the model, the last message must be the user's request, with text "
                        f"(it is a {last.role} message{' without text' if last.role == 'user' else ''}).",
                        f"messages[{len(messages) - 1}]")
    context = [
        {"role": "system" if m.role == "developer" else m.role, "content": m.text()}
        for m in messages[:-1] if m.text()
    ]
    return last.text(), context


def usage_body(usage: Usage) -> dict[str, int]:
    """OpenAI's ``usage`` object."""
    return {
        "prompt_tokens": usage.input_tokens,
        "completion_tokens": usage.output_tokens,
        "total_tokens": usage.total_tokens,
    }


def loomiq_details(result: RunResult) -> dict[str, Any]:
    """The ``loomiq`` extension member: what ran, who answered, what it cost, and whether offline."""
    return {
        "task_id": result.task_id,
        "status": result.status,
        "strategy": result.strategy,
        "strategy_reason": result.strategy_reason,
        "answered": result.answered,
        "failed": result.failed,
        "degraded": result.degraded,
        "cost_usd": round(result.cost_usd, 10),
        "duration_ms": round(result.duration_ms, 3),
        "offline": result.offline,
    }


_FINISH = {"stop": "stop", "length": "length", "tool_calls": "tool_calls", "content_filter": "content_filter"}


def finish_reason(response: ModelResponse | None) -> str:
    """OpenAI's ``finish_reason`` for a turn (a strategy's answer, with no response, is ``stop``)."""
    return _FINISH.get(response.finish_reason, "stop") if response is not None else "stop"


def tool_calls_body(calls: Sequence[ToolCall], *, indexed: bool = False) -> list[dict[str, Any]]:
    """OpenAI's ``tool_calls`` (with ``index`` for stream deltas); arguments as the model wrote them."""
    out = []
    for i, c in enumerate(calls):
        arguments = c.raw_arguments if c.error is not None and c.raw_arguments is not None else json.dumps(
            c.arguments, ensure_ascii=False)
        call = {"id": c.id, "type": "function", "function": {"name": c.name, "arguments": arguments}}
        out.append({"index": i, **call} if indexed else call)
    return out


def completion_body(result: RunResult, model: str, created: int, response: ModelResponse | None = None) -> dict[
        str, Any]:
    """A ``chat.completion`` object for a finished run; `response` is the agent's, when an agent was
    the model (its tool calls and finish reason come back as they are)."""
    message: dict[str, Any] = {"role": "assistant", "content": result.output, "refusal": None}
    if response is not None and response.tool_calls:
        message["content"] = response.text or None
        message["tool_calls"] = tool_calls_body(response.tool_calls)
    return {
        "id": f"chatcmpl-{result.task_id}",
        "object": "chat.completion",
        "created": created,
        "model": model,
        "system_fingerprint": None,
        "choices": [{"index": 0, "message": message, "logprobs": None, "finish_reason": finish_reason(response)}],
        "usage": usage_body(result.usage),
        "loomiq": loomiq_details(result),
    }


def chunk_body(
    completion_id: str,
    model: str,
    created: int,
    delta: dict[str, Any] | None,
    *,
    finish_reason: str | None = None,
    with_usage_field: bool = False,
    usage: Usage | None = None,
    extra: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """One ``chat.completion.chunk``. `delta` None makes the usage-only chunk (no choices)."""
    body: dict[str, Any] = {
        "id": completion_id,
        "object": "chat.completion.chunk",
        "created": created,
        "model": model,
        "system_fingerprint": None,
        "choices": []
        if delta is None
        else [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish_reason}],
    }
    if with_usage_field or usage is not None:
        # With include_usage, every chunk has "usage": null except the last, which has the totals.
        body["usage"] = usage_body(usage) if usage is not None else None
    if extra:
        body.update(extra)
    return body


def encode(body: dict[str, Any]) -> str:
    """Compact JSON, as OpenAI sends it."""
    return json.dumps(body, separators=(",", ":"), ensure_ascii=False)


def models_body(agents: Iterable[tuple[str, str]], strategies: Iterable[str], created: int) -> dict[str, Any]:
    """``GET /v1/models``: every agent (id, provider) and every strategy, as OpenAI model objects."""
    data = [{"id": ident, "object": "model", "created": created, "owned_by": f"loomiq-agent:{provider}"}
            for ident, provider in agents]
    data += [{"id": name, "object": "model", "created": created, "owned_by": "loomiq-strategy"}
             for name in strategies]
    return {"object": "list", "data": data}
