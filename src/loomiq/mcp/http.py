"""`McpHttpEndpoint`: loomiq's MCP server over streamable HTTP, as an ASGI endpoint the service
mounts at ``/mcp`` (``loomiq serve``).

Every request is authenticated by a function the service gives (the same as its API's: bearer JWT or
API key, roles and tenants); a refused one gets that function's response (401, 403) and never reaches
the MCP session. An accepted one carries its `McpCaller` in the ASGI scope (`SCOPE_KEY`).

DNS-rebinding protection: the Host and Origin headers must be on the allow-list (`security_settings`:
loopback names on any port, plus the configured public host and any extra hosts and origins), else
421 (Host) or 403 (Origin), as the SDK's transport answers.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable

from mcp.server.mcpserver import MCPServer
from mcp.server.streamable_http import EventStore
from mcp.server.streamable_http_manager import StreamableHTTPSessionManager
from mcp.server.transport_security import TransportSecuritySettings
from starlette.requests import HTTPConnection
from starlette.responses import Response
from starlette.types import Receive, Scope, Send

from .caller import SCOPE_KEY, McpCaller

Authenticate = Callable[[HTTPConnection], Awaitable[McpCaller | Response]]
"""The service's authentication: the caller of a request, or the response refusing it."""

LOOPBACK_HOSTS = ("127.0.0.1", "localhost", "[::1]")


def security_settings(
    public_host: str | None = None,
    extra_hosts: Iterable[str] = (),
    extra_origins: Iterable[str] = (),
) -> TransportSecuritySettings:
    """The Host/Origin allow-list: loopback on any port, `public_host` (``name`` or ``name:port``;
    origins ``https://`` and ``http://`` on it), and the extra entries as given (``host:*`` matches
    any port)."""
    hosts = [f"{h}:*" for h in LOOPBACK_HOSTS] + list(LOOPBACK_HOSTS)
    origins = [f"http://{h}:*" for h in LOOPBACK_HOSTS] + [f"http://{h}" for h in LOOPBACK_HOSTS]
    if public_host:
        hosts += [public_host] if ":" in public_host else [public_host, f"{public_host}:*"]
        for scheme in ("https", "http"):
            origins += [f"{scheme}://{public_host}"] if ":" in public_host else [
                f"{scheme}://{public_host}", f"{scheme}://{public_host}:*"]
    hosts += list(extra_hosts)
    origins += list(extra_origins)
    return TransportSecuritySettings(enable_dns_rebinding_protection=True, allowed_hosts=hosts,
                                     allowed_origins=origins)


class McpHttpEndpoint:
    """The ``/mcp`` endpoint: authentication, then the SDK's stateful streamable-HTTP sessions.

    Run `lifespan()` around the time it serves (the app's lifespan): it runs the session manager.

    Args:
        server: the MCP server (`build_server`).
        authenticate: the service's authentication.
        security: the Host/Origin allow-list.
        event_store: keeps SSE events so a client can resume a stream (``Last-Event-ID``).
    """

    def __init__(
        self,
        server: MCPServer,
        authenticate: Authenticate,
        security: TransportSecuritySettings,
        *,
        event_store: EventStore | None = None,
        max_body_bytes: int = 4 * 1024 * 1024,
    ) -> None:
        self.server = server
        self.authenticate = authenticate
        self.manager = StreamableHTTPSessionManager(
            app=server._lowlevel_server,  # the SDK's documented way to mount an MCPServer elsewhere
            event_store=event_store,
            security_settings=security,
            max_request_body_size=max_body_bytes,
        )

    @contextlib.asynccontextmanager
    async def lifespan(self) -> AsyncIterator[None]:
        """Serve sessions while inside; they end when it exits.

        The session manager runs in a task of its own: its task group must be left by the task that
        entered it, and an app's lifespan may be entered and left by different tasks (test fixtures)."""
        started = asyncio.Event()
        stop = asyncio.Event()

        async def run() -> None:
            async with self.manager.run():
                started.set()
                await stop.wait()

        task = asyncio.get_running_loop().create_task(run(), name="loomiq-mcp-sessions")
        waiter = asyncio.ensure_future(started.wait())
        await asyncio.wait((task, waiter), return_when=asyncio.FIRST_COMPLETED)
        if task.done():
            waiter.cancel()
            task.result()  # it failed to start: raise that
        try:
            yield
        finally:
            stop.set()
            await task

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await Response(status_code=404)(scope, receive, send)
            return
        outcome = await self.authenticate(HTTPConnection(scope, receive))
        if isinstance(outcome, Response):
            await outcome(scope, receive, send)
            return
        scope[SCOPE_KEY] = outcome
        await self.manager.handle_request(scope, receive, send)
