"""``/api/agents``: list, register, change and remove agents.

Two kinds of agents (README "Tenants and their agents"):

- Deployment agents (``loomiq.yaml``) are shared: every tenant sees and uses them, and only a
  deployment admin (an admin of a tenant listed in ``LOOMIQ_AGENT_ADMIN_TENANTS``; nobody when it is
  unset) may change or remove them.
- An agent registered over the API belongs to the admin's tenant: other tenants never see, change or
  use it (404). It may use as ``api_key_env`` only a variable the deployment allows that tenant
  (``secrets: tenants:`` in loomiq.yaml), and its ``base_url`` must pass the SSRF guard unless
  ``api_agents:`` allows the host. It is stored in the engine's database (``TaskEngine.tenant_agents``)
  as registered (its key variable's name, never a key): it survives a restart, and every server and
  worker on the database loads it (checked again against the tenant's rules) at start.

A change of an API agent (register, PATCH, DELETE, the dashboard's enable and disable) is written to
the database first, then applied here from the database; every other server and worker on the database
applies it too (`TaskEngine.sync_tenant_agents`): at once on PostgreSQL (NOTIFY), within about a second
on SQLite (each process reads the agents' version every second). A change of a deployment agent stays in
the process that made it (loomiq.yaml is the deployment agents' source: edit it to change them for
every process).
"""

from __future__ import annotations

import dataclasses
from typing import Any

import httpx2
from fastapi import APIRouter, Response, status
from pydantic import BaseModel, ConfigDict, ValidationError

from ..agents import Agent, UnknownAgent
from ..config import (
    AgentSection,
    BreakerCooldownS,
    BreakerThreshold,
    ConfigError,
    MaxConcurrency,
    MaxTokens,
    RetrySection,
    Temperature,
    TimeoutS,
    build_agent,
    load_tenant_agent_policy,
)
from ..models import PROVIDERS
from ..orchestrator import Orchestrator
from ..tools.ssrf import AddressPolicy, SSRFRefused, check_url
from ._openapi import AUTHENTICATED, header, links, problems
from .auth import Principal
from .deps import AdminDep, OrchestratorDep, PrincipalDep, StateDep
from .problems import Problem, validation_problem
from .schemas import AgentBody, AgentList

router = APIRouter(prefix="/api/agents", tags=["agents"])


class AgentPatch(BaseModel):
    """Fields of an agent that can change in place. The limits are those of `AgentSection`.

    Provider, model, endpoint, key variable and prices are bound to the agent's model connection:
    to change them, remove the agent and register it again.
    """

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)
    name: str | None = None
    capabilities: list[str] | None = None
    timeout_s: TimeoutS | None = None
    max_concurrency: MaxConcurrency | None = None
    system_prompt: str | None = None
    temperature: Temperature | None = None
    max_tokens: MaxTokens | None = None
    retry: RetrySection | None = None
    breaker_threshold: BreakerThreshold | None = None
    breaker_cooldown_s: BreakerCooldownS | None = None
    enabled: bool | None = None
    """False keeps the agent registered but never picks it (its state reads ``offline``)."""


async def database_totals(orch: Orchestrator) -> dict[str, dict[str, Any]] | None:
    """The agents' statistics summed over every process on the service's database (None without an
    engine: then each agent shows this process's own)."""
    return await orch.engine.agent_stats() if orch.has_engine else None


def describe(agent: Agent, totals: dict[str, dict[str, Any]] | None = None) -> dict[str, Any]:
    """An agent's JSON form: its snapshot (state, capabilities, success rate, latency, tokens, cost;
    from `totals` when given) plus its owner and limits."""
    cfg = agent.config
    return {
        **agent.snapshot(None if totals is None else totals.get(agent.id, {})),
        "tenant": agent.tenant,
        "enabled": agent.enabled,
        "timeout_s": cfg.timeout_s,
        "max_concurrency": cfg.max_concurrency,
    }


def _find(orch: Orchestrator, agent_id: str, principal: Principal) -> Agent:
    """The agent, if the principal's tenant may see it (a shared one, or its own); else 404, the same
    answer as for an id nobody registered."""
    try:
        return orch.registry.visible_to(principal.tenant).get(agent_id)
    except UnknownAgent as exc:
        raise Problem(404, f"{exc}. List the agents with GET /api/agents.") from None


def _check_may_change(agent: Agent, principal: Principal, deployment_admins: tuple[str, ...]) -> None:
    """A tenant's own agent: its admins (AdminDep checked the role). A shared deployment agent: only
    deployment admins."""
    if agent.tenant is not None or principal.tenant in deployment_admins:
        return
    who = (f"admins of {', '.join(deployment_admins)}" if deployment_admins
           else "nobody over the API (LOOMIQ_AGENT_ADMIN_TENANTS is unset): edit loomiq.yaml")
    raise Problem(
        403,
        f"Agent {agent.id!r} is a deployment agent shared by every tenant; changing it is for the deployment's "
        f"admins: {who}. Register an agent of your own with POST /api/agents instead.",
    )


