"""`loomiq tools` (every tool, its schema, and which agents may use it) and `loomiq tool run NAME
--args JSON` (one call, exactly as an agent's: the same registry, settings, validation, timeout and
error results, through `ToolLoop.call`)."""

from __future__ import annotations

import asyncio
import json
import sys
from typing import Annotated, Any

import typer
from rich import box
from rich.console import Console
from rich.table import Table
from rich.text import Text

from ..agents import Agent
from ..config import ConfigError, load_agents, load_tools
from ..tools import Tool, ToolContext, ToolLoop, ToolRegistry, UnknownTool, allows
from ._common import fail
from ._options import ConfigOption

JsonOption = Annotated[bool, typer.Option("--json", help="Print JSON instead of text.")]

tool_app = typer.Typer(name="tool", no_args_is_help=True, help="Run one tool as an agent would.")


def _load(config: Any) -> tuple[ToolRegistry, list[Agent]]:
    try:
        return load_tools(config), load_agents(config)
    except ConfigError as exc:
        fail(str(exc))


def _describe(tool: Tool, agents: list[Agent]) -> dict[str, Any]:
    reason = tool.unavailable_reason()
    return {
        "name": tool.name,
        "description": tool.description,
        "parameters": dict(tool.parameters),
        "read_only": tool.read_only,
        "timeout_s": tool.timeout_s,
        "available": reason is None,
        "unavailable_reason": reason,
        "agents": [a.id for a in agents if allows(a.config.tools, tool.name)],
    }


def tools_command(config: ConfigOption = None, json_output: JsonOption = False) -> None:
    """List the tools (MCP servers' too: they are started once to list theirs): description, argument
    schema, and which agents may use each."""
    registry, agents = _load(config)

    async def collect() -> tuple[list[dict[str, Any]], dict[str, dict[str, Any]]]:
        from ._mcp import load_sources

        try:
            servers = await load_sources(registry)
            return [_describe(registry.get(name), agents) for name in registry.names()], servers
        finally:
            await registry.aclose()

    described, servers = asyncio.run(collect())
    failed = [s for s in servers.values() if not s["ok"]]
    for server in failed:
        sys.stderr.write(f"loomiq: warning: {server['error']}\n")
    if json_output:
        sys.stdout.write(json.dumps(described, indent=2, ensure_ascii=False) + "\n")
        return
    console = Console(highlight=False)
    if not console.is_terminal:
        console = Console(highlight=False, width=200)
    if not described:
        console.print("no tools: no built-in tool is installed or enabled")
        return
    table = Table(box=box.SIMPLE_HEAD, pad_edge=False, show_edge=False, padding=(0, 1, 0, 0))
    for column in ("name", "arguments", "agents", "description"):
        table.add_column(column, no_wrap=column != "description")
    for d in described:
        props = d["parameters"].get("properties") or {}
        required = set(d["parameters"].get("required") or ())
        args = ", ".join(f"{p}{'' if p in required else '?'}" for p in props)
        description = (d["description"] or "").split("\n", 1)[0]
        if not d["available"]:
            description = f"[unavailable: {d['unavailable_reason']}] {description}"
        # Text, not markup: descriptions and names are not rich markup ("[unavailable: ...]").
        table.add_row(Text(d["name"], style="bold"), Text(args), Text(", ".join(d["agents"]) or "—"),
                      Text(description))
    console.print(table)
    for agent in agents:
        missing = registry.unmatched(agent.config.tools)
        if missing:
            console.print(Text(f"agent {agent.id}: allow-list entries naming no tool: {', '.join(missing)}",
                               style="yellow"))


@tool_app.command("run")
def tool_run_command(
    name: Annotated[str, typer.Argument(help="The tool's name (see `loomiq tools`).", show_default=False)],
    args: Annotated[str, typer.Option("--args", help="The arguments, a JSON object.")] = "{}",
    tenant: Annotated[str, typer.Option("--tenant", help="Whose call it is (workspace, knowledge base).")] = "default",
    config: ConfigOption = None,
    json_output: JsonOption = False,
) -> None:
    """Run one tool with JSON arguments, exactly as an agent's call would run, and print its result.

    Exit code 1 when the result is an error (invalid arguments, the tool failed or timed out).
    """
    try:
        arguments = json.loads(args)
    except json.JSONDecodeError as exc:
        fail(f"--args: not valid JSON: {exc}")
    if not isinstance(arguments, dict):
        fail("--args: expected a JSON object, e.g. '{\"code\": \"print(1)\"}'")
    registry, _ = _load(config)
    try:
        tool = registry.get(name)
    except UnknownTool as exc:
        known = ", ".join(registry.names()) or "none"
        fail(f"{exc} (known: {known})")
    ctx = ToolContext(tenant_id=tenant, settings=registry.settings)
    try:
        record = asyncio.run(ToolLoop([tool]).call(name, arguments, ctx))
    except KeyboardInterrupt:
        sys.stderr.write("loomiq: interrupted\n")
        raise typer.Exit(130) from None
    if json_output:
        out = {
            "name": record.name, "arguments": dict(record.arguments), "content": record.content,
            "data": record.data, "error": record.error, "error_kind": record.error_kind,
            "duration_ms": round(record.duration_ms, 3),
        }
        sys.stdout.write(json.dumps(out, indent=2, ensure_ascii=False, default=str) + "\n")
    else:
        sys.stdout.write(record.content + ("" if record.content.endswith("\n") else "\n"))
    sys.stdout.flush()
    if record.error is not None:
        if not json_output:
            sys.stderr.write(f"loomiq: tool {name} failed ({record.error_kind})\n")
        raise typer.Exit(1)
