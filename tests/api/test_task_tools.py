"""``tools`` on ``POST /api/tasks``: the run narrows the agents' allow-lists, the task shows it, and
the result's steps list the tool calls; a list naming no tool is a 422 problem."""

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
    config = AgentConfig("loud", "scripted", "scripted", tools=("shout",))
    return Orchestrator([Agent(config, ScriptedModel(reply))], tools=ToolRegistry([shout], builtins=False))


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
