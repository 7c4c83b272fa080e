"""loomiq on the tool workload: `ToolLoop` over one `@tool` function, each model turn through the
agent's resilient call (`call_agent`: concurrency slot, deadline, retries, breaker, stats) on a
`ChatModel` wrapping the harness's fake turn. The loop and the agent are built once and reused."""

from __future__ import annotations

from _harness import fake_turn, main, tool_result

from loomiq import Agent, AgentConfig, ModelRequest, ModelResponse
from loomiq.agents import call_agent
from loomiq.models import Message, ToolCall
from loomiq.tools import ToolLoop, tool


class FakeModel:
    """A `ChatModel` whose every completion is one `fake_turn`."""

    provider = "bench"
    model_name = "fake"
    offline = True

    async def complete(self, request: ModelRequest) -> ModelResponse:
        reply = await fake_turn([m.content for m in request.messages if m.role == "tool"])
        if isinstance(reply, str):
            return ModelResponse(reply, "fake", provider="bench")
        calls = tuple(ToolCall(f"call_{i}", name, args) for i, (name, args) in enumerate(reply))
        return ModelResponse("", "fake", finish_reason="tool_calls", tool_calls=calls, provider="bench")

    async def stream(self, request: ModelRequest):  # not used: no event listener
        yield await self.complete(request)

    async def aclose(self) -> None:
        pass


@tool
async def get_weather(city: str) -> str:
    """Current weather in a city."""
    return tool_result(city)


AGENT = Agent(AgentConfig(id="weather", provider="bench", model="fake", max_concurrency=100_000), FakeModel())
LOOP = ToolLoop([get_weather])


async def call_model(request: ModelRequest) -> ModelResponse:
    return (await call_agent(AGENT, request))[0]


async def run(task: str) -> str:
    result = await LOOP.run(call_model, ModelRequest((Message("user", task),)))
    return result.response.text


if __name__ == "__main__":
    main("loomiq", ["loomiq"], run, notes="ToolLoop.run, model turns through call_agent; @tool function")
