"""Fixtures of the MCP tests: loomiq's real server on a free port (its ``/mcp`` endpoint)."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from fastapi import FastAPI

from loomiq.api import Settings, create_app
from loomiq.api.server import build_server

from ..api.support import CONFIG_YAML, SECRET


@dataclass
class LiveServer:
    """A real uvicorn server in a background thread."""

    url: str
    settings: Settings
    app: FastAPI

    @property
    def mcp_url(self) -> str:
        """Its MCP endpoint."""
        return f"{self.url}/mcp"


def start_live(settings: Settings, app: FastAPI) -> tuple[LiveServer, object, threading.Thread]:
    """Run `app` on 127.0.0.1 and a free port until `stop_live`."""
    server = build_server("127.0.0.1", 0, settings=settings, app=app, log_level="warning", gc_tuning=False)
    thread = threading.Thread(target=server.run, name="loomiq-mcp-test-server", daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError("the test server did not start")
        time.sleep(0.01)
    port = server.servers[0].sockets[0].getsockname()[1]
    return LiveServer(f"http://127.0.0.1:{port}", settings, app), server, thread


def stop_live(server: object, thread: threading.Thread) -> None:
    """Stop and join a server of `start_live`."""
    server.should_exit = True  # type: ignore[attr-defined]
    thread.join(timeout=20)
    assert not thread.is_alive(), "the test server did not stop"


@pytest.fixture
def config_file(tmp_path: Path) -> Path:
    """The scripted team's loomiq.yaml."""
    path = tmp_path / "loomiq.yaml"
    path.write_text(CONFIG_YAML, encoding="utf-8")
    return path


@pytest.fixture
def live_server(tmp_path: Path, config_file: Path) -> Iterator[LiveServer]:
    """loomiq's real server with JWT auth, the scripted team and a SQLite task database."""
    settings = Settings(jwt_secret=SECRET, keys_path=tmp_path / "keys.db", config_path=config_file,
                        database_url=f"sqlite:///{tmp_path}/tasks.db", sse_ping_s=0.2, worker_drain_s=0.5,
                        rate_per_s=1000.0, rate_burst=1000)
    live, server, thread = start_live(settings, create_app(settings))
    try:
        yield live
    finally:
        stop_live(server, thread)
