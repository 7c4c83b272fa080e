"""Helpers shared by the HTTP service tests: the test secret, tokens, and the scripted team."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import httpx2
from fastapi import FastAPI

from loomiq import Agent, AgentConfig, ScriptedModel
from loomiq.api import Settings, issue_token
from loomiq.api.auth import Role

SECRET = "tK3v9wQ_8mZr2LxP7sYb4NfH1cJ6dGeA0uVqWiXoRn5T"
"""A test HMAC secret: 44 random-looking bytes."""

CAPS = {
    "analyst": ("analysis", "general"),
    "critic": ("analysis", "general", "review"),
    "pragmatist": ("analysis", "general"),
    "lead": ("analysis", "general", "synthesis"),
}

CONFIG_YAML = """
agents:
  - {id: analyst, provider: scripted, model: scripted, capabilities: [analysis, general]}
  - {id: critic, provider: scripted, model: scripted, capabilities: [analysis, general, review]}
  - {id: pragmatist, provider: scripted, model: scripted, capabilities: [analysis, general]}
  - {id: lead, provider: scripted, model: scripted, capabilities: [analysis, general, synthesis]}
  - {id: slow, provider: scripted, model: scripted, capabilities: [slow-only], scripted: {latency_s: 20}}
"""


def scripted_agents() -> list[Agent]:
    """Four offline agents with deterministic answers."""
    return [
        Agent(AgentConfig(ident, "scripted", "scripted", capabilities=frozenset(caps)), ScriptedModel(persona=ident))
        for ident, caps in CAPS.items()
    ]


def token(role: Role = "admin", tenant: str = "acme", **kw: object) -> str:
    """A valid JWT for the test secret."""
    return issue_token(tenant, role, settings=Settings(jwt_secret=SECRET), **kw)  # type: ignore[arg-type]


def bearer(role: Role = "admin", tenant: str = "acme") -> dict[str, str]:
    """Authorization header for a role in a tenant."""
    return {"Authorization": f"Bearer {token(role, tenant)}"}


@asynccontextmanager
async def serving(
    app: FastAPI, client: tuple[str, int] = ("127.0.0.1", 123), **kw: Any
) -> AsyncIterator[httpx2.AsyncClient]:
    """`app` with its lifespan running, and an in-process client for it (from `client`'s address)."""
    transport = httpx2.ASGITransport(app=app, client=client)
    async with app.router.lifespan_context(app), httpx2.AsyncClient(transport=transport, base_url="http://t",
                                                                    **kw) as http:
        yield http
