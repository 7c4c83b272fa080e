"""`AnthropicChatModel` against the local wire server: the real SDK over real HTTP, no network."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from loomiq.models import (
    AuthenticationFailed,
    BadRequest,
    MalformedResponse,
    Message,
    ModelRequest,
    ModelRequestsForbidden,
    ModelSettings,
    Pricing,
    ProviderUnavailable,
    RateLimited,
    ToolCall,
    allow_model_requests,
    unsupported_settings,
)
from loomiq.models.anthropic import DEFAULT_MAX_TOKENS, AnthropicChatModel, to_anthropic_messages

from .conftest import WEATHER, ask, assert_key_hidden, cancel_once_sent, collect
from .wire_server import (
    WireServer,
    error_reply,
    malformed_tool_args,
    not_json,
    rate_limited,
    slow,
    stream_error,
    text_reply,
    tool_call_reply,
    truncated,
    unfinished,
)

KEY = "sk-ant-test-very-secret-key-0123456789"
PRICING = Pricing(input_per_token=0.003, output_per_token=0.015)


@pytest.fixture
async def model(wire_server: WireServer) -> AsyncIterator[AnthropicChatModel]:
    m = AnthropicChatModel(model_name="claude-test", api_key=KEY, base_url=wire_server.url, pricing=PRICING)
    try:
        yield m
    finally:
        await m.aclose()


async def test_complete_text(model: AnthropicChatModel, wire_server: WireServer) -> None:
    wire_server.script(text_reply("Hello from Claude's stand-in.", input_tokens=30, output_tokens=9))
    response = await model.complete(ask())
    assert response.text == "Hello from Claude's stand-in."
    assert response.finish_reason == "stop"
    assert (response.usage.input_tokens, response.usage.output_tokens) == (30, 9)
    assert response.cost_usd == pytest.approx(30 * 0.003 + 9 * 0.015)
    assert response.provider == "anthropic"
    assert response.model == "claude-test"
    assert model.offline is False


async def test_stream_text(model: AnthropicChatModel, wire_server: WireServer) -> None:
    wire_server.script(text_reply("Raw SSE events, one by one.", input_tokens=25, output_tokens=7))
    deltas, final = await collect(model, ask())
    assert len(deltas) > 1
    assert "".join(deltas) == final.text == "Raw SSE events, one by one."
    assert final.finish_reason == "stop"
    # Input usage comes from message_start, output usage from message_delta.
    assert (final.usage.input_tokens, final.usage.output_tokens) == (25, 7)
    assert final.cost_usd == pytest.approx(25 * 0.003 + 7 * 0.015)
    assert wire_server.requests[0].body["stream"] is True


async def test_complete_tool_call(model: AnthropicChatModel, wire_server: WireServer) -> None:
    wire_server.script(tool_call_reply("get_weather", {"city": "Oslo"}, call_id="toolu_01", text="Let me check."))
    response = await model.complete(ask("Weather in Oslo?", tools=(WEATHER,)))
    assert response.finish_reason == "tool_calls"
    assert response.text == "Let me check."
    assert response.tool_calls == (ToolCall("toolu_01", "get_weather", {"city": "Oslo"}),)


async def test_stream_tool_call_from_input_json_deltas(model: AnthropicChatModel, wire_server: WireServer) -> None:
    args = {"city": "Reykjavík", "days": 2, "units": ["C", "mm"]}
    wire_server.script(tool_call_reply("get_weather", args, call_id="toolu_02", text="Checking.", chunk_chars=3))
    deltas, final = await collect(model, ask("Weather?", tools=(WEATHER,)))
    assert "".join(deltas) == final.text == "Checking."
    assert final.finish_reason == "tool_calls"
    assert final.tool_calls == (ToolCall("toolu_02", "get_weather", args),)


async def test_request_body_shape(model: AnthropicChatModel, wire_server: WireServer) -> None:
    request = ModelRequest(
        messages=(
            Message("system", "You are terse."),
            Message("user", "Weather in Paris and Rome?"),
            Message(
                "assistant",
                "Checking both.",
                tool_calls=(
                    ToolCall("toolu_1", "get_weather", {"city": "Paris"}),
                    ToolCall("toolu_2", "get_weather", {"city": "Rome"}),
                ),
            ),
            Message("tool", "18C", tool_call_id="toolu_1"),
            Message("tool", "24C", tool_call_id="toolu_2"),
        ),
        tools=(WEATHER,),
        settings=ModelSettings(temperature=0.2, max_tokens=300),
    )
    await model.complete(request)
    sent = wire_server.requests[0]
    assert sent.path == "/v1/messages"
    assert sent.api_key == KEY  # this SDK sends the key as a bearer token
    assert "anthropic-version" in sent.headers
    body = sent.body
    assert body["model"] == "claude-test"
    assert body["system"] == "You are terse."
    assert body["max_tokens"] == 300
    assert body["temperature"] == 0.2
    assert body["tools"] == [
        {"name": "get_weather", "description": WEATHER.description, "input_schema": WEATHER.parameters}
    ]
    assert body["messages"] == [
        {"role": "user", "content": [{"type": "text", "text": "Weather in Paris and Rome?"}]},
        {
            "role": "assistant",
            "content": [
                {"type": "text", "text": "Checking both."},
                {"type": "tool_use", "id": "toolu_1", "name": "get_weather", "input": {"city": "Paris"}},
                {"type": "tool_use", "id": "toolu_2", "name": "get_weather", "input": {"city": "Rome"}},
            ],
        },
        {
            "role": "user",
            "content": [
                {"type": "tool_result", "tool_use_id": "toolu_1", "content": "18C"},
                {"type": "tool_result", "tool_use_id": "toolu_2", "content": "24C"},
            ],
        },
    ]


async def test_max_tokens_defaults_and_unset_settings_are_left_out(
    model: AnthropicChatModel, wire_server: WireServer
) -> None:
    await model.complete(ask())
    body = wire_server.requests[0].body
    assert body["max_tokens"] == DEFAULT_MAX_TOKENS == 1024
    assert "temperature" not in body and "system" not in body and "tools" not in body


def test_to_anthropic_messages_joins_system_prompts() -> None:
    system, turns = to_anthropic_messages((Message("system", "A."), Message("system", "B."), Message("user", "hi")))
    assert system == "A.\n\nB."
    assert turns == [{"role": "user", "content": [{"type": "text", "text": "hi"}]}]


async def test_401_is_authentication_failed_without_the_key(model: AnthropicChatModel, wire_server: WireServer) -> None:
    wire_server.script(error_reply(401))
    with pytest.raises(AuthenticationFailed) as info:
        await model.complete(ask())
    assert info.value.status == 401
    assert not info.value.retryable
    assert "Incorrect API key" in str(info.value)
    assert_key_hidden(info.value, KEY)
    assert len(wire_server.requests) == 1


async def test_429_is_rate_limited_with_retry_after(model: AnthropicChatModel, wire_server: WireServer) -> None:
    wire_server.script(rate_limited("11"), rate_limited("4"))
    with pytest.raises(RateLimited) as info:
        await model.complete(ask())
    assert info.value.retry_after == 11.0
    assert info.value.retryable
    with pytest.raises(RateLimited) as info:
        await collect(model, ask())
    assert info.value.retry_after == 4.0
    assert len(wire_server.requests) == 2  # the SDK itself never retried


@pytest.mark.parametrize("status", [500, 529])
async def test_5xx_is_provider_unavailable(model: AnthropicChatModel, wire_server: WireServer, status: int) -> None:
    wire_server.script(error_reply(status))
    with pytest.raises(ProviderUnavailable) as info:
        await model.complete(ask())
    assert info.value.status == status
    assert len(wire_server.requests) == 1


async def test_other_4xx_is_bad_request(model: AnthropicChatModel, wire_server: WireServer) -> None:
    wire_server.script(error_reply(400, "max_tokens: must be positive"))
    with pytest.raises(BadRequest, match="max_tokens"):
        await model.complete(ask())


async def test_truncated_stream_is_malformed(model: AnthropicChatModel, wire_server: WireServer) -> None:
    wire_server.script(truncated())
    with pytest.raises(MalformedResponse):
        await collect(model, ask())


async def test_stream_without_message_stop_is_malformed(model: AnthropicChatModel, wire_server: WireServer) -> None:
    wire_server.script(unfinished())
    with pytest.raises(MalformedResponse, match="message_stop"):
        await collect(model, ask())


async def test_malformed_tool_input_comes_back_as_a_call_with_an_error(
    model: AnthropicChatModel, wire_server: WireServer
) -> None:
    wire_server.script(malformed_tool_args(), malformed_tool_args())
    response = await model.complete(ask(tools=(WEATHER,)))
    (call,) = response.tool_calls
    assert (call.name, call.arguments, call.raw_arguments) == ("get_weather", {}, '{"city": "Par')
    assert call.error is not None and "not valid JSON" in call.error
    _, final = await collect(model, ask(tools=(WEATHER,)))
    (call,) = final.tool_calls
    assert call.raw_arguments == '{"city": "Par'
    assert call.error is not None and "not valid JSON" in call.error


async def test_body_that_is_not_json_is_malformed(model: AnthropicChatModel, wire_server: WireServer) -> None:
    wire_server.script(not_json(), not_json())
    with pytest.raises(MalformedResponse, match="not JSON"):
        await model.complete(ask())
    with pytest.raises(MalformedResponse, match="not JSON"):
        await collect(model, ask())


async def test_error_event_mid_stream_is_provider_unavailable(
    model: AnthropicChatModel, wire_server: WireServer
) -> None:
    wire_server.script(stream_error("Overloaded, try later"))
    with pytest.raises(ProviderUnavailable, match="Overloaded") as info:
        await collect(model, ask())
    assert info.value.retryable


@pytest.mark.parametrize("streaming", [False, True])
async def test_cancelling_a_slow_request(model: AnthropicChatModel, wire_server: WireServer, streaming: bool) -> None:
    wire_server.script(slow(30.0))
    call = collect(model, ask()) if streaming else model.complete(ask())
    assert await cancel_once_sent(wire_server, call) < 1.0


async def test_guard_refuses_remote_url_without_sending(
    wire_server: WireServer, sent_urls: list[object]
) -> None:
    sent = sent_urls
    remote = AnthropicChatModel(model_name="claude-test", api_key=KEY)
    local = AnthropicChatModel(model_name="claude-test", api_key=KEY, base_url=wire_server.url)
    try:
        with allow_model_requests(False):
            with pytest.raises(ModelRequestsForbidden, match="anthropic"):
                await remote.complete(ask())
            with pytest.raises(ModelRequestsForbidden):
                await collect(remote, ask())
            assert sent == []
            assert (await local.complete(ask())).text
        assert len(sent) == 1
    finally:
        await remote.aclose()
        await local.aclose()


@pytest.mark.parametrize(("choice", "sent"), [
    ("auto", {"type": "auto"}), ("required", {"type": "any"}), ("none", {"type": "none"}),
    ({"type": "function", "function": {"name": "get_weather"}}, {"type": "tool", "name": "get_weather"}),
])
async def test_settings_map_to_the_messages_api(model: AnthropicChatModel, wire_server: WireServer,
                                                choice: object, sent: dict) -> None:
    settings = ModelSettings(temperature=0.1, top_p=0.4, stop=("END", "STOP"), tool_choice=choice)  # type: ignore
    await model.complete(ask(tools=(WEATHER,), settings=settings))
    body = wire_server.requests[-1].body
    assert body["top_p"] == 0.4 and body["stop_sequences"] == ["END", "STOP"] and body["tool_choice"] == sent
    assert unsupported_settings(model, ModelSettings(seed=1, response_format={"type": "json_object"},
                                                     temperature=1)) == ("seed", "response_format")
