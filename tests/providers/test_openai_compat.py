"""`OpenAIChatModel` against the local wire server: the real SDK over real HTTP, no network."""

from __future__ import annotations

import email.utils
import socket
import time
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
)
from loomiq.models._http_errors import retry_after_seconds
from loomiq.models.openai_compat import OpenAIChatModel

from .conftest import WEATHER, ask, assert_key_hidden, cancel_once_sent, collect
from .wire_server import (
    Reply,
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

KEY = "sk-test-very-secret-key-0123456789"
PRICING = Pricing(input_per_token=0.001, output_per_token=0.002)


@pytest.fixture
async def model(wire_server: WireServer) -> AsyncIterator[OpenAIChatModel]:
    m = OpenAIChatModel(
        model_name="gpt-test", api_key=KEY, base_url=wire_server.openai_base_url, provider="openai", pricing=PRICING
    )
    try:
        yield m
    finally:
        await m.aclose()


async def test_complete_text(model: OpenAIChatModel, wire_server: WireServer) -> None:
    wire_server.script(text_reply("Hi there, friend.", input_tokens=12, output_tokens=8))
    response = await model.complete(ask())
    assert response.text == "Hi there, friend."
    assert response.finish_reason == "stop"
    assert response.tool_calls == ()
    assert (response.usage.input_tokens, response.usage.output_tokens) == (12, 8)
    assert response.cost_usd == pytest.approx(12 * 0.001 + 8 * 0.002)
    assert response.provider == "openai"
    assert response.model == "gpt-test"
    assert model.offline is False
    assert len(wire_server.requests) == 1


async def test_stream_text(model: OpenAIChatModel, wire_server: WireServer) -> None:
    wire_server.script(text_reply("Streaming works over real SSE.", input_tokens=20, output_tokens=6))
    deltas, final = await collect(model, ask())
    assert len(deltas) > 1
    assert "".join(deltas) == final.text == "Streaming works over real SSE."
    assert final.finish_reason == "stop"
    assert (final.usage.input_tokens, final.usage.output_tokens) == (20, 6)
    assert final.cost_usd == pytest.approx(20 * 0.001 + 6 * 0.002)
    body = wire_server.requests[0].body
    assert body["stream"] is True
    assert body["stream_options"] == {"include_usage": True}


async def test_complete_tool_call(model: OpenAIChatModel, wire_server: WireServer) -> None:
    wire_server.script(tool_call_reply("get_weather", {"city": "Paris"}, call_id="call_abc"))
    response = await model.complete(ask("Weather in Paris?", tools=(WEATHER,)))
    assert response.finish_reason == "tool_calls"
    assert response.tool_calls == (ToolCall("call_abc", "get_weather", {"city": "Paris"}),)
    assert response.text == ""


async def test_stream_tool_call_split_across_chunks(model: OpenAIChatModel, wire_server: WireServer) -> None:
    args = {"city": "São Paulo", "units": "metric", "days": 3}
    wire_server.script(tool_call_reply("get_weather", args, call_id="call_xyz", text="Checking.", chunk_chars=3))
    deltas, final = await collect(model, ask("Weather?", tools=(WEATHER,)))
    assert "".join(deltas) == final.text == "Checking."
    assert final.finish_reason == "tool_calls"
    assert final.tool_calls == (ToolCall("call_xyz", "get_weather", args),)


async def test_request_body_shape(model: OpenAIChatModel, wire_server: WireServer) -> None:
    request = ModelRequest(
        messages=(
            Message("system", "You are terse."),
            Message("user", "Weather in Paris?"),
            Message("assistant", "", tool_calls=(ToolCall("call_1", "get_weather", {"city": "Paris"}),)),
            Message("tool", "18C, sunny", tool_call_id="call_1"),
        ),
        tools=(WEATHER,),
        settings=ModelSettings(temperature=0.3, max_tokens=77),
    )
    await model.complete(request)
    sent = wire_server.requests[0]
    assert sent.path == "/v1/chat/completions"
    assert sent.headers["authorization"] == f"Bearer {KEY}"
    body = sent.body
    assert body["model"] == "gpt-test"
    assert body["temperature"] == 0.3
    assert body["max_completion_tokens"] == 77
    assert "max_tokens" not in body
    assert "stream" not in body
    assert body["messages"] == [
        {"role": "system", "content": "You are terse."},
        {"role": "user", "content": "Weather in Paris?"},
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {
                    "id": "call_1",
                    "type": "function",
                    "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'},
                }
            ],
        },
        {"role": "tool", "tool_call_id": "call_1", "content": "18C, sunny"},
    ]
    assert body["tools"] == [
        {
            "type": "function",
            "function": {"name": "get_weather", "description": WEATHER.description, "parameters": WEATHER.parameters},
        }
    ]


