"""`Orchestrator`: the library entry point. Plans a run (strategy and agents), executes it through an
`ExecutionContext`, and returns the result or streams the run's events."""

from __future__ import annotations

import asyncio
import itertools
import os
import time
from collections.abc import AsyncIterator, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .agents import Agent, AgentRegistry
from .models import Usage
from .runtime import (
    EventSink,
    ExecutionContext,
    RunEvent,
    RunFinished,
    RunResult,
    RunStarted,
    RunStatus,
    TaskSpec,
)
from .strategies import Strategy, StrategyError, choose_strategy, get_strategy

if TYPE_CHECKING:
    from .engine import Task, TaskEngine, TaskEvent, TaskID


# Run ids: 48 random bits per process, then a counter. Unique across processes without paying for
# a random-bytes system call (uuid4) on every run.
_RUN_PREFIX = os.urandom(6).hex()
_run_counter = itertools.count(1)


def new_run_id() -> str:
    """A fresh, unique run id (32 hex characters, like a uuid4's hex form)."""
    return f"{_RUN_PREFIX}{next(_run_counter):020x}"


@dataclass(frozen=True, slots=True)
class RunPlan:
    """A run decided but not started: its id, task, strategy (and why) and agents."""

    task_id: str
    task: TaskSpec
    strategy: Strategy
    reason: str
    agents: tuple[Agent, ...]


