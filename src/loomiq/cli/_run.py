"""`loomiq run`: plan a run, show it live (or as JSON), and exit with a code that says how it ended.

With ``--durable`` the run is a task of the durable engine (`TaskEngine.run`): it runs in this
process, each agent call journalled in the database, and if this process dies a `loomiq worker`
resumes it from its journal."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import sys
from pathlib import Path
from typing import Annotated, Any

import typer

from ..agents import NoAgentAvailable, UnknownAgent
from ..config import ConfigError, find_config
from ..orchestrator import Orchestrator, RunHandle
from ..runtime import InvalidOptions, RunOptions, RunResult
from ..strategies import StrategyError
from ._common import fail, offline_notice, read_prompt, split_list, strategy_options
from ._display import SCRIPTED_NOTE, EventPrinter, LiveDisplay, PlainDisplay, finish_lines, typed
from ._options import (
    AgentsOption,
    AllowFewerOption,
    CapabilitiesOption,
    ConfigOption,
    FailoverOutsideOption,
    PromptArgument,
    PromptFileOption,
    StrategyOption,
    ToolsOption,
)

EXIT_CODES = {"completed": 0, "failed": 1, "timed_out": 1, "cancelled": 130}
"""Process exit code by run status (130 is the shell's code for Ctrl-C)."""

_PLAN_ERRORS = (StrategyError, UnknownAgent, NoAgentAvailable, InvalidOptions)


def _interactive() -> bool:
    # Live animation only on a real terminal that can move the cursor.
    return sys.stdout.isatty() and os.environ.get("TERM", "") != "dumb"


async def _follow(handle: RunHandle, display: LiveDisplay | PlainDisplay | None) -> RunResult:
    """Feed the run's events to the display until it ends; Ctrl-C cancels the run cleanly."""
    try:
        async for event in handle:
            if display is not None:
                display.event(event)
        return await handle.result()
    except asyncio.CancelledError:
        # asyncio.run turns the first Ctrl-C into a cancellation of this task: cancel the run
        # instead, and report what it did so far.
        task = asyncio.current_task()
        if task is not None:
            task.uncancel()
        handle.cancel()
        return await handle.result()


async def _execute_durable(orch: Orchestrator, prompt: str, options: RunOptions, json_output: bool,
                           database: str | None, tenant: str = "default") -> RunResult:
    """Run durably in this process: lines from the task's event log while it runs, then the summary.
    Ctrl-C cancels the task (recorded as cancelled), as it cancels an in-process run."""
    from ..engine import new_task_id  # the engine is loaded only for --durable
    from ._database import database_url, shown_url

    url = database_url(database)
    try:
        try:
            engine = await orch.open_engine(url)
        except Exception as exc:  # noqa: BLE001 - any failure to open is the user's to fix: say which
            fail(f"cannot open the database {shown_url(url)}: {type(exc).__name__}: {exc}")
        task_id = new_task_id()
        run = asyncio.get_running_loop().create_task(engine.run(
            prompt, strategy=options.strategy, agents=options.agents, capabilities=options.capabilities,
            options=options.options, timeout_s=options.timeout_s, tools=options.tools, task_id=task_id,
            allow_failover_outside=options.allow_failover_outside,
            tenant_id=tenant,
        ))
        follower = None
        printer = EventPrinter(lifecycle=False)
        if not json_output:
            typer.echo(f"task: {task_id} (durable, tenant {tenant}, in {shown_url(url)})")
            follower = asyncio.get_running_loop().create_task(_print_events(engine, task_id, printer))
        try:
            try:
                result = await asyncio.shield(run)
            except asyncio.CancelledError:
                # Ctrl-C: cancel the task itself, then report what it did so far.
                task = asyncio.current_task()
                if task is not None:
                    task.uncancel()
                await engine.cancel_task(task_id)
                result = await run
            if follower is not None:
                # The log ends with the task's last event, committed by the time `run` returned.
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(asyncio.shield(follower), 10)
                for line in finish_lines(result, SCRIPTED_NOTE if printer.offline else None):
                    typer.echo(line)
        finally:
            if follower is not None and not follower.done():
                follower.cancel()
                await asyncio.gather(follower, return_exceptions=True)
        return result
    finally:
        await orch.aclose()


async def _print_events(engine: Any, task_id: str, printer: Any) -> None:
    async for entry in engine.events(task_id):
        event = typed(entry)
        if event is not None:
            printer(event)


async def _execute(orch: Orchestrator, prompt: str, options: RunOptions, json_output: bool,
                   config: Path | None) -> RunResult:
    """Plan and stream the run, show it unless `json_output`, close the models, return the result."""
    try:
        handle = orch.stream(prompt, strategy=options.strategy, agents=options.agents,
                             capabilities=options.capabilities, options=options.options, timeout_s=options.timeout_s,
                             tools=options.tools, allow_failover_outside=options.allow_failover_outside)
        if json_output:
            return await _follow(handle, None)
        notice = offline_notice(handle.plan.agents, find_config(config))
        display = LiveDisplay(notice) if _interactive() else PlainDisplay(notice)
        try:
            await display.begin(handle.plan)
            result = await _follow(handle, display)
            await display.finish(result)
        finally:
            await display.close()
        return result
    finally:
        await orch.aclose()


def run_command(
    prompt: PromptArgument = None,
    strategy: StrategyOption = "auto",
    agents: AgentsOption = None,
    capabilities: CapabilitiesOption = None,
    tools: ToolsOption = None,
    config: ConfigOption = None,
    json_output: Annotated[bool, typer.Option(
        "--json", help="Print only the result, as one JSON object.",
    )] = False,
    timeout: Annotated[float | None, typer.Option(
        "--timeout", help="Give up on the run after this many seconds.", show_default=False,
    )] = None,
    durable: Annotated[bool, typer.Option(
        "--durable", help="Journal every agent call in the database, so that a worker resumes the run if "
                          "this process dies.",
    )] = False,
    database: Annotated[str | None, typer.Option(
        "--database", help="With --durable: database URL (default: $LOOMIQ_DATABASE_URL, else "
                           "sqlite:///loomiq.db here).", show_default=False,
    )] = None,
    prompt_file: PromptFileOption = None,
    allow_fewer: AllowFewerOption = False,
    failover_outside: FailoverOutsideOption = False,
    tenant: Annotated[str, typer.Option(
        "--tenant", help="With --durable: the tenant the task is filed under (as `loomiq tasks --tenant` shows it).",
    )] = "default",
) -> None:
    """Run a task on the agents and show the answer, who gave it, and what it cost.

    Exit codes: 0 completed, 1 failed or timed out, 2 bad usage or config, 130 cancelled (Ctrl-C).
    """
    text = read_prompt(prompt, prompt_file)
    if timeout is not None and not timeout > 0:
        fail(f"--timeout must be a positive number of seconds, not {timeout:g}")
    try:
        orch = Orchestrator.from_config(config)
    except ConfigError as exc:
        fail(str(exc))
    try:
        options = RunOptions(strategy=strategy, agents=split_list(agents) or None,
                             capabilities=split_list(capabilities), timeout_s=timeout,
                             tools=None if tools is None else split_list(tools),
                             options=strategy_options(strategy, allow_fewer),
                             allow_failover_outside=failover_outside)
    except InvalidOptions as exc:
        fail(str(exc))
    if database is not None and not durable:
        fail("--database only applies to --durable runs")
    if tenant != "default" and not durable:
        fail("--tenant only applies to --durable runs (an in-process run is stored in no tenant)")
    if not tenant.strip():
        fail("--tenant is empty: name a tenant (the default one is 'default')")
    try:
        if durable:
            result = asyncio.run(_execute_durable(orch, text, options, json_output, database, tenant))
        else:
            result = asyncio.run(_execute(orch, text, options, json_output, config))
    except _PLAN_ERRORS as exc:
        fail(str(exc))
    except KeyboardInterrupt:
        # A second Ctrl-C while the first was being handled: stop at once.
        sys.stderr.write("loomiq: interrupted\n")
        raise typer.Exit(130) from None
    if json_output:
        sys.stdout.write(json.dumps(result.to_dict(), indent=2, ensure_ascii=False) + "\n")
        sys.stdout.flush()
    raise typer.Exit(EXIT_CODES.get(result.status, 1))
