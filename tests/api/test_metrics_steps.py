"""Finished steps are queued by the run observer and counted at the next collection: every reader of the
registry (a scrape, the alert rules, the dashboard) sees each step exactly once, and the queue stays bounded."""

from __future__ import annotations

from prometheus_client import generate_latest

from loomiq.api.metrics import ApiMetrics
from loomiq.models import Usage
from loomiq.observe import bind_ids
from loomiq.runtime.events import StepFinished
from loomiq.runtime.result import StepResult


def _step(agent: str = "a1", error: str | None = None) -> StepFinished:
    return StepFinished(run_id="r", result=StepResult("s1", agent, "worker", "x", Usage(12, 7), 0.5, 30.0,
                                                      error=error, model="m"))


def test_steps_are_counted_once_at_whatever_collection_comes_next() -> None:
    metrics = ApiMetrics(None)
    with bind_ids(tenant="acme"):
        metrics.observe(_step())
        metrics.observe(_step())
        metrics.observe(_step(error="boom"))
    labels = {"tenant": "acme", "agent": "a1", "provider": "unknown", "model": "m"}
    value = metrics.registry.get_sample_value
    assert value("loomiq_model_calls_total", {**labels, "outcome": "ok"}) == 2
    assert value("loomiq_model_calls_total", {**labels, "outcome": "failed"}) == 1
    assert value("loomiq_model_tokens_total", {**labels, "kind": "input"}) == 36
    assert value("loomiq_agent_tokens_total", {"agent": "a1", "kind": "output"}) == 21
    text = generate_latest(metrics.registry).decode()  # a second collection counts nothing again
    assert 'loomiq_model_calls_total{agent="a1",model="m",outcome="ok",provider="unknown",tenant="acme"} 2.0' in text
    assert value("loomiq_model_cost_usd_total", labels) == 1.5
    assert value("loomiq_model_call_duration_seconds_count", {"agent": "a1", "provider": "unknown", "model": "m"}) == 3


def test_the_queue_is_bounded_without_a_scrape() -> None:
    metrics = ApiMetrics(None)
    for _ in range(25_000):
        metrics.observe(_step())
    assert len(metrics._steps) < 10_000
    assert metrics.registry.get_sample_value(
        "loomiq_agent_calls_total", {"agent": "a1", "outcome": "ok"}) == 25_000
