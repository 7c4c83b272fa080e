"""The arguments and options that several commands share, declared once so that their names and
help read the same in every command."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from ..strategies import STRATEGY_NAMES

PromptArgument = Annotated[str | None, typer.Argument(
    help="The task for the agents, in plain words; '-' reads it from stdin (or use --prompt-file).",
    show_default=False,
)]
PromptFileOption = Annotated[Path | None, typer.Option(
    "--prompt-file", help="Read the task from this file (UTF-8) instead of the PROMPT argument.",
    show_default=False, dir_okay=False,
)]
StrategyOption = Annotated[str, typer.Option(
    "--strategy", "-s", help=f"How the agents work together: {', '.join(STRATEGY_NAMES)}.",
)]
AgentsOption = Annotated[str | None, typer.Option(
    "--agents", "-a", help="Comma-separated agent ids to use, in order (default: the best ones).",
    show_default=False,
)]
AllowFewerOption = Annotated[bool, typer.Option(
    "--allow-fewer", help="With --strategy consensus: run with the analysts available even when they are "
                          "fewer than its minimum (3).",
)]
FailoverOutsideOption = Annotated[bool, typer.Option(
    "--failover-outside", help="With --agents: let failover use other agents too. By default failover stays "
                               "among the named agents, and a step none of them can answer fails, saying so.",
)]
TenantOption = Annotated[str, typer.Option(
    "--tenant", help="The tenant whose tasks to submit, show or change (the API files each task under its "
                     "caller's tenant).",
)]
CapabilitiesOption = Annotated[str | None, typer.Option(
    "--capabilities", "-c", help="Comma-separated capabilities every agent must have.", show_default=False,
)]
ToolsOption = Annotated[str | None, typer.Option(
    "--tools", help="Comma-separated tools (or MCP servers) the run allows, narrowing each agent's allow-list; "
                    "'loomiq tools' lists them.", show_default=False,
)]
ConfigOption = Annotated[Path | None, typer.Option(
    "--config", help="Config file (default: $LOOMIQ_CONFIG, else ./loomiq.yaml, else built-in agents).",
    show_default=False, dir_okay=False,
)]
