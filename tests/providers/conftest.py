"""Fixtures and helpers shared by the provider adapter tests: a local wire-compatible provider
server, a request builder, a stream collector, and the scaffolding of the error cases (key never
shown, prompt cancellation, no request sent while real calls are forbidden)."""

from __future__ import annotations

import asyncio
import time
import traceback
from collections.abc import Awaitable, Iterator

import httpx2
import pytest

from loomiq.models import ChatModel, Message, ModelRequest, ModelResponse, TextDelta, ToolSpec

from .wire_server import WireServer

WEATHER = ToolSpec(
    name="get_weather",
    description="Current weather in a city.",
    parameters={"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
)


def ask(text: str = "Say hello.", **kw: object) -> ModelRequest:
    """A one-message user request; `kw` goes to `ModelRequest` (tools, settings)."""
    return ModelRequest(messages=(Message("user", text),), **kw)  # type: ignore[arg-type]


async def collect(model: ChatModel, request: ModelRequest) -> tuple[list[str], ModelResponse]:
    """Stream `request`: the text deltas, and the one final response that must come after them."""
    deltas: list[str] = []
    final: list[ModelResponse] = []
    async for part in model.stream(request):
        if isinstance(part, TextDelta):
            assert not final, "text after the final response"
            deltas.append(part.text)
        else:
            final.append(part)
    assert len(final) == 1
    return deltas, final[0]


def assert_key_hidden(exc: BaseException, key: str) -> None:
    """`key` appears neither in the error's message nor in its rendered traceback (causes included)."""
    assert key not in str(exc)
    assert key not in "".join(traceback.format_exception(exc))


async def cancel_once_sent(wire_server: WireServer, call: Awaitable[object]) -> float:
    """Start `call`, cancel it as soon as the server has its request; how long the cancel took (s)."""
    task = asyncio.ensure_future(call)
    await asyncio.to_thread(wire_server.wait_for_requests, 1)
    started = time.monotonic()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    return time.monotonic() - started


@pytest.fixture
def wire_server() -> Iterator[WireServer]:
    """A started `WireServer` on 127.0.0.1, stopped (every thread joined) after the test."""
    server = WireServer().start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def sent_urls(monkeypatch: pytest.MonkeyPatch) -> list[object]:
    """The URL of every request an `httpx2.AsyncClient` sends during the test (they are still sent)."""
    sent: list[object] = []
    real_send = httpx2.AsyncClient.send

    async def spy(self: httpx2.AsyncClient, request: httpx2.Request, **kw: object) -> httpx2.Response:
        sent.append(request.url)
        return await real_send(self, request, **kw)  # type: ignore[arg-type]

    monkeypatch.setattr(httpx2.AsyncClient, "send", spy)
    return sent
