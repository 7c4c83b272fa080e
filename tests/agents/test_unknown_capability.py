"""An unknown capability is the caller's mistake, not an outage: the library raises
`UnknownCapability` naming them (bounded), the API answers 422 naming them, the CLI one line and exit
2; 503 (`NoAgentAvailable`) only when the agents that have the capabilities are all unhealthy
(issue 10, item 8)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import httpx2
import pytest

from loomiq import Orchestrator
from loomiq.agents import AgentRegistry, NoAgentAvailable, UnknownCapability
from tests.factories import make_agent

MANY = [f"nope{i}" for i in range(40_000)]


def team() -> Orchestrator:
    return Orchestrator([make_agent("a", ["general", "review"]), make_agent("b", ["general"])])


def test_registry_names_the_unknown_capabilities_bounded() -> None:
    registry = team().registry
    with pytest.raises(UnknownCapability) as caught:
        registry.select(["general", "nope"])
    assert caught.value.unknown == ("nope",)
    assert "unknown capability 'nope'" in str(caught.value)
    assert "general, review" in str(caught.value)
    with pytest.raises(UnknownCapability) as many:
        registry.check_capabilities(["general", *MANY])
    assert len(many.value.unknown) == 40_000
    message = str(many.value)
    assert "'nope0'" in message and "'nope9'" in message and "'nope10'" not in message
    assert "and 39990 more" in message
    assert len(message) < 1000


@pytest.mark.parametrize("strategy", ["auto", "single", "sequential", "parallel", "consensus", "adaptive"])
async def test_every_strategy_refuses_an_unknown_capability(strategy: str) -> None:
    with pytest.raises(UnknownCapability, match="nope"):
        await team().run("Say hello.", strategy=strategy, capabilities=["nope"])


def test_known_capabilities_of_unhealthy_agents_are_no_agent_available() -> None:
    registry = AgentRegistry([make_agent("a", ["general"])])
    registry.get("a").enabled = False
    with pytest.raises(NoAgentAvailable) as caught:
        registry.select(["general"])
    assert not isinstance(caught.value, UnknownCapability)
    # A capability of a disabled agent is still known: it is an outage, not a typo.
    registry.check_capabilities(["general"])


@pytest.fixture
async def api_client(tmp_path: Path) -> AsyncIterator[tuple[httpx2.AsyncClient, Orchestrator]]:
    from loomiq.api import Settings, create_app
    from tests.api.support import SECRET, bearer

    orch = team()
    settings = Settings(jwt_secret=SECRET, keys_path=tmp_path / "keys.db", database_url=f"sqlite:///{tmp_path}/t.db",
                        rate_per_s=1000.0, rate_burst=1000, sse_ping_s=0, worker_drain_s=0.5)
    app = create_app(settings, orchestrator=orch)
    async with app.router.lifespan_context(app), httpx2.AsyncClient(
        transport=httpx2.ASGITransport(app=app), base_url="http://testserver", headers=bearer()
    ) as client:
        yield client, orch


async def test_api_unknown_is_422_and_unhealthy_is_503(api_client: tuple[httpx2.AsyncClient, Orchestrator]) -> None:
    client, orch = api_client
    bad = await client.post("/api/tasks", json={"prompt": "Say hello.", "capabilities": ["general", "nope"]})
    assert bad.status_code == 422, bad.text
    assert bad.headers["content-type"].startswith("application/problem+json")
    assert "'nope'" in bad.json()["detail"] and "'capabilities'" in bad.json()["detail"]
    many = await client.post("/api/tasks", json={"prompt": "Say hello.", "capabilities": MANY})
    assert many.status_code == 422
    assert "and 39990 more" in many.json()["detail"]
    assert len(many.content) < 2000
    for agent in orch.registry:
        agent.enabled = False
    down = await client.post("/api/tasks", json={"prompt": "Say hello.", "capabilities": ["general"]})
    assert down.status_code == 503, down.text
    assert "retry-after" in down.headers


def test_cli_unknown_capability_is_one_line_and_exit_2(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from tests.cli.conftest import assert_one_line_error, cli

    monkeypatch.chdir(tmp_path)
    assert_one_line_error(cli("run", "Say hello.", "--capabilities", "general,nope"), "unknown capability 'nope'")
    assert_one_line_error(cli("submit", "Say hello.", "--capabilities", "nope"), "unknown capability 'nope'")
