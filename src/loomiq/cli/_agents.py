"""`loomiq agents` (list the configured agents) and `loomiq agents check` (probe each model once)."""

from __future__ import annotations

import asyncio
import json
import sys
import time
from pathlib import Path
from typing import Annotated, Any

import typer
from rich import box
from rich.console import Console
from rich.table import Table
from rich.text import Text

from ..agents import Agent
from ..config import ConfigError, find_config, load_agents
from ..models import Message, ModelRequest, ModelSettings
from ._common import fail, fmt_cost, fmt_ms, fmt_tokens, offline_notice
from ._terminal import safe_line

PROBE_TIMEOUT_S = 15.0
"""How long `agents check` waits for each model's answer."""

ConfigOption = Annotated[Path | None, typer.Option(
    "--config", help="Config file (default: $LOOMIQ_CONFIG, else ./loomiq.yaml, else built-in agents).",
    show_default=False, dir_okay=False,
)]
JsonOption = Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")]
DatabaseOption = Annotated[str | None, typer.Option(
    "--database", help="Where the statistics are: the database of the workers and servers (default: "
                       "$LOOMIQ_DATABASE_URL, else sqlite:///loomiq.db here, when it exists).", show_default=False,
)]

agents_app = typer.Typer(
    name="agents",
    invoke_without_command=True,
    no_args_is_help=False,
    help="List the configured agents, or check that their models answer.",
)


def _console() -> Console:
    # Off a terminal, lay tables out at their natural width instead of wrapping them to 80 columns.
    console = Console(highlight=False)
    return console if console.is_terminal else Console(highlight=False, width=240)


def _load(config: Path | None) -> list[Agent]:
    try:
        return load_agents(config)
    except ConfigError as exc:
        fail(str(exc))


def _database_totals(database: str | None) -> dict[str, dict[str, Any]]:
    """The agents' statistics in the database (every process's calls); none when there is no database
    yet (a SQLite file that does not exist is not created)."""
    from ..engine import database_file, database_url, open_store, read_agent_stats

    url = database_url(database)
    try:
        file = database_file(url)
    except ValueError as exc:
        fail(f"--database: {exc}")
    if file is not None and not Path(file).exists():
        return {}

    async def read() -> dict[str, dict[str, Any]]:
        store = await open_store(url)
        try:
            return await read_agent_stats(store)
        finally:
            await store.close()

    try:
        return asyncio.run(read())
    except Exception as exc:  # noqa: BLE001 - any failure to read is the user's to fix: say which
        from ._database import shown_url

        fail(f"cannot read agent statistics from {shown_url(url)}: {type(exc).__name__}: {exc}")


def _print_json(data: Any) -> None:
    sys.stdout.write(json.dumps(data, indent=2, ensure_ascii=False) + "\n")
    sys.stdout.flush()


def _print_notice(console: Console, agents: list[Agent], config: Path | None) -> None:
    notice = offline_notice(agents, find_config(config))
    if notice:
        console.print(Text(notice, style="bold yellow"))


def _stats(s: dict[str, Any]) -> list[tuple[str, str]]:
    called = s["calls"] > 0
    return [
        ("success", f"{s['success_rate']:.0%}" if s["success_rate"] is not None else "—"),
        ("latency", fmt_ms(s["mean_latency_ms"]) if called else "—"),
        ("tokens", fmt_tokens(s["input_tokens"] + s["output_tokens"])),
        ("cost", fmt_cost(s["cost_usd"])),
    ]


def _agents_table(snapshots: list[dict[str, Any]]) -> Table:
    table = Table(box=box.SIMPLE_HEAD, pad_edge=False, show_edge=False, padding=(0, 1, 0, 0))
    for name in ("id", "name", "provider", "model", "capabilities", "state"):
        table.add_column(name, no_wrap=name != "capabilities")
    for name in ("success", "latency", "tokens", "cost"):
        table.add_column(name, justify="right", no_wrap=True)
    for s in snapshots:
        table.add_row(
            Text(s["id"], style="bold"), s["name"], s["provider"], s["model"], ", ".join(s["capabilities"]),
            s["state"], *(value for _, value in _stats(s)),
        )
    return table


