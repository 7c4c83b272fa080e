"""A stdio MCP server that misbehaves on request, for the client's failure tests.

Tools: ``echo`` (answers), ``crash`` (the process exits mid-call), ``hang`` (never answers),
``garbage`` (writes a line that is not JSON-RPC, then never answers), ``grow`` (adds a tool and
sends ``notifications/tools/list_changed``), ``starts`` (how many times this server was started,
counted in the file named by ``$FLAKY_COUNTER``).
"""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path

from mcp.server.mcpserver import Context, MCPServer

server = MCPServer("flaky")
# The SDK diverts fd 1 to stderr while it serves (stray prints cannot corrupt the wire): keep a
# handle on the real wire to corrupt it on purpose.
WIRE = os.dup(sys.stdout.fileno())
counter = Path(os.environ["FLAKY_COUNTER"]) if os.environ.get("FLAKY_COUNTER") else None
if counter is not None:
    counter.write_text(str(int(counter.read_text() or 0) + 1) if counter.exists() else "1")


@server.tool()
def echo(text: str) -> str:
    """Say `text` back."""
    return f"echo: {text}"


@server.tool()
def starts() -> str:
    """How many times the server was started."""
    return counter.read_text() if counter is not None else "?"


@server.tool()
def crash() -> str:
    """Exit the process in the middle of the call."""
    os._exit(3)


@server.tool()
async def hang() -> str:
    """Never answer."""
    await asyncio.sleep(3600)
    return "late"


@server.tool()
async def garbage() -> str:
    """Write a line that is not JSON-RPC on stdout, then never answer."""
    os.write(WIRE, b"this is not json {{{\n")
    await asyncio.sleep(3600)
    return "late"


@server.tool()
async def grow(ctx: Context) -> str:
    """Add a tool named `extra`, and tell the client the tool list changed."""

    def extra() -> str:
        """A tool that appeared later."""
        return "extra!"

    server.add_tool(extra)
    await ctx.session.send_tool_list_changed()
    return "grown"


if __name__ == "__main__":
    server.run("stdio")
