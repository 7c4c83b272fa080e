"""A retry or a failover after an agent streamed part of its answer never repeats text to the client.

Against the local wire server (real SSE; a ``truncated`` reply drops the connection halfway through
its stream, which the agent retries or fails over from):

- ``/v1`` streaming: a new attempt that repeats what was sent adds only the rest (the client's text is
  the answer, once); one that differs ends the stream with an error chunk (``stream_restarted``, no
  ``[DONE]``), never with contradicting text.
- Run events (what the task SSE/WS streams and the CLI show): ``step_restarted`` (a retry) and
  ``agent_failed_over`` (a failover) say which streamed text is void; applying them to the
  ``text_delta``s gives the answer exactly.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx2
import pytest

from loomiq import AgentFailedOver, Orchestrator, StepDelta, StepRestarted, StepStarted
from loomiq.config import AgentSection, build_agent

from ..providers.wire_server import WireServer, text_reply, truncated
from .test_openai import ASK, chunks_of

ANSWER = "Shard by tenant first, then split the hottest tenants by region when they outgrow a node."


@pytest.fixture
def wire() -> Iterator[WireServer]:
    server = WireServer().start()
    try:
        yield server
    finally:
        server.stop()


def wired(wire: WireServer, agent_id: str, attempts: int) -> Any:
    return build_agent(AgentSection(id=agent_id, provider="openai-compatible", model="gpt-wire",
                                    base_url=wire.openai_base_url, capabilities=["general"],
                                    retry={"max_attempts": attempts, "base_delay_s": 0, "max_delay_s": 0}))


@pytest.fixture
async def orchestrator(wire: WireServer) -> AsyncIterator[Orchestrator]:
    # "retrier" retries itself; "first" fails over to "second" (one attempt each).
    orch = Orchestrator([wired(wire, "retrier", 3), wired(wire, "first", 1), wired(wire, "second", 1)])
    try:
        yield orch
    finally:
        await orch.aclose()


def streamed_text(body: str) -> tuple[str, list[dict[str, Any]]]:
    chunks = chunks_of(body)
    text = "".join((c.get("choices") or [{}])[0].get("delta", {}).get("content") or "" for c in chunks
                   if "choices" in c)
    return text, chunks


def only_failover(orchestrator: Orchestrator, how: str) -> None:
    if how == "failover":  # only the one-attempt agents: the strategy's failure is a failover
        orchestrator.registry.get("retrier").enabled = False


async def stream(client: httpx2.AsyncClient, model: str) -> str:
    response = await client.post("/v1/chat/completions", json={"model": model, "messages": ASK, "stream": True})
    assert response.status_code == 200, response.text
    return response.text


@pytest.mark.parametrize("how", ["retry", "failover"])
async def test_a_new_attempt_that_repeats_the_sent_text_adds_only_the_rest(
    client: httpx2.AsyncClient, orchestrator: Orchestrator, wire: WireServer, how: str
) -> None:
    only_failover(orchestrator, how)
    wire.script(truncated(ANSWER), text_reply(ANSWER))
    body = await stream(client, "retrier" if how == "retry" else "single")
    text, chunks = streamed_text(body)
    assert text == ANSWER  # once: the part sent before the drop is not sent again
    assert 0 < len(wire.requests) == 2
    assert body.rstrip().endswith("data: [DONE]")
    assert [c["choices"][0]["finish_reason"] for c in chunks if c.get("choices")][-1] == "stop"
    assert not any("error" in c for c in chunks)


@pytest.mark.parametrize("how", ["retry", "failover"])
async def test_a_new_attempt_that_differs_ends_the_stream_with_an_error(
    client: httpx2.AsyncClient, orchestrator: Orchestrator, wire: WireServer, how: str
) -> None:
    only_failover(orchestrator, how)
    wire.script(truncated(ANSWER), text_reply("A different answer: keep one database and add read replicas."))
    body = await stream(client, "retrier" if how == "retry" else "single")
    text, chunks = streamed_text(body)
    assert text and ANSWER.startswith(text)  # only the first attempt's text, never the second's on top
    assert chunks[-1]["error"]["code"] == "stream_restarted", chunks[-1]
    assert "[DONE]" not in body


async def test_run_events_say_which_streamed_text_is_void(orchestrator: Orchestrator, wire: WireServer) -> None:
    for agents, void_event in ((["retrier"], StepRestarted), (["first", "second"], AgentFailedOver)):
        wire.script(truncated(ANSWER), text_reply(ANSWER))
        events: list[Any] = []
        handle = orchestrator.stream("Plan the database.", strategy="single", agents=agents,
                                     allow_failover_outside=False)
        async for event in handle:
            events.append(event)
        result = await handle.result()
        assert result.status == "completed" and result.output == ANSWER
        assert any(isinstance(e, void_event) for e in events)
        # A client following the events: text deltas, less what each restart or failover voids.
        text = ""
        for e in events:
            if isinstance(e, StepDelta):
                text += e.text
            elif isinstance(e, StepRestarted):
                assert 0 < e.void_chars <= len(text) and e.error
                text = text[:len(text) - e.void_chars]
            elif isinstance(e, AgentFailedOver | StepStarted):
                text = ""  # (one step: a failover starts its text over)
        assert text == ANSWER, (agents, events)
        assert sum(isinstance(e, StepDelta) for e in events) > 1