async def test_compatible_server_gets_max_tokens_and_placeholder_key(wire_server: WireServer) -> None:
    m = OpenAIChatModel(model_name="llama3.1:8b", base_url=wire_server.openai_base_url, provider="ollama")
    try:
        response = await m.complete(ask(settings=ModelSettings(max_tokens=50)))
        await m.complete(ask())
    finally:
        await m.aclose()
    assert response.provider == "ollama"
    first, second = (r.body for r in wire_server.requests)
    assert first["max_tokens"] == 50
    assert "max_completion_tokens" not in first
    assert "max_tokens" not in second and "temperature" not in second and "tools" not in second
    assert wire_server.requests[0].headers["authorization"] == "Bearer not-needed"


async def test_401_is_authentication_failed_without_the_key(model: OpenAIChatModel, wire_server: WireServer) -> None:
    wire_server.script(error_reply(401))
    with pytest.raises(AuthenticationFailed) as info:
        await model.complete(ask())
    assert info.value.status == 401
    assert not info.value.retryable
    assert "Incorrect API key" in str(info.value)
    assert_key_hidden(info.value, KEY)
    assert len(wire_server.requests) == 1


async def test_403_in_stream_is_authentication_failed(model: OpenAIChatModel, wire_server: WireServer) -> None:
    wire_server.script(error_reply(403, "no access"))
    with pytest.raises(AuthenticationFailed):
        await collect(model, ask())


async def test_429_is_rate_limited_with_retry_after(model: OpenAIChatModel, wire_server: WireServer) -> None:
    wire_server.script(rate_limited("7"), rate_limited("3"))
    with pytest.raises(RateLimited) as info:
        await model.complete(ask())
    assert info.value.retry_after == 7.0
    assert info.value.status == 429
    assert info.value.retryable
    with pytest.raises(RateLimited) as info:
        await collect(model, ask())
    assert info.value.retry_after == 3.0
    assert len(wire_server.requests) == 2  # the SDK itself never retried


async def test_retry_after_ms_and_http_date(model: OpenAIChatModel, wire_server: WireServer) -> None:
    wire_server.script(rate_limited("7", extra_headers={"retry-after-ms": "1500"}))
    with pytest.raises(RateLimited) as info:
        await model.complete(ask())
    assert info.value.retry_after == 1.5
    later = email.utils.formatdate(time.time() + 30, usegmt=True)
    wire_server.script(rate_limited(later))
    with pytest.raises(RateLimited) as info:
        await model.complete(ask())
    assert info.value.retry_after == pytest.approx(30, abs=2)


def test_retry_after_parsing() -> None:
    assert retry_after_seconds({"retry-after": "2.5"}) == 2.5
    assert retry_after_seconds({"retry-after": "garbage"}) is None
    assert retry_after_seconds({}) is None
    past = email.utils.formatdate(time.time() - 60, usegmt=True)
    assert retry_after_seconds({"retry-after": past}) == 0.0


@pytest.mark.parametrize("status", [500, 502, 503])
async def test_5xx_is_provider_unavailable(model: OpenAIChatModel, wire_server: WireServer, status: int) -> None:
    wire_server.script(error_reply(status))
    with pytest.raises(ProviderUnavailable) as info:
        await model.complete(ask())
    assert info.value.status == status
    assert info.value.retryable
    assert len(wire_server.requests) == 1


async def test_other_4xx_is_bad_request(model: OpenAIChatModel, wire_server: WireServer) -> None:
    wire_server.script(error_reply(400, "messages must not be empty"))
    with pytest.raises(BadRequest) as info:
        await model.complete(ask())
    assert "messages must not be empty" in str(info.value)
    assert not info.value.retryable


async def test_connection_refused_is_provider_unavailable() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    m = OpenAIChatModel(model_name="gpt-test", api_key=KEY, base_url=f"http://127.0.0.1:{port}/v1")
    try:
        with pytest.raises(ProviderUnavailable):
            await m.complete(ask())
    finally:
        await m.aclose()


async def test_truncated_stream_is_malformed(model: OpenAIChatModel, wire_server: WireServer) -> None:
    wire_server.script(truncated())
    with pytest.raises(MalformedResponse):
        await collect(model, ask())


async def test_stream_without_finish_reason_is_malformed(model: OpenAIChatModel, wire_server: WireServer) -> None:
    wire_server.script(unfinished())
    with pytest.raises(MalformedResponse, match="finish_reason"):
        await collect(model, ask())


async def test_truncated_json_body_is_retryable(model: OpenAIChatModel, wire_server: WireServer) -> None:
    wire_server.script(truncated())
    with pytest.raises(ProviderUnavailable):
        await model.complete(ask())


