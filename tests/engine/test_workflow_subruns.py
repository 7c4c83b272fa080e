"""Subworkflow nodes run as durable child runs (SQLite and PostgreSQL)."""

from __future__ import annotations

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
    types = [e["type"] for e in await runs.events(run.id)]
    assert "subworkflow_started" in types and "subworkflow_finished" in types
