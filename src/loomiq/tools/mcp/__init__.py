"""MCP servers as tool providers: each configured server (``mcp_servers:`` in loomiq.yaml) is a
`McpToolSource` whose tools join the `ToolRegistry` as ``<server>__<tool>``, under the same
allow-lists as every tool. One session per server per process (`McpConnection`), started on first
use, restarted with backoff after a crash or a hang, closed with the registry."""

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
from .spec import (
    DEFAULT_REDIRECT_URI,
    DEFAULT_START_TIMEOUT_S,
    DEFAULT_TIMEOUT_S,
    EnvValue,
    McpConfigError,
    McpServerSpec,
    OAuthSpec,
)
from .tool import McpTool, to_result, wire_name

__all__ = [
    "DEFAULT_REDIRECT_URI",
    "TOKEN_DIR_ENV",
    "Authorizer",
    "BrowserConsent",
    "ConsentNeeded",
    "FileTokenStorage",
    "FollowRedirect",
    "NoConsent",
    "OAuthSpec",
    "token_dir",
    "DEFAULT_START_TIMEOUT_S",
    "DEFAULT_TIMEOUT_S",
    "RESTART_BASE_S",
    "RESTART_MAX_S",
    "EnvValue",
    "McpCallError",
    "McpConfigError",
    "McpConnection",
    "McpServerSpec",
    "McpStartError",
    "McpTool",
    "McpToolSource",
    "to_result",
    "wire_name",
]
