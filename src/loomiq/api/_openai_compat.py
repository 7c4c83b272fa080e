"""OpenAI Chat Completions wire format: request bodies, and pure functions from loomiq's runs to
OpenAI's response objects and stream chunks. No I/O here; `routes_openai` does the running.

Decisions:
- ``model`` names an agent id (that agent answers alone, strategy ``single``) or a strategy name
  (``single``, ``sequential``, ``parallel``, ``consensus``, ``adaptive``, ``auto``); agent ids win a clash.
- The last ``user`` message is the task. Every other message (system and developer instructions,
  earlier turns, tool results) is the conversation's context: it is kept in the task's context, and
  appended to the prompt after a blank line, where the strategies expect material that follows the
  task, so the agents see it too.
- Usage is summed over every agent step of the run; loomiq's details (strategy, agents, cost,
  offline) ride along in a ``loomiq`` member, which OpenAI SDKs keep as an extra field.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from ..models import Usage
from ..runtime import RunResult


class TextPart(BaseModel):
    """One part of a message's content list; only text parts are accepted."""

    model_config = ConfigDict(extra="allow")
    type: Literal["text"]
    text: str


class ChatMessage(BaseModel):
    """One message of the conversation."""

    model_config = ConfigDict(extra="allow")
    role: Literal["system", "developer", "user", "assistant", "tool", "function"]
    content: str | list[TextPart] | None = None
    name: str | None = None

    def text(self) -> str:
        """The message's text (text parts joined)."""
        if self.content is None:
            return ""
        if isinstance(self.content, str):
            return self.content
        return "".join(part.text for part in self.content)


class StreamOptions(BaseModel):
    """``stream_options``: only ``include_usage`` changes anything."""

    model_config = ConfigDict(extra="allow")
    include_usage: bool = False


class ChatCompletionRequest(BaseModel):
    """The body of ``POST /v1/chat/completions``. Sampling parameters OpenAI clients send (temperature,
    max_tokens, ...) are accepted and ignored: each agent's own settings apply."""

    model_config = ConfigDict(extra="allow", json_schema_extra={"examples": [
        {"model": "consensus", "messages": [{"role": "user", "content": "Should we shard the database now?"}]},
        {"model": "auto", "messages": [{"role": "system", "content": "Be brief."},
                                       {"role": "user", "content": "Name one risk of sharding."}], "stream": True},
    ]})
    model: str = Field(min_length=1, description="An agent id or a strategy name (GET /v1/models lists them).")
    messages: list[ChatMessage] = Field(min_length=1)
    stream: bool = False
    stream_options: StreamOptions | None = None
    n: int | None = Field(None, ge=1, le=1, description="Only one choice is produced.")
    tools: list[dict[str, Any]] | None = Field(None, max_length=0, description="Tool calling is not offered here.")
    user: str | None = None

    @property
    def include_usage(self) -> bool:
        """Whether the stream ends with a usage chunk."""
        return bool(self.stream and self.stream_options and self.stream_options.include_usage)


def split_messages(messages: Sequence[ChatMessage]) -> tuple[str, list[dict[str, str]]] | None:
    """(the last user message's text, every other message as {role, content}), or None when there is
    no user message with text."""
    for index in range(len(messages) - 1, -1, -1):
        message = messages[index]
        if message.role == "user" and message.text().strip():
            context = [
                {"role": m.role, "content": m.text()} for i, m in enumerate(messages) if i != index and m.text()
            ]
            return message.text(), context
    return None


def compose_prompt(task: str, context: Sequence[dict[str, str]]) -> str:
    """The prompt the agents get: the task first, then the conversation, after a blank line."""
    if not context:
        return task
    lines = "\n".join(f"[{m['role']}] {m['content']}" for m in context)
    return f"{task}\n\nConversation so far, for context (the request above is the latest user message):\n{lines}"


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


def completion_body(result: RunResult, model: str, created: int) -> dict[str, Any]:
    """A ``chat.completion`` object for a finished run."""
    return {
        "id": f"chatcmpl-{result.task_id}",
        "object": "chat.completion",
        "created": created,
        "model": model,
        "system_fingerprint": None,
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": result.output, "refusal": None},
                "logprobs": None,
                "finish_reason": "stop",
            }
        ],
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
