"""``/api/agents``: list, register, change and remove agents.

Agents belong to the deployment, not to a tenant: every tenant sees and uses the same agents (their
statistics are totals over all tenants), and only admins change them. When
``LOOMIQ_AGENT_ADMIN_TENANTS`` is set, only admins of those tenants may change them.
"""

from __future__ import annotations

import dataclasses
from typing import Any

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
)
from ..orchestrator import Orchestrator
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


def describe(agent: Agent) -> dict[str, Any]:
    """An agent's JSON form: its snapshot (state, capabilities, success rate, latency, tokens, cost)
    plus its limits."""
    cfg = agent.config
    return {
        **agent.snapshot(),
        "enabled": agent.enabled,
        "timeout_s": cfg.timeout_s,
        "max_concurrency": cfg.max_concurrency,
    }


def _find(orch: Orchestrator, agent_id: str) -> Agent:
    try:
        return orch.registry.get(agent_id)
    except UnknownAgent as exc:
        raise Problem(404, f"{exc}. List the agents with GET /api/agents.") from None


def _check_agent_admin(principal: Principal, allowed: tuple[str, ...]) -> None:
    if allowed and principal.tenant not in allowed:
        raise Problem(
            403,
            f"Agents are shared by every tenant, and this deployment lets only admins of {', '.join(allowed)} "
            "change them (LOOMIQ_AGENT_ADMIN_TENANTS).",
        )


_ON_AGENT = links({"GetAgent": "get_agent", "UpdateAgent": "update_agent", "RemoveAgent": "remove_agent"},
                   "agent_id")
_NO_AGENT = "No agent with this id. List them with GET /api/agents."


@router.get("", response_model=AgentList, responses=problems(*AUTHENTICATED))
async def list_agents(_: PrincipalDep, orch: OrchestratorDep) -> dict[str, list[dict[str, Any]]]:
    """Every agent with its state, capabilities, success rate, latency, tokens and cost."""
    return {"agents": [describe(a) for a in orch.registry]}


@router.get("/{agent_id}", response_model=AgentBody, responses=problems(*AUTHENTICATED, 404, s404=_NO_AGENT))
async def get_agent(agent_id: str, _: PrincipalDep, orch: OrchestratorDep) -> dict[str, Any]:
    """One agent."""
    return describe(_find(orch, agent_id))


@router.post("", status_code=status.HTTP_201_CREATED, response_model=AgentBody, responses={
    201: {"description": "Registered; every tenant's runs may use it.",
          "headers": {"Location": header("The agent: /api/agents/{id}.")}, "links": _ON_AGENT},
    **problems(*AUTHENTICATED, 409, 413, 422, s409="An agent with this id exists."),
})
async def register_agent(
    body: AgentSection, principal: AdminDep, state: StateDep, response: Response
) -> dict[str, Any]:
    """Register an agent (admin). The body is an entry of loomiq.yaml's ``agents:`` list."""
    _check_agent_admin(principal, state.settings.agent_admin_tenants)
    orch = state.orchestrator
    if body.id in orch.registry:
        raise Problem(409, f"An agent with id {body.id!r} exists. Choose another id, or PATCH or DELETE that one.")
    if body.api_key_env and body.api_key_env.upper().startswith("LOOMIQ_"):
        raise Problem(
            422, "api_key_env must name a provider key variable, not one of the server's own LOOMIQ_ settings.",
            param="api_key_env",
        )
    try:
        agent = build_agent(body, "request body")
    except ConfigError as exc:
        raise Problem(422, f"{exc}. Fix the field and register again.") from None
    orch.add_agent(agent)
    response.headers["Location"] = f"/api/agents/{agent.id}"
    return describe(agent)


@router.patch("/{agent_id}", response_model=AgentBody, responses={
    200: {"links": _ON_AGENT}, **problems(*AUTHENTICATED, 404, 413, 422, s404=_NO_AGENT),
})
async def update_agent(agent_id: str, body: AgentPatch, principal: AdminDep, state: StateDep) -> dict[str, Any]:
    """Change an agent's name, capabilities, limits or prompt, or disable it (admin). Its model,
    statistics and in-flight calls carry over."""
    _check_agent_admin(principal, state.settings.agent_admin_tenants)
    orch = state.orchestrator
    current = _find(orch, agent_id)
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
    replacement = Agent(cfg, current.model, stats=current.stats, enabled=enabled)
    # No await between removing and adding: no request can see the registry without the agent.
    orch.remove_agent(agent_id)
    orch.add_agent(replacement)
    return describe(replacement)


@router.delete("/{agent_id}", status_code=status.HTTP_204_NO_CONTENT,
               responses=problems(*AUTHENTICATED, 404, s404=_NO_AGENT))
async def remove_agent(agent_id: str, principal: AdminDep, state: StateDep) -> Response:
    """Remove an agent (admin). Calls it has in flight finish; it is never picked again."""
    _check_agent_admin(principal, state.settings.agent_admin_tenants)
    _find(state.orchestrator, agent_id)
    state.orchestrator.remove_agent(agent_id)
    return Response(status_code=status.HTTP_204_NO_CONTENT)
