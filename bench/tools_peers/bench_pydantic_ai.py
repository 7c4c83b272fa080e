"""Pydantic AI on the tool workload: an `Agent` on a `FunctionModel` over the harness's fake turn,
one `tool_plain` (parallel tool calls are Pydantic AI's default), built once and reused."""

from __future__ import annotations

from _harness import fake_turn, main, tool_result
from pydantic_ai import Agent
from pydantic_ai.messages import ModelMessage, ModelRequest, ModelResponse, TextPart, ToolCallPart, ToolReturnPart
from pydantic_ai.models.function import AgentInfo, FunctionModel
from pydantic_ai.usage import RequestUsage


async def fake_fn(messages: list[ModelMessage], info: AgentInfo) -> ModelResponse:
    requests = [m for m in messages if isinstance(m, ModelRequest)]
    results = [str(p.content) for m in requests for p in m.parts if isinstance(p, ToolReturnPart)]
    reply = await fake_turn(results)
    usage = RequestUsage(input_tokens=20, output_tokens=7)
    if isinstance(reply, str):
        return ModelResponse(parts=[TextPart(reply)], usage=usage)
    parts = [ToolCallPart(name, args, tool_call_id=f"call_{i}") for i, (name, args) in enumerate(reply)]
    return ModelResponse(parts=parts, usage=usage)


AGENT = Agent(FunctionModel(fake_fn, model_name="fake"), instructions="You answer with the tools.")


@AGENT.tool_plain
async def get_weather(city: str) -> str:
    """Current weather in a city."""
    return tool_result(city)


async def run(task: str) -> str:
    return (await AGENT.run(task)).output


if __name__ == "__main__":
    main("Pydantic AI", ["pydantic-ai-slim", "pydantic"], run,
         notes="Agent.run on FunctionModel; tool_plain; agent reused")