async def _check_reach(body: AgentSection, tenant: str, config_path: Any) -> None:
    """An API agent reaches only what the deployment allows the tenant: its key variable must be in the
    tenant's ``secrets:`` allow-list, and its base URL must pass the SSRF guard (unless allowed)."""
    try:
        secrets, reach = load_tenant_agent_policy(config_path)
    except ConfigError as exc:
        raise Problem(503, f"The deployment's config cannot be read ({exc}); agents cannot be registered now.",
                      headers={"Retry-After": "30"}) from None
    allowed = secrets.tenants.get(tenant, [])
    key_env = body.api_key_env or PROVIDERS[body.provider].key_env
    if key_env is not None and key_env not in allowed:
        listed = ", ".join(allowed) if allowed else "none"
        how = (f"api_key_env: {key_env} is not a secret this deployment lets tenant {tenant!r} use" if body.api_key_env
               else f"api_key_env: provider {body.provider!r} would use {key_env}, which this deployment does not "
                    f"let tenant {tenant!r} use")
        raise Problem(
            422, f"{how} (allowed: {listed}; loomiq.yaml secrets: tenants: {tenant}: [...]). Name an allowed "
            "variable in api_key_env, or ask the deployment's operator to allow one.", param="api_key_env",
        )
    if body.base_url:
        try:
            policy = AddressPolicy.from_strings(reach.allowed_networks, reach.allowed_hosts)
            await check_url(body.base_url, policy)
        except (SSRFRefused, httpx2.ConnectError, ValueError, OSError) as exc:  # refused, or no such host
            raise Problem(
                422, f"base_url: {exc}. Agents registered over the API may only reach public hosts, unless "
                "loomiq.yaml's api_agents: allowed_hosts or allowed_networks lets them reach this one.",
                param="base_url",
            ) from None


_ON_AGENT = links({"GetAgent": "get_agent", "UpdateAgent": "update_agent", "RemoveAgent": "remove_agent"},
                   "agent_id")
_NO_AGENT = "No agent with this id. List them with GET /api/agents."


@router.get("", response_model=AgentList, responses=problems(*AUTHENTICATED))
async def list_agents(principal: PrincipalDep, orch: OrchestratorDep) -> dict[str, list[dict[str, Any]]]:
    """The shared agents and the tenant's own, with state, capabilities, success rate, latency, tokens
    and cost."""
    totals = await database_totals(orch)
    return {"agents": [describe(a, totals) for a in orch.registry.visible_to(principal.tenant)]}


@router.get("/{agent_id}", response_model=AgentBody, responses=problems(*AUTHENTICATED, 404, s404=_NO_AGENT))
async def get_agent(agent_id: str, principal: PrincipalDep, orch: OrchestratorDep) -> dict[str, Any]:
    """One agent (a shared one, or the tenant's own)."""
    agent = _find(orch, agent_id, principal)
    return describe(agent, await database_totals(orch))


@router.post("", status_code=status.HTTP_201_CREATED, response_model=AgentBody, responses={
    201: {"description": "Registered in the caller's tenant: only its runs see and use it.",
          "headers": {"Location": header("The agent: /api/agents/{id}.")}, "links": _ON_AGENT},
    **problems(*AUTHENTICATED, 409, 413, 422, 503, s409="An agent with this id exists.",
               s503="The deployment's config cannot be read now."),
})
async def register_agent(
    body: AgentSection, principal: AdminDep, state: StateDep, response: Response
) -> dict[str, Any]:
    """Register an agent of the caller's tenant (admin). The body is an entry of loomiq.yaml's ``agents:``
    list; its key variable must be one the deployment allows the tenant, its base URL a public host."""
    orch = state.orchestrator
    if body.id in orch.registry:
        raise Problem(409, f"An agent with id {body.id!r} exists. Choose another id, or PATCH or DELETE that one.")
    if body.api_key_env and body.api_key_env.upper().startswith("LOOMIQ_"):
        raise Problem(
            422, "api_key_env must name a provider key variable, not one of the server's own LOOMIQ_ settings.",
            param="api_key_env",
        )
    await _check_reach(body, principal.tenant, state.settings.config_path)
    try:
        agent = build_agent(body, "request body")
    except ConfigError as exc:
        raise Problem(422, f"{exc}. Fix the field and register again.") from None
    if body.id in orch.registry:  # registered meanwhile (the checks above await)
        raise Problem(409, f"An agent with id {body.id!r} exists. Choose another id, or PATCH or DELETE that one.")
    agent.tenant = principal.tenant
    response.headers["Location"] = f"/api/agents/{agent.id}"
    if not orch.has_engine:
        orch.add_agent(agent)
        return describe(agent)
    await agent.model.aclose()  # (this process builds it from the stored row below, as every other one does)
    if not await orch.engine.tenant_agents.insert(
            agent.id, principal.tenant, body.model_dump(mode="json", exclude_unset=True)):
        raise Problem(409, f"An agent with id {body.id!r} exists (registered by another server on this database). "
                      "Choose another id, or PATCH or DELETE that one.")
    await orch.engine.sync_tenant_agents()
    stored = orch.registry.get(agent.id) if agent.id in orch.registry else None
    if stored is None or stored.tenant != principal.tenant:
        raise Problem(503, f"Agent {agent.id!r} was stored but this server could not load it (see its log); "
                      "it is retried when the agent changes.", headers={"Retry-After": "30"})
    return describe(stored)


