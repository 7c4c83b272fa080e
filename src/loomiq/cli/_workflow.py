"""`loomiq workflow`: validate a definition, draw it (Mermaid), list the shipped templates.

A workflow is named by a file (YAML or JSON) or by ``template:NAME``. Validation errors go to stderr
one per line as ``FILE:LINE:COLUMN: message`` with exit code 2; warnings as ``...: warning: ...``.
(``run``, ``status``, ``pause``, ``resume``, ``cancel``, ``list``: `_workflow_runs`.)
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated, Any

import typer
from rich import box
from rich.console import Console
from rich.table import Table
from rich.text import Text

from ..workflows import (
    LoadResult,
    check_workflow_text,
    directory_resolver,
    list_templates,
    read_workflow_source,
    to_mermaid,
)
from ._common import USAGE_ERROR, fail

workflow_app = typer.Typer(
    name="workflow",
    no_args_is_help=True,
    help="Workflows: validate a definition, draw it as a Mermaid flowchart, list the shipped templates.",
)

SourceArg = Annotated[str, typer.Argument(help="A workflow file (YAML or JSON), or template:NAME.",
                                          show_default=False, metavar="FILE|template:NAME")]
JsonOption = Annotated[bool, typer.Option("--json", help="Print JSON instead of text.")]


def _check(ref: str) -> LoadResult:
    try:
        text, name = read_workflow_source(ref)
    except KeyError as exc:
        fail(str(exc.args[0]) if exc.args else str(exc))
    except OSError as exc:
        fail(f"cannot read {ref}: {exc.strerror or exc}")
    except UnicodeDecodeError:
        fail(f"cannot read {ref}: not UTF-8 text")
    base = Path(ref).parent if not ref.startswith("template:") else Path.cwd()
    # Subworkflows resolve to files beside this one, then to templates; one that cannot be found may
    # still be registered with a server, so it is a warning here, not an error.
    return check_workflow_text(text, name, resolver=directory_resolver(base), strict_subworkflows=False)


def _issue_json(issue: Any) -> dict[str, Any]:
    return {"file": issue.file, "line": issue.line, "column": issue.column,
            "path": ".".join(str(p) for p in issue.path), "severity": issue.severity, "message": issue.message}


def _report(result: LoadResult) -> None:
    for issue in result.issues:
        sys.stderr.write(" ".join(str(issue).split()) + "\n")
    sys.stderr.flush()


@workflow_app.command("validate")
def validate_command(source: SourceArg, json_output: JsonOption = False) -> None:
    """Check a workflow before it runs: exit 0, or one line per error (FILE:LINE:COLUMN) and exit 2.

    Checks the structure, names, needs and cycles, expressions and variables, input types, and
    unreachable nodes.
    """
    result = _check(source)
    definition = result.definition
    if json_output:
        sys.stdout.write(json.dumps({
            "valid": result.ok, "workflow": definition.name if definition else None,
            "nodes": len(definition.nodes) if definition else None,
            "issues": [_issue_json(i) for i in result.issues],
        }, indent=2) + "\n")
        if not result.ok:
            raise typer.Exit(USAGE_ERROR)
        return
    _report(result)
    if not result.ok or definition is None:
        raise typer.Exit(USAGE_ERROR)
    kinds: dict[str, int] = {}
    for node in definition.nodes:
        kinds[node.kind] = kinds.get(node.kind, 0) + 1
    summary = ", ".join(f"{count} {kind}" for kind, count in kinds.items())
    sys.stdout.write(f"{source}: valid workflow '{definition.name}' ({len(definition.nodes)} nodes: {summary})\n")


@workflow_app.command("graph")
def graph_command(source: SourceArg) -> None:
    """Print the workflow as a Mermaid flowchart.

    Node kinds are shapes, conditions are written on the nodes, and edges say how they are taken (on
    failure, always, a decision's case, an error handler).
    """
    result = _check(source)
    if not result.ok or result.definition is None:
        _report(result)
        raise typer.Exit(USAGE_ERROR)
    sys.stdout.write(to_mermaid(result.definition))


@workflow_app.command("templates")
def templates_command(json_output: JsonOption = False) -> None:
    """List the workflow templates shipped with loomiq (use one as template:NAME)."""
    templates = list_templates()
    if json_output:
        sys.stdout.write(json.dumps([{"name": t.name, "description": t.description, "inputs": list(t.inputs)}
                                     for t in templates], indent=2) + "\n")
        return
    console = Console(highlight=False)
    if not console.is_terminal:
        console = Console(highlight=False, width=160)
    table = Table(box=box.SIMPLE_HEAD, pad_edge=False, show_edge=False, padding=(0, 1, 0, 0))
    table.add_column("template", no_wrap=True)
    table.add_column("inputs", no_wrap=True)
    table.add_column("description")
    for t in templates:
        table.add_row(Text(t.name, style="bold"), ", ".join(t.inputs), t.description)
    console.print(table)
