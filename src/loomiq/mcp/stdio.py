"""``loomiq mcp serve``: loomiq's MCP server over stdin/stdout, for desktop clients (Claude Desktop,
Cursor, VS Code) that start it as a subprocess.

The process opens the task engine (``LOOMIQ_DATABASE_URL``, SQLite by default) and runs an embedded
worker, like ``loomiq serve``; every request acts as the caller it was started as (``--tenant``,
``--role``): whoever can start the process can already read its database, so there is no other
credential to check.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

from ..config import load_tools
from ..engine import Worker
from ..orchestrator import Orchestrator
from .caller import McpCaller
from .server import build_server


async def serve_stdio(
    caller: McpCaller,
    *,
    config: Path | None = None,
    database_url: str | None = None,
    workers: int = 2,
) -> None:
    """Serve MCP on stdin/stdout until the client closes them."""
    orch = Orchestrator.from_config(config)
    try:
        await orch.open_engine(database_url)
        worker = Worker(orch.engine, concurrency=workers) if workers > 0 else None
        runner = asyncio.get_running_loop().create_task(worker.run()) if worker is not None else None
        try:
            server = build_server(lambda: orch, default_caller=caller, tools=load_tools(config))
            await server.run_stdio_async()
        finally:
            if worker is not None and runner is not None:
                await worker.stop()
                await runner
    finally:
        await orch.aclose()
