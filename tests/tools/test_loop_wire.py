"""The tool loop over real HTTP: the local wire server speaking the OpenAI and Anthropic formats,
streamed tool-call deltas, several calls per turn, invalid and malformed arguments, a tool that
raises and one that hangs, results sent back in each wire format."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator

import pytest

from loomiq.models import ChatModel, Message, ModelRequest, ModelResponse
from loomiq.models.anthropic import AnthropicChatModel
from loomiq.models.openai_compat import OpenAIChatModel
from loomiq.tools import ToolLoop, tool

from ..providers.wire_server import Reply, WireServer, text_reply


@pytest.fixture
def wire_server() -> Iterator[WireServer]:
    server = WireServer().start()
    try:
        yield server
    finally:
        server.stop()


@tool
async def get_weather(city: str) -> str:
    """Current weather in a city."""
    return f"{city}: 18C"


@tool
async def explode(reason: str) -> str:
    """Always fails."""
    raise RuntimeError(reason)


@tool(timeout_s=0.2)
async def hang() -> str:
    """Never answers."""
    await asyncio.sleep(60)
    return "never"


TURN = Reply(
    text="Let me check.",
    tool_calls=(
        ("c1", "get_weather", json.dumps({"city": "Oslo"})),
        ("c2", "get_weather", json.dumps({"city": 42})),
        ("c3", "get_weather", '{"city": "Ro'),
        ("c4", "explode", json.dumps({"reason": "disk on fire"})),
        ("c5", "hang", "{}"),
        ("c6", "rm_rf", "{}"),
    ),
    chunk_chars=3,
)

EXPECTED = [
    ("get_weather", None, "Oslo: 18C"),
    ("get_weather", "invalid_arguments", "Error: argument 'city': Input should be a valid string"),
    ("get_weather", "malformed_arguments", "Error: arguments are not valid JSON"),
    ("explode", "exception", "Error: RuntimeError: disk on fire"),
    ("hang", "timeout", "Error: tool 'hang' did not finish within 0.2s; it was cancelled"),
    ("rm_rf", "refused", "Error: tool 'rm_rf' is not allowed here"),
]


def streamed(model: ChatModel):
    async def call_model(request: ModelRequest) -> ModelResponse:
        final = None
        async for part in model.stream(request):
            if isinstance(part, ModelResponse):
                final = part
        assert final is not None
        return final

    return call_model


def completed(model: ChatModel):
    return model.complete


def check(result_records: tuple, text: str) -> None:
    got = [(r.name, r.error_kind, r.content) for r in result_records]
    assert len(got) == len(EXPECTED)
    for (name, kind, content), (want_name, want_kind, want_prefix) in zip(got, EXPECTED, strict=True):
        assert (name, kind) == (want_name, want_kind)
        assert content.startswith(want_prefix), content
    assert text == "Oslo is at 18C."


@pytest.mark.parametrize("mode", ["stream", "complete"])
async def test_openai_wire(wire_server: WireServer, mode: str) -> None:
    model = OpenAIChatModel(model_name="gpt-test", base_url=wire_server.openai_base_url, provider="openai-compatible")
    wire_server.script(TURN, text_reply("Oslo is at 18C."))
    call_model = streamed(model) if mode == "stream" else completed(model)
    try:
        result = await ToolLoop([get_weather, explode, hang]).run(
            call_model, ModelRequest((Message("user", "Weather?"),))
        )
    finally:
        await model.aclose()
    check(result.tool_calls, result.response.text)
    first, second = (r.body for r in wire_server.requests)
    assert [t["function"]["name"] for t in first["tools"]] == ["get_weather", "explode", "hang"]
    assistant = second["messages"][1]
    assert [c["id"] for c in assistant["tool_calls"]] == ["c1", "c2", "c3", "c4", "c5", "c6"]
    assert assistant["tool_calls"][2]["function"]["arguments"] == '{"city": "Ro'  # sent back as written
    results = second["messages"][2:]
    assert [(m["role"], m["tool_call_id"]) for m in results] == [("tool", f"c{i}") for i in range(1, 7)]
    assert results[0]["content"] == "Oslo: 18C"


@pytest.mark.parametrize("mode", ["stream", "complete"])
async def test_anthropic_wire(wire_server: WireServer, mode: str) -> None:
    model = AnthropicChatModel(model_name="claude-test", base_url=wire_server.url)
    wire_server.script(TURN, text_reply("Oslo is at 18C."))
    call_model = streamed(model) if mode == "stream" else completed(model)
    try:
        result = await ToolLoop([get_weather, explode, hang]).run(
            call_model, ModelRequest((Message("user", "Weather?"),))
        )
    finally:
        await model.aclose()
    check(result.tool_calls, result.response.text)
    second = wire_server.requests[1].body
    assert [t["name"] for t in second["tools"]] == ["get_weather", "explode", "hang"]
    assistant, user = second["messages"][1:]
    assert [b.get("id") for b in assistant["content"] if b["type"] == "tool_use"] == [f"c{i}" for i in range(1, 7)]
    blocks = user["content"]
    assert [(b["type"], b["tool_use_id"]) for b in blocks] == [("tool_result", f"c{i}") for i in range(1, 7)]
    assert blocks[0]["content"] == "Oslo: 18C"
