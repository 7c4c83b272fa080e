"""loomiq's built-in tools, each a `Tool` subclass configured from validated settings.

    from loomiq.tools.builtin import builtin_tools, create_builtin

    builtin_tools()                       # {"python": PythonTool, "shell": ShellTool, ...}
    tool = create_builtin("python", {"timeout_s": 10})   # ``tools: {python: {timeout_s: 10}}``
    result = await tool.run({"code": "print(1)"}, ToolContext(tenant_id="acme"))

Every built-in has a pydantic ``Settings`` model (unknown keys are errors), a ``configure(settings)``
classmethod that validates them (raising `ToolConfigError` naming the tool and the field), and
``unavailable_reason()``: why it cannot run in this deployment (a missing sandbox, an unconfigured
search backend), or None.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ._settings import DATA_DIR_ENV, ConfigurableTool, ToolConfigError, ToolSettings, data_dir
from .code_exec import CodeSettings, JavaScriptTool, PythonTool, ShellTool
from .files import FilesSettings, FilesTool
from .knowledge import Document, KnowledgeBase, KnowledgeError, KnowledgeSettings, KnowledgeTool, SearchHit
from .sandbox import Sandbox, SandboxLimits, SandboxResult
from .web import HttpFetchSettings, HttpFetchTool, WebSearchSettings, WebSearchTool

_BUILTINS: tuple[type[ConfigurableTool], ...] = (
    PythonTool, ShellTool, JavaScriptTool, FilesTool, KnowledgeTool, WebSearchTool, HttpFetchTool,
)


def builtin_tools() -> dict[str, type[ConfigurableTool]]:
    """Every built-in tool class by its name, in a stable order (the registry picks them up here).

    `JavaScriptTool` is listed even where Node.js is missing: its ``unavailable_reason()`` says so.
    """
    return {cls.name: cls for cls in _BUILTINS}


def create_builtin(name: str, settings: Mapping[str, Any] | None = None) -> ConfigurableTool:
    """The built-in tool `name` configured with `settings` (None: defaults).

    Raises:
        KeyError: no built-in has that name.
        ToolConfigError: the settings are invalid.
    """
    tools = builtin_tools()
    if name not in tools:
        raise KeyError(f"no built-in tool {name!r} (built-ins: {', '.join(tools)})")
    return tools[name].configure(settings)


__all__ = [
    "DATA_DIR_ENV",
    "CodeSettings",
    "ConfigurableTool",
    "Document",
    "FilesSettings",
    "FilesTool",
    "HttpFetchSettings",
    "HttpFetchTool",
    "JavaScriptTool",
    "KnowledgeBase",
    "KnowledgeError",
    "KnowledgeSettings",
    "KnowledgeTool",
    "PythonTool",
    "Sandbox",
    "SandboxLimits",
    "SandboxResult",
    "SearchHit",
    "ShellTool",
    "ToolConfigError",
    "ToolSettings",
    "WebSearchSettings",
    "WebSearchTool",
    "builtin_tools",
    "create_builtin",
    "data_dir",
]
