"""Subworkflow nodes run as durable child runs (SQLite and PostgreSQL)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from loomiq import ScriptedModel
from loomiq.engine.workflow_runs import WorkflowRuns
from tests.engine.conftest import eventually, running, scripted

CHILD = """
name: child
inputs:
  topic: {type: string}
nodes:
  work:
    kind: task
    prompt: "Child on ${{ inputs.topic }}"
    agents: [a0]
outputs:
  said: ${{ nodes.work.output }}
"""

PARENT = """
name: parent
nodes:
  sub:
    kind: subworkflow
    workflow: child
    inputs:
      topic: "x"
  after:
    kind: task
    needs: [sub]
    prompt: "Parent got ${{ nodes.sub.output.said }}"
    agents: [a0]
"""


async def test_parent_uses_the_child_output_and_starts_one_child(open_engine: Callable[..., object]) -> None:
    model = ScriptedModel(replies=lambda request, i: f"reply {i}")
    engine = await open_engine([scripted("a0", model)])  # type: ignore[misc]
    runs = WorkflowRuns(engine)
    await runs.register(CHILD)
    async with running(engine):  # type: ignore[arg-type]
        run = await runs.start(PARENT)
        done = await runs.wait(run.id, timeout_s=20)
    await runs.close()
    assert done.status == "succeeded", done.error
    prompts = sorted(t.request.prompt for t in await engine.list_tasks())  # type: ignore[attr-defined]
    assert prompts == ["Child on x", "Parent got reply 0"]
    children = [r for r in await runs.list_runs() if r.workflow == "child"]
    assert [c.id for c in children] == [f"{run.id}.sub.1"]
    types = [e.type for e in await runs.events(run.id)]
    assert "subworkflow_started" in types and "subworkflow_finished" in types


FAILING_CHILD = """
name: failing
nodes:
  work:
    kind: task
    prompt: "This fails"
    agents: [bad]
"""

ROUTED_PARENT = """
name: routed
nodes:
  sub:
    kind: subworkflow
    workflow: failing
  rescue:
    kind: error_handler
    handles: [sub]
    action: compensate
    prompt: "Undo what the child began"
    agents: [a0]
"""

SLOW_CHILD = """
name: slow
nodes:
  work:
    kind: task
    prompt: "Take your time"
    agents: [slow]
"""

SLOW_PARENT = """
name: waits
nodes:
  sub:
    kind: subworkflow
    workflow: slow
