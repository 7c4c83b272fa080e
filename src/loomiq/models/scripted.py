"""The scripted model: an offline `ChatModel` whose replies, latency, failures and tokens are set by
the caller or by `loomiq.yaml`. It serves the offline demo, every test and the benchmarks.

Every scripted answer is labelled offline (`ChatModel.offline` is True); the CLI and the results say
so, so an offline answer is never mistaken for a real model's.
"""

from __future__ import annotations

import asyncio
import hashlib
import itertools
import time
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from ._offline_tools import offline_tool_call, tool_results_note, user_task
from ._types import ModelRequest, ModelResponse, StreamPart, TextDelta, ToolCall, Usage
from .errors import MalformedResponse, ModelError, ProviderUnavailable, RateLimited
from .pricing import FREE, Pricing

Failure = Literal["timeout", "rate_limit", "server_error", "malformed_tool_call"]


@dataclass(frozen=True, slots=True)
class ScriptedReply:
    """One scripted outcome: a reply (text and tool calls) or a failure, with optional overrides."""

    text: str = ""
    tool_calls: tuple[ToolCall, ...] = ()
    error: Failure | None = None
    retry_after: float | None = None
    latency_s: float | None = None
    input_tokens: int | None = None
    output_tokens: int | None = None

    @classmethod
    def calling(cls, *calls: tuple[str, dict[str, Any]] | ToolCall, text: str = "") -> ScriptedReply:
        """A reply that asks for tool calls, given as ``(name, arguments)`` pairs (ids ``call_0``,
        ``call_1``... are made up) or as `ToolCall`s (e.g. with broken ``raw_arguments``)."""
        made = tuple(
            c if isinstance(c, ToolCall) else ToolCall(f"call_{i}", c[0], dict(c[1])) for i, c in enumerate(calls)
        )
        return cls(text=text, tool_calls=made)


@dataclass(slots=True)
class ScriptedCall:
    """One entry of the model's ledger: what was asked, and whether the call finished."""

    index: int
    prompt: str
    started_at: float
    finished: bool = False
    outcome: str = "in_flight"
    request: ModelRequest | None = None
    """The request as the model received it (messages, tools, settings), for tests to inspect."""


Replies = Sequence[str | ScriptedReply] | Callable[[ModelRequest, int], str | ScriptedReply] | None

_OPENERS = (
    "Weighing what matters most here",
    "Looking at this from first principles",
    "Taking the practical view",
    "Starting from the constraints",
)


def offline_answer(name: str, persona: str, request: ModelRequest) -> str:
    """The default scripted reply: deterministic, built from the prompt, and labelled offline; after a
    tool round it also says what the tools returned."""
    task = user_task(request)
    first = " ".join(task.split())[:90]
    who = persona or name
    digest = hashlib.blake2s(f"{who}\0{task}".encode(), digest_size=2).digest()
    opener = _OPENERS[digest[0] % len(_OPENERS)]
    return (
        f"[offline answer from scripted agent {who}] {opener}: on \"{first}\", "
        f"the decision hinges on cost, risk and reversibility.{tool_results_note(request)} "
        "This text is scripted, not a model's."
    )


