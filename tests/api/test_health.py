"""`/api/health` and `/api/ready`: each component with a status and the reason."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import httpx2
import pytest

from loomiq import Orchestrator
from loomiq.api import Settings, create_app
from loomiq.config import load_tools
from loomiq.engine import TaskEngine

from .support import scripted_agents, serving
from .test_problems import assert_problem

ANON = {"Authorization": ""}


async def test_every_component_is_reported_fine(client: httpx2.AsyncClient) -> None:
    body = (await client.get("/api/health", headers=ANON)).json()
    components = body["components"]
    assert components["agents"]["status"] == "ok"
    assert components["agents"]["details"]["providers"]["scripted"]["details"] == {"agents": 4, "usable": 4}
    assert components["database"]["status"] == "ok" and "schema" in components["database"]["reason"]
    assert components["workers"]["status"] == "ok" and components["workers"]["details"]["embedded"] is True
    assert components["mcp_servers"]["status"] == "disabled" and "mcp_servers:" in components["mcp_servers"]["reason"]
    if shutil.which("bwrap"):
        assert components["sandbox"]["status"] == "ok", components["sandbox"]
    else:
        assert components["sandbox"]["status"] == "disabled" and "bubblewrap" in components["sandbox"]["reason"]
    assert body["status"] == "ok"  # a disabled component (no MCP server, no bubblewrap) is not a fault


async def test_an_open_breaker_degrades_its_provider_and_all_down_fails_readiness(
        client: httpx2.AsyncClient, orchestrator: Orchestrator) -> None:
    analyst = orchestrator.registry.get("analyst")
    for _ in range(analyst.config.breaker_threshold):
        analyst.breaker.record_failure()
    health = (await client.get("/api/health", headers=ANON)).json()
    agents = health["components"]["agents"]
    assert health["status"] == "degraded" and agents["status"] == "degraded"
    assert "open circuit: analyst" in agents["details"]["providers"]["scripted"]["reason"]
    assert (await client.get("/api/ready", headers=ANON)).status_code == 200  # others still usable

    for ident in ("critic", "pragmatist", "lead"):
        await client.patch(f"/api/agents/{ident}", json={"enabled": False})
    body = assert_problem(await client.get("/api/ready", headers=ANON), 503, "unavailable")
    assert body["components"]["agents"]["status"] == "failing"
    assert "no usable agent" in body["detail"]
    assert (await client.get("/api/health", headers=ANON)).status_code == 200  # alive all the same


async def test_a_database_that_does_not_answer_fails_readiness(client: httpx2.AsyncClient,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    async def broken(self: Any) -> int:
        raise OSError("disk I/O error")

    monkeypatch.setattr(TaskEngine, "schema_version", broken)
    body = assert_problem(await client.get("/api/ready", headers=ANON), 503, "unavailable")
    assert body["components"]["database"]["status"] == "failing"
    assert "disk I/O error" in body["components"]["database"]["reason"]
    health = (await client.get("/api/health", headers=ANON))
    assert health.status_code == 200 and health.json()["status"] == "degraded"


async def test_no_live_worker_fails_readiness_and_says_how_to_start_one(settings: Settings) -> None:
    app = create_app(settings.with_(embedded_workers=0), orchestrator=Orchestrator(scripted_agents()))
    async with serving(app) as client:
        body = assert_problem(await client.get("/api/ready", headers=ANON), 503, "unavailable")
        workers = body["components"]["workers"]
        assert workers["status"] == "failing" and "loomiq worker" in workers["reason"]


async def test_configured_mcp_servers_are_listed(tmp_path: Path, settings: Settings) -> None:
    config = tmp_path / "loomiq.yaml"
    config.write_text("agents:\n  - {id: a, provider: scripted, model: scripted}\n"
                      "mcp_servers:\n  - name: clock\n    command: python3\n    args: [-c, pass]\n")
    orchestrator = Orchestrator(scripted_agents(), tools=load_tools(config))
    app = create_app(settings.with_(config_path=config), orchestrator=orchestrator)
    async with serving(app) as client:
        mcp = (await client.get("/api/health", headers=ANON)).json()["components"]["mcp_servers"]
    assert mcp["status"] == "ok" and set(mcp["details"]["servers"]) == {"clock"}
    assert "connects when a run first uses" in mcp["details"]["servers"]["clock"]["reason"]
