"""Subworkflow nodes run as durable child runs (SQLite and PostgreSQL)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from loomiq import ScriptedModel
from loomiq.engine.workflow_runs import WorkflowRuns
from tests.engine.conftest import running, scripted

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
