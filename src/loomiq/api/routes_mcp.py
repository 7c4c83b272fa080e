"""``/mcp``: loomiq's MCP server (`loomiq.mcp`) over streamable HTTP, behind the API's authentication.

Each request is authenticated as the API's are (`deps.authenticate`: bearer JWT or API key, with the
tenant's rate limit); a refusal is the same RFC 9457 problem (401 with ``WWW-Authenticate``, 403).
The MCP tools then check roles and tenants per call. The endpoint, its session manager and the MCP
server are built when the app starts (`start`) and stopped with it.
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AsyncExitStack
from typing import TYPE_CHECKING

from fastapi import FastAPI
from starlette.requests import HTTPConnection
from starlette.responses import Response
from starlette.routing import Route
from starlette.types import Receive, Scope, Send

from ..config import load_tools
from ..orchestrator import Orchestrator
from ..tools import ToolRegistry
from .deps import authenticate, get_state
from .problems import Problem, problem_response
from .settings import Settings

if TYPE_CHECKING:
    from mcp.server.mcpserver import MCPServer

    from ..mcp import McpCaller, McpHttpEndpoint

PATH = "/mcp"

McpExtension = Callable[["MCPServer"], None]
"""Adds to the MCP server before it serves (tests mount the conformance suite's fixtures this way)."""


async def _authenticate(connection: HTTPConnection) -> McpCaller | Response:
    from ..mcp import McpCaller

    try:
        state = await get_state(connection)
        principal = await authenticate(connection, state)
    except Problem as problem:
        return problem_response(problem, connection.url.path)
    return McpCaller(principal.subject, principal.tenant, principal.role)


class _Endpoint:
    """The route's ASGI app (an instance, so Starlette passes it the raw scope): the endpoint the app
    started, or 503 while it is starting."""

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        endpoint: McpHttpEndpoint | None = getattr(scope["app"].state, "loomiq_mcp", None)
        if endpoint is None:
            problem = Problem(503, "The MCP endpoint is still starting. Retry in a moment.",
                              headers={"Retry-After": "1"})
            await problem_response(problem, PATH)(scope, receive, send)
            return
        await endpoint(scope, receive, send)


def _tools(settings: Settings) -> ToolRegistry:
    """The deployment's tools; the knowledge base is the service's database unless ``tools:`` names one."""
    registry = load_tools(settings.config_path)
    if settings.database_url:
        entry = dict(registry.settings.get("knowledge") or {})
        entry.setdefault("database_url", settings.database_url)
        registry.settings["knowledge"] = entry
    return registry


def mount(app: FastAPI) -> None:
    """Route ``/mcp`` (GET, POST, DELETE) to the endpoint `start` builds."""
    app.state.loomiq_mcp = None
    app.router.routes.append(Route(PATH, endpoint=_Endpoint(), methods=["GET", "POST", "DELETE"],
                                   include_in_schema=False))


async def start(app: FastAPI, orch: Orchestrator, settings: Settings, stack: AsyncExitStack,
                extend: McpExtension | None = None) -> None:
    """Build the MCP server and endpoint and serve sessions until `stack` closes. (The MCP face and the
    SDK are imported here, at start-up: commands that only import the API, `loomiq token` or `keys`,
    never load them.)"""
    from ..mcp import McpHttpEndpoint, build_server, security_settings

    server = build_server(lambda: orch, tools=_tools(settings))
    if extend is not None:
        extend(server)
    security = security_settings(settings.public_host, settings.mcp_allowed_hosts, settings.mcp_allowed_origins)
    endpoint = McpHttpEndpoint(server, _authenticate, security, max_body_bytes=settings.max_body_bytes or 4 << 20)
    await stack.enter_async_context(endpoint.lifespan())
    app.state.loomiq_mcp = endpoint

    def stop() -> None:
        app.state.loomiq_mcp = None

    stack.callback(stop)
