"""A dependent task's agents see the outputs of the tasks it depends on."""

from __future__ import annotations

from loomiq import ScriptedModel
from loomiq.engine import TaskEngine
from loomiq.models import ModelRequest

from .conftest import orch_of, running, scripted


async def test_agents_of_a_dependent_task_receive_dependency_outputs(open_engine) -> None:  # type: ignore[no-untyped-def]
    seen: list[ModelRequest] = []

    def reply(request: ModelRequest, index: int) -> str:
        seen.append(request)
        return f"answer {index}"

    engine: TaskEngine = await open_engine([scripted("w", ScriptedModel(replies=reply))])
    orch = orch_of(engine)
    first = (await orch.submit("count the widgets", strategy="single", agents=["w"])).id
    second = (await orch.submit("double the count", strategy="single", agents=["w"], after=[first])).id
    async with running(engine):
        done = await orch.wait(second, timeout_s=10)
    assert done.status == "completed"
    first_request, second_request = seen
    assert all(m.role != "system" for m in first_request.messages)
    background = [m for m in second_request.messages if m.role == "system"]
    assert len(background) == 1
    assert f"Result of task {first}:\nanswer 0" in background[0].content
    assert second_request.messages[-1].content == "double the count"


async def test_task_stats_group_by_status_and_strategy(open_engine) -> None:  # type: ignore[no-untyped-def]
    from .conftest import team

    engine: TaskEngine = await open_engine(team(4))
    orch = orch_of(engine)
    ids = [(await orch.submit("q1", strategy="consensus")).id, (await orch.submit("q2", strategy="single")).id]
    queued = (await orch.submit("q3", strategy="single", after=[ids[0]])).id
    await orch.cancel_task(queued)
    async with running(engine):
        for task_id in ids:
            assert (await orch.wait(task_id, timeout_s=10)).status == "completed"
    rows = await engine.store.task_stats("default")
    by_key = {(r["status"], r["strategy"]): r for r in rows}
    assert set(by_key) == {("completed", "consensus"), ("completed", "single"), ("cancelled", "single")}
    assert by_key[("completed", "consensus")]["count"] == 1
    assert by_key[("completed", "consensus")]["input_tokens"] > 0
    assert by_key[("completed", "single")]["mean_duration_s"] >= 0
    assert await engine.store.task_stats("nobody") == []
