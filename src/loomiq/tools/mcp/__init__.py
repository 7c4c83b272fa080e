"""MCP servers as tool providers: each configured server (``mcp_servers:`` in loomiq.yaml) is a
`McpToolSource` whose tools join the `ToolRegistry` as ``<server>__<tool>``, under the same
allow-lists as every tool. One session per server per process (`McpConnection`), started on first
use, restarted with backoff after a crash or a hang, closed with the registry.

The specs (`McpServerSpec`, `OAuthSpec`, `EnvValue`) import nothing heavy; the names that need the
`mcp` SDK (about a second of imports) load on first use, so a process that configures no MCP server
(a worker, most CLI commands) never pays for it.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from .spec import (
    DEFAULT_REDIRECT_URI,
    DEFAULT_START_TIMEOUT_S,
    DEFAULT_TIMEOUT_S,
    EnvValue,
    McpConfigError,
    McpServerSpec,
    OAuthSpec,
)

if TYPE_CHECKING:
    from .connection import RESTART_BASE_S, RESTART_MAX_S, McpCallError, McpConnection, McpStartError
    from .oauth import (
        TOKEN_DIR_ENV,
        Authorizer,
        BrowserConsent,
        ConsentNeeded,
        FileTokenStorage,
        FollowRedirect,
        NoConsent,
        token_dir,
    )
    from .source import McpToolSource
    from .tool import McpTool, to_result, wire_name

_LAZY = {
    "RESTART_BASE_S": "connection", "RESTART_MAX_S": "connection", "McpCallError": "connection",
    "McpConnection": "connection", "McpStartError": "connection",
    "TOKEN_DIR_ENV": "oauth", "Authorizer": "oauth", "BrowserConsent": "oauth", "ConsentNeeded": "oauth",
    "FileTokenStorage": "oauth", "FollowRedirect": "oauth", "NoConsent": "oauth", "token_dir": "oauth",
    "McpToolSource": "source", "McpTool": "tool", "to_result": "tool", "wire_name": "tool",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{module}"), name)
    globals()[name] = value
    return value


__all__ = [
    "DEFAULT_REDIRECT_URI",
    "DEFAULT_START_TIMEOUT_S",
    "DEFAULT_TIMEOUT_S",
    "RESTART_BASE_S",
    "RESTART_MAX_S",
    "TOKEN_DIR_ENV",
    "Authorizer",
    "BrowserConsent",
    "ConsentNeeded",
    "EnvValue",
    "FileTokenStorage",
    "FollowRedirect",
    "McpCallError",
    "McpConfigError",
    "McpConnection",
    "McpServerSpec",
    "McpStartError",
    "McpTool",
    "McpToolSource",
    "NoConsent",
    "OAuthSpec",
    "to_result",
    "token_dir",
    "wire_name",
]
