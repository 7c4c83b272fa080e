"""A named agent set is a hard restriction: failover stays inside it, or the run fails saying so;
failover to other agents is opt-in (`allow_failover_outside`, ``--failover-outside``). Every entry
point: the library (run, stream, durable run, submitted task resumed from storage), the HTTP API
(tasks, /v1 with an agent as the model) and the CLI (issue 10, item 2)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import httpx2
import pytest

from loomiq import Orchestrator
from loomiq.runtime import InvalidOptions, RunOptions
from tests.factories import NO_RETRY, make_agent

PROMPT = "Name one risk of sharding."


def team() -> Orchestrator:
    """`r500` always fails; `ok` and `also_ok` answer. All share the capability `general`."""
    return Orchestrator([
        make_agent("r500", ["general"], retry=NO_RETRY, failures={i: "server_error" for i in range(50)}),
        make_agent("ok", ["general"], retry=NO_RETRY),
        make_agent("also_ok", ["general"], retry=NO_RETRY),
    ])


def _assert_pinned_failure(result: object) -> None:
    assert result.status == "failed"  # type: ignore[attr-defined]
    agents = {s.agent for s in result.steps} | {a for s in result.steps for a, _ in s.failed_over_from}  # type: ignore[attr-defined]
    assert agents == {"r500"}
    error = result.steps[0].error  # type: ignore[attr-defined]
    assert "failover stays within the agents named for this run: r500" in error
    assert "allow_failover_outside" in error


async def test_library_run_stays_inside_the_named_agents() -> None:
    orch = team()
    _assert_pinned_failure(await orch.run(PROMPT, strategy="single", agents=["r500"]))
    # A named set of two: failover to the other named agent, never to a third.
    result = await orch.run(PROMPT, strategy="single", agents=["r500", "also_ok"])
    assert result.status == "completed"
    assert result.steps[0].agent == "also_ok"


async def test_library_opt_in_fails_over_outside() -> None:
    result = await team().run(PROMPT, strategy="single", agents=["r500"], allow_failover_outside=True)
    assert result.status == "completed"
    assert result.steps[0].agent in ("ok", "also_ok")
    assert [a for a, _ in result.steps[0].failed_over_from] == ["r500"]


async def test_without_named_agents_failover_goes_anywhere() -> None:
    orch = team()
    result = await orch.run(PROMPT, strategy="single", capabilities=["general"])
    assert result.status == "completed"


async def test_library_stream_stays_inside() -> None:
    handle = team().stream(PROMPT, strategy="single", agents="r500")  # one string is one agent
    events = [e async for e in handle]
    result = await handle.result()
    _assert_pinned_failure(result)
    assert "agent_failed_over" not in {e.type for e in events}


async def test_durable_run_and_a_resumed_task_stay_inside(tmp_path: Path) -> None:
    orch = team()
    await orch.open_engine(f"sqlite:///{tmp_path}/t.db")
    try:
        _assert_pinned_failure(await orch.run(PROMPT, strategy="single", agents=["r500"], durable=True))
        result = await orch.run(PROMPT, strategy="single", agents=["r500"], durable=True,
                                allow_failover_outside=True)
        assert result.status == "completed"
        # The restriction is stored with the task, so a worker that resumes it keeps to it.
        task = (await orch.submit(PROMPT, strategy="single", agents=["r500"], retry=1)).task
        assert (await orch.get_task(task.id)).request.failover_within == ("r500",)  # read back from the database
        free = (await orch.submit(PROMPT, strategy="single", agents=["r500"], allow_failover_outside=True)).task
        assert (await orch.get_task(free.id)).request.failover_within is None
    finally:
        await orch.aclose()


def test_the_option_is_validated() -> None:
    with pytest.raises(InvalidOptions, match="allow_failover_outside"):
        RunOptions(agents=["a"], allow_failover_outside="yes")  # type: ignore[arg-type]
    assert RunOptions(agents=["a"]).failover_within == ("a",)
    assert RunOptions(agents=["a"], allow_failover_outside=True).failover_within is None
    assert RunOptions().failover_within is None


# -- the HTTP API -----------------------------------------------------------------------------------


@pytest.fixture
async def api_client(tmp_path: Path) -> AsyncIterator[httpx2.AsyncClient]:
    """The app on `team()`, as admin of tenant acme."""
    from loomiq.api import Settings, create_app
    from tests.api.support import SECRET, bearer

    settings = Settings(jwt_secret=SECRET, keys_path=tmp_path / "keys.db", database_url=f"sqlite:///{tmp_path}/t.db",
                        rate_per_s=1000.0, rate_burst=1000, sse_ping_s=0, worker_drain_s=0.5)
    app = create_app(settings, orchestrator=team())
    async with app.router.lifespan_context(app), httpx2.AsyncClient(
        transport=httpx2.ASGITransport(app=app), base_url="http://testserver", headers=bearer()
    ) as client:
        yield client


async def _finished(client: httpx2.AsyncClient, body: dict) -> dict:
    accepted = await client.post("/api/tasks", json=body)
    assert accepted.status_code == 202, accepted.text
    location = accepted.headers["location"]
    await client.get(f"{location}/events")  # ends with the task
    return (await client.get(location)).json()


async def test_api_task_stays_inside_unless_allowed(api_client: httpx2.AsyncClient) -> None:
    pinned = await _finished(api_client, {"prompt": PROMPT, "strategy": "single", "agents": ["r500"], "retry": 1})
    assert pinned["status"] == "failed"
    assert "failover stays within the agents named for this run: r500" in pinned["error"]
    assert {s["agent"] for s in pinned["result"]["steps"]} == {"r500"}
    free = await _finished(api_client, {"prompt": PROMPT, "strategy": "single", "agents": ["r500"],
                                        "allow_failover_outside": True})
    assert free["status"] == "completed"
    assert free["result"]["steps"][0]["agent"] in ("ok", "also_ok")


async def test_v1_with_an_agent_as_model_is_answered_by_that_agent_only(api_client: httpx2.AsyncClient) -> None:
    response = await api_client.post("/v1/chat/completions", json={
        "model": "r500", "messages": [{"role": "user", "content": PROMPT}]})
    assert response.status_code >= 500, response.text
    assert "r500" in response.text
    ok = await api_client.post("/v1/chat/completions", json={
        "model": "ok", "messages": [{"role": "user", "content": PROMPT}]})
    assert ok.status_code == 200 and "ok" in ok.json()["choices"][0]["message"]["content"]


# -- the CLI ----------------------------------------------------------------------------------------

TEAM_YAML = """
agents:
  - {id: r500, provider: scripted, model: scripted, capabilities: [general], retry: {max_attempts: 1},
     scripted: {failures: {0: server_error, 1: server_error, 2: server_error}}}
  - {id: ok, provider: scripted, model: scripted, capabilities: [general]}
"""


def test_cli_run_stays_inside_unless_failover_outside(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import json

    from tests.cli.conftest import cli

    monkeypatch.chdir(tmp_path)
    (tmp_path / "loomiq.yaml").write_text(TEAM_YAML, encoding="utf-8")
    pinned = cli("run", PROMPT, "--agents", "r500", "--strategy", "single", "--json")
    assert pinned.returncode == 1, pinned.stderr
    result = json.loads(pinned.stdout)
    assert result["status"] == "failed" and result["steps"][0]["agent"] == "r500"
    assert "failover stays within the agents named for this run: r500" in result["steps"][0]["error"]
    free = cli("run", PROMPT, "--agents", "r500", "--strategy", "single", "--json", "--failover-outside")
    assert free.returncode == 0, free.stderr
    assert json.loads(free.stdout)["steps"][0]["agent"] == "ok"
