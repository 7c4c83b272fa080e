"""`loomiq run`: plan a run, show it live (or as JSON), and exit with a code that says how it ended."""

from __future__ import annotations

import asyncio
import json
import os
import sys
from pathlib import Path
from typing import Annotated, Any

import typer

from ..agents import NoAgentAvailable, UnknownAgent
from ..config import ConfigError, find_config
from ..orchestrator import Orchestrator, RunHandle
from ..runtime import RunResult
from ..strategies import STRATEGY_NAMES, StrategyError
from ._common import fail, offline_notice, split_list
from ._display import LiveDisplay, PlainDisplay

EXIT_CODES = {"completed": 0, "failed": 1, "timed_out": 1, "cancelled": 130}
"""Process exit code by run status (130 is the shell's code for Ctrl-C)."""

_PLAN_ERRORS = (StrategyError, UnknownAgent, NoAgentAvailable)


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


async def _execute(orch: Orchestrator, prompt: str, options: dict[str, Any], json_output: bool,
                   config: Path | None) -> RunResult:
    """Plan and stream the run, show it unless `json_output`, close the models, return the result."""
    try:
        handle = orch.stream(prompt, **options)
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
    prompt: Annotated[str, typer.Argument(help="The task for the agents, in plain words.", show_default=False)],
    strategy: Annotated[str, typer.Option(
        "--strategy", "-s", help=f"How the agents work together: {', '.join(STRATEGY_NAMES)}.",
    )] = "auto",
    agents: Annotated[str | None, typer.Option(
        "--agents", "-a", help="Comma-separated agent ids to use, in order (default: the best ones).",
        show_default=False,
    )] = None,
    capabilities: Annotated[str | None, typer.Option(
        "--capabilities", "-c", help="Comma-separated capabilities every agent must have.", show_default=False,
    )] = None,
    config: Annotated[Path | None, typer.Option(
        "--config", help="Config file (default: $LOOMIQ_CONFIG, else ./loomiq.yaml, else built-in agents).",
        show_default=False, dir_okay=False,
    )] = None,
    json_output: Annotated[bool, typer.Option(
        "--json", help="Print only the result, as one JSON object.",
    )] = False,
    timeout: Annotated[float | None, typer.Option(
        "--timeout", help="Give up on the run after this many seconds.", show_default=False,
    )] = None,
) -> None:
    """Run a task on the agents and show the answer, who gave it, and what it cost.

    Exit codes: 0 completed, 1 failed or timed out, 2 bad usage or config, 130 cancelled (Ctrl-C).
    """
    if timeout is not None and not timeout > 0:
        fail(f"--timeout must be a positive number of seconds, not {timeout:g}")
    try:
        orch = Orchestrator.from_config(config)
    except ConfigError as exc:
        fail(str(exc))
    options: dict[str, Any] = {
        "strategy": strategy,
        "agents": split_list(agents) or None,
        "capabilities": split_list(capabilities),
        "timeout_s": timeout,
    }
    try:
        result = asyncio.run(_execute(orch, prompt, options, json_output, config))
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
