"""The `consensus` strategy: analysts answer independently and concurrently, a lead synthesises."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import ClassVar

from ..agents import Agent, AgentRegistry, NoAgentAvailable
from ..runtime.context import ExecutionContext
from ._prompts import analyst_prompt, synthesis_prompt
from .base import Outcome, Strategy, StrategyError

#: Capabilities that mark an agent as a natural lead.
LEAD_CAPABILITIES = ("synthesis", "lead")


class ConsensusStrategy(Strategy):
    """At least `min_agents` analysts answer concurrently; then a lead agent synthesises.

    Which agent leads: `lead` if given; else, for agents named by the caller, the last one when
    there are more than `min_agents` of them, otherwise the first (who also analyses); for agents
    picked by the registry, the best agent with a ``synthesis`` or ``lead`` capability outside the
    analysts, else the best remaining agent, else the best analyst. `pick` returns the analysts
    followed by the lead, and `execute` reads them in that order.

    With fewer analysts than `min_agents` the run is refused with a clear error, unless
    `allow_fewer` is set. If some analysts fail, the lead synthesises what came back and the result
    names the agents that failed; if all fail, or the lead fails, the run fails.
    """

    name: ClassVar[str] = "consensus"

    def __init__(self, min_agents: int = 3, *, allow_fewer: bool = False, lead: str | None = None) -> None:
        self.min_agents = min_agents
        self.allow_fewer = allow_fewer
        self.lead = lead

    @property
    def default_size(self) -> int:  # type: ignore[override]
        """Analysts the registry picks."""
        return self.min_agents

    @staticmethod
    def split(agents: Sequence[Agent]) -> tuple[list[Agent], Agent]:
        """(analysts, lead) of a run's agents: the lead is always last (`pick` puts it there, and
        it may also appear among the analysts when it analyses too)."""
        if len(agents) < 2:
            return list(agents), agents[0]
        return list(agents[:-1]), agents[-1]

    def pick(self, registry: AgentRegistry, named: Sequence[str] | None, capabilities: Sequence[str]) -> list[Agent]:
        """The analysts followed by the lead (by the rule in the class docstring)."""
        if named:
            agents = super().pick(registry, named, capabilities)
            if self.lead is not None:
                lead = registry.get(self.lead)
                analysts = [a for a in agents if a.id != lead.id] or [lead]
            elif len(agents) > self.min_agents:
                analysts, lead = agents[:-1], agents[-1]
            else:
                analysts, lead = agents, agents[0]
        else:
            found = registry.get(self.lead) if self.lead else self._registry_lead(registry, capabilities)
            exclude = {found.id} if found else set()
            try:
                analysts = registry.select(capabilities, self.min_agents, exclude=exclude)
            except NoAgentAvailable:
                analysts = []
            if found is None:
                rest = registry.rank(capabilities, exclude={a.id for a in analysts})
                found = rest[0] if rest else (analysts[0] if analysts else None)
            if found is None:
                raise NoAgentAvailable(f"no healthy agent has {', '.join(capabilities) or 'any capability'}")
            lead = found
            analysts = analysts or [lead]
        if len(analysts) < self.min_agents and not self.allow_fewer:
            raise StrategyError(
                f"consensus needs at least {self.min_agents} analysts but only {len(analysts)} "
                f"{'is' if len(analysts) == 1 else 'are'} available: name more agents, or let it run with fewer "
                "(--allow-fewer on the command line, options {\"allow_fewer\": true} in the API and the library)",
                argument="agents",
            )
        return [*analysts, lead]

    def _registry_lead(self, registry: AgentRegistry, capabilities: Sequence[str]) -> Agent | None:
        for cap in LEAD_CAPABILITIES:
            ranked = registry.rank([*capabilities, cap])
            if ranked:
                return ranked[0]
        return None

    async def execute(self, ctx: ExecutionContext, agents: Sequence[Agent]) -> Outcome:
        """Steps ``analyst/0``... concurrently, then ``lead``."""
        analysts, lead = self.split(agents)
        task = ctx.task.prompt
        prompt = analyst_prompt(task)
        steps = await asyncio.gather(
            *(ctx.call(f"analyst/{i}", a, "analyst", prompt) for i, a in enumerate(analysts))
        )
        good = [(s.agent, s.output) for s in steps if s.ok]
        if not good:
            return Outcome("", error="every analyst failed; nothing to synthesise")
        final = await ctx.call("lead", lead, "lead", synthesis_prompt(task, good))
        if not final.ok:
            return Outcome("", tuple(t for _, t in good), error=f"the lead failed: {final.error}")
        return Outcome(final.output, tuple(t for _, t in good))
