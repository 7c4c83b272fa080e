"""`StrategyRunner`: the `loomiq.runtime.Runner` for collaboration strategies.

It plans a run (``auto`` chooses the strategy, the strategy picks its agents), rebuilds a stored plan
for a resumed durable run, and executes a plan through an `ExecutionContext`: the in-process one
(`Orchestrator.run`), or the engine's journalling one (a durable run). There is one implementation
of every strategy; where it runs is the context's business.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from ..agents import Agent, AgentRegistry
from ..models import Usage
from ..runtime import (
    EventSink,
    ExecutionContext,
    RunFinished,
    RunOptions,
    RunResult,
    RunStarted,
    RunStatus,
    RunTools,
    StoredPlan,
    TaskSpec,
    new_run_id,
)
from ..tools import ToolRegistry
from ._catalog import get_strategy
from .auto import choose_strategy
from .base import Strategy, StrategyError

CALLER_CHOSE = "chosen by the caller"
"""The `RunPlan.reason` (and so `RunResult.strategy_reason`) of a run whose strategy the caller named."""


@dataclass(frozen=True, slots=True)
class RunPlan:
    """A run decided but not started: its id, task, strategy (and why) and agents."""

    task_id: str
    task: TaskSpec
    strategy: Strategy
    reason: str
    agents: tuple[Agent, ...]
    options: Mapping[str, Any]
    """The strategy's options, as given (stored with a durable task)."""
    tools: tuple[str, ...] | None = None
    """The tools the run allows, narrowing each agent's allow-list; None: each agent's own."""
    failover_within: tuple[str, ...] | None = None
    """The agents failover may use (those the caller named, unless it allowed others); None: any."""
    tenant_id: str | None = None
    """Whose run it is, when the planner was told (its failover uses only agents that tenant sees)."""

    @property
    def run_id(self) -> str:
        """The run's id (the same as `task_id`)."""
        return self.task_id

    def stored(self) -> StoredPlan:
        """The plan's durable form (`StrategyRunner.resume` rebuilds it)."""
        return StoredPlan(
            run_id=self.task_id, prompt=self.task.prompt, kind=self.strategy.name,
            agents=tuple(a.id for a in self.agents), capabilities=self.task.capabilities,
            options=self.options, context=self.task.context, reason=self.reason, tools=self.tools,
            failover_within=self.failover_within,
        )


