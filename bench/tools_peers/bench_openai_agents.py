"""OpenAI Agents SDK on the tool workload: an `Agent` with one `function_tool` on a custom `Model`
over the harness's fake turn; the SDK runs a turn's function calls concurrently. Tracing off (its
exporter would upload to the vendor's API)."""

from __future__ import annotations

import json
import os

os.environ.setdefault("OPENAI_API_KEY", "sk-offline-not-used")

from _harness import fake_turn, main, tool_result  # noqa: E402
from agents.items import ModelResponse  # noqa: E402
from agents.models.interface import Model  # noqa: E402
from agents.usage import Usage  # noqa: E402
from openai.types.responses import (  # noqa: E402
    ResponseFunctionToolCall,
    ResponseOutputMessage,
    ResponseOutputText,
)

from agents import Agent, Runner, function_tool, set_tracing_disabled  # noqa: E402

set_tracing_disabled(True)


def _results(input: object) -> list[str]:
    if isinstance(input, str):
        return []
    out = []
    for item in input:  # type: ignore[attr-defined]
        kind = item.get("type") if isinstance(item, dict) else getattr(item, "type", None)
        if kind == "function_call_output":
            out.append(str(item["output"] if isinstance(item, dict) else item.output))
    return out


class FakeModel(Model):
    async def get_response(self, system_instructions, input, model_settings, tools, output_schema, handoffs,
                           tracing, **kw) -> ModelResponse:
        reply = await fake_turn(_results(input))
        usage = Usage(requests=1, input_tokens=20, output_tokens=7, total_tokens=27)
        if isinstance(reply, str):
            msg = ResponseOutputMessage(
                id="msg_fake", type="message", role="assistant", status="completed",
                content=[ResponseOutputText(type="output_text", text=reply, annotations=[])],
            )
            return ModelResponse(output=[msg], usage=usage, response_id=None)
        calls = [
            ResponseFunctionToolCall(type="function_call", call_id=f"call_{i}", name=name,
                                     arguments=json.dumps(args), id=f"fc_{i}", status="completed")
            for i, (name, args) in enumerate(reply)
        ]
        return ModelResponse(output=calls, usage=usage, response_id=None)

    def stream_response(self, *a, **kw):
        raise NotImplementedError


@function_tool
async def get_weather(city: str) -> str:
    """Current weather in a city."""
    return tool_result(city)


AGENT = Agent(name="weather", instructions="You answer with the tools.", model=FakeModel(), tools=[get_weather])


async def run(task: str) -> str:
    return (await Runner.run(AGENT, task)).final_output


if __name__ == "__main__":
    main("OpenAI Agents SDK", ["openai-agents", "openai"], run,
         notes="Runner.run on a custom Model; function_tool; tracing off")
