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
    analysts, else the best remaining agent, else the best analyst.

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

    def split(self, agents: Sequence[Agent]) -> tuple[list[Agent], Agent]:
        """(analysts, lead) for the agents of a run, by the rule in the class docstring."""
        if self.lead is not None:
            lead = next((a for a in agents if a.id == self.lead), None)
            if lead is None:
                raise StrategyError(f"lead agent {self.lead!r} is not among the run's agents")
            analysts = [a for a in agents if a is not lead]
            return (analysts or [lead]), lead
        if len(agents) > self.min_agents:
            return list(agents[:-1]), agents[-1]
        return list(agents), agents[0]

    def pick(self, registry: AgentRegistry, named: Sequence[str] | None, capabilities: Sequence[str]) -> list[Agent]:
        """Analysts plus, when one exists, a separate lead (always last)."""
        if named:
            agents = super().pick(registry, named, capabilities)
            if self.lead is not None and self.lead not in named:
                agents.append(registry.get(self.lead))
        else:
            lead = registry.get(self.lead) if self.lead else self._registry_lead(registry, capabilities)
            exclude = {lead.id} if lead else set()
            try:
                analysts = registry.select(capabilities, self.min_agents, exclude=exclude)
            except NoAgentAvailable:
                analysts = []
            if lead is None:
                rest = registry.rank(capabilities, exclude={a.id for a in analysts})
                lead = rest[0] if rest else None
            agents = analysts + ([lead] if lead is not None and lead not in analysts else [])
            if not agents:
                raise NoAgentAvailable(f"no healthy agent has {', '.join(capabilities) or 'any capability'}")
        analysts, _ = self.split(agents)
        if len(analysts) < self.min_agents and not self.allow_fewer:
            raise StrategyError(
                f"consensus needs at least {self.min_agents} analysts but only {len(analysts)} "
                f"{'is' if len(analysts) == 1 else 'are'} available; name more agents or allow fewer"
            )
        return agents

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
