"""The tool seam: what every tool is, whatever runs it (the agents' tool loop, `loomiq tool run`,
``GET /api/tools``, an MCP client or server).

A tool is inert description plus one coroutine: `Tool.spec` is what a model is offered, `Tool.run`
does the work, and `Tool.footprint` says which resources one call reads and writes, computed from
the call's arguments, so that the scheduler can run calls of one model turn concurrently when their
footprints are disjoint and in the model's order when they overlap.

Failures a model can act on (bad arguments, a file that does not exist, a command that exits
non-zero) are `ToolResult`s with ``is_error`` set, or a raised `ToolError`: both go back to the model
as an error result, never crash the run. `ToolUnavailable` means the tool cannot run in this
deployment at all (a sandbox binary or a search backend is missing) and says how to fix that.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..models import ToolSpec

Resource = str
"""A named thing a tool call touches, by kind and name: ``file:src/a.py``, ``kb:docs``, ``key:x``.
Two calls conflict when one writes a resource the other reads or writes (see `Footprint`)."""


@dataclass(frozen=True, slots=True)
class Footprint:
    """What one tool call reads and writes.

    `exclusive` marks a call whose effects are not declared: it conflicts with every other call,
    so it runs alone, in the model's order.
    """

    reads: frozenset[Resource] = frozenset()
    writes: frozenset[Resource] = frozenset()
    exclusive: bool = False

    def conflicts_with(self, other: Footprint) -> bool:
        """Whether the two calls must not run at the same time (read/write or write/write overlap)."""
        if self.exclusive or other.exclusive:
            return True
        return bool(
            self.writes & other.writes or self.writes & other.reads or self.reads & other.writes
        )


PURE = Footprint()
"""The footprint of a call that touches nothing shared: it never waits for another."""

EXCLUSIVE = Footprint(exclusive=True)
"""The footprint of a call with undeclared effects: it runs alone."""


@dataclass(frozen=True, slots=True)
class ToolContext:
    """What a tool call may use besides its arguments.

    Attributes:
        tenant_id: whose call it is; tools that keep data (files, knowledge) scope it by tenant.
        workspace: the tenant's workspace root for file tools (None where the deployment has none).
        run_id: the run (task) the call belongs to, when it belongs to one.
        agent_id: the agent that asked for the call, when an agent did.
        settings: deployment settings of the tools (``tools:`` in loomiq.yaml), by tool name.
    """

    tenant_id: str = "default"
    workspace: Path | None = None
    run_id: str | None = None
    agent_id: str | None = None
    settings: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class ToolResult:
    """What a tool call produced.

    Attributes:
        content: the text the model reads back.
        data: the structured result (JSON-able), for programs (`--json`, the API, MCP).
        is_error: True when the call failed in a way the model should see and may correct.
    """

    content: str
    data: Any = None
    is_error: bool = False


class ToolError(Exception):
    """A tool call failed in a way the model can act on; its message goes back as an error result."""


class ToolUnavailable(ToolError):
    """The tool cannot run in this deployment; the message says what to install or configure."""


class Tool(ABC):
    """A function a model may call. Subclasses set `name`, `description` and `parameters` (a JSON
    Schema object for the arguments) and implement `run`; they override `footprint` when calls touch
    shared resources, and may set `timeout_s`."""

    name: str
    description: str
    parameters: Mapping[str, Any]
    timeout_s: float = 30.0

    def spec(self) -> ToolSpec:
        """What the model is offered."""
        return ToolSpec(self.name, self.description, dict(self.parameters))

    def footprint(self, arguments: Mapping[str, Any]) -> Footprint:
        """The resources one call with these (validated) arguments reads and writes. The default
        declares none: calls of this tool never wait for each other."""
        return PURE

    @abstractmethod
    async def run(self, arguments: Mapping[str, Any], ctx: ToolContext) -> ToolResult:
        """Do the call; `arguments` are already validated against `parameters`. Raise `ToolError`
        (or return an error result) for a failure the model should see."""


__all__ = [
    "EXCLUSIVE",
    "PURE",
    "Footprint",
    "Resource",
    "Tool",
    "ToolContext",
    "ToolError",
    "ToolResult",
    "ToolUnavailable",
]
