"""``loomiq mcp check`` (start each configured MCP server once and list what it offers; exit 1 naming
any that failed), ``loomiq mcp login NAME`` (OAuth consent for a server that requires it, once) and
``loomiq mcp serve`` (loomiq's own MCP server over stdio, for desktop clients)."""

from __future__ import annotations

import asyncio
import json
import logging
import sys
import time
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.text import Text

from ..config import ConfigError, load_tools
from ..tools import ToolRegistry, ToolSourceError
from ._common import fail
from ._options import ConfigOption

mcp_app = typer.Typer(name="mcp", no_args_is_help=True,
                      help="MCP: check the configured MCP servers, log in to one, serve loomiq over stdio.")

JsonOption = Annotated[bool, typer.Option("--json", help="Print JSON instead of text.")]


async def load_sources(registry: ToolRegistry) -> dict[str, dict[str, Any]]:
    """Start every MCP server of `registry` (concurrently); per server: ok, tools, error, start time."""

    async def one(name: str) -> tuple[str, dict[str, Any]]:
        started = time.perf_counter()
        try:
            problems = await registry.prepare([name])
            error = problems.get(name)
        except ToolSourceError as exc:
            error = str(exc)
        source = registry.sources()[name]
        tools = [t for t in registry.providers().get(name, [])]
        connection = getattr(source, "connection", None)
        spec = getattr(source, "spec", None)
        return name, {
            "name": name, "ok": error is None, "error": error, "required": source.required,
            "transport": getattr(spec, "transport", None), "server": getattr(connection, "server_name", None),
            "start_ms": round((time.perf_counter() - started) * 1000, 1), "tools": sorted(tools),
        }

    return dict(await asyncio.gather(*(one(n) for n in registry.sources())))


@mcp_app.command("check")
def check_command(config: ConfigOption = None, json_output: JsonOption = False) -> None:
    """Start each MCP server of loomiq.yaml once and list the tools it offers (exit 1 naming any that failed)."""
    try:
        registry = load_tools(config)
    except ConfigError as exc:
        fail(str(exc))

    async def run() -> dict[str, dict[str, Any]]:
        try:
            return await load_sources(registry)
        finally:
            await registry.aclose()

    logging.basicConfig(level=logging.ERROR)
    report = asyncio.run(run())
    if json_output:
        sys.stdout.write(json.dumps(list(report.values()), indent=2) + "\n")
    else:
        console = Console(highlight=False)
        if not report:
            console.print("no MCP servers configured (mcp_servers: in loomiq.yaml)")
        for entry in report.values():
            if entry["ok"]:
                head = Text(f"ok    {entry['name']}", style="green")
                head.append(f"  {entry['server'] or ''}  {len(entry['tools'])} tools, started in "
                            f"{entry['start_ms']:.0f} ms", style="default")
                console.print(head)
                for tool in entry["tools"]:
                    console.print(Text(f"        {tool}"))
            else:
                console.print(Text(f"FAIL  {entry['name']}  {entry['error']}", style="red"))
    failed = [e for e in report.values() if not e["ok"]]
    if failed:
        names = ", ".join(e["name"] for e in failed)
        fail(f"MCP server(s) failed to start: {names}", code=1)


@mcp_app.command("login")
def login_command(
    name: Annotated[str, typer.Argument(help="The MCP server (its name in mcp_servers:).", show_default=False)],
    config: ConfigOption = None,
) -> None:
    """Authorize loomiq with an MCP server that requires OAuth: open (or print) the authorization URL,
    wait for the browser to come back, and keep the tokens (in $LOOMIQ_MCP_TOKEN_DIR, default
    ~/.local/share/loomiq/mcp-oauth) so that runs refresh them without asking again."""
    try:
        registry = load_tools(config)
    except ConfigError as exc:
        fail(str(exc))
    source = registry.sources().get(name)
    spec = getattr(source, "spec", None)
    if spec is None:
        known = ", ".join(registry.sources()) or "none"
        fail(f"no MCP server named {name!r} in mcp_servers: (configured: {known})")
    if spec.oauth is None:
        fail(f"MCP server {name!r} has no 'oauth:' settings; only HTTP servers that require OAuth need a login")
    from ..tools.mcp import BrowserConsent, McpCallError, McpStartError, McpToolSource  # the SDK: on use

    def show(url: str) -> None:
        sys.stderr.write(f"Open this URL to authorize loomiq with {name}:\n{url}\n")
        sys.stderr.flush()

    login = McpToolSource(spec, authorizer=BrowserConsent(spec.oauth.redirect_uri, show))

    async def run() -> int:
        try:
            return len(await login.load())
        finally:
            await login.aclose()

    try:
        count = asyncio.run(run())
    except (McpStartError, McpCallError) as exc:
        fail(str(exc), code=1)
    sys.stdout.write(f"authorized with {name}: {count} tools\n")


@mcp_app.command("serve")
def serve_command(
    tenant: Annotated[str, typer.Option("--tenant", help="The tenant every request acts in.")] = "default",
    role: Annotated[str, typer.Option("--role", help="The role every request has: admin, operator or viewer.")]
    = "operator",
    workers: Annotated[int, typer.Option("--workers", min=0, help="Tasks this process runs at once (0: leave "
                                         "them to `loomiq worker`).")] = 2,
    config: ConfigOption = None,
) -> None:
    """Serve loomiq's MCP tools and task resources on stdin/stdout (for Claude Desktop and other MCP
    clients that start a command). Every request acts as --role in --tenant; tasks are stored in
    LOOMIQ_DATABASE_URL (default sqlite:///loomiq.db in the working directory)."""
    from ..api.auth import ROLES, TENANT_RE
    from ..mcp import McpCaller, serve_stdio  # the SDK, and the server: on use

    if role not in ROLES:
        fail(f"--role: expected one of {', '.join(ROLES)}, not {role!r}")
    if not TENANT_RE.match(tenant):
        fail(f"--tenant: {tenant!r} is not a tenant id (1-64 letters, digits, '.', '_' or '-')")
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
    caller = McpCaller(f"stdio:{role}@{tenant}", tenant, role)
    try:
        asyncio.run(serve_stdio(caller, config=config, workers=workers))
    except ConfigError as exc:
        fail(str(exc))
    except KeyboardInterrupt:
        raise typer.Exit(130) from None
