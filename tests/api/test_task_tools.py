"""``tools`` on ``POST /api/tasks`` and on ``POST /api/tasks/{id}/collaborate`` (a multi-agent
follow-up): the run narrows the agents' allow-lists, the task shows it, and the result's steps list
the tool calls; a list naming no tool is a 422 problem."""

from __future__ import annotations

import httpx2
import pytest

from loomiq import Agent, AgentConfig, Orchestrator, ScriptedModel
from loomiq.models import ModelRequest, ScriptedReply
from loomiq.tools import ToolRegistry, tool

from .test_problems import assert_problem


@tool
def shout(text: str) -> str:
    """Upper-case a text."""
    return text.upper()


def reply(request: ModelRequest, index: int) -> ScriptedReply | str:
    results = [m.content for m in request.messages if m.role == "tool"]
    return "said " + results[0] if results else ScriptedReply.calling(("shout", {"text": "hi"}))


@pytest.fixture
def orchestrator() -> Orchestrator:
    agents = [Agent(AgentConfig(name, "scripted", "scripted", tools=("shout",)), ScriptedModel(reply))
              for name in ("loud", "louder", "loudest")]
    return Orchestrator(agents, tools=ToolRegistry([shout], builtins=False))


async def test_a_task_with_tools_lists_its_tool_calls(client: httpx2.AsyncClient, orchestrator: Orchestrator) -> None:
    accepted = await client.post("/api/tasks", json={"prompt": "say hi", "strategy": "single", "tools": ["shout"]})
    assert accepted.status_code == 202, accepted.text
    assert accepted.json()["tools"] == ["shout"]
    task_id = accepted.json()["id"]
    assert (await orchestrator.wait(task_id, timeout_s=10)).status == "completed"
    detail = (await client.get(f"/api/tasks/{task_id}")).json()
    (call,) = detail["result"]["steps"][0]["tool_calls"]
    assert call["name"] == "shout" and call["result"] == "HI" and call["status"] == "finished"
    assert detail["output"] == "said HI"


async def test_narrowing_to_another_tool_refuses_the_call(client: httpx2.AsyncClient,
                                                          orchestrator: Orchestrator) -> None:
    def other() -> str:
        """Another tool."""
        return "x"

    orchestrator.runner.tools.registry.add(tool(other))
    accepted = await client.post("/api/tasks", json={"prompt": "say hi", "strategy": "single", "tools": ["other"]})
    task_id = accepted.json()["id"]
    await orchestrator.wait(task_id, timeout_s=10)
    detail = (await client.get(f"/api/tasks/{task_id}")).json()
    (call,) = detail["result"]["steps"][0]["tool_calls"]
    assert call["status"] == "refused"
    events = (await client.get(f"/api/tasks/{task_id}/events")).text
    assert "tool_call_refused" in events


async def test_a_tool_list_naming_no_tool_is_a_problem(client: httpx2.AsyncClient) -> None:
    response = await client.post("/api/tasks", json={"prompt": "x", "strategy": "single", "tools": ["nope"]})
    body = assert_problem(response, 422, "invalid-request")
    assert "nope" in body["detail"]


async def _completed_task(client: httpx2.AsyncClient, orchestrator: Orchestrator, **fields: object) -> str:
    accepted = await client.post("/api/tasks", json={"prompt": "say hi", "strategy": "single", **fields})
    assert accepted.status_code == 202, accepted.text
    task_id = str(accepted.json()["id"])
    assert (await orchestrator.wait(task_id, timeout_s=10)).status == "completed"
    return task_id


async def test_a_collaboration_takes_tools_for_its_multi_agent_run(client: httpx2.AsyncClient,
                                                                   orchestrator: Orchestrator) -> None:
    def other() -> str:
        """Another tool."""
        return "x"

    orchestrator.runner.tools.registry.add(tool(other))
    source = await _completed_task(client, orchestrator)
    for strategy, agents, options in (("consensus", ["loud", "louder", "loudest"], None),
                                      ("consensus", ["loud", "louder"], {"allow_fewer": True}),
                                      ("parallel", ["loud", "louder"], None), ("sequential", ["loud", "louder"], None)):
        accepted = await client.post(f"/api/tasks/{source}/collaborate", json={
            "strategy": strategy, "agents": agents, "tools": ["shout"], "options": options})
        assert accepted.status_code == 202, accepted.text
        assert accepted.json()["tools"] == ["shout"] and accepted.json()["strategy"] == strategy
        follow_up = accepted.json()["id"]
        assert (await orchestrator.wait(follow_up, timeout_s=10)).status == "completed"
        steps = (await client.get(f"/api/tasks/{follow_up}")).json()["result"]["steps"]
        calls = [c for step in steps for c in step["tool_calls"]]
        assert {step["agent"] for step in steps} == set(agents), strategy
        assert calls and all((c["name"], c["status"]) == ("shout", "finished") for c in calls), (strategy, calls)
    # Narrowed to another tool: the agents' shout calls are refused, as in a task.
    accepted = await client.post(f"/api/tasks/{source}/collaborate", json={
        "strategy": "parallel", "agents": ["loud", "louder"], "tools": ["other"]})
    follow_up = accepted.json()["id"]
    await orchestrator.wait(follow_up, timeout_s=10)
    steps = (await client.get(f"/api/tasks/{follow_up}")).json()["result"]["steps"]
    assert {c["status"] for step in steps for c in step["tool_calls"]} == {"refused"}


async def test_a_collaboration_keeps_the_tasks_tools_by_default(client: httpx2.AsyncClient,
                                                               orchestrator: Orchestrator) -> None:
    narrowed = await _completed_task(client, orchestrator, tools=["shout"])
    accepted = await client.post(f"/api/tasks/{narrowed}/collaborate", json={"strategy": "parallel"})
    assert accepted.status_code == 202, accepted.text
    assert accepted.json()["tools"] == ["shout"]
    plain = await _completed_task(client, orchestrator)
    accepted = await client.post(f"/api/tasks/{plain}/collaborate", json={"strategy": "parallel"})
    assert accepted.json()["tools"] is None  # each agent's own list, as the task had


async def test_a_collaboration_tool_list_naming_no_tool_is_a_problem(client: httpx2.AsyncClient,
                                                                     orchestrator: Orchestrator) -> None:
    source = await _completed_task(client, orchestrator)
    response = await client.post(f"/api/tasks/{source}/collaborate", json={"tools": ["nope"]})
    body = assert_problem(response, 422, "invalid-request")
    assert "nope" in body["detail"]
    bad = await client.post(f"/api/tasks/{source}/collaborate", json={"tools": ["no spaces"]})
    assert_problem(bad, 422, "invalid-request")


async def test_the_openapi_collaboration_has_the_tasks_tools(client: httpx2.AsyncClient) -> None:
    schemas = (await client.get("/openapi.json")).json()["components"]["schemas"]
    task, collab = schemas["TaskSubmission"]["properties"], schemas["Collaboration"]["properties"]
    assert collab["tools"]["anyOf"][0] == task["tools"]["anyOf"][0]  # the same bounded list of tool names
    assert "allow_failover_outside" in collab
    assert collab["options"]["anyOf"][0] == task["options"]["anyOf"][0]