"""


async def test_a_failing_child_fails_its_node_and_the_parents_handler_runs_once(
        open_engine: Callable[..., object]) -> None:
    bad = scripted("bad", ScriptedModel(failures={i: "server_error" for i in range(50)}))
    engine = await open_engine([scripted("a0"), bad])  # type: ignore[misc]
    runs = WorkflowRuns(engine)
    await runs.register(FAILING_CHILD)
    async with running(engine):  # type: ignore[arg-type]
        run = await runs.start(ROUTED_PARENT)
        done = await runs.wait(run.id, timeout_s=30)
    status = await runs.status(run.id)
    await runs.close()
    assert status["nodes"]["sub"]["status"] == "failed"
    assert status["nodes"]["rescue"]["status"] == "succeeded"
    prompts = [t.request.prompt for t in await engine.list_tasks(limit=50)]  # type: ignore[attr-defined]
    assert prompts.count("Undo what the child began") == 1
    (child,) = [r for r in await runs.list_runs() if r.workflow == "failing"]
    assert child.status == "failed" and child.id == f"{run.id}.sub.1"
    assert done.status in ("succeeded", "failed")  # compensate: the handler ran; the run's end follows the spec


async def test_cancelling_the_parent_cancels_its_child(open_engine: Callable[..., object]) -> None:
    slow = scripted("slow", ScriptedModel(latency_s=30))
    engine = await open_engine([slow])  # type: ignore[misc]
    runs = WorkflowRuns(engine)
    await runs.register(SLOW_CHILD)
    async with running(engine):  # type: ignore[arg-type]
        run = await runs.start(SLOW_PARENT)
        child_id = f"{run.id}.sub.1"
        async with asyncio.timeout(20):  # the child runs its slow task
            while True:
                if await _child_status(runs, child_id) == "running" and await _child_task_running(engine):
                    break
                await asyncio.sleep(0.05)
        await runs.cancel(run.id)
        async with asyncio.timeout(10):
            while True:
                if await _child_status(runs, child_id) == "cancelled":
                    break
                await asyncio.sleep(0.05)
    await runs.close()
    assert (await runs.get_run(run.id)).status == "cancelled"


async def _child_status(runs: WorkflowRuns, child_id: str) -> str | None:
    from loomiq.engine import WorkflowRunNotFound

    try:
        return (await runs.get_run(child_id)).status
    except WorkflowRunNotFound:
        return None  # not started yet


async def _child_task_running(engine: object) -> bool:
    tasks = await engine.list_tasks(limit=10)  # type: ignore[attr-defined]
    return any(t.status == "running" for t in tasks)


class Clock:
    """A fake clock the test moves (the driver's deadlines are compared with it)."""

    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


TIMED_PARENT = """
name: timed
nodes:
  sub:
    kind: subworkflow
    workflow: slow
    timeout: 90s
    retry: {max_attempts: 2, backoff: 5s}
  rescue:
    kind: task
    needs: [sub]
    on: failure
    prompt: "Rescue after: ${{ nodes.sub.error }}"
    agents: [a0]
"""


async def test_a_subworkflow_timeout_cancels_the_child_and_fails_the_attempt(
        open_engine: Callable[..., object]) -> None:
    """The node's timeout is a deadline stored with the child (its start plus the timeout, the
    parent's wake-up): before it nothing happens; once it passed, any driver (here a fresh one, as
    after a restart) cancels the child (its task too) and the attempt fails saying so; the retry gets a
    child with its own deadline, and when that one times out too, the `on: failure` node runs."""
    from loomiq.engine._ops import Stmt
    from loomiq.runtime import SubworkflowStarted

    slow = scripted("slow", ScriptedModel(latency_s=60))
    engine = await open_engine([slow, scripted("a0")])  # type: ignore[misc]
    clock = Clock()
    runs = WorkflowRuns(engine, clock=clock)
    await runs.register(SLOW_CHILD)
    async with running(engine):  # type: ignore[arg-type]
        run = await runs.start(TIMED_PARENT)
        first = f"{run.id}.sub.1"
        child = await runs.get_run(first)
        assert child.status == "running"
        deadline = child.created_at + 90
        wake_at = await engine.store.fetch(Stmt(  # type: ignore[attr-defined]
            "SELECT wake_at FROM workflow_runs WHERE id = ?", (run.id,), "val"))
        assert wake_at == deadline
        [started] = [e.event for e in await runs.events(run.id) if e.type == "subworkflow_started"]
        assert isinstance(started, SubworkflowStarted) and started.deadline == deadline
        await eventually(lambda: _child_task_running(engine), timeout_s=20, every_s=0.05)

        clock.now = deadline - 1  # not yet: nothing changes
        await runs.drive(run.id)
        assert (await runs.get_run(first)).status == "running"
        assert not [r for r in await runs.due() if r == run.id]

        clock.now = deadline  # a fresh driver (another process, or after a restart) takes the deadline
        fresh = WorkflowRuns(engine, clock=clock)
        assert run.id in await fresh.due()
        await fresh.tick()
        timed_out = await runs.get_run(first)
        assert timed_out.status == "cancelled"
        assert timed_out.error == "the timeout of its parent's node 'sub' (90s) passed"
        state = await fresh.state(run.id)
        assert "timed out" in (state.nodes["sub"].error or "")
        assert state.nodes["sub"].attempts == 2  # the retry, after its 5 s backoff
        assert await _child_status(runs, f"{run.id}.sub.2") is None
        # The child's own node task is cancelled (its provider call aborted).
        await eventually(lambda: _all_cancelled(engine), timeout_s=10, every_s=0.05)

        clock.now += 5  # the retry's backoff: the second attempt starts its own child, with its own deadline
        await fresh.tick()
        second = await runs.get_run(f"{run.id}.sub.2")
        assert second.status == "running" and second.created_at == clock.now
        clock.now = second.created_at + 90
        await fresh.tick()
        done = await fresh.wait(run.id, timeout_s=20)
        await fresh.close()
    await runs.close()
    status = await runs.status(run.id)
    assert (await runs.get_run(f"{run.id}.sub.2")).status == "cancelled"
    assert status["nodes"]["sub"]["status"] == "failed" and status["nodes"]["sub"]["attempts"] == 2
    error = f"subworkflow run {run.id}.sub.2 timed out: the node's timeout (90s) passed and the child run was cancelled"
    assert status["nodes"]["sub"]["error"] == error
    assert status["nodes"]["rescue"]["status"] == "succeeded"  # the on-failure edge applies
    prompts = [t.request.prompt for t in await engine.list_tasks(limit=50)]  # type: ignore[attr-defined]
    assert prompts.count(f"Rescue after: {error}") == 1
    assert done.status == "failed" and "sub" in (done.error or "")  # no route handler recovered it (the spec)
    types = [e.type for e in await runs.events(run.id)]
    assert types.count("subworkflow_started") == 2 and types.count("subworkflow_finished") == 2


async def _all_cancelled(engine: object) -> bool:
    return all(t.status == "cancelled" for t in await engine.list_tasks())  # type: ignore[attr-defined]


async def test_a_child_started_before_a_crash_gets_its_started_notice_once(open_engine: Callable[..., object]) -> None:
    """The child's start and the parent's ``subworkflow_started`` are two transactions: a driver that died
    in between (simulated: the notice's row removed, and a fresh driver) writes it on its next pass, once."""
    from loomiq.engine._ops import Stmt

    engine = await open_engine([scripted("slow", ScriptedModel(latency_s=30))])  # type: ignore[misc]
    runs = WorkflowRuns(engine)
    await runs.register(SLOW_CHILD)
    run = await runs.start(SLOW_PARENT)
    await runs.close()
    assert [e.type for e in await runs.events(run.id)].count("subworkflow_started") == 1
    await engine.store.run_op(_delete_notice(run.id, "notice/subworkflow_started/sub/1"))  # type: ignore[attr-defined]
    assert "subworkflow_started" not in [e.type for e in await runs.events(run.id)]
    fresh = WorkflowRuns(engine)
    for _ in range(3):
        await fresh.drive(run.id)
    await fresh.close()
    started = [e.event for e in await runs.events(run.id) if e.type == "subworkflow_started"]
    assert [(s.node, s.attempt, s.run_id) for s in started] == [("sub", 1, f"{run.id}.sub.1")]  # type: ignore[union-attr]
    rows = await engine.store.fetch(Stmt(  # type: ignore[attr-defined]
        "SELECT COUNT(*) FROM workflow_runs WHERE id LIKE ?", (f"{run.id}.%",), "val"))
    assert rows == 1  # still one child


def _delete_notice(run_id: str, key: str) -> object:
    from loomiq.engine._ops import Outcome, Stmt

    yield Stmt("DELETE FROM workflow_events WHERE run_id = ? AND key = ?", (run_id, key))
    return Outcome(value=None)
