"""The engine's seams: it executes and resumes any `Runner` (not only the strategies'), and `submit`
answers the task exactly as it was committed."""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from loomiq.agents import AgentRegistry
from loomiq.engine import TaskEngine
from loomiq.models import Usage
from loomiq.runtime import ExecutionContext, RunOptions, RunResult, StoredPlan, TaskSpec, new_run_id

from .conftest import FAST, orch_of, running, team


@dataclass(frozen=True)
class EchoPlan:
    """A plan of `EchoRunner`: one agent answers the prompt under the step key ``echo``."""

    run_id: str
    task: TaskSpec
    agent: str
    options: Mapping[str, Any] = field(default_factory=dict)

    def stored(self) -> StoredPlan:
        return StoredPlan(run_id=self.run_id, prompt=self.task.prompt, kind="echo", agents=(self.agent,),
                          capabilities=self.task.capabilities, options=self.options, context=self.task.context,
                          reason="the only thing it can do")


class EchoRunner:
    """A runner that is no strategy: what a second implementation of the protocol looks like."""

    def __init__(self, registry: AgentRegistry) -> None:
        self._registry = registry
        self.resumed: list[StoredPlan] = []

    @property
    def registry(self) -> AgentRegistry:
        return self._registry

    def plan(self, prompt: str, options: RunOptions, *, run_id: str | None = None) -> EchoPlan:
        agent = options.agents[0] if options.agents else next(iter(self._registry)).id
        return EchoPlan(run_id or new_run_id(), TaskSpec(prompt, tuple(options.capabilities), dict(options.context)),
                        agent, options.options)

    def resume(self, stored: StoredPlan) -> EchoPlan:
        self.resumed.append(stored)
        assert stored.kind == "echo"
        return EchoPlan(stored.run_id, TaskSpec(stored.prompt, stored.capabilities, dict(stored.context)),
                        stored.agents[0], stored.options)

    async def execute(self, plan: EchoPlan, context: ExecutionContext, *, timeout_s: float | None = None,
                      cancellable: bool = False) -> RunResult:
        started = time.perf_counter()
        step = await context.call("echo", self._registry.get(plan.agent), "echo", plan.task.prompt)
        return RunResult(
            task_id=plan.run_id, status="completed" if step.ok else "failed", strategy="echo",
            output=f"echo: {step.output}", steps=(step,), usage=step.usage, cost_usd=step.cost_usd,
            duration_ms=(time.perf_counter() - started) * 1000, offline=step.offline, error=step.error,
        )


async def test_the_engine_executes_and_resumes_a_runner_that_is_not_a_strategy(db_url: str) -> None:
    runner = EchoRunner(AgentRegistry(team(2)))
    engine = await TaskEngine.open(runner, db_url, config=FAST)
    try:
        submitted = await engine.submit("say it back", agents=["a1"], options={"loud": True}, context={"k": 1})
        request = submitted.task.request
        assert (request.strategy, request.agents, request.reason) == ("echo", ("a1",), "the only thing it can do")
        async with running(engine):
            task = await engine.wait(submitted.id, timeout_s=10)
        assert (task.status, task.output) == ("completed", "echo: answer from a1")
        # The worker rebuilt the plan from what was stored, choosing nothing again.
        assert runner.resumed == [StoredPlan(run_id=submitted.id, prompt="say it back", kind="echo", agents=("a1",),
                                             options={"loud": True}, context={"k": 1},
                                             reason="the only thing it can do")]
        durable = await engine.run("once more", agents=["a0"])  # planned here: nothing to resume
        assert (durable.status, durable.output, len(runner.resumed)) == ("completed", "echo: answer from a0", 1)
        assert [e.type async for e in engine.events(durable.task_id)][-1] == "task_finished"
    finally:
        await engine.close()
        for agent in runner.registry:
            await agent.model.aclose()


async def test_submit_answers_the_task_as_committed(engine: TaskEngine) -> None:
    orch = orch_of(engine)
    queued = await orch.submit("first", strategy="single", priority="high", timeout_s=30, context={"k": [1]})
    waiting = await orch.submit("second", strategy="single", after=[queued.id], retry=3)
    assert (queued.task.status, waiting.task.status) == ("queued", "waiting")
    assert queued.task == await orch.get_task(queued.id)  # what a read gives back, field for field
    assert waiting.task == await orch.get_task(waiting.id)
    assert queued.task.usage == Usage() and queued.task.attempts == 0
    await orch.cancel_task(queued.id)
    ended = await orch.submit("third", strategy="single", after=[queued.id], idempotency_key="k-3")
    assert (ended.task.status, ended.task.error) == ("cancelled", f"dependency {queued.id} was cancelled")
    assert ended.task == await orch.get_task(ended.id)
    replay = await orch.submit("third", strategy="single", after=[queued.id], idempotency_key="k-3")
    assert not (queued.replayed or waiting.replayed or ended.replayed) and replay.replayed
    assert replay.task == ended.task
