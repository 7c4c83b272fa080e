"""The plain-asyncio floor of the tool workload: the two tool calls under asyncio.gather between two
fake model turns, the results passed as a list. Nothing validated, no timeout, no record."""

from __future__ import annotations

import asyncio

from _harness import fake_turn, main, tool_result


async def get_weather(city: str) -> str:
    return tool_result(city)


TOOLS = {"get_weather": get_weather}


async def run(task: str) -> str:
    results: list[str] = []
    while True:
        reply = await fake_turn(results)
        if isinstance(reply, str):
            return reply
        results = list(await asyncio.gather(*(TOOLS[name](**args) for name, args in reply)))


if __name__ == "__main__":
    main("floor (plain asyncio)", [], run, notes="asyncio.gather of the two tool coroutines")
