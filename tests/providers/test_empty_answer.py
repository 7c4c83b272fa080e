"""An empty model answer (no text, no tool call, finish_reason stop) is a failed step that fails over,
through the real OpenAI and Anthropic wire formats, called and streamed (issue 10, item 14)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from loomiq import Orchestrator
from loomiq.models import ChatModel
from loomiq.models.anthropic import AnthropicChatModel
from loomiq.models.openai_compat import OpenAIChatModel
from loomiq.runtime import RunEvent
from tests.factories import NO_RETRY, make_agent

from .wire_server import WireServer, text_reply

KEY = "sk-test-empty-answer-key"


def _model(wire_format: str, server: WireServer) -> ChatModel:
    if wire_format == "openai":
        return OpenAIChatModel(model_name="gpt-test", api_key=KEY, base_url=server.openai_base_url, provider="openai")
    return AnthropicChatModel(model_name="claude-test", api_key=KEY, base_url=server.url)


@pytest.fixture(params=["openai", "anthropic"])
async def wire_orch(request: pytest.FixtureRequest, wire_server: WireServer) -> AsyncIterator[Orchestrator]:
    """`wire` (the provider under test, asked first) and `backup` (another wire agent)."""
    first = make_agent("wire", model=_model(request.param, wire_server), retry=NO_RETRY)
    backup = make_agent("backup", model=_model(request.param, wire_server), retry=NO_RETRY)
    orch = Orchestrator([first, backup])
    try:
        yield orch
    finally:
        await orch.aclose()


EMPTY_ANSWERS = {
    "null or no content": text_reply(""),
    "blank text": text_reply("  \n "),
}


@pytest.mark.parametrize("empty", list(EMPTY_ANSWERS))
@pytest.mark.parametrize("streamed", [False, True], ids=["complete", "stream"])
async def test_an_empty_answer_fails_over(
    wire_orch: Orchestrator, wire_server: WireServer, empty: str, streamed: bool
) -> None:
    wire_server.script(EMPTY_ANSWERS[empty], text_reply("The backup's real answer."))
    events: list[RunEvent] = []
    plan = wire_orch.plan("Say something.", strategy="single", agents=["wire", "backup"])
    result = await wire_orch.execute(plan, sink=events.append if streamed else None)
    assert result.status == "completed", result.error
    assert result.output == "The backup's real answer."
    (step,) = result.steps
    assert step.agent == "backup"
    assert [a for a, _ in step.failed_over_from] == ["wire"]
    assert step.failed_over_from[0][1].startswith("empty_answer:")
    wire = wire_orch.registry.get("wire")
    assert (wire.stats.successes, wire.stats.failures) == (0, 1)
    assert wire.stats.last_error is not None and "empty_answer" in wire.stats.last_error
    assert len(wire_server.requests) == 2


async def test_an_empty_answer_with_nobody_to_fail_over_to_fails_the_run(
    wire_orch: Orchestrator, wire_server: WireServer
) -> None:
    wire_server.script(text_reply(""), text_reply(""))
    result = await wire_orch.run("Say something.", strategy="single", agents=["wire", "backup"])
    assert result.status == "failed"
    assert result.output == ""
    assert "empty_answer" in (result.error or "")


async def test_a_tool_call_without_text_is_not_empty(wire_orch: Orchestrator, wire_server: WireServer) -> None:
    from loomiq.agents import call_agent

    from .conftest import WEATHER, ask
    from .wire_server import tool_call_reply

    wire_server.script(tool_call_reply("get_weather", {"city": "Paris"}))
    response, attempts = await call_agent(wire_orch.registry.get("wire"), ask(tools=(WEATHER,)))
    assert response.text == "" and response.tool_calls and attempts == 1

