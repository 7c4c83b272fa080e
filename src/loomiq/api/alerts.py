"""Alert rules evaluated inside the server, over its own metrics; firing and resolved alerts become events,
are listed at ``/api/alerts``, and are POSTed to the configured webhooks (retried until a 2xx).

A rule reads one series of the process's Prometheus registry (summed over the series that match its
labels), optionally divided by another (`per`), aggregated over a sliding window of samples taken every
`evaluate_every`:

- ``increase``: how much a counter grew over the window (with `per`: the ratio of the two increases, so
  ``loomiq_runs_total{status="failed"}`` per ``loomiq_runs_total`` is the error rate of the window);
- ``rate``: the increase per second;
- ``avg``, ``min``, ``max``, ``last``: of a gauge's samples in the window.

A rule fires when the aggregate compares true with its threshold, and resolves when it no longer does; a
window without data (no sample yet, or a ratio over no runs) neither fires nor resolves. Each transition is
one `AlertEvent` (``alert_firing`` or ``alert_resolved``) with a unique id, delivered to each webhook once
(the id travels as ``X-Loomiq-Alert-Id`` so a receiver can drop a retry's duplicate).

The evaluator is in-process state: each server evaluates its own metrics (counters are per process).
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import operator
import os
import re
import time
import uuid
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, Literal

import httpx2
from prometheus_client import CollectorRegistry

from ..config import SERIES_SELECTOR, AlertRuleSection, AlertsSection, AlertWebhookSection, parse_duration

log = logging.getLogger("loomiq.alerts")

_OPS: dict[str, Callable[[float, float], bool]] = {
    ">": operator.gt, ">=": operator.ge, "<": operator.lt, "<=": operator.le, "==": operator.eq, "!=": operator.ne,
}
SAMPLED_FROM_DATABASE = frozenset({
    "loomiq_queue_depth", "loomiq_tasks_waiting", "loomiq_tasks_running", "loomiq_workers_alive",
    "loomiq_approvals_pending", "loomiq_approval_oldest_pending_seconds",
})
"""Gauges that hold data only once `ApiMetrics.sample` has read the database."""
_SAMPLED_AT: tuple[str, dict[str, str]] = ("loomiq_sampled_timestamp_seconds", {})
MAX_EVENTS = 500
"""Transitions kept for ``/api/alerts`` (older ones are dropped)."""


def parse_selector(text: str) -> tuple[str, dict[str, str]]:
    """``name{a="x",b="y"}`` -> (name, {a: x, b: y})."""
    m = re.fullmatch(SERIES_SELECTOR, text)
    if m is None:
        raise ValueError(f"{text!r} is not a series selector")
    labels = dict(re.findall(r'([a-zA-Z_][a-zA-Z0-9_]*)\s*=\s*"([^"]*)"', m.group(2) or ""))
    return m.group(1), labels


def read_series(registry: CollectorRegistry, selector: tuple[str, dict[str, str]]) -> float | None:
    """The sum of every sample named like `selector` whose labels include its labels; None when no sample
    has the name yet."""
    name, labels = selector
    total, seen = 0.0, False
    for family in registry.collect():
        if not name.startswith(family.name):
            continue
        for sample in family.samples:
            if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items()):
                total += sample.value
                seen = True
    return total if seen else None


@dataclass(frozen=True, slots=True)
class AlertEvent:
    """A rule started or stopped firing."""

    id: str
    type: Literal["alert_firing", "alert_resolved"]
    rule: str
    severity: str
    value: float
    threshold: float
    operator: str
    metric: str
    window_s: float
    at: float
    description: str

    def to_json(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclass
class RuleState:
    """A rule, its window of samples and whether it fires."""

    rule: AlertRuleSection
    metric: tuple[str, dict[str, str]]
    per: tuple[str, dict[str, str]] | None
    window_s: float
    samples: deque[tuple[float, float, float | None]] = field(default_factory=deque)
    firing_since: float | None = None
    value: float | None = None

    def add(self, now: float, registry: CollectorRegistry) -> None:
        if self.metric[0] in SAMPLED_FROM_DATABASE and not read_series(registry, _SAMPLED_AT):
            return  # not read from the database yet: 0 would be a false "no worker"
        value = read_series(registry, self.metric)
        if value is None:
            value = 0.0 if self.rule.aggregation in ("increase", "rate") else None
        if value is None:
            return
        denominator = read_series(registry, self.per) if self.per is not None else None
        self.samples.append((now, value, denominator))
        # keep one sample at or before the window's start, so `increase` spans the whole window
        while len(self.samples) > 2 and self.samples[1][0] <= now - self.window_s:
            self.samples.popleft()

    def aggregate(self) -> float | None:
        if not self.samples:
            return None
        agg = self.rule.aggregation
        if agg in ("increase", "rate"):
            if len(self.samples) < 2:
                return None
            (t0, v0, d0), (t1, v1, d1) = self.samples[0], self.samples[-1]
            grown = max(0.0, v1 - v0)  # a counter reset (process restart) reads as no growth
            if self.per is not None:
                base = max(0.0, (d1 or 0.0) - (d0 or 0.0))
                return grown / base if base > 0 else None
            return grown if agg == "increase" else grown / max(t1 - t0, 1e-9)
        values = [v / d if self.per is not None and d else v for _, v, d in self.samples
                  if self.per is None or d]
        if not values:
            return None
        return {"avg": sum(values) / len(values), "min": min(values), "max": max(values), "last": values[-1]}[agg]


class AlertEvaluator:
    """Evaluates `rules` over `registry` every `every_s` seconds (`run`), or when told (`evaluate`, as the
    fake-clock tests do), and delivers transitions to the webhooks."""

    def __init__(self, config: AlertsSection, registry: CollectorRegistry, *, clock: Callable[[], float] = time.time,
                 transport: httpx2.AsyncBaseTransport | None = None, retry_base_s: float = 0.5) -> None:
        self.config = config
        self.registry = registry
        self.clock = clock
        self.every_s = parse_duration(config.evaluate_every)
        self.rules = [RuleState(r, parse_selector(r.metric), parse_selector(r.per) if r.per else None,
                                parse_duration(r.window)) for r in config.rules]
        self.events: deque[AlertEvent] = deque(maxlen=MAX_EVENTS)
        self.listeners: list[Callable[[AlertEvent], None]] = []
        self.retry_base_s = retry_base_s
        self._client = httpx2.AsyncClient(transport=transport, follow_redirects=False) if config.webhooks else None
        self._deliveries: set[asyncio.Task[None]] = set()
        self._last: dict[int, asyncio.Task[None]] = {}

    def evaluate(self) -> list[AlertEvent]:
        """Take one sample of every rule and return the transitions it caused (also recorded and sent)."""
        now = self.clock()
        out = []
        for state in self.rules:
            state.add(now, self.registry)
            value = state.aggregate()
            state.value = value
            if value is None:
                continue
            breached = _OPS[state.rule.operator](value, state.rule.threshold)
            if breached and state.firing_since is None:
                state.firing_since = now
                out.append(self._event(state, "alert_firing", value, now))
            elif not breached and state.firing_since is not None:
                state.firing_since = None
                out.append(self._event(state, "alert_resolved", value, now))
        for event in out:
            self.events.append(event)
            log.warning("alert %s %s: %s %s %s (value %.4g)", event.rule,
                        "firing" if event.type == "alert_firing" else "resolved", event.metric, event.operator,
                        event.threshold, event.value)
            for listener in self.listeners:
                listener(event)
            for i, hook in enumerate(self.config.webhooks):
                # In order per webhook: a transition waits for the delivery of the one before it.
                task = asyncio.get_running_loop().create_task(self._deliver(hook, event, self._last.get(i)))
                self._last[i] = task
                self._deliveries.add(task)
                task.add_done_callback(self._deliveries.discard)
        return out

    def _event(self, state: RuleState, kind: Literal["alert_firing", "alert_resolved"], value: float,
               now: float) -> AlertEvent:
        r = state.rule
        metric = r.metric + (f" / {r.per}" if r.per else "")
        return AlertEvent(uuid.uuid4().hex, kind, r.name, r.severity, value, r.threshold, r.operator,
                          f"{r.aggregation}({metric})", state.window_s, now, r.description)

    async def _deliver(self, hook: AlertWebhookSection, event: AlertEvent,
                       previous: asyncio.Task[None] | None) -> None:
        assert self._client is not None
        if previous is not None:
            await asyncio.gather(previous, return_exceptions=True)
        headers = {"X-Loomiq-Alert-Id": event.id}
        for name, env in hook.headers_env.items():
            value = os.environ.get(env)
            if value:
                headers[name] = value
        for attempt in range(1, hook.max_attempts + 1):
            try:
                response = await self._client.post(hook.url, json=event.to_json(), headers=headers,
                                                   timeout=hook.timeout_s)
                if 200 <= response.status_code < 300:
                    return
                problem = f"HTTP {response.status_code}"
            except httpx2.HTTPError as exc:
                problem = type(exc).__name__
            if attempt < hook.max_attempts:
                await asyncio.sleep(min(30.0, self.retry_base_s * 2 ** (attempt - 1)))
        log.warning("alert %s: webhook %s refused it %d times (last: %s); dropped", event.rule,
                    _host(hook.url), hook.max_attempts, problem)

    def current(self) -> list[dict[str, Any]]:
        """Every rule with its state, value and threshold."""
        return [{"rule": s.rule.name, "state": "firing" if s.firing_since is not None else "inactive",
                 "firing_since": s.firing_since, "severity": s.rule.severity, "value": s.value,
                 "operator": s.rule.operator, "threshold": s.rule.threshold,
                 "metric": s.rule.metric + (f" / {s.rule.per}" if s.rule.per else ""),
                 "aggregation": s.rule.aggregation, "window_s": s.window_s, "description": s.rule.description}
                for s in self.rules]

    async def run(self) -> None:
        """Evaluate every `every_s` seconds until cancelled."""
        while True:
            await asyncio.sleep(self.every_s)
            try:
                self.evaluate()
            except Exception:  # noqa: BLE001 - a bad sample must not stop alerting
                log.exception("evaluating alert rules failed")

    async def drain(self) -> None:
        """Wait for deliveries in flight (tests; shutdown)."""
        while self._deliveries:
            await asyncio.gather(*list(self._deliveries), return_exceptions=True)

    async def aclose(self) -> None:
        for task in list(self._deliveries):
            task.cancel()
        await asyncio.gather(*self._deliveries, return_exceptions=True)
        if self._client is not None:
            await self._client.aclose()


def _host(url: str) -> str:
    from urllib.parse import urlsplit

    return urlsplit(url).netloc  # never the path or query, which may carry a token


def recent(events: Iterable[AlertEvent], limit: int) -> list[dict[str, Any]]:
    return [e.to_json() for e in list(events)[-limit:]][::-1]
