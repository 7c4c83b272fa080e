"""loomiq as an MCP server (a face, beside the HTTP API and the CLI): tools to run, submit, read and
cancel tasks, list the agents and search the knowledge base, and tasks as resources
(``loomiq://tasks/{id}``). Served over streamable HTTP at ``/mcp`` by ``loomiq serve`` (behind the
API's authentication) and over stdio by ``loomiq mcp serve`` (for desktop clients)."""

from .caller import SCOPE_KEY, Forbidden, McpCaller
from .http import McpHttpEndpoint, security_settings
from .server import TASK_URI, build_server
from .stdio import serve_stdio

__all__ = [
    "SCOPE_KEY",
    "TASK_URI",
    "Forbidden",
    "McpCaller",
    "McpHttpEndpoint",
    "build_server",
    "security_settings",
    "serve_stdio",
]