def _count_tokens(text: str) -> int:
    # About four characters per token, the usual rule of thumb for English text.
    return max(1, len(text) // 4)


@dataclass
class ScriptedModel:
    """An offline `ChatModel` that plays back a script.

    Args:
        replies: a list played in order (cycling), a function of (request, call index), or None for
            `offline_answer`. A list item may be a plain string or a `ScriptedReply`.
        latency_s: simulated time per call (split across stream chunks when streaming).
        failures: call index -> failure, applied before `replies` (e.g. ``{0: "rate_limit"}``).
        model_name: reported model name.
        persona: who answers in the default offline answer (the agent's name); the model name if empty.
        pricing: per-token prices, so cost accounting can be tested offline.
        hang_s: how long a scripted ``timeout`` failure blocks (the agent's timeout should fire first).
        ledger_size: how many of the latest calls `calls` keeps (older entries are dropped, so a
            long-lived model, as in ``loomiq serve``, does not grow with every call); `calls_made` and
            `finished_calls` count them all.
    """

    replies: Replies = None
    latency_s: float = 0.0
    failures: Mapping[int, Failure | ScriptedReply] = field(default_factory=dict)
    model_name: str = "scripted"
    persona: str = ""
    pricing: Pricing = FREE
    hang_s: float = 3600.0
    chunk_words: int = 3
    provider: str = "scripted"
    offline: bool = True
    ledger_size: int = 1000
    calls: list[ScriptedCall] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._counter = itertools.count()
        self.calls_made = 0
        self._finished = 0

    @property
    def finished_calls(self) -> int:
        """How many calls completed successfully (all of them, not only those still in `calls`)."""
        return self._finished

    def _next(self, request: ModelRequest) -> tuple[ScriptedCall, ScriptedReply]:
        index = next(self._counter)
        call = ScriptedCall(index, "", time.monotonic(), request=request)
        self.calls_made += 1
        self.calls.append(call)
        excess = len(self.calls) - max(0, self.ledger_size)
        if excess > 0:
            del self.calls[:excess]
        failure = self.failures.get(index)
        if failure is not None:
            return call, failure if isinstance(failure, ScriptedReply) else ScriptedReply(error=failure)
        replies = self.replies
        if replies is None:
            tool_call = offline_tool_call(request)
            reply: str | ScriptedReply = (
                ScriptedReply(tool_calls=(tool_call,)) if tool_call is not None
                else offline_answer(self.model_name, self.persona, request)
            )
        elif callable(replies):
            reply = replies(request, index)
        else:
            reply = replies[index % len(replies)]
        return call, reply if isinstance(reply, ScriptedReply) else ScriptedReply(text=reply)

    async def _fail(self, call: ScriptedCall, reply: ScriptedReply) -> None:
        call.outcome = reply.error or "error"
        if reply.error == "timeout":
            await asyncio.sleep(self.hang_s)
            raise ProviderUnavailable("scripted model hung past its timeout")
        err: ModelError
        if reply.error == "rate_limit":
            err = RateLimited("scripted 429: rate limited", status=429, retry_after=reply.retry_after)
        elif reply.error == "server_error":
            err = ProviderUnavailable("scripted 500: internal server error", status=500)
        else:
            err = MalformedResponse("scripted malformed tool call: arguments are not valid JSON")
        if reply.latency_s:
            await asyncio.sleep(reply.latency_s)
        raise err

    def _response(self, call: ScriptedCall, request: ModelRequest, reply: ScriptedReply) -> ModelResponse:
        usage = Usage(
            reply.input_tokens if reply.input_tokens is not None else _count_tokens(request.prompt_text()),
            reply.output_tokens if reply.output_tokens is not None else _count_tokens(reply.text),
        )
        call.finished = True
        call.outcome = "ok"
        self._finished += 1
        return ModelResponse(
            text=reply.text,
            model=self.model_name,
            usage=usage,
            finish_reason="tool_calls" if reply.tool_calls else "stop",
            tool_calls=reply.tool_calls,
            cost_usd=self.pricing.cost(usage),
            provider=self.provider,
        )

    async def complete(self, request: ModelRequest) -> ModelResponse:
        """Play the next scripted outcome."""
        call, reply = self._next(request)
        if reply.error is not None:
            await self._fail(call, reply)
        latency = self.latency_s if reply.latency_s is None else reply.latency_s
        if latency:
            await asyncio.sleep(latency)
        return self._response(call, request, reply)

    async def stream(self, request: ModelRequest) -> AsyncIterator[StreamPart]:
        """Play the next scripted outcome as text deltas of a few words each."""
        call, reply = self._next(request)
        if reply.error is not None:
            await self._fail(call, reply)
        latency = self.latency_s if reply.latency_s is None else reply.latency_s
        words = reply.text.split(" ")
        chunks = [" ".join(words[i : i + self.chunk_words]) for i in range(0, len(words), self.chunk_words)]
        pause = latency / max(1, len(chunks))
        for i, chunk in enumerate(chunks):
            if pause:
                await asyncio.sleep(pause)
            if chunk:
                yield TextDelta(chunk if i == 0 else " " + chunk)
        yield self._response(call, request, reply)

    async def aclose(self) -> None:
        """Nothing to release."""
