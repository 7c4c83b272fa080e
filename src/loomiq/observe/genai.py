"""The spans of an agent run, named and attributed after the OpenTelemetry GenAI semantic conventions, each
also binding its ids to the log lines written inside it. Cheap when tracing is off: one context-variable set
(the log ids) and no attribute is built. When it is on, a span keeps its few arguments and the ``gen_ai.*``
attributes are built at export, off the hot path (`loomiq.observe._export.TEMPLATES`)."""

from __future__ import annotations

import importlib
from types import TracebackType
from typing import Any

from .logs import _IDS, Scope
from .tracing import _NULL, Span

_tracing = importlib.import_module(".tracing", __package__)  # the module (the package's `tracing` is the function)


_CLIENT = 2  # the SDK's SpanKind.CLIENT


class _AgentSpan(Span):
    """An ``invoke_agent`` span that also binds the `agent` log id (one object where `Scope` and a span would be
    two; `as` gives the span)."""

    __slots__ = ("_ids_token",)

    def __enter__(self) -> Span:
        outer = _IDS.get()
        agent = {"agent": self.args[0]}
        self._ids_token = _IDS.set({**outer, **agent} if outer else agent)
        return Span.__enter__(self)

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        try:
            Span.__exit__(self, kind, exc, tb)
        finally:
            _IDS.reset(self._ids_token)


def invoke_agent(agent_id: str, name: str, provider: str, model: str, step: str) -> Scope | Span:
    """One agent answering one step of a run (``invoke_agent {agent}``); log lines inside carry `agent`."""
    if _tracing._tracer is not None:
        return _AgentSpan(f"invoke_agent {agent_id}", "invoke_agent", (agent_id, name, provider, model, step))
    return Scope({"agent": agent_id}, None)


def chat(provider: str, model: str, agent_id: str) -> Any:
    """One model call (``chat {model}``, a client span); a no-op when tracing is off."""
    if _tracing._tracer is None:
        return _NULL
    return Span(f"chat {model}", "chat", (provider, model, agent_id), _CLIENT)


def record_response(span: Any, response: Any) -> None:
    """The answer's model, usage and finish reason on a `chat` span."""
    if span is None:
        return
    attributes = {
        "gen_ai.response.model": response.model or "",
        "gen_ai.usage.input_tokens": response.usage.input_tokens,
        "gen_ai.usage.output_tokens": response.usage.output_tokens,
        "gen_ai.response.finish_reasons": [response.finish_reason or ""],
    }
    if isinstance(span, Span):
        span.set_attributes(attributes)
    else:
        for key, value in attributes.items():
            span.set_attribute(key, value)


def execute_tool(name: str, call_id: str, description: str = "") -> Any:
    """One tool call (``execute_tool {tool}``); a no-op when tracing is off."""
    if _tracing._tracer is None:
        return _NULL
    return Span(f"execute_tool {name}", "execute_tool", (name, call_id, description or ""))


def invoke_workflow(name: str, run_id: str) -> Any:
    """One workflow run (``invoke_workflow {name}``); a no-op when tracing is off."""
    if _tracing._tracer is None:
        return _NULL
    return Span(f"invoke_workflow {name}", "invoke_workflow", (name, run_id))