@router.patch("/{agent_id}", response_model=AgentBody, responses={
    200: {"links": _ON_AGENT}, **problems(*AUTHENTICATED, 404, 413, 422, s404=_NO_AGENT),
})
async def update_agent(agent_id: str, body: AgentPatch, principal: AdminDep, state: StateDep) -> dict[str, Any]:
    """Change an agent's name, capabilities, limits or prompt, or disable it (admin). Its model,
    statistics and in-flight calls carry over. A deployment agent: deployment admins only."""
    orch = state.orchestrator
    current = _find(orch, agent_id, principal)
    _check_may_change(current, principal, state.settings.agent_admin_tenants)
    changes = body.model_dump(exclude_unset=True, exclude={"enabled"})
    cfg = current.config
    if changes:
        # The settings loomiq.yaml can give (an AgentConfig field that no config sets, such as
        # tools_on_request, carries over through `replace` below).
        merged = {f.name: getattr(cfg, f.name) for f in dataclasses.fields(cfg) if f.name in AgentSection.model_fields}
        merged["capabilities"] = sorted(cfg.capabilities)
        merged["retry"] = dataclasses.asdict(cfg.retry)
        merged.update(changes)
        try:
            # Validated against the same limits as loomiq.yaml, so an agent can't be patched into a
            # state the config file would refuse.
            section = AgentSection.model_validate(merged)
        except ValidationError as exc:
            raise validation_problem(
                [{**e, "loc": ("body", *e["loc"])} for e in exc.errors() if e["loc"] and e["loc"][0] in changes]
                or exc.errors()
            ) from None
        cfg = dataclasses.replace(
            cfg,
            **{k: getattr(section, k) for k in changes if k not in ("capabilities", "retry")},
            capabilities=frozenset(section.capabilities),
            retry=type(cfg.retry)(**section.retry.model_dump()),
        )
    enabled = current.enabled if body.enabled is None else body.enabled
    if current.tenant is not None and orch.has_engine:
        # Written to the database, then applied here from it as in every other process.
        removed = Problem(404, f"unknown agent {agent_id!r}: it was removed. List the agents with GET /api/agents.")
        stored = await orch.engine.tenant_agents.get(agent_id)
        if stored is None:  # removed by another server on the database: gone here too
            await orch.engine.sync_tenant_agents()
            raise removed
        config = {**stored.config, **body.model_dump(mode="json", exclude_unset=True, exclude={"enabled"})}
        if not await orch.engine.tenant_agents.update(agent_id, config, enabled):
            await orch.engine.sync_tenant_agents()
            raise removed
        await orch.engine.sync_tenant_agents()
        return describe(_find(orch, agent_id, principal))
    replacement = Agent(cfg, current.model, stats=current.stats, enabled=enabled, tenant=current.tenant)
    # No await between removing and adding: no request can see the registry without the agent.
    orch.remove_agent(agent_id)
    orch.add_agent(replacement)
    return describe(replacement)


@router.delete("/{agent_id}", status_code=status.HTTP_204_NO_CONTENT,
               responses=problems(*AUTHENTICATED, 404, s404=_NO_AGENT))
async def remove_agent(agent_id: str, principal: AdminDep, state: StateDep) -> Response:
    """Remove an agent (admin). Calls it has in flight finish; it is never picked again. A deployment
    agent: deployment admins only."""
    orch = state.orchestrator
    agent = _find(orch, agent_id, principal)
    _check_may_change(agent, principal, state.settings.agent_admin_tenants)
    if agent.tenant is not None and orch.has_engine:
        await orch.engine.tenant_agents.delete(agent_id)
        await orch.engine.sync_tenant_agents()  # (removes it here, as in every other process)
    if agent_id in orch.registry and orch.registry.get(agent_id) is agent:  # not removed meanwhile (the delete awaits)
        orch.remove_agent(agent_id)
    return Response(status_code=status.HTTP_204_NO_CONTENT)
