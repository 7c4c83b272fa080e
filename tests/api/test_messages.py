"""Problem details name the field the caller sent and say what to do (issue: misleading messages)."""

from __future__ import annotations

import httpx2
import pytest

from loomiq import Orchestrator

from .test_problems import assert_problem


@pytest.mark.parametrize("prompt", ["", "   ", "\n\t"])
async def test_an_empty_prompt_blames_the_prompt(client: httpx2.AsyncClient, prompt: str) -> None:
    response = await client.post("/api/tasks", json={"prompt": prompt, "strategy": "single"})
    problem = assert_problem(response, 422, "invalid-request")
    assert problem["detail"].startswith("body field 'prompt':"), problem["detail"]
    assert "strategy" not in problem["detail"]
    if prompt:  # blank, not empty: the schema lets it through, the planner refuses it
        assert problem["detail"] == "body field 'prompt': the prompt is empty: write the task for the agents."


async def test_unknown_agents_name_the_field_and_the_known_ids(client: httpx2.AsyncClient) -> None:
    problem = assert_problem(await client.post("/api/tasks", json={"prompt": "x", "agents": ["zed"]}), 422,
                             "invalid-request")
    assert problem["detail"].startswith("body field 'agents': unknown agent 'zed' (known: ")
    assert "Choose another" not in problem["detail"] and "Use one of the known agent ids." in problem["detail"]


async def test_too_few_agents_for_consensus_says_how_to_allow_fewer(client: httpx2.AsyncClient,
                                                                   orchestrator: Orchestrator) -> None:
    body = {"prompt": "Shard?", "strategy": "consensus", "agents": ["analyst", "critic"]}
    problem = assert_problem(await client.post("/api/tasks", json=body), 422, "invalid-request")
    assert problem["detail"].startswith("body field 'agents': consensus needs at least 3 analysts but only 2 are")
    assert '"allow_fewer": true' in problem["detail"]
    # ... and what it says works.
    allowed = await client.post("/api/tasks", json={**body, "options": {"allow_fewer": True}})
    assert allowed.status_code == 202, allowed.text


async def test_an_option_the_strategy_does_not_take_names_the_options(client: httpx2.AsyncClient) -> None:
    body = {"prompt": "x", "strategy": "single", "options": {"lead": "critic"}}
    problem = assert_problem(await client.post("/api/tasks", json=body), 422, "invalid-request")
    assert problem["detail"] == "body field 'options': strategy 'single' has no option 'lead' (it takes none)."