class Orchestrator:
    """Runs tasks on a set of agents with a collaboration strategy. Async-first.

    Build one from `loomiq.yaml` with `Orchestrator.from_config()`, or from agents in code::

        orch = Orchestrator([Agent(AgentConfig("a", "scripted", "s"), ScriptedModel())])
        result = await orch.run("Should we shard the database?", strategy="consensus")
    """

    _engine: TaskEngine | None = None
    """The durable engine, once `open_engine` was called."""

    def __init__(self, agents: AgentRegistry | Iterable[Agent] = ()) -> None:
        self.registry = agents if isinstance(agents, AgentRegistry) else AgentRegistry(agents)
        self._strategies: dict[str, Strategy] = {}

    @classmethod
    def from_config(cls, path: str | os.PathLike[str] | None = None) -> Orchestrator:
        """Load agents from `path`, `$LOOMIQ_CONFIG`, or `./loomiq.yaml`; the offline defaults if
        none exists. Raises `loomiq.config.ConfigError` with one line naming file, agent and field."""
        from .config import load_agents

        return cls(load_agents(Path(path) if path else None))

    @property
    def agents(self) -> list[Agent]:
        """The registered agents."""
        return list(self.registry)

    def add_agent(self, agent: Agent) -> None:
        """Register an agent at run time."""
        self.registry.add(agent)

    def remove_agent(self, agent_id: str) -> Agent:
        """Unregister an agent at run time; calls it has in flight finish."""
        return self.registry.remove(agent_id)

    def _strategy(self, name: str, options: Mapping[str, Any] | None) -> Strategy:
        if options:
            return get_strategy(name, **options)
        strategy = self._strategies.get(name)
        if strategy is None:
            strategy = self._strategies[name] = get_strategy(name)
        return strategy

    def plan(
        self,
        prompt: str,
        *,
        strategy: str = "auto",
        agents: Sequence[str] | None = None,
        capabilities: Sequence[str] = (),
        options: Mapping[str, Any] | None = None,
        context: Mapping[str, Any] | None = None,
        task_id: str | None = None,
    ) -> RunPlan:
        """Decide the strategy and agents for a run without starting it.

        Raises `StrategyError`, `UnknownAgent` or `NoAgentAvailable` with a message naming the
        problem (unknown strategy or agent, too few agents for consensus, no agent with a capability).
        """
        if not prompt or not prompt.strip():
            raise StrategyError("the prompt is empty")
        reason = ""
        if strategy == "auto":
            available = len(agents) if agents else len(self.registry.rank(capabilities))
            choice = choose_strategy(prompt, available)
            strategy, reason = choice.strategy, choice.reason
        chosen = self._strategy(strategy, options)
        picked = chosen.pick(self.registry, agents, capabilities)
        task = TaskSpec(prompt, tuple(capabilities), dict(context or {}))
        return RunPlan(task_id or new_run_id(), task, chosen, reason, tuple(picked))

    async def run(self, prompt: str, **kwargs: Any) -> RunResult:
        """Run a task to the end and return its result. Takes `plan`'s arguments, and `timeout_s`.

        Provider failures never raise: they are in the result's steps and status. Cancelling the
        awaiting task cancels the run (in-flight provider requests are aborted).

        With ``durable=True`` the run is a task of the engine opened by `open_engine`: it runs here,
        each step journalled, and a worker resumes it if this process dies (`TaskEngine.run`).
        """
        if kwargs.pop("durable", False):
            return await self.engine.run(prompt, **kwargs)
        timeout_s = kwargs.pop("timeout_s", None)
        return await self.execute(self.plan(prompt, **kwargs), timeout_s=timeout_s)

    def stream(self, prompt: str, **kwargs: Any) -> RunHandle:
        """Start a run in the background and return a handle that yields its events.

        Planning errors raise here, before anything starts. Must be called with a running loop.
        """
        timeout_s = kwargs.pop("timeout_s", None)
        return RunHandle(self, self.plan(prompt, **kwargs), timeout_s)

    async def execute(
        self,
        plan: RunPlan,
        *,
        sink: EventSink | None = None,
        timeout_s: float | None = None,
        cancellable: bool = False,
        context: ExecutionContext | None = None,
    ) -> RunResult:
        """Execute a planned run. With `cancellable`, a cancellation ends the run as ``cancelled``
        (with the usage so far) instead of propagating.

        `context` replaces the in-process `ExecutionContext` (the durable engine passes one that
        journals each step and replays finished ones); its event sink then receives the events.
        """
        if context is None:
            ctx = ExecutionContext(plan.task_id, plan.task, self.registry, sink)
        else:
            ctx = context
            sink = ctx.sink
        ctx.pool = frozenset(a.id for a in plan.agents)
        agents = plan.agents
        if sink is not None:
            sink(RunStarted(plan.task_id, plan.strategy.name, plan.reason, tuple(dict.fromkeys(a.id for a in agents)),
                            any(a.offline for a in agents)))
        started = time.perf_counter()
        status: RunStatus = "completed"
        error: str | None = None
        output, outputs, notes = "", (), ()
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
        for s in steps:
            tokens_in += s.usage.input_tokens
            tokens_out += s.usage.output_tokens
            cost += s.cost_usd
        usage = Usage(tokens_in, tokens_out)
        answered = [s for s in steps if s.ok]
        offline = any(s.offline for s in answered) if answered else any(a.offline for a in agents)
        result = RunResult(
            plan.task_id, status, plan.strategy.name, output, steps, usage, cost,
            (time.perf_counter() - started) * 1000, offline, plan.reason, error, outputs, notes,
        )
        if sink is not None:
            sink(RunFinished(plan.task_id, result))
        return result

    async def aclose(self) -> None:
        """Close every agent's model (HTTP connections), and the engine if one was opened."""
        await self.close_engine()
        await asyncio.gather(*(a.model.aclose() for a in self.registry))

    def resume_plan(
        self,
        task_id: str,
        prompt: str,
        *,
        strategy: str,
        agents: Sequence[str],
        capabilities: Sequence[str] = (),
        options: Mapping[str, Any] | None = None,
        context: Mapping[str, Any] | None = None,
        reason: str = "",
    ) -> RunPlan:
        """Rebuild a plan decided earlier by `plan` from its stored parts: the same strategy and
        agents, chosen again by nobody (a durable run resumed elsewhere replays the same step keys).
        Raises `StrategyError` or `UnknownAgent` when this process cannot run it."""
        chosen = self._strategy(strategy, options)
        picked = tuple(self.registry.get(a) for a in agents)
        return RunPlan(task_id, TaskSpec(prompt, tuple(capabilities), dict(context or {})), chosen, reason, picked)

    # -- the durable engine (loomiq.engine); see TaskEngine for every method's contract ----------

    async def open_engine(self, url: str | None = None, **options: Any) -> TaskEngine:
        """Open the durable engine on `url` (default ``$LOOMIQ_DATABASE_URL``, else
        ``sqlite:///loomiq.db``) and bind it to this orchestrator; `options` go to
        `TaskEngine.open` (``config=EngineConfig(...)``, ``agent_limits=...``, store options).
        Closed by `close_engine` or `aclose`."""
        from .engine import TaskEngine

        if self._engine is not None:
            raise RuntimeError("an engine is already open on this orchestrator; close it first")
        self._engine = await TaskEngine.open(self, url, **options)
        return self._engine

    @property
    def engine(self) -> TaskEngine:
        """The engine opened by `open_engine`. Raises `RuntimeError` when none is."""
        engine = self._engine
        if engine is None:
            raise RuntimeError("no durable engine: call `await orchestrator.open_engine()` first")
        return engine

    async def close_engine(self) -> None:
        """Close the engine (and its database connections) if one is open."""
        engine = self._engine
        if engine is not None:
            self._engine = None
            await engine.close()

    async def submit(self, prompt: str, **kwargs: Any) -> TaskID:
        """Queue a durable task; returns its id once committed. See `TaskEngine.submit`."""
        return await self.engine.submit(prompt, **kwargs)

    async def get_task(self, task_id: str) -> Task:
        """A durable task by id. See `TaskEngine.get_task`."""
        return await self.engine.get_task(task_id)

    async def list_tasks(self, **filters: Any) -> list[Task]:
        """Durable tasks, newest first. See `TaskEngine.list_tasks`."""
        return await self.engine.list_tasks(**filters)

    async def cancel_task(self, task_id: str) -> Task:
        """Cancel a durable task (and the tasks waiting on it). See `TaskEngine.cancel_task`."""
        return await self.engine.cancel_task(task_id)

    def events(self, task_id: str, after: int = 0) -> AsyncIterator[TaskEvent]:
        """A durable task's events after `after`, replayed then live. See `TaskEngine.events`."""
        return self.engine.events(task_id, after)

    async def wait(self, task_id: str, timeout_s: float | None = None) -> Task:
        """Wait for a durable task to end. See `TaskEngine.wait`."""
        return await self.engine.wait(task_id, timeout_s)


class RunHandle:
    """A run in progress: iterate it for events, `await handle.result()`, or `handle.cancel()`."""

    def __init__(self, orchestrator: Orchestrator, plan: RunPlan, timeout_s: float | None) -> None:
        self.plan = plan
        self._events: asyncio.Queue[RunEvent] = asyncio.Queue()
        self._task = asyncio.get_running_loop().create_task(
            orchestrator.execute(plan, sink=self._events.put_nowait, timeout_s=timeout_s, cancellable=True)
        )

    @property
    def task_id(self) -> str:
        """The run's id."""
        return self.plan.task_id

    def cancel(self) -> None:
        """Cancel the run now: in-flight provider requests are aborted, and the result is marked
        ``cancelled`` with the usage of the steps that finished."""
        # Deferred one loop turn so a run cancelled right after it was started still gets to
        # begin, and so still ends with a `cancelled` result and a RunFinished event.
        self._task.get_loop().call_soon(self._task.cancel)

    async def result(self) -> RunResult:
        """Wait for the run to end and return its result."""
        return await asyncio.shield(self._task)

    async def __aiter__(self) -> AsyncIterator[RunEvent]:
        while True:
            event = await self._events.get()
            yield event
            if isinstance(event, RunFinished):
                return
