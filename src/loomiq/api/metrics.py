"""Prometheus metrics of the HTTP service.

HTTP metrics come from a small ASGI middleware (labelled by route template, not raw path, to keep
cardinality bounded). Run and agent metrics are fed by consuming the runs' events (`observe`), the
same events the streams send; nothing here reaches into strategies or agents.
"""

from __future__ import annotations

import time

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.exposition import choose_encoder
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from ..runtime import RunEvent, RunFinished, RunStarted, StepFinished

_LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120)


class ApiMetrics:
    """The service's metrics, in a registry of their own (so several apps in one process, as in
    tests, never collide)."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.http_requests = Counter(
            "loomiq_http_requests", "HTTP requests answered, by route template and status.",
            ["method", "route", "status"], registry=r,
        )
        self.http_latency = Histogram(
            "loomiq_http_request_duration_seconds", "Time to answer an HTTP request (streams: until closed).",
            ["method", "route"], buckets=_LATENCY_BUCKETS, registry=r,
        )
        self.runs = Counter("loomiq_runs", "Runs finished, by strategy and status.", ["strategy", "status"], registry=r)
        self.runs_in_progress = Gauge("loomiq_runs_in_progress", "Runs started and not finished.", registry=r)
        self.run_duration = Histogram(
            "loomiq_run_duration_seconds", "Duration of finished runs.", ["strategy"], buckets=_LATENCY_BUCKETS,
            registry=r,
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

    def observe(self, event: RunEvent) -> None:
        """Update run and agent metrics from one run event."""
        if isinstance(event, RunStarted):
            self.runs_in_progress.inc()
        elif isinstance(event, StepFinished):
            step = event.result
            for agent, _error in step.failed_over_from:
                self.agent_failures.labels(agent).inc()
                self.agent_calls.labels(agent, "failed").inc()
            if step.ok:
                self.agent_calls.labels(step.agent, "ok").inc()
            else:
                self.agent_failures.labels(step.agent).inc()
                self.agent_calls.labels(step.agent, "failed").inc()
            if step.usage.input_tokens:
                self.agent_tokens.labels(step.agent, "input").inc(step.usage.input_tokens)
            if step.usage.output_tokens:
                self.agent_tokens.labels(step.agent, "output").inc(step.usage.output_tokens)
            if step.cost_usd:
                self.agent_cost.labels(step.agent).inc(step.cost_usd)
        elif isinstance(event, RunFinished):
            result = event.result
            self.runs_in_progress.dec()
            self.runs.labels(result.strategy, result.status).inc()
            self.run_duration.labels(result.strategy).observe(result.duration_ms / 1000)

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
