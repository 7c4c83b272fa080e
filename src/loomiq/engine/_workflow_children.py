"""Subworkflow nodes of durable workflow runs: finding the child's workflow, and the child run's id.

A subworkflow node's attempt starts one child run whose id is derived from the parent run, the node
and the attempt (`child_run_id`), so whoever drives the parent, however often, and whatever crashes,
starts it once (the row is inserted unless it is there). The child's ``workflow_started`` notice names
its parent; when the child ends, the same transaction sets the parent's ``wake_at`` to now, so the
parent, parked meanwhile, is driven again by any process (`WorkflowRuns.serve`).
"""

from __future__ import annotations

from pathlib import Path

from ._ops import Stmt

__all__ = ["child_run_id", "directory_of", "find_child_source"]

_SUFFIXES = (".yaml", ".yml", ".json")


def child_run_id(parent_run: str, node: str, attempt: int) -> str:
    """The id of the child run of `node`'s attempt `attempt` in `parent_run` (stable across replays)."""
    return f"{parent_run}.{node}.{attempt}"


def directory_of(filename: str) -> str | None:
    """The directory of the file a run was started from (None unless it names an existing file)."""
    try:
        path = Path(filename)
        return str(path.resolve().parent) if path.is_file() else None
    except (OSError, ValueError):
        return None


async def find_child_source(runs: object, name: str, tenant_id: str, directory: str | None
                            ) -> tuple[str, int, str] | None:
    """(source, registered version or 0, filename) of the workflow `name`, as the loader resolves a
    subworkflow: a workflow registered in the tenant, else ``NAME.yaml|.yml|.json`` beside the parent's
    file (when it was started from one), else the shipped template; None when found nowhere."""
    store = runs.store  # type: ignore[attr-defined]
    row = await store.fetch(Stmt(
        "SELECT version, source FROM workflow_definitions WHERE tenant_id = ? AND name = ? "
        "ORDER BY version DESC LIMIT 1", (tenant_id, name), "one"))
    if row is not None:
        return row[1], int(row[0]), f"{name}.yaml"
    if directory is not None and name.isidentifier():
        for suffix in _SUFFIXES:
            path = Path(directory) / f"{name}{suffix}"
            if path.is_file():
                try:
                    return path.read_text(encoding="utf-8"), 0, str(path)
                except (OSError, UnicodeDecodeError):
                    return None
    from ..workflows.templates import template_names, template_text

    if name in template_names():
        return template_text(name), 0, f"template:{name}"
    return None
