"""Tools agents can call: the `Tool` seam, the registry, the built-ins, and MCP servers' tools."""

from .base import (
    EXCLUSIVE,
    PURE,
    Footprint,
    Resource,
    Tool,
    ToolContext,
    ToolError,
    ToolResult,
    ToolUnavailable,
)

__all__ = [
    "EXCLUSIVE",
    "PURE",
    "Footprint",
    "Resource",
    "Tool",
    "ToolContext",
    "ToolError",
    "ToolResult",
    "ToolUnavailable",
]
