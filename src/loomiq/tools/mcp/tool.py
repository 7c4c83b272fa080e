"""`McpTool`: one tool of an MCP server, as a loomiq `Tool` named ``<server>__<tool>``.

A call goes through the server's `McpConnection`. What comes back is turned into what a model reads:
text blocks as they are, an embedded text resource as its text, images, audio and binary resources
as a short placeholder (models get text here), links as their URI; ``structuredContent`` is kept as
the result's data. A result the server flags ``isError``, a JSON-RPC error, a crash and a hang are
error results, never exceptions that end the run.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from typing import Any

import mcp_types
from mcp.shared.exceptions import MCPError

from ..base import Footprint, Tool, ToolContext, ToolError, ToolResult
from ..registry import qualified_name
from .connection import McpCallError, McpConnection, McpStartError

_UNSAFE = re.compile(r"[^A-Za-z0-9_-]")

_MARGIN_S = 5.0
"""The loop's own limit on a call is the server's timeout plus this: the connection's limit fires
first, so a hung server is restarted rather than only abandoned."""


def wire_name(server: str, tool: str) -> str:
    """The name models see for `tool` of `server`: characters providers refuse become ``_`` (and a
    ``__`` in the tool's own name becomes ``_``). `ValueError` when the result is over 64 characters."""
    safe = _UNSAFE.sub("_", tool)
    while "__" in safe:
        safe = safe.replace("__", "_")
    return qualified_name(server, safe or "_")


class McpTool(Tool):
    """A tool of an MCP server. `remote_name` is the server's own name for it."""

    def __init__(self, connection: McpConnection, remote: mcp_types.Tool) -> None:
        spec = connection.spec
        self.connection = connection
        self.remote_name = remote.name
        self.name = wire_name(spec.name, remote.name)
        self.description = remote.description or remote.title or remote.name
        schema = dict(remote.input_schema or {})
        schema.setdefault("type", "object")
        self.parameters = schema
        annotations = remote.annotations
        self.read_only = bool(annotations is not None and annotations.read_only_hint)
        self.timeout_s = spec.timeout_s + _MARGIN_S
        resource = f"mcp:{spec.name}"
        # Calls to different servers never wait for each other; on one server, read-only calls run
        # together and a call that may change something runs alone (its effects are undeclared).
        self._footprint = (
            Footprint(reads=frozenset({resource})) if self.read_only else Footprint(writes=frozenset({resource}))
        )

    def footprint(self, arguments: Mapping[str, Any]) -> Footprint:
        """Reads the server's state when read-only, else writes it (see above)."""
        return self._footprint

    async def run(self, arguments: Mapping[str, Any], ctx: ToolContext) -> ToolResult:
        """Call the tool on its server."""
        server = self.connection.spec.name
        try:
            result = await self.connection.call_tool(self.remote_name, dict(arguments))
        except McpStartError as exc:
            raise ToolError(str(exc)) from None
        except McpCallError as exc:
            raise ToolError(str(exc)) from None
        except MCPError as exc:
            raise ToolError(f"MCP server {server!r} refused the call: {exc}") from None
        return to_result(result)


def to_result(result: mcp_types.CallToolResult) -> ToolResult:
    """A loomiq `ToolResult` from an MCP call result."""
    parts = [_text(block) for block in result.content]
    text = "\n".join(p for p in parts if p)
    data = result.structured_content
    if not text and data is not None:
        text = json.dumps(data, ensure_ascii=False)
    return ToolResult(text, data, bool(result.is_error))


def _text(block: Any) -> str:
    if isinstance(block, mcp_types.TextContent):
        return block.text
    if isinstance(block, mcp_types.ImageContent):
        return f"[image {block.mime_type}, {len(block.data) * 3 // 4} bytes]"
    if isinstance(block, mcp_types.AudioContent):
        return f"[audio {block.mime_type}, {len(block.data) * 3 // 4} bytes]"
    if isinstance(block, mcp_types.EmbeddedResource):
        resource = block.resource
        if isinstance(resource, mcp_types.TextResourceContents):
            return resource.text
        return f"[resource {resource.uri} ({resource.mime_type or 'binary'})]"
    if isinstance(block, mcp_types.ResourceLink):
        return f"[link {block.uri}]"
    return ""
