"""`McpToolSource`: an MCP server as a source of provider tools for a `ToolRegistry`.

The registry asks a source for its tools the first time an allow-list names it
(`ToolRegistry.prepare`), which starts the server; the source tells the registry when the server's
tool list changed, and is closed with the registry.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from pathlib import Path

import mcp_types

from ..base import Tool
from .connection import McpConnection
from .oauth import Authorizer
from .spec import McpServerSpec
from .tool import McpTool

logger = logging.getLogger(__name__)


class McpToolSource:
    """The tools of one MCP server, named ``<server>__<tool>``.

    Args:
        spec: the server.
        authorizer: the interactive OAuth step (``loomiq mcp login``); runs have none.
        token_dir: where OAuth tokens are kept.
    """

    def __init__(self, spec: McpServerSpec, *, authorizer: Authorizer | None = None,
                 token_dir: Path | None = None) -> None:
        self.spec = spec
        self.name = spec.name
        self.required = spec.required
        self.connection = McpConnection(spec, on_tools_changed=self._changed, authorizer=authorizer,
                                        token_dir=token_dir)
        self._listeners: list[Callable[[Sequence[Tool]], None]] = []

    def _build(self, remote: list[mcp_types.Tool]) -> list[Tool]:
        tools: list[Tool] = []
        seen: set[str] = set()
        for r in remote:
            try:
                t = McpTool(self.connection, r)
            except ValueError as exc:
                logger.warning("MCP server %r: tool %r skipped: %s", self.name, r.name, exc)
                continue
            if t.name in seen:
                logger.warning("MCP server %r: tool %r skipped: its name %r is taken", self.name, r.name, t.name)
                continue
            seen.add(t.name)
            tools.append(t)
        return tools

    async def load(self) -> list[Tool]:
        """Start the server (if it is not running) and return its tools. Raises `McpStartError` or
        `McpCallError` naming the server."""
        return self._build(await self.connection.list_tools())

    def subscribe(self, listener: Callable[[Sequence[Tool]], None]) -> None:
        """Call `listener` with the new tools whenever the server's tool list changes."""
        self._listeners.append(listener)

    def _changed(self, remote: list[mcp_types.Tool]) -> None:
        tools = self._build(remote)
        for listener in self._listeners:
            listener(tools)

    async def aclose(self) -> None:
        """Stop the server (stdio) or end the session (HTTP)."""
        await self.connection.aclose()
