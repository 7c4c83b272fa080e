"""Liveness, readiness and Prometheus metrics."""

from __future__ import annotations

import contextlib
import time

import anyio
from fastapi import APIRouter, Request, Response

from ..agents import AgentState
from ._openapi import problems
from .deps import StateDep, authenticate
from .problems import Problem
from .schemas import Health, Ready

router = APIRouter(tags=["health"])


@router.get("/api/health", response_model=Health)
async def health() -> dict[str, str]:
    """Liveness: the process answers. Needs no credentials."""
    return {"status": "ok"}


WORKER_STALE_S = 30.0
"""A worker whose heartbeat is older than this is not counted as live."""


@router.get("/api/ready", response_model=Ready, responses=problems(
    503, s503="Not ready: the server is starting, no agent is usable, the task database does not answer, or no "
              "worker is alive; `checks` says what was looked at."))
async def ready(state: StateDep) -> dict[str, object]:
    """Readiness, without credentials: the orchestrator has a usable agent and, with tasks enabled,
    the task database answers and some worker (embedded or ``loomiq worker``) is alive."""
    agents = list(state.orchestrator.registry)
    usable = [a for a in agents if a.state not in (AgentState.OFFLINE, AgentState.OPEN_CIRCUIT)]
    checks: dict[str, object] = {"orchestrator": "ok", "agents": len(agents), "usable_agents": len(usable)}
    problems = []
    if not usable:
        problems.append("no usable agent: every agent is disabled, removed or has an open circuit (register or "
                        "enable one with /api/agents)")
    if state.settings.tasks_enabled:
        problems += await _engine_checks(state, checks)
    if problems:
        raise Problem(503, "Not ready: " + "; ".join(problems) + ".", headers={"Retry-After": "5"}, checks=checks)
    return {"status": "ready", "checks": checks}


async def _engine_checks(state: StateDep, checks: dict[str, object]) -> list[str]:
    engine = state.orchestrator.engine
    try:
        with anyio.fail_after(2):
            checks["database"] = f"ok (schema {await engine.schema_version()})"
            workers = await engine.workers()
    except Exception as exc:  # noqa: BLE001 - any failure to read the database makes the server unready
        checks["database"] = f"failing: {type(exc).__name__}"
        return [f"the task database does not answer ({type(exc).__name__}: {exc})"]
    now = time.time()
    live = [w for w in workers if w.status == "running" and now - w.heartbeat_at < WORKER_STALE_S]
    embedded = state.worker is not None and not state.worker.done()
    checks["workers"] = {"embedded": embedded, "live": len(live)}
    if not live and not embedded:
        return ["no live worker: submitted tasks would not run (start `loomiq worker`, or set LOOMIQ_API_WORKERS)"]
    return []


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
