"""Agents registered over the API, kept in the engine's database (table ``tenant_agents``, migration
v10) so that they survive a restart and every process on the database (servers, ``loomiq worker``,
``python -m loomiq.engine.worker``) has them.

A row is the agent's config as registered (the ``AgentSection`` JSON: the name of its key variable,
never a key), its tenant and whether it is enabled. Every change (register, PATCH, DELETE) also bumps
the one-row counter ``tenant_agents_version`` in its transaction and, on PostgreSQL, sends a NOTIFY
(``loomiq_<schema>_agents``).

`sync_tenant_agents` makes a registry match the table: it builds the stored agents the registry lacks,
checking each again against the deployment's rules for its tenant (the ``secrets:`` allow-list and the
SSRF guard on ``base_url``; one that no longer passes is skipped with one warning line naming it),
changes in place those whose row changed (same model connection and statistics), and removes the
tenant agents whose row is gone. `TaskEngine` runs it at start and whenever the version moves: on
NOTIFY (PostgreSQL), or when a read of the version every `Store.agents_poll_s` (1 s on SQLite) finds
it changed; so a change made by any server reaches every server and worker within about a second.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Generator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ._stmt import Dialect, Outcome, Stmt
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


def _change(d: Dialect, sql: str, args: tuple[Any, ...]) -> Generator[Stmt, Any, Outcome]:
    """Run `sql`; when it changed a row, bump the version and tell the other processes (PostgreSQL)."""
    count = yield Stmt(sql, args, "exec")
    if count:
        yield Stmt("UPDATE tenant_agents_version SET version = version + 1", (), "exec")
        version = yield Stmt("SELECT version FROM tenant_agents_version", (), "val")
        if (n := d.notify("agents", str(version))) is not None:
            yield n
    return Outcome(value=count)


class TenantAgentTable:
    """The ``tenant_agents`` table of an open engine `Store` (see the module docstring)."""

    def __init__(self, store: Store) -> None:
        self.store = store

    async def _change(self, sql: str, args: tuple[Any, ...]) -> Outcome:
        return await self.store.run_op(_change(self.store.dialect, sql, args))

    async def insert(self, agent_id: str, tenant: str, config: dict[str, Any], enabled: bool = True) -> bool:
        """Store a new agent; False (nothing written) when the id is taken."""
        now = time.time()
        sql = (f"INSERT INTO tenant_agents ({_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?) "
               "ON CONFLICT (agent_id) DO NOTHING")
        out = await self._change(sql, (agent_id, tenant, json.dumps(config), int(enabled), now, now))
        return bool(out.value == 1)

    async def update(self, agent_id: str, config: dict[str, Any], enabled: bool) -> bool:
        """Replace an agent's config and state; False when there is no such agent."""
        sql = "UPDATE tenant_agents SET config = ?, enabled = ?, updated_at = ? WHERE agent_id = ?"
        out = await self._change(sql, (json.dumps(config), int(enabled), time.time(), agent_id))
        return bool(out.value == 1)

    async def delete(self, agent_id: str) -> bool:
        """Remove an agent; False when there was none."""
        out = await self._change("DELETE FROM tenant_agents WHERE agent_id = ?", (agent_id,))
        return bool(out.value == 1)

    async def version(self) -> int:
        """The table's version: it moves with every change (see the module docstring)."""
        return int(await self.store.fetch(Stmt("SELECT version FROM tenant_agents_version", (), "val")))

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


Applied = dict[str, tuple[str, dict[str, Any], bool]]
"""What `sync_tenant_agents` last made of each stored agent: id -> (tenant, config, enabled)."""


def _bound(config: dict[str, Any]) -> dict[str, Any]:
    from ..config import AGENT_FIELDS_CHANGED_IN_PLACE

    return {k: v for k, v in config.items() if k not in AGENT_FIELDS_CHANGED_IN_PLACE}


async def _build(rec: TenantAgentRecord, config_path: Path | None) -> Any:
    """The stored agent built anew (an `Agent`), or None (one warning line) when the rules refuse it."""
    from ..config import AgentSection, ConfigError, build_agent

    try:
        problem = await policy_problem(rec.config, rec.tenant, config_path)
        if problem is None:
            agent = build_agent(AgentSection.model_validate(rec.config), "tenant_agents")
            agent.tenant, agent.enabled = rec.tenant, rec.enabled
            return agent
    except (ConfigError, ValueError) as exc:
        problem = str(exc)
    logger.warning("skipping stored agent %r of tenant %r: %s", rec.agent_id, rec.tenant, problem)
    return None


async def sync_tenant_agents(table: TenantAgentTable, registry: Any, config_path: Path | None = None,
                             applied: Applied | None = None, *, retry_refused: bool = False) -> list[str]:
    """Make `registry` (an `AgentRegistry`) hold the stored agents as stored (see the module docstring):
    add those it lacks, change those whose row changed since `applied` (updated here), remove those of
    `applied` whose row is gone (a tenant agent added to the registry in code is left alone). A
    deployment agent with a stored agent's id keeps the id. An agent the rules refused is tried again
    only when its row changes, or with `retry_refused`. Returns the ids added."""
    from ..agents import Agent
    from ..config import AgentSection, reconfigured

    applied = {} if applied is None else applied
    rows = {rec.agent_id: rec for rec in await table.list_agents()}
    for agent_id in [i for i in applied if i not in rows]:  # removed (by whichever process)
        del applied[agent_id]
        if agent_id in registry and registry.get(agent_id).tenant is not None:
            registry.remove(agent_id)
    added: list[str] = []
    for rec in rows.values():
        now = (rec.tenant, rec.config, rec.enabled)
        before = applied.get(rec.agent_id)
        current = registry.get(rec.agent_id) if rec.agent_id in registry else None
        if current is not None and current.tenant is None:
            continue  # a deployment agent has the id
        if now == before and (current is not None or not retry_refused):
            continue  # as applied (or refused by the rules, already said)
        applied[rec.agent_id] = now
        if (current is not None and before is not None and before[0] == rec.tenant
                and _bound(before[1]) == _bound(rec.config)):
            if before[1] == rec.config:
                current.enabled = rec.enabled  # only enabled changed: the same agent, breaker and slots
                continue
            try:
                section = AgentSection.model_validate(rec.config)
            except ValueError as exc:
                logger.warning("removing stored agent %r of tenant %r: %s", rec.agent_id, rec.tenant, exc)
                registry.remove(rec.agent_id)
                continue
            # The same model connection and statistics, the new settings.
            replacement = Agent(reconfigured(current, section), current.model, stats=current.stats,
                                enabled=rec.enabled, tenant=rec.tenant)
        else:
            replacement = await _build(rec, config_path)
            current = registry.get(rec.agent_id) if rec.agent_id in registry else None  # (the build awaits)
            if current is not None and current.tenant is None:
                continue
        if current is not None:
            registry.remove(rec.agent_id)
        if replacement is not None:
            registry.add(replacement)  # (no await since the removal: the id is never missing meanwhile)
            if current is None:
                added.append(rec.agent_id)
    return added

