"""The agent registry: a capability index, scoring, health, and failover candidates."""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence

from ._scoring import DEFAULT_WEIGHTS, ScoreWeights, score
from .agent import Agent, AgentState


class UnknownAgent(LookupError):
    """An agent id that is not registered."""


class NoAgentAvailable(LookupError):
    """No registered, healthy agent has the required capabilities."""


class UnknownCapability(NoAgentAvailable):
    """A required capability that no registered agent has, healthy or not: retrying will not help.
    `unknown` lists them all; the message names the first few and the known ones, bounded in size."""

    def __init__(self, unknown: Sequence[str], known: Iterable[str]) -> None:
        self.unknown = tuple(unknown)
        super().__init__(_unknown_message(self.unknown, sorted(known)))


_SHOWN = 10
"""How many names a message lists before it counts the rest."""


def _listed(names: Sequence[str], quote: bool) -> str:
    shown = ", ".join(repr(n[:64]) if quote else n[:64] for n in names[:_SHOWN])
    return shown + (f" and {len(names) - _SHOWN} more" if len(names) > _SHOWN else "")


def _unknown_message(unknown: Sequence[str], known: Sequence[str]) -> str:
    noun = "capability" if len(unknown) == 1 else "capabilities"
    return (f"unknown {noun} {_listed(unknown, True)}: no agent has {'it' if len(unknown) == 1 else 'them'} "
            f"(the agents' capabilities: {_listed(known, False) or 'none'})")


class AgentRegistry:
    """Holds the agents of a process and picks the best ones for a task.

    Agents can be added and removed at any time; a removed agent finishes the calls it has in
    flight but is never picked again.
    """

    def __init__(self, agents: Iterable[Agent] = (), weights: ScoreWeights = DEFAULT_WEIGHTS) -> None:
        self._agents: dict[str, Agent] = {}
        self._by_capability: dict[str, set[str]] = {}
        self.weights = weights
        for agent in agents:
            self.add(agent)

    @property
    def has_tenant_agents(self) -> bool:
        """Whether some agent belongs to one tenant (registered over the API)."""
        return any(a.tenant is not None for a in self._agents.values())

    def visible_to(self, tenant: str | None) -> AgentRegistry:
        """The agents runs of `tenant` may use: the shared ones and the tenant's own. This registry
        itself when that is all of them (no tenant agents, or no tenant); else a new registry over the
        same `Agent` objects (their statistics and breakers are shared)."""
        if tenant is None or not self.has_tenant_agents:
            return self
        view = AgentRegistry(weights=self.weights)
        for agent in self._agents.values():
            if agent.visible_to(tenant):
                view.add(agent)
        return view

    def __len__(self) -> int:
        return len(self._agents)

    def __iter__(self) -> Iterator[Agent]:
        return iter(list(self._agents.values()))

    def __contains__(self, agent_id: object) -> bool:
        return agent_id in self._agents

    def add(self, agent: Agent) -> None:
        """Register `agent`. Raises `ValueError` if its id is taken."""
        if agent.id in self._agents:
            raise ValueError(f"agent id {agent.id!r} is already registered")
        self._agents[agent.id] = agent
        for cap in agent.capabilities:
            self._by_capability.setdefault(cap, set()).add(agent.id)

    def remove(self, agent_id: str) -> Agent:
        """Unregister an agent and return it. Raises `UnknownAgent`."""
        agent = self.get(agent_id)
        del self._agents[agent_id]
        agent.enabled = False
        for cap in agent.capabilities:
            ids = self._by_capability.get(cap)
            if ids is not None:
                ids.discard(agent_id)
                if not ids:
                    del self._by_capability[cap]
        return agent

    def get(self, agent_id: str) -> Agent:
        """The agent with this id. Raises `UnknownAgent` naming the known ids."""
        try:
            return self._agents[agent_id]
        except KeyError:
            known = ", ".join(sorted(self._agents)) or "none"
            raise UnknownAgent(f"unknown agent {agent_id!r} (known: {known})") from None

    @property
    def capabilities(self) -> frozenset[str]:
        """Every capability some registered agent has (healthy or not)."""
        return frozenset(self._by_capability)

    def check_capabilities(self, required: Iterable[str]) -> None:
        """Raise `UnknownCapability` when some of `required` is a capability no registered agent has."""
        by_cap = self._by_capability
        unknown = [c for c in dict.fromkeys(required) if c not in by_cap]
        if unknown:
            raise UnknownCapability(unknown, by_cap)

    def with_capabilities(self, required: Iterable[str]) -> list[Agent]:
        """Agents having every capability in `required` (all agents if it is empty)."""
        required = list(required)
        if not required:
            return list(self._agents.values())
        ids = set.intersection(*(self._by_capability.get(c, set()) for c in required))
        return [self._agents[i] for i in self._agents if i in ids]

    def score(self, agent: Agent, preferred: frozenset[str] = frozenset()) -> float:
        """The agent's ranking score (see `loomiq.agents._scoring`)."""
        s = agent.stats
        fit = len(agent.capabilities & preferred) / len(preferred) if preferred else 1.0
        return score(
            capability_fit=fit,
            success_rate=s.success_rate,
            mean_latency_s=s.mean_latency_s,
            cost_per_call_usd=s.cost_usd / s.successes if s.successes else 0.0,
            load=agent.load,
            weights=self.weights,
        )

    def rank(
        self,
        required: Iterable[str] = (),
        *,
        preferred: Iterable[str] = (),
        exclude: Iterable[str] = (),
    ) -> list[Agent]:
        """Healthy agents with the required capabilities, best first.

        Agents whose circuit is open or that are offline are left out; ties keep registration order.
        """
        excluded = set(exclude)
        pref = frozenset(preferred)
        usable = [
            a
            for a in self.with_capabilities(required)
            if a.id not in excluded and a.state not in (AgentState.OPEN_CIRCUIT, AgentState.OFFLINE)
        ]
        return sorted(usable, key=lambda a: -self.score(a, pref))

    def select(
        self, required: Iterable[str] = (), n: int = 1, *, exclude: Iterable[str] = ()
    ) -> list[Agent]:
        """The `n` best agents for the required capabilities (fewer if fewer exist).

        Raises `UnknownCapability` when no registered agent has a required capability, and
        `NoAgentAvailable` when the agents that have them are all unhealthy (or excluded).
        """
        required = list(required)
        ranked = self.rank(required, exclude=exclude)
        if not ranked:
            self.check_capabilities(required)
            caps = ", ".join(required) if required else "any capability"
            raise NoAgentAvailable(f"no healthy agent has {caps}")
        return ranked[:n]

    def fallbacks(self, failed: Agent, required: Iterable[str] = (), exclude: Iterable[str] = ()) -> list[Agent]:
        """Agents that can stand in for `failed`: the task's required capabilities if any were
        given, else every capability of the failed agent; best first."""
        caps = list(required) or sorted(failed.capabilities)
        return self.rank(caps, exclude={failed.id, *exclude})
