"""The `Strategy` base class: how agents are picked for a run, and the contract of `execute`."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass
from typing import ClassVar

from ..agents import Agent, AgentRegistry
from ..runtime.context import ExecutionContext


class StrategyError(Exception):
    """A strategy cannot run as asked (too few agents, unknown agent...). The message says why and
    what to do; `argument` names what the caller must change (``prompt``, ``strategy``, ``agents``
    or ``options``), so a face can point at its own field or flag."""

    def __init__(self, message: str, *, argument: str = "strategy") -> None:
        super().__init__(message)
        self.argument = argument


@dataclass(frozen=True, slots=True)
class Outcome:
    """What `Strategy.execute` returns: the final text, and the per-agent outputs it aggregated."""

    output: str
    outputs: tuple[str, ...] = ()
    error: str | None = None
    """Set when the strategy could not produce an answer (every agent failed)."""
    notes: tuple[str, ...] = ()
    """Decisions worth showing the user (the adaptive router's choices and reasons)."""


class Strategy(ABC):
    """A way for agents to work together on one task.

    `pick` chooses the agents (named by the caller or ranked by the registry); `execute` runs them
    through an `ExecutionContext`. Step keys passed to `ctx.call` must be deterministic (they depend
    only on the step's position in the strategy), so a durable run can replay finished steps.
    """

    name: ClassVar[str]
    default_size: ClassVar[int] = 3
    """How many agents the registry picks when the caller names none."""

    def pick(self, registry: AgentRegistry, named: Sequence[str] | None, capabilities: Sequence[str]) -> list[Agent]:
        """The agents for this run: the named ones in order, else the best `default_size`."""
        if named:
            agents = [registry.get(a) for a in named]
            missing = [a.id for a in agents if not set(capabilities) <= a.capabilities]
            if missing:
                raise StrategyError(
                    f"agent(s) {', '.join(missing)} lack the required capabilities {', '.join(capabilities)}: "
                    "name agents that have them, or leave the capabilities out", argument="agents",
                )
            return agents
        return registry.select(capabilities, self.default_size)

    @abstractmethod
    async def execute(self, ctx: ExecutionContext, agents: Sequence[Agent]) -> Outcome:
        """Run the strategy; provider failures come back as failed steps, never as exceptions."""
