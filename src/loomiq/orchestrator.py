"""`Orchestrator`: the library entry point. Plans a run (strategy and agents), executes it through an
`ExecutionContext`, and returns the result or streams the run's events."""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncGenerator, Iterable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .agents import Agent, AgentRegistry
from .runtime import EventSink, ExecutionContext, RunEvent, RunFinished, RunOptions, RunResult, new_run_id
from .strategies import RunPlan, StrategyRunner
from .tools import Tool, ToolRegistry

if TYPE_CHECKING:
    from .engine import (
        AgentLimit,
        EngineConfig,
        Priority,
        Submitted,
        Task,
        TaskEngine,
        TaskEvent,
        TaskRetry,
        TaskStatus,
    )

__all__ = ["Orchestrator", "RunHandle", "RunPlan", "new_run_id"]


class Orchestrator:
    """Runs tasks on a set of agents with a collaboration strategy. Async-first.

    Build one from `loomiq.yaml` with `Orchestrator.from_config()`, or from agents in code::

        orch = Orchestrator([Agent(AgentConfig("a", "scripted", "s"), ScriptedModel())])
        result = await orch.run("Should we shard the database?", strategy="consensus")
    """

    _engine: TaskEngine | None = None
    """The durable engine, once `open_engine` was called."""

    def __init__(
        self, agents: AgentRegistry | Iterable[Agent] = (), *, tools: ToolRegistry | Iterable[Tool] | None = None
    ) -> None:
        self.registry = agents if isinstance(agents, AgentRegistry) else AgentRegistry(agents)
        if tools is None or isinstance(tools, ToolRegistry):
            tool_registry = tools if tools is not None else ToolRegistry()
        else:
            tool_registry = ToolRegistry(tools)
        self.tools = tool_registry
        """The tools agents may call, each agent choosing from them with its allow-list (``tools:``):
        `@loomiq.tool` functions and `Tool`s given here, the built-ins, MCP servers' tools."""
        self.runner = StrategyRunner(self.registry, tool_registry)
        """Plans and executes the runs (in process, and for the durable engine)."""

    @classmethod
    def from_config(cls, path: str | os.PathLike[str] | None = None) -> Orchestrator:
        """Load agents from `path`, `$LOOMIQ_CONFIG`, or `./loomiq.yaml`; the offline defaults if
        none exists. Raises `loomiq.config.ConfigError` with one line naming file, agent and field."""
        from .config import load_agents, load_tools

        where = Path(path) if path else None
        return cls(load_agents(where), tools=load_tools(where))

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

    def plan(
        self,
        prompt: str,
        *,
        strategy: str = "auto",
        agents: Sequence[str] | None = None,
        capabilities: Sequence[str] = (),
        options: Mapping[str, Any] | None = None,
        context: Mapping[str, Any] | None = None,
        tools: Sequence[str] | None = None,
        allow_failover_outside: bool = False,
        task_id: str | None = None,
        tenant_id: str | None = None,
    ) -> RunPlan:
        """Decide the strategy and agents for a run without starting it (see `RunOptions` for the
        arguments; `task_id` chooses the run's id).

        Raises `StrategyError`, `UnknownAgent` or `NoAgentAvailable` with a message naming the
        problem (unknown strategy or agent, too few agents for consensus, no agent with a capability),
        and `InvalidOptions` for an argument of the wrong kind. With `tenant_id`, the run uses only the
        shared agents and that tenant's own (`Agent.tenant`).
        """
        opts = RunOptions(strategy=strategy, agents=agents, capabilities=capabilities, options=options,
                          context=context, tools=tools, allow_failover_outside=allow_failover_outside)
        return self.runner.plan(prompt, opts, run_id=task_id, tenant_id=tenant_id)

    async def run(
        self,
        prompt: str,
        *,
        strategy: str = "auto",
        agents: Sequence[str] | None = None,
        capabilities: Sequence[str] = (),
        options: Mapping[str, Any] | None = None,
        context: Mapping[str, Any] | None = None,
        timeout_s: float | None = None,
        tools: Sequence[str] | None = None,
        allow_failover_outside: bool = False,
        task_id: str | None = None,
        durable: bool = False,
    ) -> RunResult:
        """Run a task to the end and return its result. The arguments are those of `RunOptions`
        (`strategy`, `agents`, `capabilities`, `options`, `context`, `timeout_s`); `task_id` chooses
        the run's id. `tools` narrows each agent's tool allow-list to these tool (or provider) names.
        When `agents` names agents, failover stays among them (a step none of them can answer fails,
        saying so); ``allow_failover_outside=True`` lets it use any other agent.

        Provider failures never raise: they are in the result's steps and status. Cancelling the
        awaiting task cancels the run (in-flight provider requests are aborted). Planning errors
        raise as for `plan`.

        With ``durable=True`` the run is a task of the engine opened by `open_engine`: it runs here,
        each step journalled, and a worker resumes it if this process dies (`TaskEngine.run`).
        """
        if durable:
            return await self.engine.run(
                prompt, strategy=strategy, agents=agents, capabilities=capabilities, options=options,
                context=context, timeout_s=timeout_s, tools=tools, allow_failover_outside=allow_failover_outside,
                task_id=task_id,
            )
        opts = RunOptions(strategy=strategy, agents=agents, capabilities=capabilities, options=options,
                          context=context, timeout_s=timeout_s, tools=tools,
                          allow_failover_outside=allow_failover_outside)
        runner = self.runner
        return await runner.execute(runner.plan(prompt, opts, run_id=task_id), timeout_s=opts.timeout_s)

    def stream(
        self,
        prompt: str,
        *,
        strategy: str = "auto",
        agents: Sequence[str] | None = None,
        capabilities: Sequence[str] = (),
        options: Mapping[str, Any] | None = None,
        context: Mapping[str, Any] | None = None,
        timeout_s: float | None = None,
        tools: Sequence[str] | None = None,
        allow_failover_outside: bool = False,
        task_id: str | None = None,
    ) -> RunHandle:
        """Start a run in the background and return a handle that yields its events (the arguments
        of `run`, but in process only).

        Planning errors raise here, before anything starts. Must be called with a running loop.
        """
        opts = RunOptions(strategy=strategy, agents=agents, capabilities=capabilities, options=options,
                          context=context, timeout_s=timeout_s, tools=tools,
                          allow_failover_outside=allow_failover_outside)
        return RunHandle(self, self.runner.plan(prompt, opts, run_id=task_id), opts.timeout_s)

    async def execute(
        self,
        plan: RunPlan,
        *,
        sink: EventSink | None = None,
        timeout_s: float | None = None,
        cancellable: bool = False,
        context: ExecutionContext | None = None,
    ) -> RunResult:
        """Execute a planned run (see `StrategyRunner.execute`). With `cancellable`, a cancellation
        ends the run as ``cancelled`` (with the usage so far) instead of propagating."""
        return await self.runner.execute(plan, context, sink=sink, timeout_s=timeout_s, cancellable=cancellable)

    async def aclose(self) -> None:
        """Close every agent's model (HTTP connections), and the engine if one was opened."""
        await self.close_engine()
        await asyncio.gather(*(a.model.aclose() for a in self.registry))
        await self.runner.tools.aclose()

    # -- the durable engine (loomiq.engine); see TaskEngine for every method's contract ----------

    async def open_engine(
        self,
        url: str | None = None,
        *,
        config: EngineConfig | None = None,
        agent_limits: Mapping[str, AgentLimit | Mapping[str, Any]] | None = None,
        store_options: Mapping[str, Any] | None = None,
    ) -> TaskEngine:
        """Open the durable engine on `url` (default ``$LOOMIQ_DATABASE_URL``, else
        ``sqlite:///loomiq.db``) and bind it to this orchestrator's runner; the other arguments are
        `TaskEngine.open`'s. Closed by `close_engine` or `aclose`."""
        from .engine import TaskEngine

        if self._engine is not None:
            raise RuntimeError("an engine is already open on this orchestrator; close it first")
        self._engine = await TaskEngine.open(
            self.runner, url, config=config, agent_limits=agent_limits, store_options=store_options,
        )
        return self._engine

    @property
    def engine(self) -> TaskEngine:
        """The engine opened by `open_engine`. Raises `RuntimeError` when none is."""
        engine = self._engine
        if engine is None:
            raise RuntimeError("no durable engine: call `await orchestrator.open_engine()` first")
        return engine

    @property
    def has_engine(self) -> bool:
        """Whether `open_engine` opened an engine that is not closed yet."""
        return self._engine is not None

    async def close_engine(self) -> None:
        """Close the engine (and its database connections) if one is open."""
        engine = self._engine
        if engine is not None:
            self._engine = None
            await engine.close()

    async def submit(
        self,
        prompt: str,
        *,
        strategy: str = "auto",
        agents: Sequence[str] | None = None,
        capabilities: Sequence[str] = (),
        options: Mapping[str, Any] | None = None,
        context: Mapping[str, Any] | None = None,
        timeout_s: float | None = None,
        tools: Sequence[str] | None = None,
        allow_failover_outside: bool = False,
        priority: Priority = "medium",
        after: Sequence[str] = (),
        retry: TaskRetry | int | None = None,
        idempotency_key: str | None = None,
        tenant_id: str = "default",
        task_id: str | None = None,
    ) -> Submitted:
        """Queue a durable task; returns the task as committed, and whether `idempotency_key` named
        an earlier one (then that task is returned). See `TaskEngine.submit`."""
        return await self.engine.submit(
            prompt, strategy=strategy, agents=agents, capabilities=capabilities, options=options, context=context,
            timeout_s=timeout_s, tools=tools, allow_failover_outside=allow_failover_outside, priority=priority,
            after=after, retry=retry,
            idempotency_key=idempotency_key,
            tenant_id=tenant_id, task_id=task_id,
        )

    async def get_task(self, task_id: str) -> Task:
        """A durable task by id. See `TaskEngine.get_task`."""
        return await self.engine.get_task(task_id)

    async def list_tasks(
        self,
        *,
        tenant_id: str | None = "default",
        status: TaskStatus | Sequence[TaskStatus] | None = None,
        dead: bool | None = None,
        limit: int = 100,
        offset: int = 0,
    ) -> list[Task]:
        """Durable tasks, newest first. See `TaskEngine.list_tasks`."""
        return await self.engine.list_tasks(tenant_id=tenant_id, status=status, dead=dead, limit=limit, offset=offset)

    async def cancel_task(self, task_id: str) -> Task:
        """Cancel a durable task (and the tasks waiting on it). See `TaskEngine.cancel_task`."""
        return await self.engine.cancel_task(task_id)

    def events(self, task_id: str, after: int = 0) -> AsyncGenerator[TaskEvent]:
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
            orchestrator.runner.execute(plan, sink=self._events.put_nowait, timeout_s=timeout_s, cancellable=True)
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

    async def __aiter__(self) -> AsyncGenerator[RunEvent]:
        while True:
            event = await self._events.get()
            yield event
            if isinstance(event, RunFinished):
                return
