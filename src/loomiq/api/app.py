"""`create_app`: the FastAPI application, its lifespan, middleware and routes."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager

from fastapi import FastAPI
from fastapi_offline import FastAPIOffline

from .. import __version__
from ..config import load_alerts
from ..engine import Worker
from ..orchestrator import Orchestrator
from . import (
    _openapi,
    routes_agents,
    routes_alerts,
    routes_health,
    routes_keys,
    routes_mcp,
    routes_openai,
    routes_stats,
    routes_tasks,
    routes_tools,
    routes_workflows,
    ui,
)
from .alerts import AlertEvaluator
from .auth import TokenVerifier
from .deps import ApiState
from .keys import KeyStore, KeyVerifier, open_key_store
from .limits import BodyLimitMiddleware, TenantRateLimiter
from .metrics import ApiMetrics, MetricsMiddleware
from .problems import install_problem_handlers
from .settings import Settings

DOCS_ASSETS = "/docs/assets"
"""Where Swagger UI's script, stylesheet and icon are served (from the installed package)."""

_DESCRIPTION = """Coordinate many LLM agents behind one API.

**Credentials**: `Authorization: Bearer <JWT>` (`loomiq token`) or an API key (`X-API-Key: lq_...`, or
`Authorization: Bearer lq_...`; admins manage their tenant's keys at `/api/keys`). Roles: `viewer`
reads, `operator` also submits and cancels, `admin` also manages agents and keys. Everything is scoped
to the caller's tenant.

**Errors** are RFC 9457 problem documents (`application/problem+json`): `type`, `title`, `status`,
`detail` (what to do about it), `instance`, and for 422 `errors` naming every invalid field.

**Task events**: `GET /api/tasks/{task_id}/events` streams them as server-sent events (resume with
`Last-Event-ID`); the WebSocket `/api/tasks/{task_id}/ws?after=<seq>` sends the same events as JSON text
frames and takes `{"type": "cancel"}` (operator). Browsers cannot set headers on a WebSocket: pass the
JWT or API key as `?access_token=...`. A refused handshake gets an HTTP problem response (401, 403, 404,
422). OpenAPI cannot describe WebSockets, so this route is not listed below.

**OpenAI-compatible**: `/v1` takes OpenAI clients; `model` is an agent id or a strategy name.
"""

def create_app(
    settings: Settings | None = None,
    *,
    orchestrator: Orchestrator | None = None,
    key_store: KeyStore | None = None,
    mcp_extension: routes_mcp.McpExtension | None = None,
) -> FastAPI:
    """The loomiq HTTP service.

    Args:
        settings: defaults to `Settings.from_env()`; checked here, so a missing or weak JWT secret
            raises `SettingsError` before anything listens.
        orchestrator: the agents to serve; by default loaded at start-up from loomiq.yaml (or the
            offline defaults) and closed at shutdown. One passed in is left open.
        key_store: the API-key store; by default the engine's database (`settings.key_store_location`:
            the task engine's own store when it runs here), with the keys of an earlier loomiq's
            key file (`settings.key_store_path`) imported once.
        mcp_extension: called with the MCP server of ``/mcp`` before it serves (the conformance tests
            mount the suite's fixtures this way; production mounts nothing more).
    """
    settings = settings or Settings.from_env()
    settings.check()
    serving: dict[str, Orchestrator] = {}
    metrics = ApiMetrics(lambda: serving["orch"].registry if "orch" in serving else None)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        async with AsyncExitStack() as stack:
            orch = orchestrator
            if orch is None:
                orch = Orchestrator.from_config(settings.config_path)
                stack.push_async_callback(orch.aclose)
            serving["orch"] = orch
            routes_tools.use_service_database(orch.tools, settings.database_url)
            stack.push_async_callback(orch.tools.aclose_tools)
            stack.callback(serving.clear)
            worker: asyncio.Task[None] | None = None
            if settings.tasks_enabled:
                worker = await _start_engine(orch, settings, metrics, stack)
            keys = key_store
            if keys is None:
                if settings.tasks_enabled and settings.keys_path is None:
                    keys = KeyStore(orch.engine.keys)
                else:
                    keys = await open_key_store(settings.key_store_location)
                    stack.push_async_callback(keys.aclose)
                if settings.keys_path is None:
                    await keys.import_file(settings.key_store_path)
            alerts = await _start_alerts(settings, metrics, orch, stack)
            app.state.loomiq = ApiState(
                settings=settings,
                orchestrator=orch,
                keys=keys,
                key_verifier=KeyVerifier(keys, settings.key_cache_s),
                tokens=TokenVerifier(settings) if settings.algorithms else None,
                limiter=TenantRateLimiter(settings.rate_per_s, settings.rate_burst),
                metrics=metrics,
                started_at=int(time.time()),
                worker=worker,
                alerts=alerts,
            )
            if settings.mcp_enabled:
                await routes_mcp.start(app, orch, settings, stack, mcp_extension)
            try:
                yield
            finally:
                app.state.loomiq = None

    # Swagger UI at /docs from assets shipped in the fastapi-offline package (not a CDN), so the
    # docs work on a machine without internet access.
    app = FastAPIOffline(
        docs_url="/docs",
        redoc_url=None,
        static_url=DOCS_ASSETS,
        title="loomiq",
        version=__version__,
        description=_DESCRIPTION,
        lifespan=lifespan,
        generate_unique_id_function=_openapi.operation_id,
    )
    app.state.loomiq = None
    app.state.settings = settings
    app.state.max_body_bytes = settings.max_body_bytes
    install_problem_handlers(app)
    # Added innermost first: metrics see every answer, including the body limit's 413.
    app.add_middleware(BodyLimitMiddleware, max_bytes=settings.max_body_bytes)
    app.add_middleware(MetricsMiddleware, metrics=metrics)
    app.include_router(routes_health.router)
    app.include_router(routes_alerts.router)
    app.include_router(routes_agents.router)
    app.include_router(routes_keys.router)
    app.include_router(routes_openai.router)
    app.include_router(routes_tasks.router)
    app.include_router(routes_stats.router)
    app.include_router(routes_tools.router)
    app.include_router(routes_workflows.router)
    if settings.mcp_enabled:
        routes_mcp.mount(app)
    ui.mount(app)
    _openapi.install(app)
    return app


