"""Agents: inert configuration (`AgentConfig`) plus the live object the registry tracks (`Agent`)."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, NewType

from ..models import ChatModel
from ._resilience import BreakerState, CircuitBreaker, RetryPolicy

AgentID = NewType("AgentID", str)


@dataclass(frozen=True, slots=True)
class AgentConfig:
    """What an agent is: a model plus a role, capabilities, prices and limits. Declared in YAML
    (`loomiq.yaml`) or built in code; it holds no credentials, only the variable that has them."""

    id: str
    provider: str
    model: str
    name: str = ""
    base_url: str | None = None
    api_key_env: str | None = None
    capabilities: frozenset[str] = frozenset()
    input_price_per_token: float | None = None
    output_price_per_token: float | None = None
    timeout_s: float = 60.0
    max_concurrency: int = 4
    system_prompt: str = ""
    temperature: float | None = None
    max_tokens: int | None = None
    retry: RetryPolicy = RetryPolicy()
    breaker_threshold: int = 5
    breaker_cooldown_s: float = 30.0
    tools: tuple[str, ...] = ()
    """The agent's tool allow-list: tool names, or a provider's name for all its tools (`loomiq.tools.allows`)."""
    max_tool_rounds: int = 8
    """Tool rounds one call of this agent may take before it ends with an error."""
    tools_on_request: bool = False
    """Offer the allow-list's tools only to runs that name tools (``--tools``): the built-in default
    agents, whose runs stay tool-free unless asked."""

    @property
    def display_name(self) -> str:
        """The name shown to people: `name`, or the id when no name is set."""
        return self.name or self.id


_TOTALS = ("calls", "successes", "failures", "total_latency_s", "input_tokens", "output_tokens", "cost_usd")


class AgentState(StrEnum):
    """An agent's health as the registry sees it."""

    IDLE = "idle"
    BUSY = "busy"
    DEGRADED = "degraded"
    OPEN_CIRCUIT = "open_circuit"
    OFFLINE = "offline"


@dataclass(slots=True)
class AgentStats:
    """Running statistics of one agent, updated after every call."""

    calls: int = 0
    successes: int = 0
    failures: int = 0
    total_latency_s: float = 0.0
    input_tokens: int = 0
    output_tokens: int = 0
    cost_usd: float = 0.0
    in_flight: int = 0
    last_error: str | None = None

    @property
    def success_rate(self) -> float:
        """Share of finished calls that succeeded; 1.0 before the first call (benefit of the doubt)."""
        done = self.successes + self.failures
        return self.successes / done if done else 1.0

    @property
    def mean_latency_s(self) -> float:
        """Mean duration of successful calls, 0.0 before the first."""
        return self.total_latency_s / self.successes if self.successes else 0.0


@dataclass(eq=False)
class Agent:
    """A configured agent with its model, breaker, concurrency limit and statistics."""

    config: AgentConfig
    model: ChatModel
    stats: AgentStats = field(default_factory=AgentStats)
    enabled: bool = True
    tenant: str | None = None
    """The tenant that registered the agent (over the API): only that tenant's runs see and use it.
    None: a deployment agent (loomiq.yaml, or built in code), shared by every tenant."""

    def visible_to(self, tenant: str | None) -> bool:
        """Whether runs of `tenant` may see and use this agent (None: no tenant, every agent)."""
        return self.tenant is None or tenant is None or self.tenant == tenant

    def __post_init__(self) -> None:
        self.breaker = CircuitBreaker(self.config.breaker_threshold, self.config.breaker_cooldown_s)
        self.slots = asyncio.Semaphore(self.config.max_concurrency)

    @property
    def id(self) -> str:
        """The agent's unique id."""
        return self.config.id

    @property
    def capabilities(self) -> frozenset[str]:
        """What the agent is good at, matched against a task's required capabilities."""
        return self.config.capabilities

    @property
    def offline(self) -> bool:
        """True when the agent's answers are scripted, not a real model's."""
        return self.model.offline

    @property
    def state(self) -> AgentState:
        """Current health: offline, open circuit, degraded, busy or idle."""
        if not self.enabled:
            return AgentState.OFFLINE
        breaker = self.breaker.state
        if breaker is BreakerState.OPEN:
            return AgentState.OPEN_CIRCUIT
        if breaker is BreakerState.HALF_OPEN or self.breaker.consecutive_failures:
            return AgentState.DEGRADED
        return AgentState.BUSY if self.stats.in_flight else AgentState.IDLE

    @property
    def load(self) -> float:
        """In-flight calls as a share of the agent's concurrency limit."""
        return self.stats.in_flight / self.config.max_concurrency

    def snapshot(self, totals: Mapping[str, Any] | None = None) -> dict[str, object]:
        """JSON-ready description for `loomiq agents --json` and the API. `totals`: statistics to
        show instead of this process's own (the database's, summed over every process). Before any
        finished call, ``success_rate`` is None: no call means no rate."""
        s = self.stats
        if totals is not None:
            s = AgentStats(**{k: totals[k] for k in _TOTALS if k in totals}, in_flight=s.in_flight,
                           last_error=totals.get("last_error") or s.last_error)
        finished = s.successes + s.failures
        return {
            "id": self.id,
            "name": self.config.display_name,
            "provider": self.config.provider,
            "model": self.config.model,
            "capabilities": sorted(self.capabilities),
            "state": self.state.value,
            "offline": self.offline,
            "calls": s.calls,
            "success_rate": round(s.successes / finished, 4) if finished else None,
            "mean_latency_ms": round(s.mean_latency_s * 1000, 2),
            "input_tokens": s.input_tokens,
            "output_tokens": s.output_tokens,
            "cost_usd": round(s.cost_usd, 8),
            "in_flight": s.in_flight,
            "last_error": s.last_error,
        }
