"""How the offline scripted agents use tools: when a request offers tools and the conversation has
no tool result yet, call one read-only tool with arguments made from the task; once results are
back, answer with them. So the offline quick start shows a real tool round trip, and a run that
offers no tools gets exactly the answer it got before."""

from __future__ import annotations

import json
import shlex
from typing import Any

from ._types import ModelRequest, ToolCall, ToolSpec

_RESULT_CHARS = 160


def user_task(request: ModelRequest) -> str:
    """The task of the request: the last user message's first paragraph (strategies put the task
    first and their instructions after a blank line)."""
    for message in reversed(request.messages):
        if message.role == "user":
            return message.content.split("\n\n", 1)[0]
    last = request.messages[-1].content if request.messages else ""
    return last.split("\n\n", 1)[0]


def _since_last_user(request: ModelRequest) -> list[Any]:
    tail = []
    for message in reversed(request.messages):
        if message.role == "user":
            break
        tail.append(message)
    return tail[::-1]


def offline_tool_call(request: ModelRequest) -> ToolCall | None:
    """The call an offline agent makes: the first read-only tool offered, unless the model has
    already called tools for this task; None when there is nothing to call."""
    if not request.tools or any(m.role == "tool" for m in _since_last_user(request)):
        return None
    chosen = next((t for t in request.tools if t.read_only), None)
    if chosen is None:
        return None
    return ToolCall("offline_call_0", chosen.name, _arguments(chosen, " ".join(user_task(request).split())))


def tool_results_note(request: ModelRequest) -> str:
    """`` I called tool X, which returned: ...`` for each tool result since the last user message."""
    calls = {c.id: c.name for m in _since_last_user(request) for c in m.tool_calls}
    notes = []
    for message in _since_last_user(request):
        if message.role == "tool":
            name = calls.get(message.tool_call_id or "", message.name or "a tool")
            text = " ".join(message.content.split())
            text = text if len(text) <= _RESULT_CHARS else text[: _RESULT_CHARS - 1] + "…"
            notes.append(f" I called tool {name}, which returned: {text}")
    return "".join(notes)


def _arguments(spec: ToolSpec, task: str) -> dict[str, Any]:
    """Arguments that fit the tool's schema, made from the task (code tools count its words)."""
    props: dict[str, Any] = spec.parameters.get("properties") or {}
    required = spec.parameters.get("required") or list(props)[:1]
    out: dict[str, Any] = {}
    for name in required:
        schema = props.get(name) or {}
        if name == "code":
            out[name] = _word_count_code(spec.name, task)
        elif "enum" in schema and schema["enum"]:
            out[name] = schema["enum"][0]
        elif "default" in schema:
            out[name] = schema["default"]
        else:
            out[name] = _value(schema.get("type"), task)
    return out


def _value(kind: Any, task: str) -> Any:
    if isinstance(kind, list):
        kind = next((k for k in kind if k != "null"), "string")
    return {"integer": 1, "number": 1, "boolean": False, "array": [], "object": {}}.get(kind, task[:200])


def _word_count_code(tool: str, task: str) -> str:
    if tool in ("shell", "bash", "sh"):
        return f"printf '%s' {shlex.quote(task)} | wc -w"
    if tool in ("javascript", "js", "node"):
        return f"console.log({json.dumps(task)}.split(/\\s+/).filter(Boolean).length)"
    return f"print(len({task!r}.split()))"
