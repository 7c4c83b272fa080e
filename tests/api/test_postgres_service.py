"""Two servers on one PostgreSQL database (as two ``serve`` processes on two machines would be):
they share the tasks, and the API keys, which live in that database."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack
from pathlib import Path

import httpx2
import pytest
from fastapi import FastAPI

from loomiq import Orchestrator
from loomiq.api import Settings, create_app, open_key_store

from ..engine.conftest import database
from .support import SECRET, scripted_agents


@pytest.fixture
async def two_servers(tmp_path: Path) -> AsyncIterator[tuple[httpx2.AsyncClient, httpx2.AsyncClient, str]]:
    async with database("postgresql", tmp_path) as url, AsyncExitStack() as stack:
        clients = []
        for _ in range(2):
            settings = Settings(jwt_secret=SECRET, database_url=url, rate_per_s=1000.0, rate_burst=1000,
                                sse_ping_s=0, worker_drain_s=0.5, key_cache_s=0.2)
            app: FastAPI = create_app(settings, orchestrator=Orchestrator(scripted_agents()))
            await stack.enter_async_context(app.router.lifespan_context(app))
            transport = httpx2.ASGITransport(app=app)
            clients.append(await stack.enter_async_context(
                httpx2.AsyncClient(transport=transport, base_url="http://testserver")))
        yield clients[0], clients[1], url


async def test_a_key_made_for_one_server_works_on_both_and_a_revocation_reaches_both(
    two_servers: tuple[httpx2.AsyncClient, httpx2.AsyncClient, str],
) -> None:
    first, second, url = two_servers
    store = await open_key_store(url)  # what `loomiq keys create` does with LOOMIQ_DATABASE_URL set
    try:
        made = await store.create("acme", "operator", "ci")
        auth = {"Authorization": f"Bearer {made.secret}"}
        accepted = await first.post("/api/tasks", json={"prompt": "Should we shard?"}, headers=auth)
        assert accepted.status_code == 202, accepted.text
        task_id = accepted.json()["id"]
        seen = await second.get(f"/api/tasks/{task_id}", headers=auth)  # the other server sees the task too
        assert seen.status_code == 200 and seen.json()["id"] == task_id
        assert await store.revoke(made.key.key_id)
    finally:
        await store.aclose()
    await asyncio.sleep(0.3)  # past both servers' verified-key cache (key_cache_s=0.2)
    for client in (first, second):
        refused = await client.get(f"/api/tasks/{task_id}", headers=auth)
        assert refused.status_code == 401
