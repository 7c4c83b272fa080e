"""The spans of an agent run, named and attributed after the OpenTelemetry GenAI semantic conventions, each
also binding its ids to the log lines written inside it. Cheap when tracing is off: one context-variable set
(the log ids) and no attribute is built."""

from __future__ import annotations

from typing import Any

from .logs import Scope
from .tracing import _NULL, enabled, start_span


def invoke_agent(agent_id: str, name: str, provider: str, model: str, step: str) -> Scope:
    """One agent answering one step of a run (``invoke_agent {agent}``); log lines inside carry `agent`."""
    span = None
    if enabled():
        span = start_span(f"invoke_agent {agent_id}", {
            "gen_ai.operation.name": "invoke_agent", "gen_ai.agent.id": agent_id, "gen_ai.agent.name": name,
            "gen_ai.provider.name": provider, "gen_ai.request.model": model, "loomiq.step": step,
        })
    return Scope({"agent": agent_id}, span)


def chat(provider: str, model: str, agent_id: str) -> Any:
    """One model call (``chat {model}``, a client span); a no-op when tracing is off."""
    if not enabled():
        return _NULL
    return start_span(f"chat {model}", {
        "gen_ai.operation.name": "chat", "gen_ai.provider.name": provider, "gen_ai.request.model": model,
        "gen_ai.agent.id": agent_id,
    }, kind="client")


def record_response(span: Any, response: Any) -> None:
    """The answer's model, usage and finish reason on a `chat` span."""
    if span is None:
        return
    span.set_attribute("gen_ai.response.model", response.model or "")
    span.set_attribute("gen_ai.usage.input_tokens", response.usage.input_tokens)
    span.set_attribute("gen_ai.usage.output_tokens", response.usage.output_tokens)
    span.set_attribute("gen_ai.response.finish_reasons", [response.finish_reason or ""])


def execute_tool(name: str, call_id: str, description: str = "") -> Any:
    """One tool call (``execute_tool {tool}``); a no-op when tracing is off."""
    if not enabled():
        return _NULL
    return start_span(f"execute_tool {name}", {
        "gen_ai.operation.name": "execute_tool", "gen_ai.tool.name": name, "gen_ai.tool.call.id": call_id,
        "gen_ai.tool.type": "function", "gen_ai.tool.description": description or None,
    })


def invoke_workflow(name: str, run_id: str) -> Any:
    """One workflow run (``invoke_workflow {name}``); a no-op when tracing is off."""
    if not enabled():
        return _NULL
    return start_span(f"invoke_workflow {name}", {
        "gen_ai.operation.name": "invoke_workflow", "gen_ai.workflow.name": name, "loomiq.workflow_run_id": run_id,
    })
