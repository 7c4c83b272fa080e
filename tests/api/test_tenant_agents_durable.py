"""API agents are durable (issue 10, item 1): stored in the engine's database, they survive a restart
(still only their tenant's), PATCH and DELETE persist, and a `loomiq worker` in another process runs a
task naming one. SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
import json
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx2
import pytest

from loomiq import Orchestrator
from loomiq.api import Settings, create_app
from loomiq.engine import TaskEngine, Worker
from loomiq.strategies import StrategyRunner

from ..cli.conftest import cli_env
from ..engine.conftest import database
from .support import SECRET, bearer
from .test_tenant_agents import ACME_KEY, CONFIG, DEPLOYMENT, OTHER, OWNER, Service, register

pytestmark = pytest.mark.timeout(120)


@asynccontextmanager
async def served(url: str, tmp_path: Path, config: str = CONFIG, embedded_workers: int = 2
                 ) -> AsyncIterator[Service]:
    """A server on `url` (as `test_tenant_agents` builds it); each use is a fresh start."""
    path = tmp_path / "loomiq.yaml"
    path.write_text(config, encoding="utf-8")
    settings = Settings(jwt_secret=SECRET, database_url=url, config_path=path, keys_path=None,
                        rate_per_s=1e6, rate_burst=1_000_000, sse_ping_s=0, worker_drain_s=0.3,
                        agent_admin_tenants=(DEPLOYMENT,), embedded_workers=embedded_workers)
    orch = Orchestrator.from_config(path)
    app = create_app(settings, orchestrator=orch)
    async with app.router.lifespan_context(app), httpx2.AsyncClient(
        transport=httpx2.ASGITransport(app=app), base_url="http://testserver"
    ) as client:
        yield Service(client, orch)


@pytest.fixture(params=["sqlite", "postgresql"])
async def url(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[str]:
    async with database(request.param, tmp_path) as u:
        yield u


async def test_api_agents_survive_a_restart_and_stay_the_tenants(url: str, tmp_path: Path) -> None:
    async with served(url, tmp_path) as s:
        assert (await register(s, "kept", name="Kept")).status_code == 201
        assert (await register(s, "patched")).status_code == 201
        assert (await register(s, "dropped")).status_code == 201
        changed = await s.client.patch("/api/agents/patched", json={"name": "New name", "enabled": False,
                                                                   "timeout_s": 12},
                                       headers=bearer("admin", OWNER))
        assert changed.status_code == 200, changed.text
        assert (await s.client.delete("/api/agents/dropped", headers=bearer("admin", OWNER))).status_code == 204
    async with served(url, tmp_path) as s:  # a new create_app on the same database
        kept = await s.client.get("/api/agents/kept", headers=bearer("viewer", OWNER))
        assert kept.status_code == 200, kept.text
        assert kept.json()["tenant"] == OWNER and kept.json()["name"] == "Kept"
        patched = (await s.client.get("/api/agents/patched", headers=bearer("viewer", OWNER))).json()
        assert (patched["name"], patched["enabled"], patched["timeout_s"]) == ("New name", False, 12)
        assert (await s.client.get("/api/agents/dropped", headers=bearer("viewer", OWNER))).status_code == 404
        for agent_id in ("kept", "patched"):
            assert (await s.client.get(f"/api/agents/{agent_id}", headers=bearer("admin", OTHER))).status_code == 404
        others = (await s.client.get("/api/agents", headers=bearer("viewer", OTHER))).json()["agents"]
        assert {a["id"] for a in others} == {"shared"}
        # The id stays taken across the restart; a removed one is free again.
        assert (await register(s, "kept")).status_code == 409
        assert (await register(s, "dropped")).status_code == 201


async def test_patching_an_agent_another_server_removed_is_a_404(tmp_path: Path) -> None:
    async with database("sqlite", tmp_path) as url, served(url, tmp_path) as a:
        assert (await register(a, "both")).status_code == 201
        async with served(url, tmp_path) as b:  # a second server on the database: it loads "both"
            assert (await b.client.get("/api/agents/both", headers=bearer("viewer", OWNER))).status_code == 200
            assert (await a.client.delete("/api/agents/both", headers=bearer("admin", OWNER))).status_code == 204
            patched = await b.client.patch("/api/agents/both", json={"name": "x"}, headers=bearer("admin", OWNER))
            assert patched.status_code == 404, patched.text
            assert (await b.client.get("/api/agents/both", headers=bearer("viewer", OWNER))).status_code == 404
        assert await a.orch.engine.tenant_agents.get("both") is None  # the PATCH wrote nothing back


async def test_a_stored_agent_the_rules_no_longer_allow_is_skipped(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(ACME_KEY, "sk-acme-test-0123456789")
    async with database("sqlite", tmp_path) as url:
        async with served(url, tmp_path) as s:
            made = await register(s, "keyed", api_key_env=ACME_KEY, provider="openai", model="gpt-test")
            assert made.status_code == 201, made.text
            stored = await s.orch.engine.tenant_agents.get("keyed")
            assert stored is not None and stored.config["api_key_env"] == ACME_KEY
            assert "sk-acme" not in json.dumps(stored.config)  # the variable's name, never its value
        # The deployment withdraws the variable from the tenant's allow-list.
        stricter = CONFIG.replace(f"{ACME_KEY}, ", "")
        assert ACME_KEY not in stricter
        async with served(url, tmp_path, stricter) as s:
            assert (await s.client.get("/api/agents/keyed", headers=bearer("viewer", OWNER))).status_code == 404
        lines = [r.getMessage() for r in caplog.records if "keyed" in r.getMessage()]
        assert len(lines) == 1 and ACME_KEY in lines[0] and OWNER in lines[0]


async def test_a_worker_reloads_once_then_fails_a_task_naming_an_unknown_agent(tmp_path: Path) -> None:
    async with database("sqlite", tmp_path) as url, served(url, tmp_path, embedded_workers=0) as s:
        # A worker engine that started before these agents were registered (it loaded none).
        engine = await TaskEngine.open(StrategyRunner(Orchestrator().registry), url)
        try:
            ids = {}
            for agent_id in ("late", "ghost"):
                assert (await register(s, agent_id)).status_code == 201
                ids[agent_id] = await submit(s, agent_id)
            assert (await s.client.delete("/api/agents/ghost", headers=bearer("admin", OWNER))).status_code == 204
            worker = Worker(engine, concurrency=2)
            running = asyncio.get_running_loop().create_task(worker.run())
            try:
                late, ghost = [await finished(s, ids[a]) for a in ("late", "ghost")]
            finally:
                await worker.stop(0)
                await running
            assert late["status"] == "completed", late
            assert ghost["status"] == "failed" and "'ghost'" in json.dumps(ghost), ghost
        finally:
            await engine.close()


async def submit(s: Service, agent_id: str) -> str:
    submitted = await s.client.post("/api/tasks", json={"prompt": "hi", "strategy": "single", "agents": [agent_id]},
                                    headers=bearer("operator", OWNER))
    assert submitted.status_code == 202, submitted.text
    return str(submitted.json()["id"])


async def finished(s: Service, task_id: str) -> dict[str, Any]:
    for _ in range(1200):
        task: dict[str, Any] = (await s.client.get(f"/api/tasks/{task_id}", headers=bearer("viewer", OWNER))).json()
        if task["status"] in ("completed", "failed", "cancelled"):
            return task
        await asyncio.sleep(0.05)
    raise AssertionError(f"task {task_id} did not finish: {task}")


@asynccontextmanager
async def worker_process(url: str, config: Path, entry: tuple[str, ...] = ("loomiq.engine.worker",)
                         ) -> AsyncIterator[None]:
    """A worker in a process of its own (`python -m ENTRY`, warnings as errors), ready when entered."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", *entry, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        env={**cli_env(LOOMIQ_DATABASE_URL=url, LOOMIQ_CONFIG=str(config)),
             "PYTHONWARNINGS": "error"})
    try:
        assert proc.stdout is not None and proc.stderr is not None
        line = await proc.stdout.readline()
        assert line and json.loads(line)["event"] == "worker_ready", await proc.stderr.read()
        yield
    finally:
        proc.terminate()
        await asyncio.wait_for(proc.communicate(), 30)


@pytest.mark.parametrize("entry", [("loomiq.cli", "worker"), ("loomiq.engine.worker",)], ids=["cli", "module"])
async def test_a_separate_worker_process_runs_a_task_naming_a_tenant_agent(
    url: str, tmp_path: Path, entry: tuple[str, ...]
) -> None:
    async with served(url, tmp_path) as s:
        assert (await register(s, "remote")).status_code == 201
    async with worker_process(url, tmp_path / "loomiq.yaml", entry), \
            served(url, tmp_path, embedded_workers=0) as s:  # only the worker process runs tasks
        task = await finished(s, await submit(s, "remote"))
        assert task["status"] == "completed", task
        assert "remote answers" in json.dumps(task)
