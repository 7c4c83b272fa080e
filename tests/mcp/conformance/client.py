"""The client the conformance suite's client leg drives: loomiq's own MCP client (`McpToolSource`, the
path an agent's tools take) against the suite's server for one scenario.

``python client.py URL``; the scenario is in ``$MCP_CONFORMANCE_SCENARIO``. Exit 0 when the scenario's
steps ran; the suite judges what went over the wire.
"""

from __future__ import annotations

import asyncio
import os
import sys

from loomiq.tools import ToolLoop, ToolRegistry
from loomiq.tools.mcp import McpServerSpec, McpToolSource


async def main(url: str, scenario: str) -> int:
    registry = ToolRegistry(builtins=False)
    registry.add_source(McpToolSource(McpServerSpec("suite", url=url, timeout_s=20)))
    try:
        await registry.prepare(["suite"])  # starts the session: the initialize handshake, tools/list
        tools = registry.select(["suite"])
        loop = ToolLoop(tools)
        calls = {
            "tools_call": ("suite__add_numbers", {"a": 5, "b": 3}),
            "elicitation-sep1034-client-defaults": ("suite__test_client_elicitation_defaults", {}),
            "sse-retry": ("suite__test_reconnection", {}),
        }
        if scenario in calls:
            name, arguments = calls[scenario]
            record = await loop.call(name, arguments)
            print(f"{name}: {record.content}")
            if record.error is not None:
                return 1
        return 0
    finally:
        await registry.aclose()


if __name__ == "__main__":
    sys.exit(asyncio.run(main(sys.argv[-1], os.environ.get("MCP_CONFORMANCE_SCENARIO", "initialize"))))
