"""Agents registered over the API, kept in the engine's database (table ``tenant_agents``, migration
v10) so that they survive a restart and every process on the database (servers, ``loomiq worker``,
``python -m loomiq.engine.worker``) has them.

A row is the agent's config as registered (the ``AgentSection`` JSON: the name of its key variable,
never a key), its tenant and whether it is enabled. `load_tenant_agents` builds the stored agents into
a registry, checking each again against the deployment's rules for its tenant (the ``secrets:``
allow-list and the SSRF guard on ``base_url``): one that no longer passes is skipped with one warning
line naming it.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Generator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ._stmt import Outcome, Stmt
from .store import Store

logger = logging.getLogger(__name__)

_COLUMNS = "agent_id, tenant_id, config, enabled, created_at, updated_at"


@dataclass(frozen=True, slots=True)
class TenantAgentRecord:
    """A stored API agent: its id, tenant, config (the ``AgentSection`` JSON as a dict) and state."""

    agent_id: str
    tenant: str
    config: dict[str, Any]
    enabled: bool = True
    created_at: float = 0.0
    updated_at: float = 0.0


def _record(row: Any) -> TenantAgentRecord:
    return TenantAgentRecord(row[0], row[1], json.loads(row[2]), bool(row[3]), float(row[4]), float(row[5]))


def _exec(sql: str, args: tuple[Any, ...]) -> Generator[Stmt, Any, Outcome]:
    count = yield Stmt(sql, args, "exec")
    return Outcome(value=count)


class TenantAgentTable:
    """The ``tenant_agents`` table of an open engine `Store` (see the module docstring)."""

    def __init__(self, store: Store) -> None:
        self.store = store

    async def insert(self, agent_id: str, tenant: str, config: dict[str, Any], enabled: bool = True) -> bool:
        """Store a new agent; False (nothing written) when the id is taken."""
        now = time.time()
        sql = (f"INSERT INTO tenant_agents ({_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?) "
               "ON CONFLICT (agent_id) DO NOTHING")
        out = await self.store.run_op(_exec(sql, (agent_id, tenant, json.dumps(config), int(enabled), now, now)))
        return bool(out.value == 1)

    async def update(self, agent_id: str, config: dict[str, Any], enabled: bool) -> bool:
        """Replace an agent's config and state; False when there is no such agent."""
        sql = "UPDATE tenant_agents SET config = ?, enabled = ?, updated_at = ? WHERE agent_id = ?"
        out = await self.store.run_op(_exec(sql, (json.dumps(config), int(enabled), time.time(), agent_id)))
        return bool(out.value == 1)

    async def delete(self, agent_id: str) -> bool:
        """Remove an agent; False when there was none."""
        out = await self.store.run_op(_exec("DELETE FROM tenant_agents WHERE agent_id = ?", (agent_id,)))
        return bool(out.value == 1)

    async def get(self, agent_id: str) -> TenantAgentRecord | None:
        """The stored agent with this id, or None."""
        row = await self.store.fetch(
            Stmt(f"SELECT {_COLUMNS} FROM tenant_agents WHERE agent_id = ?", (agent_id,), "one"))
        return None if row is None else _record(row)

    async def list_agents(self, tenant: str | None = None) -> list[TenantAgentRecord]:
        """Stored agents, oldest first; every tenant's when `tenant` is None."""
        sql = f"SELECT {_COLUMNS} FROM tenant_agents"
        args: tuple[str, ...] = ()
        if tenant is not None:
            sql, args = sql + " WHERE tenant_id = ?", (tenant,)
        rows = await self.store.fetch(Stmt(sql + " ORDER BY created_at, agent_id", args, "all"), blocking=True)
        return [_record(row) for row in rows]


async def policy_problem(config: dict[str, Any], tenant: str, config_path: Path | None) -> str | None:
    """Why the deployment (``secrets:`` and ``api_agents:`` of `config_path`) does not let `tenant` use an
    agent with this config, or None when it does. Raises `ConfigError` when the config file is unreadable."""
    from ..config import load_tenant_agent_policy
    from ..models import PROVIDERS
    from ..tools.ssrf import AddressPolicy, check_url

    secrets, reach = load_tenant_agent_policy(config_path)
    allowed = secrets.tenants.get(tenant, [])
    provider = PROVIDERS.get(str(config.get("provider")))
    key_env = config.get("api_key_env") or (provider.key_env if provider is not None else None)
    if key_env is not None and key_env not in allowed:
        return f"its key variable {key_env} is not one the deployment lets tenant {tenant!r} use"
    base_url = config.get("base_url")
    if base_url:
        try:
            await check_url(base_url, AddressPolicy.from_strings(reach.allowed_networks, reach.allowed_hosts))
        except Exception as exc:  # noqa: BLE001 - refused (SSRFRefused), or no such host: either way, not usable
            return f"base_url: {exc}"
    return None


async def load_tenant_agents(table: TenantAgentTable, registry: Any, config_path: Path | None = None) -> list[str]:
    """Add the stored agents that `registry` (an `AgentRegistry`) lacks, each checked again against the
    deployment's rules for its tenant; one that fails is skipped with one warning line naming it. Returns
    the ids added."""
    from ..agents import Agent
    from ..config import AgentSection, ConfigError, build_agent

    added: list[str] = []
    for rec in await table.list_agents():
        if rec.agent_id in registry:
            continue
        try:
            problem = await policy_problem(rec.config, rec.tenant, config_path)
            if problem is None:
                agent: Agent = build_agent(AgentSection.model_validate(rec.config), "tenant_agents")
        except (ConfigError, ValueError) as exc:
            problem = str(exc)
        if problem is not None:
            logger.warning("skipping stored agent %r of tenant %r: %s", rec.agent_id, rec.tenant, problem)
            continue
        agent.tenant = rec.tenant
        agent.enabled = rec.enabled
        try:
            registry.add(agent)
        except ValueError:  # added meanwhile
            continue
        added.append(agent.id)
    return added
