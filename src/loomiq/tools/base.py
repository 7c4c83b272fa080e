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
from typing import Any, Self

import jsonschema_rs

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


class InvalidArguments(ToolError):
    """A call's arguments do not match the tool's schema; the message names the field."""


class Tool(ABC):
    """A function a model may call. Subclasses set `name`, `description` and `parameters` (a JSON
    Schema object for the arguments) and implement `run`; they override `footprint` when calls touch
    shared resources, and may set `timeout_s` and `read_only`.

    Tools that take deployment settings (``tools: {<name>: {...}}`` in loomiq.yaml) override
    `configure`; tools that may be missing something at run time override `unavailable_reason`.
    """

    name: str
    description: str
    parameters: Mapping[str, Any]
    timeout_s: float | None = 30.0
    """Seconds one call may take before it is cancelled and answered with an error; None: no limit."""
    read_only: bool = False
    """True when calls change nothing (see `ToolSpec.read_only`)."""

    @classmethod
    def configure(cls, settings: Mapping[str, Any] | None = None) -> Self:
        """The tool built from its settings in loomiq.yaml. This default takes none: it refuses a
        non-empty mapping with a `ValueError` naming the first key."""
        if settings:
            raise ValueError(f"tool {cls.name!r}: setting {next(iter(settings))!r}: unknown setting")
        return cls()

    def unavailable_reason(self) -> str | None:
        """Why the tool cannot run in this deployment (what to install or configure), or None."""
        return None

    def spec(self) -> ToolSpec:
        """What the model is offered."""
        return ToolSpec(self.name, self.description, dict(self.parameters), self.read_only)

    def validate(self, arguments: Mapping[str, Any]) -> Mapping[str, Any]:
        """The arguments `run` gets, checked against `parameters`; raises `InvalidArguments` naming
        the first field that does not match. Subclasses that convert arguments (the `@tool`
        functions, through pydantic) override this."""
        validator = self.__dict__.get("_validator")
        if validator is None:
            validator = jsonschema_rs.validator_for(dict(self.parameters))
            self.__dict__["_validator"] = validator
        if validator.is_valid(arguments):
            return arguments
        error = next(iter(validator.iter_errors(arguments)))
        where = "/".join(str(p) for p in error.instance_path)
        raise InvalidArguments(f"argument {where!r}: {error.message}" if where else error.message)

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
    "InvalidArguments",
    "Resource",
    "Tool",
    "ToolContext",
    "ToolError",
    "ToolResult",
    "ToolUnavailable",
]
