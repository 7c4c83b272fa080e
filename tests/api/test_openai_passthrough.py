"""``/v1/chat/completions`` passes the conversation and the parameters through faithfully: to the
agent's model when an agent is the model (tools included, so the official SDK's tool loop works
against loomiq), to every agent of the run when a strategy is; validated as OpenAI validates them."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx2
import openai
import pytest

from loomiq import Agent, AgentConfig, Orchestrator, ScriptedModel
from loomiq.api import Settings, build_server, create_app
from loomiq.models import Message, ModelSettings, ScriptedReply, ToolCall, ToolSpec
from loomiq.models.anthropic import AnthropicChatModel

from ..providers.wire_server import WireServer, text_reply, tool_call_reply
from .support import SECRET, token
from .test_openai import ASK, chunks_of
from .test_problems import assert_problem

WEATHER = {"type": "function", "function": {
    "name": "get_weather", "description": "The weather in a city.",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}}

CONVERSATION = [
    {"role": "system", "content": "Answer briefly."},
    {"role": "developer", "content": "Use metric units."},
    {"role": "user", "content": "What is the weather in Paris?", "name": "ada"},
    {"role": "assistant", "content": None, "tool_calls": [
        {"id": "call_9", "type": "function", "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'}}]},
    {"role": "tool", "tool_call_id": "call_9", "content": "18 C, sunny"},
    {"role": "user", "content": [{"type": "text", "text": "And should I "}, {"type": "text", "text": "bike?"}]},
]


def recorder(orchestrator: Orchestrator, ident: str = "echo", reply: str | ScriptedReply = "ok",
             **config: Any) -> ScriptedModel:
    model = ScriptedModel(replies=[reply])
    orchestrator.add_agent(Agent(AgentConfig(ident, "scripted", "scripted", **config), model))
    return model


async def test_an_agent_model_gets_the_conversation_tools_and_settings_as_sent(
    client: httpx2.AsyncClient, orchestrator: Orchestrator
) -> None:
    model = recorder(orchestrator, system_prompt="You are loomiq's echo.", temperature=0.9, max_tokens=50)
    response = await client.post("/v1/chat/completions", json={
        "model": "echo", "messages": CONVERSATION, "tools": [WEATHER], "tool_choice": "auto",
        "temperature": 0.2, "top_p": 0.5, "max_completion_tokens": 77, "stop": ["END", "STOP"], "seed": 42,
        "response_format": {"type": "json_object"}})
    assert response.status_code == 200, response.text
    (call,) = model.calls
    request = call.request
    assert request is not None
    assert request.messages == (
        Message("system", "You are loomiq's echo."),
        Message("system", "Answer briefly."),
        Message("system", "Use metric units."),
        Message("user", "What is the weather in Paris?", name="ada"),
        Message("assistant", "", tool_calls=(ToolCall("call_9", "get_weather", {"city": "Paris"}),)),
        Message("tool", "18 C, sunny", tool_call_id="call_9"),
        Message("user", "And should I bike?"),
    )
    assert request.tools == (ToolSpec("get_weather", "The weather in a city.", WEATHER["function"]["parameters"]),)
    assert request.settings == ModelSettings(temperature=0.2, max_tokens=77, top_p=0.5, stop=("END", "STOP"),
                                             seed=42, response_format={"type": "json_object"}, tool_choice="auto")
    # Without parameters, the agent's own settings apply; max_tokens is max_completion_tokens' old name.
    model.replies = ["ok"]
    await client.post("/v1/chat/completions", json={"model": "echo", "messages": ASK, "max_tokens": 9})
    assert model.calls[1].request.settings == ModelSettings(temperature=0.9, max_tokens=9)  # type: ignore[union-attr]


async def test_an_agent_model_answers_with_its_tool_calls(client: httpx2.AsyncClient,
                                                          orchestrator: Orchestrator) -> None:
    recorder(orchestrator, reply=ScriptedReply.calling(("get_weather", {"city": "Oslo"}), ("get_weather", {})))
    body = {"model": "echo", "messages": [{"role": "user", "content": "Weather in Oslo?"}], "tools": [WEATHER]}
    answer = (await client.post("/v1/chat/completions", json=body)).json()
    (choice,) = answer["choices"]
    assert choice["finish_reason"] == "tool_calls"
    assert choice["message"]["content"] is None
    assert choice["message"]["tool_calls"] == [
        {"id": "call_0", "type": "function", "function": {"name": "get_weather", "arguments": '{"city": "Oslo"}'}},
        {"id": "call_1", "type": "function", "function": {"name": "get_weather", "arguments": "{}"}},
    ]
    streamed = await client.post("/v1/chat/completions", json={**body, "stream": True})
    chunks = chunks_of(streamed.text)
    deltas = [c["choices"][0]["delta"] for c in chunks if c["choices"]]
    assert [d["tool_calls"] for d in deltas if "tool_calls" in d] == [
        [{"index": i, **call} for i, call in enumerate(choice["message"]["tool_calls"])]]
    assert chunks[-1]["choices"][0]["finish_reason"] == "tool_calls"


async def test_a_strategy_gives_every_agent_the_real_conversation_and_the_settings(
    client: httpx2.AsyncClient, orchestrator: Orchestrator
) -> None:
    models = {ident: recorder(orchestrator, ident) for ident in ("p1", "p2")}
    messages = [CONVERSATION[0], CONVERSATION[2], {"role": "assistant", "content": "Sunny, 18 C."},
                {"role": "user", "content": "Should I bike?"}]
    # `parallel` on the two agents left: each answers the task; both get the same history.
    for ident in ("analyst", "critic", "pragmatist", "lead"):
        orchestrator.remove_agent(ident)
    response = await client.post("/v1/chat/completions", json={
        "model": "parallel", "messages": messages, "temperature": 0.3, "stop": "END"})
    assert response.status_code == 200, response.text
    asked = [c.request for m in models.values() for c in m.calls]
    assert asked and all(r is not None for r in asked)
    for request in asked:
        assert request is not None
        assert request.messages[:3] == (Message("system", "Answer briefly."),
                                        Message("user", "What is the weather in Paris?"),
                                        Message("assistant", "Sunny, 18 C."))
        assert request.messages[-1].role == "user" and "Should I bike?" in request.messages[-1].content
        assert "Conversation so far" not in request.prompt_text()  # never pasted into one message again
        assert request.settings.temperature == 0.3 and request.settings.stop == ("END",)


@pytest.mark.parametrize(("extra", "field"), [
    ({"tools": [WEATHER]}, "tools"),
    ({"messages": CONVERSATION}, "messages[3].tool_calls"),
])
async def test_tools_with_a_strategy_are_a_400_saying_they_need_an_agent(client: httpx2.AsyncClient, extra: dict,
                                                                        field: str) -> None:
    problem = assert_problem(await client.post("/v1/chat/completions", json={
        "model": "consensus", "messages": ASK, **extra}), 400, "bad-request")
    assert problem["error"]["param"] == field
    assert "tools need an agent as the model" in problem["detail"] and "analyst" in problem["detail"]


@pytest.mark.parametrize(("extra", "field"), [
    ({"temperature": 5}, "temperature"),
    ({"temperature": -0.1}, "temperature"),
    ({"top_p": 1.5}, "top_p"),
    ({"max_tokens": 0}, "max_tokens"),
    ({"max_completion_tokens": -1}, "max_completion_tokens"),
    ({"stop": ["a", "b", "c", "d", "e"]}, "stop"),
    ({"seed": 2**53}, "seed"),
    ({"presence_penalty": 3}, "presence_penalty"),
    ({"frequency_penalty": -3}, "frequency_penalty"),
    ({"n": 3}, "n"),
    ({"logprobs": True}, "logprobs"),
    ({"response_format": {"type": "xml"}}, "response_format"),
    ({"response_format": {"type": "json_schema"}}, "response_format"),
    ({"tool_choice": "auto"}, "tool_choice"),
    ({"tools": [WEATHER], "tool_choice": {"type": "function", "function": {"name": "nope"}}}, "tool_choice"),
    ({"tools": [WEATHER], "tool_choice": "sometimes"}, "tool_choice"),
    ({"tools": [WEATHER, WEATHER]}, "tools"),
    ({"tools": [{"type": "retrieval"}]}, "tools[0]"),
    ({"messages": [{"role": "function", "name": "f", "content": "x"}]}, "messages[0].role"),
    ({"messages": [{"role": "tool", "content": "x"}]}, "messages[0].tool_call_id"),
    ({"messages": [*ASK, {"role": "tool", "tool_call_id": "call_1", "content": "x"}]}, "messages[1].tool_call_id"),
    ({"messages": [{"role": "user", "content": "x", "tool_calls": CONVERSATION[3]["tool_calls"]}]},
     "messages[0].tool_calls"),
])
async def test_parameters_are_validated_like_openai_naming_the_field(client: httpx2.AsyncClient, extra: dict,
                                                                    field: str) -> None:
    problem = assert_problem(await client.post("/v1/chat/completions", json={
        "model": "analyst", "messages": ASK, **extra}), 422, "invalid-request")
    assert problem["error"]["param"].startswith(field), problem


async def test_a_setting_the_agents_provider_lacks_is_refused_not_dropped(
    client: httpx2.AsyncClient, orchestrator: Orchestrator
) -> None:
    claude = AnthropicChatModel(model_name="claude-test", api_key="sk-ant-test", base_url="http://127.0.0.1:9")
    orchestrator.add_agent(Agent(AgentConfig("claude", "anthropic", "claude-test"), claude))
    for field, value in (("seed", 7), ("response_format", {"type": "json_object"})):
        problem = assert_problem(await client.post("/v1/chat/completions", json={
            "model": "claude", "messages": ASK, field: value}), 422, "invalid-request")
        assert problem["error"]["param"] == field and "not supported by agent 'claude'" in problem["detail"]


async def test_get_one_model(client: httpx2.AsyncClient) -> None:
    agent = (await client.get("/v1/models/analyst")).json()
    assert agent == {"id": "analyst", "object": "model", "created": agent["created"],
                     "owned_by": "loomiq-agent:scripted"}
    assert (await client.get("/v1/models/consensus")).json()["owned_by"] == "loomiq-strategy"
    problem = assert_problem(await client.get("/v1/models/gpt-4o"), 404, "model-not-found")
    assert "GET /v1/models lists them" in problem["detail"]


# The official SDK's own tool loop: SDK -> loomiq -> agent -> a provider on the wire ----------------


@pytest.fixture
def wire() -> Iterator[WireServer]:
    server = WireServer().start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(params=["openai-compatible", "anthropic"])
def provider(request: pytest.FixtureRequest) -> str:
    """The wire format the agent behind loomiq speaks."""
    return str(request.param)


@pytest.fixture
def sdk(tmp_path: Path, wire: WireServer, provider: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[openai.OpenAI]:
    """The official SDK against a real loomiq server whose agent ``wired`` talks to the wire server
    (from loomiq.yaml, so the server owns the agent and closes its connections when it stops)."""
    config = tmp_path / "loomiq.yaml"
    if provider == "anthropic":
        monkeypatch.setenv("ANTHROPIC_API_KEY", "sk-ant-wire")
        agent = f"{{id: wired, provider: anthropic, model: claude-wire, base_url: '{wire.url}'}}"
    else:
        agent = f"{{id: wired, provider: openai-compatible, model: gpt-wire, base_url: '{wire.openai_base_url}'}}"
    config.write_text(f"agents:\n  - {agent}\n", encoding="utf-8")
    settings = Settings(jwt_secret=SECRET, keys_path=tmp_path / "keys.db", database_url=f"sqlite:///{tmp_path}/t.db",
                        config_path=config, sse_ping_s=0.2, worker_drain_s=0.5)
    server = build_server("127.0.0.1", 0, settings=settings, app=create_app(settings), log_level="warning",
                          gc_tuning=False)
    thread = threading.Thread(target=server.run, name="loomiq-sdk-test", daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        assert thread.is_alive() and time.monotonic() < deadline, "the test server did not start"
        time.sleep(0.01)
    port = server.servers[0].sockets[0].getsockname()[1]
    try:
        with openai.OpenAI(base_url=f"http://127.0.0.1:{port}/v1", api_key=token("operator"), max_retries=0,
                           timeout=30) as client:
            yield client
    finally:
        server.should_exit = True
        thread.join(timeout=15)
        assert not thread.is_alive(), "the test server did not stop"


def _weather(city: str) -> str:
    return f"{city}: 18 C, sunny"


@pytest.mark.parametrize("stream", [False, True])
def test_the_sdks_tool_loop_works_through_loomiq(sdk: openai.OpenAI, wire: WireServer, provider: str,
                                                 stream: bool) -> None:
    wire.script(tool_call_reply("get_weather", {"city": "Paris"}, call_id="call_w1"),
                text_reply("Yes: it is sunny in Paris."))
    messages: list[Any] = [{"role": "user", "content": "Should I bike in Paris today?"}]
    for _ in range(3):  # the client's loop: ask, run the tools asked for, answer them, ask again
        if stream:
            text, calls, finish = _streamed(sdk, messages)
        else:
            choice = sdk.chat.completions.create(model="wired", messages=messages, tools=[WEATHER],  # type: ignore
                                                 temperature=0.1).choices[0]
            text, finish = choice.message.content, choice.finish_reason
            calls = [{"id": c.id, "type": "function", "function": {"name": c.function.name,  # type: ignore
                                                                   "arguments": c.function.arguments}}  # type: ignore
                     for c in choice.message.tool_calls or ()]
        if finish != "tool_calls":
            break
        messages.append({"role": "assistant", "content": text, "tool_calls": calls})
        for call in calls:
            arguments = json.loads(call["function"]["arguments"])
            messages.append({"role": "tool", "tool_call_id": call["id"], "content": _weather(**arguments)})
    assert finish == "stop" and text == "Yes: it is sunny in Paris."
    first, second = (r.body for r in wire.requests)
    assert first["temperature"] == 0.1
    if provider == "anthropic":
        assert first["tools"] == [{"name": "get_weather", "description": "The weather in a city.",
                                   "input_schema": WEATHER["function"]["parameters"]}]
        assert second["messages"] == [
            {"role": "user", "content": [{"type": "text", "text": "Should I bike in Paris today?"}]},
            {"role": "assistant", "content": [{"type": "tool_use", "id": "call_w1", "name": "get_weather",
                                               "input": {"city": "Paris"}}]},
            {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "call_w1",
                                          "content": "Paris: 18 C, sunny"}]},
        ]
        return
    assert first["tools"] == [WEATHER]
    assert second["messages"] == [
        {"role": "user", "content": "Should I bike in Paris today?"},
        {"role": "assistant", "content": None, "tool_calls": [{"id": "call_w1", "type": "function", "function": {
            "name": "get_weather", "arguments": '{"city": "Paris"}'}}]},
        {"role": "tool", "tool_call_id": "call_w1", "content": "Paris: 18 C, sunny"},
    ]


def _streamed(sdk: openai.OpenAI, messages: list[Any]) -> tuple[str | None, list[dict[str, Any]], str | None]:
    """One streamed turn, accumulated as an SDK user does: text, tool calls (by index), finish reason."""
    text, calls, finish = "", {}, None
    with sdk.chat.completions.create(model="wired", messages=messages, tools=[WEATHER], temperature=0.1,  # type: ignore
                                     stream=True) as stream:
        for chunk in stream:
            for choice in chunk.choices:
                text += choice.delta.content or ""
                for part in choice.delta.tool_calls or ():
                    call = calls.setdefault(part.index, {"id": "", "type": "function",
                                                         "function": {"name": "", "arguments": ""}})
                    call["id"] = part.id or call["id"]
                    if part.function is not None:
                        call["function"]["name"] += part.function.name or ""
                        call["function"]["arguments"] += part.function.arguments or ""
                finish = choice.finish_reason or finish
    return text or None, [calls[i] for i in sorted(calls)], finish
