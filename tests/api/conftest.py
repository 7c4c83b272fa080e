"""Fixtures for the HTTP service tests: scripted agents, the app in-process (httpx2's ASGI transport,
lifespan run by hand), tokens for any tenant and role, and the real server on a free port."""

from __future__ import annotations

import threading
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx2
import pytest
from fastapi import FastAPI

from loomiq import Orchestrator
from loomiq.api import Settings, build_server, create_app
from loomiq.models import allow_model_requests

from .support import CONFIG_YAML, SECRET, bearer, scripted_agents


@pytest.fixture(autouse=True)
def _no_real_model_requests() -> Iterator[None]:
    with allow_model_requests(False):
        yield


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    """Settings with a strong secret, the key store and task database in tmp_path, and a generous rate;
    admins of tenant acme are the deployment admins (they may change the shared agents)."""
    return Settings(jwt_secret=SECRET, keys_path=tmp_path / "keys.db", database_url=f"sqlite:///{tmp_path}/tasks.db",
                    rate_per_s=1000.0, rate_burst=1000, sse_ping_s=0, worker_drain_s=0.5,
                    agent_admin_tenants=("acme",))


@pytest.fixture
def orchestrator() -> Orchestrator:
    """The scripted team."""
    return Orchestrator(scripted_agents())


@pytest.fixture
async def app(settings: Settings, orchestrator: Orchestrator) -> AsyncIterator[FastAPI]:
    """The app with its lifespan running."""
    application = create_app(settings, orchestrator=orchestrator)
    async with application.router.lifespan_context(application):
        yield application


@pytest.fixture
async def client(app: FastAPI) -> AsyncIterator[httpx2.AsyncClient]:
    """An in-process client, authenticated as admin of tenant ``acme`` unless a test sends other headers."""
    transport = httpx2.ASGITransport(app=app)
    async with httpx2.AsyncClient(transport=transport, base_url="http://testserver", headers=bearer()) as c:
        yield c


@dataclass
class LiveServer:
    """A real uvicorn server in a background thread."""

    url: str
    settings: Settings
    app: FastAPI


@pytest.fixture
def live_server(tmp_path: Path) -> Iterator[LiveServer]:
    """The real server on 127.0.0.1 and a free port, agents from a scripted loomiq.yaml; stopped and
    joined after the test."""
    config = tmp_path / "loomiq.yaml"
    config.write_text(CONFIG_YAML, encoding="utf-8")
    settings = Settings(jwt_secret=SECRET, keys_path=tmp_path / "keys.db", config_path=config,
                        database_url=f"sqlite:///{tmp_path}/tasks.db", sse_ping_s=0.2, worker_drain_s=0.5)
    app = create_app(settings)
    # No GC tuning: it is process-wide, and this process is the test suite (test_server.py tests it).
    server = build_server("127.0.0.1", 0, settings=settings, app=app, log_level="warning", gc_tuning=False)
    thread = threading.Thread(target=server.run, name="loomiq-test-server", daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError("the test server did not start")
        time.sleep(0.01)
    port = server.servers[0].sockets[0].getsockname()[1]
    try:
        yield LiveServer(f"http://127.0.0.1:{port}", settings, app)
    finally:
        server.should_exit = True
        thread.join(timeout=15)
        assert not thread.is_alive(), "the test server did not stop"

