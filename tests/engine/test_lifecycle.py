"""Dependencies, cancellation, timeouts and retries."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Sequence
from typing import ClassVar

import pytest

from loomiq import Agent, ScriptedModel, ScriptedReply
from loomiq.engine import DependencyError, TaskEngine, TaskRetry
from loomiq.runtime import ExecutionContext
from loomiq.strategies import STRATEGIES, Outcome, Strategy

from .conftest import eventually, orch_of, running, scripted, team


class EchoContext(Strategy):
    """Answers with the run's context (what a task received from its dependencies)."""

    name: ClassVar[str] = "echo_context"
    default_size: ClassVar[int] = 1

    async def execute(self, ctx: ExecutionContext, agents: Sequence[Agent]) -> Outcome:
        return Outcome(json.dumps(ctx.task.context, sort_keys=True))


@pytest.fixture
def echo_strategy(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(STRATEGIES, "echo_context", EchoContext)


async def test_dependencies_run_in_order_and_pass_outputs(engine: TaskEngine, echo_strategy: None) -> None:
    orch = orch_of(engine)
    a = (await orch.submit("first", strategy="single", agents=["a0"])).id
    b = (await orch.submit("second", strategy="single", agents=["a1"])).id
    c = (await orch.submit("third", strategy="echo_context", after=[a, b], context={"k": 1})).id
    assert (await orch.get_task(c)).status == "waiting"
    async with running(engine):
        done = await orch.wait(c, timeout_s=10)
    assert done.status == "completed"
    assert json.loads(done.output) == {"k": 1, "dependencies": {a: "answer from a0", b: "answer from a1"}}
    types = [e.type for e in await engine.store.read_events(c)]
    assert types[:3] == ["task_waiting", "task_ready", "task_started"]
    # A dependency already completed: the new task is queued at once.
    d = (await orch.submit("fourth", strategy="single", after=[a])).id
    assert (await orch.get_task(d)).status == "queued"


async def test_a_failed_dependency_fails_its_dependents(open_engine) -> None:  # type: ignore[no-untyped-def]
    bad = scripted("bad", ScriptedModel(failures={i: "server_error" for i in range(10)}), capabilities=["x"])
    engine: TaskEngine = await open_engine([bad, *team(1)])
    orch = orch_of(engine)
    a = (await orch.submit("fails", strategy="single", agents=["bad"])).id
    b = (await orch.submit("after a", strategy="single", agents=["a0"], after=[a])).id
    c = (await orch.submit("after b", strategy="single", agents=["a0"], after=[b])).id
    async with running(engine):
        tasks = [await orch.wait(t, timeout_s=10) for t in (a, b, c)]
    assert [t.status for t in tasks] == ["failed", "failed", "failed"]
    assert tasks[1].error == f"dependency {a} failed" and tasks[2].error == f"dependency {b} failed"
    assert not tasks[1].dead  # it never ran
    late = (await orch.submit("after the failure", strategy="single", after=[a])).id
    assert (await orch.get_task(late)).error == f"dependency {a} failed"


async def test_cancelling_a_dependency_cancels_its_dependents(engine: TaskEngine) -> None:
    orch = orch_of(engine)
    a = (await orch.submit("a", strategy="single")).id
    b = (await orch.submit("b", strategy="single", after=[a])).id
    c = (await orch.submit("c", strategy="single", after=[b])).id
    assert (await orch.cancel_task(a)).status == "cancelled"
    b_task, c_task = await orch.get_task(b), await orch.get_task(c)
    assert (b_task.status, b_task.error) == ("cancelled", f"dependency {a} was cancelled")
    assert (c_task.status, c_task.error) == ("cancelled", f"dependency {b} was cancelled")
    assert [e.type for e in await engine.store.read_events(b)] == ["task_waiting", "task_finished"]


async def test_bad_dependencies_are_refused(engine: TaskEngine) -> None:
    orch = orch_of(engine)
    with pytest.raises(DependencyError, match="unknown task id.*nope"):
        await orch.submit("x", after=["nope"])
    with pytest.raises(DependencyError, match="itself"):
        await orch.submit("x", task_id="self", after=["self"])
    other = (await orch.submit("y", tenant_id="acme")).id
    with pytest.raises(DependencyError, match="unknown"):
        await orch.submit("x", after=[other])  # another tenant's task is not visible
    a = (await orch.submit("a", task_id="t-a")).id
    b = (await orch.submit("b", task_id="t-b", after=[a])).id
    assert (await orch.get_task(b)).request.after == ("t-a",)
    assert await orch.list_tasks(status="queued") != []


async def test_cancel_a_queued_task(engine: TaskEngine) -> None:
    orch = orch_of(engine)
    tid = (await orch.submit("never runs", strategy="single")).id
    task = await orch.cancel_task(tid)
    assert (task.status, task.error) == ("cancelled", "cancelled by request")
    async with running(engine) as worker:
        await asyncio.sleep(0.1)
    assert worker.claimed == 0
    events = [e async for e in orch.events(tid)]
    assert [e.type for e in events] == ["task_queued", "task_finished"]
    assert (await orch.cancel_task(tid)).status == "cancelled"  # cancelling again changes nothing


async def test_cancel_a_running_task_in_process(open_engine) -> None:  # type: ignore[no-untyped-def]
    hanging = scripted("a0", ScriptedModel(replies=["never"], latency_s=30))
    engine: TaskEngine = await open_engine([hanging, *team(2)[1:]])
    orch = orch_of(engine)
    tid = (await orch.submit("slow", strategy="sequential", agents=["a1", "a0"])).id
    dependent = (await orch.submit("after", strategy="single", after=[tid])).id
    async with running(engine):
        await eventually(lambda: bool(hanging.model.calls))  # type: ignore[attr-defined]
        started = time.perf_counter()
        task = await orch.cancel_task(tid)
        elapsed = time.perf_counter() - started
    assert elapsed < 0.2, f"cancelled in {elapsed * 1000:.0f} ms"
    assert (task.status, task.error) == ("cancelled", "cancelled by request")
    assert hanging.model.calls[0].finished is False  # type: ignore[attr-defined]
    assert task.usage.total_tokens > 0  # the finished first step is counted
    assert (await orch.get_task(dependent)).status == "cancelled"


async def test_cancel_from_another_process(open_engine) -> None:  # type: ignore[no-untyped-def]
    hanging = scripted("a0", ScriptedModel(replies=["never"], latency_s=30))
    runner: TaskEngine = await open_engine([hanging])
    other: TaskEngine = await open_engine()
    tid = (await orch_of(runner).submit("slow", strategy="single", agents=["a0"])).id
    async with running(runner):
        await eventually(lambda: bool(hanging.model.calls))  # type: ignore[attr-defined]
        started = time.perf_counter()
        # The holder may already have aborted and recorded it (PostgreSQL NOTIFY is that quick).
        assert (await orch_of(other).cancel_task(tid)).status in {"running", "cancelled"}
        task = await orch_of(other).wait(tid, timeout_s=5)
        elapsed = time.perf_counter() - started
    assert task.status == "cancelled" and elapsed < 2.0


async def test_timeout_keeps_partial_results(open_engine) -> None:  # type: ignore[no-untyped-def]
    slow = scripted("a1", ScriptedModel(replies=["too late"], latency_s=30))
    engine: TaskEngine = await open_engine([*team(1), slow])
    orch = orch_of(engine)
    tid = (await orch.submit("race", strategy="sequential", agents=["a0", "a1"], timeout_s=0.3)).id
    async with running(engine):
        task = await orch.wait(tid, timeout_s=5)
    assert task.status == "timed_out" and "0.3" in (task.error or "")
    assert task.usage.total_tokens > 0 and len(task.result["steps"]) == 1  # type: ignore[index]
    assert not task.dead


async def test_retries_then_dead(open_engine) -> None:  # type: ignore[no-untyped-def]
    bad = scripted("bad", ScriptedModel(failures={i: "server_error" for i in range(10)}))
    engine: TaskEngine = await open_engine([bad])
    orch = orch_of(engine)
    tid = (await orch.submit("doomed", strategy="single", retry=TaskRetry(max_attempts=3, backoff_s=0.02))).id
    async with running(engine):
        task = await orch.wait(tid, timeout_s=10)
    assert (task.status, task.dead, task.failures, task.attempts) == ("failed", True, 3, 3)
    assert "500" in (task.error or "")
    attempts = await engine.attempts(tid)
    assert [a.status for a in attempts] == ["failed"] * 3 and all(a.error for a in attempts)
    types = [e.type for e in await engine.store.read_events(tid)]
    assert types.count("task_retrying") == 2 and types[-1] == "task_finished"
    assert [t.id for t in await orch.list_tasks(dead=True)] == [tid]


async def test_a_retry_replays_what_succeeded(open_engine) -> None:  # type: ignore[no-untyped-def]
    # Disjoint capabilities: no agent can stand in for another, so the lead's failure fails the run.
    steady = scripted("steady", ScriptedModel(replies=["steady analysis"]), capabilities=["analysis"])
    flaky = scripted("flaky", ScriptedModel(replies=["the synthesis"], failures={0: "server_error"}),
                     capabilities=["synthesis"])
    engine: TaskEngine = await open_engine([steady, flaky])
    orch = orch_of(engine)
    tid = (await orch.submit("x", strategy="consensus", options={"min_agents": 1}, agents=["steady", "flaky"],
                            retry=TaskRetry(max_attempts=2, backoff_s=0.01))).id
    async with running(engine):
        task = await orch.wait(tid, timeout_s=10)
    assert (task.status, task.output, task.failures, task.dead) == ("completed", "the synthesis", 1, False)
    assert [a.status for a in await engine.attempts(tid)] == ["failed", "completed"]
    assert len(steady.model.calls) == 1  # type: ignore[attr-defined]  # replayed on the retry
    assert [c.finished for c in flaky.model.calls] == [False, True]  # type: ignore[attr-defined]


async def test_unplannable_task_fails_cleanly(open_engine) -> None:  # type: ignore[no-untyped-def]
    client: TaskEngine = await open_engine(team(2))
    worker_side: TaskEngine = await open_engine(team(1))  # has no a1
    tid = (await orch_of(client).submit("x", strategy="single", agents=["a1"])).id
    async with running(worker_side):
        task = await orch_of(client).wait(tid, timeout_s=5)
    assert task.status == "failed" and "a1" in (task.error or "")
    assert ScriptedReply  # re-exported for scripts
