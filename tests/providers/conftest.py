"""Fixtures for the provider adapter tests: a local wire-compatible provider server."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from .wire_server import WireServer


@pytest.fixture
def wire_server() -> Iterator[WireServer]:
    """A started `WireServer` on 127.0.0.1, stopped (every thread joined) after the test."""
    server = WireServer().start()
    try:
        yield server
    finally:
        server.stop()