@agents_app.callback()
def agents_command(ctx: typer.Context, config: ConfigOption = None, json_output: JsonOption = False,
                   database: DatabaseOption = None) -> None:
    """List the configured agents: provider, model, capabilities, state, and the statistics of every
    worker and server on the database (calls, success rate, latency, tokens, cost)."""
    ctx.obj = {"config": config, "json": json_output}
    if ctx.invoked_subcommand is not None:
        return
    agents = _load(config)
    totals = _database_totals(database)
    snapshots: list[dict[str, Any]] = [a.snapshot(totals.get(a.id, {})) for a in agents]
    if json_output:
        _print_json(snapshots)
        return
    console = _console()
    _print_notice(console, agents, config)
    table = _agents_table(snapshots)
    # The capabilities column may wrap down to about 16 characters; nothing else may.
    longest = max((len(", ".join(s["capabilities"])) for s in snapshots), default=0)
    natural = console.measure(table, options=console.options.update_width(10_000)).maximum
    if natural - max(0, longest - 16) <= console.width:
        console.print(table)
        return
    # Too narrow for the table: one short block per agent instead of a table squeezed to ellipses.
    for s in snapshots:
        console.print(Text.assemble((s["id"], "bold"), f" · {s['name']} · {s['provider']}/{s['model']} · ",
                                    (s["state"], "green" if s["state"] == "idle" else "yellow")))
        console.print(Text(f"  capabilities: {', '.join(s['capabilities']) or '—'}"))
        console.print(Text("  " + ", ".join(f"{label} {value}" for label, value in _stats(s))))


async def probe(agent: Agent, timeout_s: float = PROBE_TIMEOUT_S) -> dict[str, Any]:
    """Ask the agent's model for one token of an answer to "ping"; report ok and latency, or why not."""
    request = ModelRequest((Message("user", "ping"),), settings=ModelSettings(max_tokens=1))
    report: dict[str, Any] = {
        "id": agent.id, "provider": agent.config.provider, "model": agent.config.model,
        "offline": agent.offline, "ok": False, "latency_ms": None, "error_kind": None, "error": None,
    }
    started = time.perf_counter()
    try:
        async with asyncio.timeout(timeout_s):
            await agent.model.complete(request)
    except TimeoutError:
        report["error_kind"], report["error"] = "timeout", f"no answer within {timeout_s:g}s"
    except Exception as exc:  # a check reports every failure, SDK bugs included, instead of crashing
        report["error_kind"] = getattr(exc, "kind", type(exc).__name__)
        report["error"] = " ".join(str(exc).split()) or type(exc).__name__
    else:
        report["ok"] = True
        report["latency_ms"] = round((time.perf_counter() - started) * 1000, 2)
    return report


async def _probe_all(agents: list[Agent]) -> list[dict[str, Any]]:
    try:
        return list(await asyncio.gather(*(probe(a) for a in agents)))
    finally:
        await asyncio.gather(*(a.model.aclose() for a in agents))


@agents_app.command("check")
def check_command(ctx: typer.Context, config: ConfigOption = None, json_output: JsonOption = False) -> None:
    """Send each agent's model one tiny request and report ok with latency, or the error.

    Exit code 1 if any agent failed.
    """
    parent = ctx.obj or {}
    config = config or parent.get("config")
    json_output = json_output or bool(parent.get("json"))
    agents = _load(config)
    try:
        reports = asyncio.run(_probe_all(agents))
    except KeyboardInterrupt:
        sys.stderr.write("loomiq: interrupted\n")
        raise typer.Exit(130) from None
    failed = sum(1 for r in reports if not r["ok"])
    if json_output:
        _print_json(reports)
    else:
        console = _console()
        _print_notice(console, agents, config)
        table = Table(box=box.SIMPLE_HEAD, pad_edge=False, show_edge=False)
        table.add_column("agent", style="bold", no_wrap=True)
        table.add_column("provider/model", no_wrap=True)
        table.add_column("result", no_wrap=True)
        table.add_column("detail")
        for r in reports:
            where = f"{r['provider']}/{r['model']}"
            if r["ok"]:
                detail = fmt_ms(r["latency_ms"]) + (" (offline scripted model)" if r["offline"] else "")
                table.add_row(r["id"], where, Text("ok", style="green"), detail)
            else:
                table.add_row(r["id"], where, Text("failed", style="bold red"),
                              safe_line(f"{r['error_kind']}: {r['error']}"))
        console.print(table)
        summary = f"{len(reports) - failed} of {len(reports)} agents answered"
        console.print(Text(summary, style="bold red" if failed else "green"))
    if failed:
        raise typer.Exit(1)
