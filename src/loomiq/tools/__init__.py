"""Tools agents can call: the `Tool` seam, `@tool`, the registry, the tool loop with its parallel
scheduler, the built-ins, and MCP servers' tools."""

from .base import (
    EXCLUSIVE,
    PURE,
    Footprint,
    InvalidArguments,
    Resource,
    Tool,
    ToolContext,
    ToolError,
    ToolResult,
    ToolUnavailable,
)
from .function import FunctionTool, normalize_resource, tool
from .loop import (
    DEFAULT_MAX_ROUNDS,
    MemoryJournal,
    ToolJournal,
    ToolLoop,
    ToolLoopResult,
    ToolRoundsExceeded,
)
from .records import (
    ToolCallEvent,
    ToolCallFinished,
    ToolCallRecord,
    ToolCallRefused,
    ToolCallSerialized,
    ToolCallStarted,
    call_key,
    turn_key,
)
from .registry import (
    NAMESPACE_SEPARATOR,
    ToolRegistry,
    ToolSettingsError,
    UnknownTool,
    allows,
    check_settings,
    qualified_name,
)
from .schedule import critical_path, schedule

__all__ = [
    "DEFAULT_MAX_ROUNDS",
    "EXCLUSIVE",
    "NAMESPACE_SEPARATOR",
    "PURE",
    "Footprint",
    "FunctionTool",
    "InvalidArguments",
    "MemoryJournal",
    "Resource",
    "Tool",
    "ToolCallEvent",
    "ToolCallFinished",
    "ToolCallRecord",
    "ToolCallRefused",
    "ToolCallSerialized",
    "ToolCallStarted",
    "ToolContext",
    "ToolError",
    "ToolJournal",
    "ToolLoop",
    "ToolLoopResult",
    "ToolRegistry",
    "ToolResult",
    "ToolRoundsExceeded",
    "ToolSettingsError",
    "ToolUnavailable",
    "UnknownTool",
    "allows",
    "call_key",
    "check_settings",
    "critical_path",
    "normalize_resource",
    "qualified_name",
    "schedule",
    "tool",
    "turn_key",
]
