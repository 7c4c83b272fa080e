"""`McpConnection`: one process's session with one MCP server.

Started on first use and then reused by every call (one session per server per process). The
session lives in a task of its own, because the SDK's transports are structured contexts that must
be entered and left by the same task; calls from any task of the loop go through it.

When the server breaks (its process exits, a call gets no answer within the server's timeout, the
transport reports an unreadable message) the call gets a `McpCallError`, the session is torn down
(a hung stdio server is terminated), and the next call starts a fresh one, after a backoff that
doubles with each consecutive failure (`RESTART_BASE_S` up to `RESTART_MAX_S`) and resets once a
call succeeds. ``notifications/tools/list_changed`` makes the connection list the tools again and
hand them to its `on_tools_changed` callback.

Nobody is at the keyboard while an agent calls a tool, so a server's elicitation request (a form
asking the user for values) is answered by `answer_elicitation`: accepted with the defaults the
form gives (SEP-1034) when every required field has one, declined otherwise.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib.metadata
import logging
import time
from collections.abc import Awaitable, Callable
from functools import partial
from pathlib import Path
from typing import Any, TypeVar

import httpx2
import mcp_types
from mcp import Client, StdioServerParameters
from mcp.client.streamable_http import streamable_http_client
from mcp.shared.exceptions import MCPError

from .oauth import Authorizer, NoConsent
from .oauth import provider as oauth_provider
from .spec import McpConfigError, McpServerSpec

logger = logging.getLogger(__name__)

_T = TypeVar("_T")

RESTART_BASE_S = 0.25
"""Wait before the first restart after a failure; doubled for each further consecutive failure."""

RESTART_MAX_S = 30.0
"""The longest wait between restarts."""

_CLOSE_TIMEOUT_S = 5.0
"""How long closing may take before the session's task is cancelled (stdio: the process killed)."""

ToolsListener = Callable[[list[mcp_types.Tool]], None]

def _version() -> str:
    try:
        return importlib.metadata.version("loomiq")
    except importlib.metadata.PackageNotFoundError:
        return "0"


CLIENT_INFO = mcp_types.Implementation(name="loomiq", version=_version())
"""How loomiq introduces itself in the handshake."""


class McpStartError(Exception):
    """The server could not be started or did not complete the handshake; the message names it."""


class McpCallError(Exception):
    """A call did not get a result: the server crashed, hung or sent something unreadable. The
    session was torn down; the next call starts the server again."""


