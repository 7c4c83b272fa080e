"""The `loomiq` command line: `loomiq run` (in-process, or `--durable`), the durable tasks (`loomiq submit`,
`status`, `wait`, `cancel`, `tasks`, `worker`), the service (`loomiq serve`, `token`, `keys`), `loomiq agents`,
`loomiq agents check`, `loomiq tools`, `loomiq tool run`, `loomiq workflow` (validate, graph, templates,
run, status, pause, resume, cancel, list), `loomiq approvals`, `loomiq approve`,
`loomiq kb`, `loomiq mcp check`, `loomiq mcp login`, `loomiq mcp serve`,
`loomiq --version`.

Every problem the user can fix (config, strategy, agent names) ends as one line on stderr,
``loomiq: error: <message>``, with exit code 2.
"""

from __future__ import annotations

from typing import Annotated

import typer

from .. import __version__
from ._agents import agents_app
from ._kb import kb_app
from ._mcp import mcp_app
from ._run import run_command
from ._service import register as register_service_commands
from ._tasks import register as register_task_commands
from ._tools import tool_app, tools_command
from ._workflow import workflow_app
from ._workflow_runs import register as register_workflow_run_commands

app = typer.Typer(
    name="loomiq",
    help="Coordinate many LLM agents: run a task with a collaboration strategy (in-process or as a durable "
         "task that workers run), inspect the agents.",
    no_args_is_help=True,
    add_completion=False,
    context_settings={"help_option_names": ["-h", "--help"]},
    # Locals can hold API keys; never print them in a traceback.
    pretty_exceptions_show_locals=False,
)
app.command("run")(run_command)
register_task_commands(app)
register_service_commands(app)
app.add_typer(agents_app, name="agents")
app.command("tools")(tools_command)
app.add_typer(tool_app, name="tool")
app.add_typer(workflow_app, name="workflow")
register_workflow_run_commands(app)
app.add_typer(kb_app, name="kb")
app.add_typer(mcp_app, name="mcp")


def _show_version(value: bool) -> None:
    if value:
        typer.echo(f"loomiq {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: Annotated[bool, typer.Option(
        "--version", help="Show the version and exit.", callback=_show_version, is_eager=True,
    )] = False,
) -> None:
    """Coordinate many LLM agents: run a task with a collaboration strategy, inspect the agents."""


def main() -> None:
    """Entry point of the `loomiq` console script."""
    app(prog_name="loomiq")


__all__ = ["app", "main"]
