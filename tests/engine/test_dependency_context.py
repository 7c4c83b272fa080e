"""A dependent task's agents see the outputs of the tasks it depends on."""

from __future__ import annotations

from loomiq import ScriptedModel
from loomiq.engine import TaskEngine
from loomiq.models import ModelRequest

from .conftest import running, scripted


async def test_agents_of_a_dependent_task_receive_dependency_outputs(open_engine) -> None:  # type: ignore[no-untyped-def]
    seen: list[ModelRequest] = []

    def reply(request: ModelRequest, index: int) -> str:
        seen.append(request)
        return f"answer {index}"

    engine: TaskEngine = await open_engine([scripted("w", ScriptedModel(replies=reply))])
    orch = engine.orchestrator
    first = await orch.submit("count the widgets", strategy="single", agents=["w"])
    second = await orch.submit("double the count", strategy="single", agents=["w"], after=[first])
    async with running(engine):
        done = await orch.wait(second, timeout_s=10)
    assert done.status == "completed"
    first_request, second_request = seen
    assert all(m.role != "system" for m in first_request.messages)
    background = [m for m in second_request.messages if m.role == "system"]
    assert len(background) == 1
    assert f"Result of task {first}:\nanswer 0" in background[0].content
    assert second_request.messages[-1].content == "double the count"