class McpConnection:
    """The session with one configured MCP server, started on first use.

    Args:
        spec: the server.
        on_tools_changed: called with the new tool list after ``notifications/tools/list_changed``.
        authorizer: the interactive OAuth step (``loomiq mcp login``); runs have none.
        token_dir: where OAuth tokens are kept (default `oauth.token_dir()`).
    """

    def __init__(self, spec: McpServerSpec, on_tools_changed: ToolsListener | None = None, *,
                 authorizer: Authorizer | None = None, token_dir: Path | None = None) -> None:
        self.spec = spec
        self.authorizer: Authorizer = authorizer or NoConsent(spec.name)
        """Who gives consent when an OAuth server needs it (in runs: nobody, see `NoConsent`)."""
        self.token_dir = token_dir
        self.on_tools_changed = on_tools_changed
        self.restarts = 0
        """Sessions started after the first (after a failure)."""
        self.server_name: str | None = None
        """The name and version the server gave in its handshake."""
        self._client: Client | None = None
        self._runner: asyncio.Task[None] | None = None
        self._stop: asyncio.Event | None = None
        self._dead: asyncio.Future[str] | None = None
        """Resolved (with the reason) when the current session dies: calls waiting on it end then."""
        self._lock = asyncio.Lock()
        self._failures = 0
        self._retry_at = 0.0
        self._started_once = False
        self._refresh: asyncio.Task[None] | None = None
        self._pending: set[asyncio.Task[None]] = set()
        self._closed = False

    @property
    def connected(self) -> bool:
        """Whether a session is up now."""
        return self._client is not None

    async def start(self) -> Client:
        """The live session, started (or restarted) now if there is none. Raises `McpStartError`."""
        client = self._client
        if client is not None:
            return client
        async with self._lock:
            if self._client is not None:
                return self._client
            if self._closed:
                raise McpStartError(f"MCP server {self.spec.name!r}: the connection is closed")
            wait = self._retry_at - time.monotonic()
            if wait > 0:
                await asyncio.sleep(wait)
            try:
                return await self._launch()
            except McpStartError:
                self._failed()
                raise

    async def _launch(self) -> Client:
        spec = self.spec
        try:
            target = self._target()
        except McpConfigError as exc:
            raise McpStartError(str(exc)) from None
        loop = asyncio.get_running_loop()
        ready: asyncio.Future[Client] = loop.create_future()
        stop = asyncio.Event()
        runner = loop.create_task(self._serve(target, ready, stop), name=f"loomiq-mcp-{spec.name}")
        try:
            async with asyncio.timeout(spec.start_timeout_s):
                client = await asyncio.shield(ready)
        except TimeoutError:
            runner.cancel()
            await _quietly(runner)
            raise McpStartError(
                f"MCP server {spec.name!r} ({spec.describe()}) did not complete its handshake within "
                f"{spec.start_timeout_s:g}s"
            ) from None
        except McpStartError:
            await _quietly(runner)
            raise
        if self._started_once:
            self.restarts += 1
        self._started_once = True
        self._runner, self._stop, self._client = runner, stop, client
        self._dead = loop.create_future()
        info = client.server_info
        self.server_name = f"{info.name} {info.version}".strip() if info is not None else None
        return client

    def _target(self) -> StdioServerParameters | tuple[str, dict[str, str], httpx2.Auth | None]:
        """What to connect to: stdio parameters, or the URL, its headers (read now) and its OAuth."""
        spec = self.spec
        if spec.command is not None:
            return StdioServerParameters(
                command=spec.command, args=list(spec.args), env=spec.resolved_env() or None, cwd=spec.cwd
            )
        url = str(spec.url)
        auth = None
        if spec.oauth is not None:
            auth = oauth_provider(spec.name, url, spec.oauth, self.authorizer, self.token_dir)
        return url, spec.resolved_headers(), auth

    async def _serve(self, target: Any, ready: asyncio.Future[Client], stop: asyncio.Event) -> None:
        """The session's task: enter the client, publish it, wait until told to stop, leave it."""
        try:
            async with contextlib.AsyncExitStack() as stack:
                if isinstance(target, tuple):
                    url, headers, auth = target
                    # No read timeout on the HTTP client: a call's limit is the server's timeout_s
                    # (see _request), and the server's event stream may stay quiet for long.
                    http = await stack.enter_async_context(
                        httpx2.AsyncClient(headers=headers, auth=auth,
                                           timeout=httpx2.Timeout(self.spec.timeout_s, read=None))
                    )
                    target = streamable_http_client(url, http_client=http)
                client = await stack.enter_async_context(Client(
                    target, mode="legacy", cache=None, message_handler=self._on_message,
                    elicitation_callback=_elicit, client_info=CLIENT_INFO,
                ))
                if not ready.done():
                    ready.set_result(client)
                await stop.wait()
        except asyncio.CancelledError:
            if not ready.done():
                ready.cancel()
            raise
        except BaseException as exc:  # noqa: BLE001 - whatever the transport raises becomes the start error
            if not ready.done():
                ready.set_exception(McpStartError(
                    f"MCP server {self.spec.name!r} ({self.spec.describe()}) failed to start: {_describe(exc)}"
                ))
            else:
                logger.warning("MCP server %r: session ended: %s", self.spec.name, _describe(exc))
        finally:
            if not ready.done():
                ready.set_exception(McpStartError(
                    f"MCP server {self.spec.name!r} ({self.spec.describe()}) exited during its handshake"
                ))

    async def _on_message(self, message: Any) -> None:
        if isinstance(message, mcp_types.ToolListChangedNotification):
            if self.on_tools_changed is not None and (self._refresh is None or self._refresh.done()):
                self._refresh = asyncio.get_running_loop().create_task(self._refresh_tools())
        elif isinstance(message, Exception):
            # Its stdout (or stream) must carry only protocol messages: one that does not cannot be
            # trusted with the calls in flight, which end now (CONNECTION_CLOSED) instead of at their timeout.
            logger.warning("MCP server %r sent an unreadable message: %s", self.spec.name, _describe(message))
            client, dead = self._client, self._dead
            reason = f"it sent an unreadable message ({_describe(message)})"
            if dead is not None and not dead.done():
                dead.set_result(reason)
            if client is not None:
                self._pending.add(asyncio.get_running_loop().create_task(self._broken(client, reason)))
                for task in [t for t in self._pending if t.done()]:
                    self._pending.discard(task)

    async def _refresh_tools(self) -> None:
        try:
            tools = await self.list_tools()
        except (McpStartError, McpCallError) as exc:
            logger.warning("MCP server %r: listing tools after list_changed failed: %s", self.spec.name, exc)
            return
        if self.on_tools_changed is not None:
            self.on_tools_changed(tools)

    async def list_tools(self) -> list[mcp_types.Tool]:
        """Every tool the server offers (all pages)."""
        tools: list[mcp_types.Tool] = []
        cursor: str | None = None
        for _ in range(1000):
            page = await self._request("tools/list", partial(Client.list_tools, cursor=cursor))
            tools.extend(page.tools)
            cursor = page.next_cursor
            if not cursor:
                return tools
        raise McpCallError(f"MCP server {self.spec.name!r}: tools/list did not end after 1000 pages")

    async def call_tool(self, name: str, arguments: dict[str, Any]) -> mcp_types.CallToolResult:
        """Call one tool of the server. Raises `McpStartError`, `McpCallError`, or `MCPError` (the
        server answered the request with a JSON-RPC error)."""
        return await self._request(f"tools/call {name!r}", lambda c: c.call_tool(name, arguments))

    async def _request(self, what: str, send: Callable[[Client], Awaitable[_T]]) -> _T:
        client = await self.start()
        dead = self._dead
        assert dead is not None
        limit = self.spec.timeout_s
        call = asyncio.ensure_future(send(client))
        call.add_done_callback(_consume)
        try:
            async with asyncio.timeout(limit):
                await asyncio.wait((call, dead), return_when=asyncio.FIRST_COMPLETED)
        except TimeoutError:
            await self._broken(client, f"did not answer {what} within {limit:g}s")
            raise McpCallError(
                f"MCP server {self.spec.name!r} did not answer {what} within {limit:g}s; it was restarted"
            ) from None
        finally:
            if not call.done():
                call.cancel()
        if not call.done() or call.cancelled():
            # The session died while the call waited (an unreadable message, a teardown).
            reason = dead.result() if dead.done() else "the session ended"
            raise McpCallError(
                f"MCP server {self.spec.name!r}: {what} failed: {reason}; it is restarted on the next call"
            )
        try:
            result = call.result()
        except MCPError as exc:
            if exc.code in (mcp_types.CONNECTION_CLOSED, mcp_types.REQUEST_TIMEOUT):
                await self._broken(client, "closed the connection")
                raise McpCallError(
                    f"MCP server {self.spec.name!r} closed the connection during {what} ({exc}); it is restarted "
                    "on the next call"
                ) from None
            raise
        except Exception as exc:
            if isinstance(exc, OSError | EOFError) or type(exc).__module__.startswith(("anyio", "httpx")):
                await self._broken(client, _describe(exc))
                raise McpCallError(f"MCP server {self.spec.name!r}: {what} failed: {_describe(exc)}") from None
            raise
        self._failures = 0
        return result

    def _failed(self) -> None:
        self._failures += 1
        delay = min(RESTART_MAX_S, RESTART_BASE_S * 2 ** (self._failures - 1))
        self._retry_at = time.monotonic() + delay

    async def _broken(self, client: Client, reason: str) -> None:
        """Tear the session down after a failure (once, whoever notices first)."""
        async with self._lock:
            if self._client is not client:
                return
            self._failed()
            await self._teardown(reason)

    async def _teardown(self, reason: str = "the connection was closed") -> None:
        runner, stop, dead = self._runner, self._stop, self._dead
        self._client = self._runner = self._stop = self._dead = None
        if dead is not None and not dead.done():
            dead.set_result(reason)
        if runner is None or stop is None:
            return
        stop.set()
        try:
            async with asyncio.timeout(_CLOSE_TIMEOUT_S):
                await asyncio.shield(runner)
        except TimeoutError:
            runner.cancel()
            await _quietly(runner)
        except BaseException:  # noqa: BLE001 - a broken session may end any way; it is gone either way
            pass

    async def aclose(self) -> None:
        """End the session (stdio: the server process ends); further calls raise `McpStartError`."""
        async with self._lock:
            self._closed = True
            if self._refresh is not None:
                self._refresh.cancel()
                await _quietly(self._refresh)
            await self._teardown()