async def _start_alerts(settings: Settings, metrics: ApiMetrics, orch: Orchestrator, stack: AsyncExitStack
                        ) -> AlertEvaluator | None:
    """The alert rules of loomiq.yaml's `alerts:`, evaluated every `evaluate_every` until shutdown."""
    config = load_alerts(settings.config_path)
    if config is None or not config.rules:
        return None
    evaluator = AlertEvaluator(config, metrics.registry)

    async def loop() -> None:
        while True:
            await asyncio.sleep(evaluator.every_s)
            if settings.tasks_enabled and orch.has_engine:
                with contextlib.suppress(Exception):  # the gauges keep their last values
                    await metrics.sample(orch.engine)
            try:
                evaluator.evaluate()
            except Exception:  # noqa: BLE001 - a bad sample must not stop alerting
                logging.getLogger("loomiq.alerts").exception("evaluating alert rules failed")

    task = asyncio.get_running_loop().create_task(loop(), name="loomiq-alerts")

    async def stop() -> None:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        await evaluator.aclose()

    stack.push_async_callback(stop)
    return evaluator


async def _start_engine(orch: Orchestrator, settings: Settings, metrics: ApiMetrics, stack: AsyncExitStack
                        ) -> asyncio.Task[None] | None:
    """Open the task engine (unless the orchestrator has one) and start the embedded worker; both are
    stopped by `stack` (the worker first, letting its runs finish for `worker_drain_s`)."""
    if not orch.has_engine:
        await orch.open_engine(settings.database_url)
        stack.push_async_callback(orch.close_engine)
    await orch.engine.load_tenant_agents(settings.config_path)  # the agents registered over the API
    orch.engine.run_observers.append(metrics.observe)  # runs of this process's workers, whoever submitted them
    stack.callback(orch.engine.run_observers.remove, metrics.observe)
    if not settings.embedded_workers:
        return None
    # The embedded worker also drives workflow runs (their nodes' ends, deadlines, retries).
    driver = asyncio.get_running_loop().create_task(routes_workflows.runs_for(orch.engine).serve(),
                                                    name="loomiq-api-workflows")

    async def stop_driver() -> None:
        driver.cancel()
        await asyncio.gather(driver, return_exceptions=True)
        await routes_workflows.runs_for(orch.engine).close()

    stack.push_async_callback(stop_driver)
    worker = Worker(orch.engine, concurrency=settings.embedded_workers, drain_s=settings.worker_drain_s)
    runner = asyncio.get_running_loop().create_task(worker.run(), name="loomiq-api-worker")

    async def stop() -> None:
        await worker.stop()
        await runner

    stack.push_async_callback(stop)
    return runner
