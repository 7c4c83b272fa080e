"""Liveness, readiness (each with every component's status and reason) and Prometheus metrics."""

from __future__ import annotations

import contextlib
from typing import Any

import anyio
from fastapi import APIRouter, Request, Response

from ..agents import AgentState
from . import _health
from ._health import WORKER_STALE_S
from ._openapi import problems
from .deps import StateDep, authenticate
from .problems import Problem
from .schemas import Health, Ready

router = APIRouter(tags=["health"])


async def _components(state: StateDep) -> tuple[dict[str, Any], dict[str, object]]:
    """Every component's status, and the summary checks `/api/ready` has always reported."""
    orch = state.orchestrator
    agents = list(orch.registry)
    components: dict[str, Any] = {"agents": _health.agents_component(agents)}
    usable = [a for a in agents if a.state not in (AgentState.OFFLINE, AgentState.OPEN_CIRCUIT)]
    checks: dict[str, object] = {"orchestrator": "ok", "agents": len(agents), "usable_agents": len(usable)}
    if state.settings.tasks_enabled:
        embedded = state.worker is not None and not state.worker.done()
        database, workers = await _health.database_component(orch.engine)
        components["database"] = database
        components["workers"] = _health.workers_component(workers, embedded)
        checks["database"] = (f"ok (schema {database['details']['schema']})" if database["status"] == "ok"
                              else f"failing: {database['reason']}")
        if workers is not None:
            checks["workers"] = {"embedded": embedded, "live": components["workers"]["details"]["live"]}
    else:
        components["database"] = _health.component("disabled", "tasks are disabled (LOOMIQ_TASKS=0)")
        components["workers"] = _health.component("disabled", "tasks are disabled (LOOMIQ_TASKS=0)")
    slow = state.health_checks
    components["mcp_servers"] = _health.mcp_component(slow.mcp_sources(orch, state.settings.config_path))
    components["sandbox"] = await slow.sandbox()
    return components, checks


@router.get("/api/health", response_model=Health)
async def health(state: StateDep) -> dict[str, object]:
    """Liveness: the process answers (always 200 while it does), with each component's status and
    reason: ``degraded`` overall when a component is not fine. Needs no credentials."""
    components, _ = await _components(state)
    return {"status": _health.overall(components), "components": components}


@router.get("/api/ready", response_model=Ready, responses=problems(
    503, s503="Not ready: the server is starting, no agent is usable, the task database does not answer, or no "
              "worker is alive; `checks` and `components` say what was looked at."))
async def ready(state: StateDep) -> dict[str, object]:
    """Readiness, without credentials: the orchestrator has a usable agent and, with tasks enabled,
    the task database answers and some worker (embedded or ``loomiq worker``) is alive."""
    components, checks = await _components(state)
    reasons = [components[name]["reason"] for name in ("agents", "database", "workers")
               if components[name]["status"] == "failing"]
    if reasons:
        raise Problem(503, "Not ready: " + "; ".join(reasons) + ".", headers={"Retry-After": "5"}, checks=checks,
                      components=components)
    return {"status": "ready", "checks": checks, "components": components}


@router.get("/metrics", include_in_schema=False)
async def metrics(request: Request, state: StateDep) -> Response:
    """Prometheus exposition. Public unless LOOMIQ_METRICS_PUBLIC=0, then any authenticated role."""
    if not state.settings.metrics_public:
        await authenticate(request, state)
    if state.settings.tasks_enabled and state.orchestrator.has_engine:
        # The queue, worker and approval gauges are read from the database at each scrape (bounded: a slow
        # database leaves them at their last values rather than stalling the scrape).
        with anyio.move_on_after(1.0), contextlib.suppress(Exception):
            await state.metrics.sample(state.orchestrator.engine, stale_s=WORKER_STALE_S)
    body, content_type = state.metrics.render(request.headers.get("accept"))
    return Response(body, media_type=content_type)
