"""A change of an API agent made through one server reaches every other server and worker on the
database while they run (no restart): registration, PATCH, the dashboard's disable and enable, DELETE.
PostgreSQL tells them at once (NOTIFY); on SQLite each reads the agents' version every second.
SQLite and PostgreSQL; two servers and a bare worker engine, each with its own store (its own
connections, as separate processes have), and a `python -m loomiq.engine.worker` process."""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest

from loomiq import Orchestrator
from loomiq.engine import TaskEngine
from loomiq.strategies import StrategyRunner

from ..engine.conftest import database
from .support import bearer, token
from .test_tenant_agents import OTHER, OWNER, Service, register
from .test_tenant_agents_durable import finished, served, submit, worker_process

pytestmark = pytest.mark.timeout(180)

PROMPTLY_S = 6.0
"""How long a change may take to reach another process here (1 s on SQLite, at once on PostgreSQL;
the margin is for a loaded machine: the times seen are printed)."""


@pytest.fixture(params=["sqlite", "postgresql"])
async def url(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[str]:
    async with database(request.param, tmp_path) as u:
        yield u


async def eventually(what: str, check: Callable[[], Any]) -> float:
    """Seconds until `check()` (awaited when it returns an awaitable) is true; fails after PROMPTLY_S."""
    started = time.monotonic()
    while True:
        got = check()
        if asyncio.iscoroutine(got):
            got = await got
        if got:
            return time.monotonic() - started
        if time.monotonic() - started > PROMPTLY_S:
            raise AssertionError(f"{what}: not seen after {PROMPTLY_S} s")
        await asyncio.sleep(0.02)


async def seen(s: Service, agent_id: str) -> dict[str, Any] | None:
    got = await s.client.get(f"/api/agents/{agent_id}", headers=bearer("viewer", OWNER))
    return got.json() if got.status_code == 200 else None


async def dashboard_toggle(s: Service, agent_id: str, action: str) -> None:
    """Sign in to the dashboard as the owner's admin and press the agent's enable or disable button."""
    signed = await s.client.post("/ui/login", data={"credential": token("admin", OWNER), "next": "/ui/agents"})
    assert signed.status_code == 303, signed.text
    page = await s.client.get("/ui/agents")
    found = re.search(r'"X-CSRF-Token": "([^"]+)"', page.text)
    assert page.status_code == 200 and found, page.text[:300]
    pressed = await s.client.post(f"/ui/agents/{agent_id}/{action}", data={"csrf_token": found.group(1)})
    assert pressed.status_code == 303, pressed.text


async def test_every_server_and_worker_follows_api_agent_changes(url: str, tmp_path: Path) -> None:
    times: dict[str, list[float]] = {}
    async with served(url, tmp_path, embedded_workers=0) as a, served(url, tmp_path, embedded_workers=0) as b:
        worker = await TaskEngine.open(StrategyRunner(Orchestrator().registry), url)
        try:
            await worker.load_tenant_agents(tmp_path / "loomiq.yaml")  # (what a worker process does at start)
            w = worker.runner.registry

            def follows(what: str, on_b: Callable[[dict[str, Any] | None], bool],
                        on_w: Callable[[], bool]) -> Any:
                async def both() -> None:
                    times.setdefault(what, []).append(await eventually(
                        f"{what} on the other server", lambda: _check(seen(b, "roving"), on_b)))
                    times[what].append(await eventually(f"{what} on the worker", on_w))
                return both()

            made = await register(a, "roving", name="Roving")
            assert made.status_code == 201, made.text
            await follows("registered", lambda got: got is not None and got["name"] == "Roving",
                          lambda: "roving" in w)
            assert w.get("roving").tenant == OWNER
            assert (await b.client.get("/api/agents/roving", headers=bearer("admin", OTHER))).status_code == 404

            before = w.get("roving")
            changed = await a.client.patch("/api/agents/roving", headers=bearer("admin", OWNER), json={
                "name": "Renamed", "timeout_s": 7, "capabilities": ["roving-cap", "extra"]})
            assert changed.status_code == 200, changed.text
            await follows("patched", lambda got: got is not None and (got["name"], got["timeout_s"]) == ("Renamed", 7),
                          lambda: w.get("roving").config.timeout_s == 7)
            after = w.get("roving")
            assert after.config.name == "Renamed" and "extra" in w.capabilities
            assert after.model is before.model and after.stats is before.stats  # the same connection, same counts

            await dashboard_toggle(a, "roving", "disable")
            await follows("disabled", lambda got: got is not None and not got["enabled"] and got["state"] == "offline",
                          lambda: not w.get("roving").enabled)
            assert "roving" not in {x.id for x in w.rank(["roving-cap"])}
            await dashboard_toggle(a, "roving", "enable")
            await follows("enabled", lambda got: got is not None and got["enabled"], lambda: w.get("roving").enabled)
            assert "roving" in {x.id for x in w.rank(["roving-cap"])}

            assert (await a.client.delete("/api/agents/roving", headers=bearer("admin", OWNER))).status_code == 204
            await follows("removed", lambda got: got is None, lambda: "roving" not in w)
            assert "extra" not in w.capabilities
            # Registered again under the same id, by the other server this time: the first one follows.
            assert (await register(b, "roving", name="Again")).status_code == 201
            times["registered again"] = [await eventually(
                "registered again on the first server",
                lambda: _check(seen(a, "roving"), lambda got: got is not None and got["name"] == "Again"))]
            assert a.orch.registry.get("roving").model is not before.model  # a new agent: a new connection
        finally:
            await worker.close()
    print(f"\n[{url.split(':')[0]}] seconds until seen elsewhere (other server, worker): {times}")


async def _check(got: Any, ok: Callable[[Any], bool]) -> bool:
    return ok(await got)


async def test_a_worker_process_stops_using_an_agent_disabled_elsewhere(tmp_path: Path) -> None:
    async with database("sqlite", tmp_path) as url:
        async with served(url, tmp_path, embedded_workers=0) as s:
            assert (await register(s, "remote")).status_code == 201
        async with worker_process(url, tmp_path / "loomiq.yaml"), \
                served(url, tmp_path, embedded_workers=0) as s:  # only the worker process runs tasks
            first = await finished(s, await submit(s, "remote"))
            assert first["status"] == "completed", first
            disabled = await s.client.patch("/api/agents/remote", json={"enabled": False},
                                            headers=bearer("admin", OWNER))
            assert disabled.status_code == 200, disabled.text
            await asyncio.sleep(PROMPTLY_S / 2)  # (the worker reads the version every second)
            second = await finished(s, await submit(s, "remote"))
            assert second["status"] == "failed", second


def test_patch_takes_the_fields_changed_in_place() -> None:
    # What another process applies in place (same connection) is exactly what PATCH may change.
    from loomiq.api.routes_agents import AgentPatch
    from loomiq.config import AGENT_FIELDS_CHANGED_IN_PLACE

    assert set(AgentPatch.model_fields) == AGENT_FIELDS_CHANGED_IN_PLACE | {"enabled"}