async def _elicit(context: Any, params: mcp_types.ElicitRequestParams) -> mcp_types.ElicitResult:
    return answer_elicitation(params)


def answer_elicitation(params: mcp_types.ElicitRequestParams) -> mcp_types.ElicitResult:
    """loomiq's answer to a server's elicitation: accept a form with its defaults when every required
    field has one; decline a form that needs a value nobody gave, and every URL request."""
    if not isinstance(params, mcp_types.ElicitRequestFormParams):
        return mcp_types.ElicitResult(action="decline")
    schema = params.requested_schema or {}
    properties = schema.get("properties") or {}
    required = set(schema.get("required") or ())
    content = {name: spec["default"] for name, spec in properties.items()
               if isinstance(spec, dict) and "default" in spec}
    if not required <= content.keys():
        return mcp_types.ElicitResult(action="decline")
    return mcp_types.ElicitResult(action="accept", content=content)


def _consume(task: asyncio.Future[Any]) -> None:
    """Retrieve an abandoned call's outcome, so that it is not reported as never retrieved."""
    if not task.cancelled():
        task.exception()


async def _quietly(task: asyncio.Task[Any]) -> None:
    with contextlib.suppress(BaseException):
        await task


def _describe(exc: BaseException) -> str:
    """One line for an exception, unwrapping the task groups the SDK raises through."""
    while isinstance(exc, BaseExceptionGroup) and len(exc.exceptions) == 1:
        exc = exc.exceptions[0]
    if isinstance(exc, BaseExceptionGroup):
        return "; ".join(_describe(e) for e in exc.exceptions)
    text = " ".join(str(exc).split())
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__