async def test_malformed_tool_arguments_come_back_as_a_call_with_an_error(
    model: OpenAIChatModel, wire_server: WireServer
) -> None:
    # The tool loop answers such a call with an error result; the model call itself succeeds.
    wire_server.script(malformed_tool_args(), malformed_tool_args(raw='["not", "an", "object"]'))
    response = await model.complete(ask(tools=(WEATHER,)))
    (call,) = response.tool_calls
    assert (call.name, call.arguments, call.raw_arguments) == ("get_weather", {}, '{"city": "Par')
    assert call.error is not None and "not valid JSON" in call.error
    _, final = await collect(model, ask(tools=(WEATHER,)))
    (call,) = final.tool_calls
    assert call.error == "arguments are not a JSON object"
    assert call.raw_arguments == '["not", "an", "object"]'


async def test_a_call_with_broken_arguments_is_sent_back_as_written(
    model: OpenAIChatModel, wire_server: WireServer
) -> None:
    broken = ToolCall("call_1", "get_weather", {}, '{"city": "Par', "arguments are not valid JSON")
    history = ModelRequest(
        messages=(
            Message("user", "Weather?"),
            Message("assistant", "", tool_calls=(broken,)),
            Message("tool", "error: arguments are not valid JSON", tool_call_id="call_1"),
        ),
        tools=(WEATHER,),
    )
    await model.complete(history)
    sent = wire_server.requests[-1].body["messages"][1]["tool_calls"][0]["function"]
    assert sent == {"name": "get_weather", "arguments": '{"city": "Par'}


async def test_tool_call_without_a_name_is_malformed(model: OpenAIChatModel, wire_server: WireServer) -> None:
    wire_server.script(Reply(text="", tool_calls=(("call_1", "", "{}"),)))
    with pytest.raises(MalformedResponse, match="without a function name"):
        await model.complete(ask(tools=(WEATHER,)))


async def test_body_that_is_not_json_is_malformed(model: OpenAIChatModel, wire_server: WireServer) -> None:
    wire_server.script(not_json(), not_json())
    with pytest.raises(MalformedResponse, match="not JSON"):
        await model.complete(ask())
    with pytest.raises(MalformedResponse, match="not JSON"):
        await collect(model, ask())


async def test_error_event_mid_stream_is_provider_unavailable(model: OpenAIChatModel, wire_server: WireServer) -> None:
    wire_server.script(stream_error("Overloaded, try later"))
    with pytest.raises(ProviderUnavailable, match="Overloaded") as info:
        await collect(model, ask())
    assert info.value.retryable


async def test_cancelling_a_slow_complete(model: OpenAIChatModel, wire_server: WireServer) -> None:
    wire_server.script(slow(30.0))
    assert await cancel_once_sent(wire_server, model.complete(ask())) < 1.0


async def test_cancelling_a_slow_stream(model: OpenAIChatModel, wire_server: WireServer) -> None:
    wire_server.script(slow(30.0))
    assert await cancel_once_sent(wire_server, collect(model, ask())) < 1.0
    # The model stays usable after a cancelled call.
    wire_server.script(text_reply("still here"))
    assert (await model.complete(ask())).text == "still here"


async def test_guard_refuses_remote_url_without_sending(
    wire_server: WireServer, sent_urls: list[object]
) -> None:
    sent = sent_urls
    remote = OpenAIChatModel(model_name="gpt-4o-mini", api_key=KEY, base_url="https://api.openai.com/v1")
    local = OpenAIChatModel(model_name="gpt-test", api_key=KEY, base_url=wire_server.openai_base_url)
    try:
        with allow_model_requests(False):
            with pytest.raises(ModelRequestsForbidden, match="api.openai.com"):
                await remote.complete(ask())
            with pytest.raises(ModelRequestsForbidden):
                await collect(remote, ask())
            assert sent == []
            # Loopback servers stay reachable while real requests are forbidden.
            assert (await local.complete(ask())).text
        assert len(sent) == 1
    finally:
        await remote.aclose()
        await local.aclose()


@pytest.mark.parametrize("streaming", [False, True])
async def test_every_setting_reaches_the_wire(model: OpenAIChatModel, wire_server: WireServer,
                                              streaming: bool) -> None:
    settings = ModelSettings(temperature=0.1, max_tokens=5, top_p=0.4, stop=("END",), seed=3,
                             response_format={"type": "json_object"}, tool_choice={"type": "function",
                                                                                  "function": {"name": "get_weather"}})
    request = ask(tools=(WEATHER,), settings=settings)
    await (collect(model, request) if streaming else model.complete(request))
    body = wire_server.requests[-1].body
    assert {k: body[k] for k in ("temperature", "top_p", "stop", "seed", "response_format", "tool_choice")} == {
        "temperature": 0.1, "top_p": 0.4, "stop": ["END"], "seed": 3, "response_format": {"type": "json_object"},
        "tool_choice": {"type": "function", "function": {"name": "get_weather"}}}
    assert body["max_completion_tokens"] == 5
