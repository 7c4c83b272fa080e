"""Prometheus metrics of the service and of every worker process (``docs/operations.md`` lists them).

HTTP metrics come from a small ASGI middleware (labelled by route template, not raw path, to keep
cardinality bounded). Run, model-call and tool-call metrics are fed by consuming the runs' typed events
(`observe`), the same events the streams send; the queue, workers and approvals are sampled from the task
database (`sample`), and the agents' breakers are read from the registry at each scrape. Nothing here reaches
into strategies or agents' internals.

Cardinality: labels are route templates, strategies, statuses, agent ids, providers, models, tools, and
tenants; distinct tenants are capped at `MAX_TENANT_LABELS` (later ones are counted as ``other``), so a
deployment with many tenants cannot grow the exposition without bound. No task or run id is ever a label.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Callable, Iterable
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.exposition import choose_encoder
from prometheus_client.registry import Collector
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from ..agents import AgentRegistry, BreakerState, UnknownAgent
from ..observe import current_ids
from ..runtime import RunEvent, RunFinished, RunStarted, StepFinished, ToolFinished, ToolRefused
from ..tools.records import ToolCallFinished, ToolCallRefused

_LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120)
_TOOL_BUCKETS = (0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30)
MAX_TENANT_LABELS = 100
"""Distinct tenant label values kept per process; further tenants are counted under ``other``."""
PRIORITIES = ("critical", "high", "medium", "low")
_BREAKER_VALUE = {BreakerState.CLOSED: 0, BreakerState.HALF_OPEN: 1, BreakerState.OPEN: 2}


class _AgentCollector(Collector):
    """Per-agent gauges read from the live registry at scrape time: breaker state and availability."""

    def __init__(self, registry: Callable[[], AgentRegistry | None]) -> None:
        self._registry = registry

    def collect(self) -> Iterable[GaugeMetricFamily]:
        breaker = GaugeMetricFamily("loomiq_agent_breaker_state",
                                    "Circuit breaker of each agent: 0 closed, 1 half-open, 2 open.", labels=["agent"])
        running = GaugeMetricFamily("loomiq_agent_calls_in_flight", "Model calls each agent is making now.",
                                    labels=["agent"])
        registry = self._registry()
        for agent in registry or ():
            breaker.add_metric([agent.id], _BREAKER_VALUE.get(agent.breaker.state, 0))
            running.add_metric([agent.id], agent.stats.in_flight)
        yield breaker
        yield running

    def describe(self) -> Iterable[GaugeMetricFamily]:
        return []


class _StepsFirst(Collector):
    """Registered first in `ApiMetrics.registry`: collecting it counts the queued steps and yields nothing."""

    def __init__(self, count: Callable[[], None]) -> None:
        self._count = count

    def describe(self) -> list[Any]:
        return []

    def collect(self) -> Iterable[Any]:
        self._count()
        return ()


class ApiMetrics:
    """The metrics of one process, in a registry of their own (so several apps in one process, as in
    tests, never collide). `agents` gives the agent registry whose breakers are exported."""

    def __init__(self, agents: Callable[[], AgentRegistry | None] | AgentRegistry | None = None) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self._agents: Callable[[], AgentRegistry | None] = (
            agents if callable(agents) and not isinstance(agents, AgentRegistry) else (lambda: agents)
        )
        self._tenants: set[str] = set()
        self._children: dict[tuple[int, tuple[str, ...]], Any] = {}
        self._steps: deque[tuple[str, str, Any]] = deque()
        # First in the registry, so that every collection (a scrape, the alert rules, the dashboard) sees the
        # steps observed until then.
        r.register(_StepsFirst(self._count_steps))
        self.http_requests = Counter(
            "loomiq_http_requests", "HTTP requests answered, by route template and status.",
            ["method", "route", "status"], registry=r,
        )
        self.http_latency = Histogram(
            "loomiq_http_request_duration_seconds", "Time to answer an HTTP request (streams: until closed).",
            ["method", "route"], buckets=_LATENCY_BUCKETS, registry=r,
        )
        self.runs = Counter("loomiq_runs", "Runs finished, by strategy and status.", ["strategy", "status"],
                            registry=r)
        self.runs_in_progress = Gauge("loomiq_runs_in_progress", "Runs started in this process and not finished.",
                                      registry=r)
        self.run_duration = Histogram(
            "loomiq_run_duration_seconds", "Duration of finished runs (a durable task's run on its worker).",
            ["strategy"], buckets=_LATENCY_BUCKETS, registry=r,
        )
        self.agent_calls = Counter(
            "loomiq_agent_calls", "Agent steps finished, by agent and outcome (ok, failed).",
            ["agent", "outcome"], registry=r,
        )
        self.agent_failures = Counter(
            "loomiq_agent_failures", "Agent failures, including those another agent took over from.",
            ["agent"], registry=r,
        )
        self.agent_tokens = Counter(
            "loomiq_agent_tokens", "Tokens used by agents, by kind (input, output).", ["agent", "kind"], registry=r,
        )
        self.agent_cost = Counter("loomiq_agent_cost_usd", "Cost of agent calls in USD.", ["agent"], registry=r)
        self.model_calls = Counter(
            "loomiq_model_calls", "Agent model calls (a step's call of one agent, retries included), by outcome "
            "(ok, failed).", ["tenant", "agent", "provider", "model", "outcome"], registry=r,
        )
        self.model_call_duration = Histogram(
            "loomiq_model_call_duration_seconds", "Duration of a step's model call, retries included.",
            ["agent", "provider", "model"], buckets=_LATENCY_BUCKETS, registry=r,
        )
        self.tokens = Counter(
            "loomiq_model_tokens", "Tokens of model calls, by kind (input, output).",
            ["tenant", "agent", "provider", "model", "kind"], registry=r,
        )
        self.cost = Counter("loomiq_model_cost_usd", "Cost of model calls in US dollars.",
                            ["tenant", "agent", "provider", "model"], registry=r)
        self.failovers = Counter("loomiq_failovers", "Steps another agent took over, by the agent that failed.",
                                 ["agent"], registry=r)
        self.tool_calls = Counter("loomiq_tool_calls", "Tool calls, by tool and outcome (ok, error, refused).",
                                  ["tool", "outcome"], registry=r)
        self.tool_duration = Histogram("loomiq_tool_call_duration_seconds", "Duration of tool calls.", ["tool"],
                                       buckets=_TOOL_BUCKETS, registry=r)
        self.queue_depth = Gauge("loomiq_queue_depth", "Tasks queued and ready to run, by priority.", ["priority"],
                                 registry=r)
        self.tasks_waiting = Gauge("loomiq_tasks_waiting", "Tasks waiting for their dependencies.", registry=r)
        self.tasks_running = Gauge("loomiq_tasks_running", "Tasks running on any worker of the database.", registry=r)
        self.workers = Gauge("loomiq_workers_alive", "Workers whose heartbeat is recent.", registry=r)
        self.approvals_pending = Gauge("loomiq_approvals_pending", "Workflow approvals waiting for an answer.",
                                       registry=r)
        self.approval_age = Gauge("loomiq_approval_oldest_pending_seconds",
                                  "Age of the oldest pending approval (0 when none).", registry=r)
        self.sampled_at = Gauge("loomiq_sampled_timestamp_seconds",
                                "When the queue, worker and approval gauges were last read from the database.",
                                registry=r)
        r.register(_AgentCollector(self._agents))

    def _tenant(self) -> str:
        tenant = current_ids().get("tenant", "default")
        if tenant in self._tenants:
            return tenant
        if len(self._tenants) < MAX_TENANT_LABELS:
            self._tenants.add(tenant)
            return tenant
        return "other"

    def _provider(self, agent_id: str) -> str:
        registry = self._agents()
        if registry is None:
            return "unknown"
        try:
            return registry.get(agent_id).config.provider
        except UnknownAgent:  # removed since the step ran
            return "unknown"

    def _labels(self, metric: Any, *values: str) -> Any:
        """`metric.labels(*values)`, remembered: prometheus_client's `labels` costs a few microseconds (lock,
        validation, string conversion) and a run's steps ask for the same few series again and again. Bounded
        like the series themselves; nothing removes a series, so a remembered child stays the live one."""
        key = (id(metric), values)
        child = self._children.get(key)
        if child is None:
            child = metric.labels(*values)
            if len(self._children) < 100_000:
                self._children[key] = child
        return child

    def _count_steps(self) -> None:
        """Count the steps queued by `observe` into their series (each step once, whichever thread collects)."""
        steps = self._steps
        while steps:
            try:
                tenant, provider, step = steps.popleft()
            except IndexError:  # another collection took the last one
                return
            for agent, _error in step.failed_over_from:
                self._labels(self.failovers, agent).inc()
                self._labels(self.agent_failures, agent).inc()
                self._labels(self.agent_calls, agent, "failed").inc()
                self._labels(self.model_calls, tenant, agent, self._provider(agent), "", "failed").inc()
            model = step.model or ""
            outcome = "ok" if step.ok else "failed"
            self._labels(self.agent_calls, step.agent, outcome).inc()
            if not step.ok:
                self._labels(self.agent_failures, step.agent).inc()
            self._labels(self.model_calls, tenant, step.agent, provider, model, outcome).inc()
            self._labels(self.model_call_duration, step.agent, provider, model).observe(step.duration_ms / 1000)
            if step.usage.input_tokens:
                self._labels(self.agent_tokens, step.agent, "input").inc(step.usage.input_tokens)
                self._labels(self.tokens, tenant, step.agent, provider, model, "input").inc(step.usage.input_tokens)
            if step.usage.output_tokens:
                self._labels(self.agent_tokens, step.agent, "output").inc(step.usage.output_tokens)
                self._labels(self.tokens, tenant, step.agent, provider, model, "output").inc(step.usage.output_tokens)
            if step.cost_usd:
                self._labels(self.agent_cost, step.agent).inc(step.cost_usd)
                self._labels(self.cost, tenant, step.agent, provider, model).inc(step.cost_usd)

    def observe(self, event: RunEvent | Any) -> None:
        """Update run, model and tool metrics from one run event (called in the run's context, so the
        tenant is the one bound to its log lines). A finished step is queued (with its tenant and provider as
        they are now) and counted at the next collection: the run pays an append (under 1 µs), not the dozen
        prometheus_client calls (about 14 µs a step, at collection)."""
        if isinstance(event, StepFinished):
            steps = self._steps
            steps.append((self._tenant(), self._provider(event.result.agent), event.result))
            if len(steps) >= 10_000:  # bounded, scraped or not
                self._count_steps()
        elif isinstance(event, RunStarted):
            self.runs_in_progress.inc()
        elif isinstance(event, RunFinished):
            result = event.result
            self.runs_in_progress.dec()
            self._labels(self.runs, result.strategy, result.status).inc()
            self._labels(self.run_duration, result.strategy).observe(result.duration_ms / 1000)
        elif isinstance(event, ToolFinished | ToolCallFinished):  # a run's event, or the loop's own
            record = event.record
            self._labels(self.tool_calls, record.name, "ok" if record.error is None else "error").inc()
            self._labels(self.tool_duration, record.name).observe(record.duration_ms / 1000)
        elif isinstance(event, ToolRefused | ToolCallRefused):
            self._labels(self.tool_calls, event.record.name, "refused").inc()

    async def sample(self, engine: Any, *, stale_s: float = 30.0) -> None:
        """Read the queue, the workers and pending approvals from the task database into their gauges."""
        depth = await engine.queue_depth()
        for priority in PRIORITIES:
            self.queue_depth.labels(priority).set(depth.get(("queued", priority), 0))
        self.tasks_waiting.set(sum(n for (status, _), n in depth.items() if status == "waiting"))
        self.tasks_running.set(sum(n for (status, _), n in depth.items() if status == "running"))
        now = time.time()
        workers = await engine.workers()
        self.workers.set(sum(1 for w in workers if w.status == "running" and now - w.heartbeat_at < stale_s))
        count, oldest = await engine.pending_approvals_summary()
        self.approvals_pending.set(count)
        self.approval_age.set(max(0.0, now - oldest) if oldest is not None else 0.0)
        self.sampled_at.set(now)

    async def sample_forever(self, engine: Any, every_s: float = 5.0) -> None:
        """`sample` every `every_s` seconds until cancelled (a failed read is retried at the next tick)."""
        while True:
            try:
                await self.sample(engine)
            except asyncio.CancelledError:
                raise
            except Exception:  # noqa: BLE001 - the database may be briefly unavailable; gauges keep their values
                pass
            await asyncio.sleep(every_s)

    def render(self, accept: str | None) -> tuple[bytes, str]:
        """The exposition (text or OpenMetrics, as `accept` asks) and its content type."""
        encoder, content_type = choose_encoder(accept or "")
        return encoder(self.registry), content_type


class MetricsMiddleware:
    """Counts and times every HTTP request by method, route template and status."""

    def __init__(self, app: ASGIApp, metrics: ApiMetrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500

        async def recording(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, recording)
        finally:
            route = scope.get("route")
            template = getattr(route, "path", None) or "unmatched"
            method = scope.get("method", "GET")
            self.metrics.http_requests.labels(method, template, str(status)).inc()
            self.metrics.http_latency.labels(method, template).observe(time.perf_counter() - started)