class StrategyRunner:
    """Plans and executes runs of the collaboration strategies on `registry`'s agents.

    Implements `loomiq.runtime.Runner`; the `Orchestrator` and the durable engine both run through it.
    Strategy instances without options are built once per name and reused. `tools`: the tools agent
    calls may use (each agent's allow-list picks from it); none when omitted.
    """

    def __init__(self, registry: AgentRegistry, tools: ToolRegistry | None = None) -> None:
        self._registry = registry
        self._strategies: dict[str, Strategy] = {}
        self.tools = RunTools(tools if tools is not None else ToolRegistry())
        """The runs' tools (`loomiq.runtime.RunTools`)."""

    @property
    def registry(self) -> AgentRegistry:
        """The agents the runs call (and fail over to)."""
        return self._registry

    def strategy(self, name: str, options: Mapping[str, Any] | None = None) -> Strategy:
        """The strategy `name` with `options`. Raises `StrategyError` for an unknown name or option."""
        if options:
            return get_strategy(name, options)
        strategy = self._strategies.get(name)
        if strategy is None:
            strategy = self._strategies[name] = get_strategy(name)
        return strategy

    def plan(
        self, prompt: str, options: RunOptions, *, run_id: str | None = None, tenant_id: str | None = None
    ) -> RunPlan:
        """Decide the strategy and agents for a run without starting it.

        Raises `UnknownCapability` (a `NoAgentAvailable`) for a required capability no agent has, and
        `StrategyError`, `UnknownAgent` or `NoAgentAvailable` with a message naming the
        problem (unknown strategy or agent, too few agents for consensus, no agent with a capability),
        and `UnknownTools` for a tool list naming no tool.
        """
        if not isinstance(prompt, str) or not prompt.strip():
            raise StrategyError("the prompt is empty: write the task for the agents", argument="prompt")
        name, reason, agents, capabilities = options.strategy, CALLER_CHOSE, options.agents, options.capabilities
        # A tenant's run sees the shared agents and its own, never another tenant's (`SubmitOptions`
        # carries the tenant of a durable task).
        tenant = tenant_id if tenant_id is not None else getattr(options, "tenant_id", None)
        registry = self._registry.visible_to(tenant)
        if capabilities:
            registry.check_capabilities(capabilities)
        if name == "auto":
            available = len(agents) if agents else len(registry.rank(capabilities))
            choice = choose_strategy(prompt, available)
            name, reason = choice.strategy, choice.reason
        chosen = self.strategy(name, options.options)
        picked = chosen.pick(registry, agents, capabilities)
        context = options.context
        task = TaskSpec(prompt, capabilities, dict(context) if context else {})
        if options.tools is not None:
            self.tools.check(options.tools)
        return RunPlan(run_id or new_run_id(), task, chosen, reason, tuple(picked), options.options, options.tools,
                       options.failover_within, tenant)

    def resume(self, stored: StoredPlan) -> RunPlan:
        """Rebuild a plan decided earlier from its stored parts: the same strategy and agents,
        chosen again by nobody (a durable run resumed elsewhere replays the same step keys).
        Raises `StrategyError` or `UnknownAgent` when this process cannot run it."""
        chosen = self.strategy(stored.kind, stored.options)
        picked = tuple(self._registry.get(a) for a in stored.agents)
        task = TaskSpec(stored.prompt, tuple(stored.capabilities), dict(stored.context))
        return RunPlan(stored.run_id, task, chosen, stored.reason, picked, stored.options, stored.tools,
                       stored.failover_within)

    async def execute(
        self,
        plan: RunPlan,
        context: ExecutionContext | None = None,
        *,
        sink: EventSink | None = None,
        timeout_s: float | None = None,
        cancellable: bool = False,
    ) -> RunResult:
        """Execute a planned run. With `cancellable`, a cancellation ends the run as ``cancelled``
        (with the usage so far) instead of propagating.

        `context` replaces the in-process `ExecutionContext` made for `sink` (the durable engine
        passes one that journals each step and replays finished ones); its own sink then receives
        the events.
        """
        if context is None:
            ctx = ExecutionContext(plan.task_id, plan.task, self._registry, sink)
        else:
            ctx = context
            sink = ctx.sink
        agents = plan.agents
        ctx.pool = frozenset([a.id for a in agents])
        ctx.tools = self.tools
        ctx.tool_filter = plan.tools
        ctx.failover_within = None if plan.failover_within is None else frozenset(plan.failover_within)
        if context is None and plan.tenant_id is not None:
            ctx.tenant_id = plan.tenant_id
        if sink is not None:
            sink(RunStarted(plan.task_id, plan.strategy.name, plan.reason, tuple(dict.fromkeys(a.id for a in agents)),
                            any(a.offline for a in agents)))
        started = time.perf_counter()
        status: RunStatus = "completed"
        error: str | None = None
        output = ""
        outputs: tuple[str, ...] = ()
        notes: tuple[str, ...] = ()
        try:
            if timeout_s is None:
                outcome = await plan.strategy.execute(ctx, agents)
            else:
                async with asyncio.timeout(timeout_s):
                    outcome = await plan.strategy.execute(ctx, agents)
        except asyncio.CancelledError:
            if not cancellable:
                raise
            task = asyncio.current_task()
            if task is not None:
                task.uncancel()
            status, error = "cancelled", "cancelled by the caller"
        except TimeoutError:
            status, error = "timed_out", f"the run did not finish within {timeout_s:g}s"
        else:
            output, outputs, notes = outcome.output, outcome.outputs, outcome.notes
            if outcome.error is not None:
                status, error = "failed", outcome.error
        steps = tuple(ctx.steps)
        tokens_in = tokens_out = 0
        cost = 0.0
        answered = offline = False
        for s in steps:  # one pass: this runs at the end of every run
            u = s.usage
            tokens_in += u.input_tokens
            tokens_out += u.output_tokens
            cost += s.cost_usd
            if s.error is None:
                answered = True
                offline = offline or s.offline
        if not answered:  # nobody answered: offline when the planned agents were
            offline = any(a.offline for a in agents)
        result = RunResult(
            task_id=plan.task_id, status=status, strategy=plan.strategy.name, output=output, steps=steps,
            usage=Usage(tokens_in, tokens_out), cost_usd=cost, duration_ms=(time.perf_counter() - started) * 1000,
            offline=offline, strategy_reason=plan.reason, error=error, outputs=outputs, notes=notes,
        )
        if sink is not None:
            sink(RunFinished(plan.task_id, result))
        return result
