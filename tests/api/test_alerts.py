"""Alert rules inside loomiq: fire and resolve on a fake clock, each transition reaches the webhook once
(through a failing first attempt), and ``/api/alerts`` lists them."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx2
import pytest

from loomiq import Orchestrator
from loomiq.api import Settings, create_app
from loomiq.api.alerts import AlertEvaluator
from loomiq.api.metrics import ApiMetrics
from loomiq.config import AlertsSection, ConfigError, parse_config

from .support import bearer, scripted_agents, serving


class Hook:
    """A webhook receiver on 127.0.0.1 that answers 503 to the first attempt of every alert id."""

    def __init__(self) -> None:
        self.received: list[dict[str, object]] = []
        self.attempts: dict[str, int] = {}
        hook = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - http.server's name
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                ident = self.headers["X-Loomiq-Alert-Id"]
                hook.attempts[ident] = hook.attempts.get(ident, 0) + 1
                if hook.attempts[ident] == 1:
                    self.send_response(503)
                else:
                    assert body["id"] == ident
                    assert self.headers.get("Authorization") == "Bearer hook-secret"
                    hook.received.append(body)
                    self.send_response(204)
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()


@pytest.fixture
def hook(monkeypatch: pytest.MonkeyPatch) -> Iterator[Hook]:
    monkeypatch.setenv("ALERT_HOOK_AUTH", "Bearer hook-secret")
    h = Hook()
    yield h
    h.server.shutdown()
    h.server.server_close()


async def test_an_error_rate_rule_fires_and_resolves_once_each(hook: Hook) -> None:
    metrics = ApiMetrics()
    now = [1000.0]
    config = AlertsSection.model_validate({
        "evaluate_every": "15s",
        "rules": [{"name": "HighErrorRate", "metric": 'loomiq_runs_total{status="failed"}', "per": "loomiq_runs_total",
                   "aggregation": "increase", "window": "5m", "operator": ">", "threshold": 0.10,
                   "severity": "critical", "description": "more than 10% of runs failed over 5 minutes"}],
        "webhooks": [{"url": hook.url, "headers_env": {"Authorization": "ALERT_HOOK_AUTH"}, "max_attempts": 3}],
    })
    evaluator = AlertEvaluator(config, metrics.registry, clock=lambda: now[0], retry_base_s=0.01)
    runs = metrics.runs
    try:
        assert evaluator.evaluate() == []  # one sample: no window yet
        runs.labels("single", "completed").inc(10)
        runs.labels("single", "failed").inc(3)
        now[0] += 60
        (firing,) = evaluator.evaluate()
        assert firing.type == "alert_firing" and firing.rule == "HighErrorRate" and abs(firing.value - 3 / 13) < 1e-9
        now[0] += 60
        runs.labels("single", "failed").inc(1)
        assert evaluator.evaluate() == []  # still firing: no second event
        assert evaluator.current()[0]["state"] == "firing"
        now[0] += 280  # the first 3 failures leave the 5-minute window; the 4th (at +120 s) is inside it
        runs.labels("single", "completed").inc(50)
        (resolved,) = evaluator.evaluate()
        assert resolved.type == "alert_resolved" and abs(resolved.value - 1 / 51) < 1e-9
        now[0] += 60
        assert evaluator.evaluate() == []
        await evaluator.drain()
    finally:
        await evaluator.aclose()
    assert [e["type"] for e in hook.received] == ["alert_firing", "alert_resolved"]
    assert all(n == 2 for n in hook.attempts.values())  # the 503, then the delivery; never a third
    assert hook.received[0]["severity"] == "critical" and hook.received[0]["threshold"] == 0.10


async def test_gauge_rules_and_windows_without_data() -> None:
    metrics = ApiMetrics()
    now = [0.0]
    config = AlertsSection.model_validate({"rules": [
        {"name": "Backlog", "metric": 'loomiq_queue_depth{priority="high"}', "aggregation": "min", "window": "1m",
         "operator": ">=", "threshold": 100},
        {"name": "NoWorkers", "metric": "loomiq_workers_alive", "aggregation": "max", "window": "1m",
         "operator": "<", "threshold": 1},
        {"name": "Failovers", "metric": "loomiq_failovers_total", "aggregation": "rate", "window": "1m",
         "operator": ">", "threshold": 1},
    ]})
    evaluator = AlertEvaluator(config, metrics.registry, clock=lambda: now[0])
    assert evaluator.evaluate() == []  # the gauges were never read from the database: no data, no alert
    metrics.queue_depth.labels("high").set(150)
    metrics.workers.set(0)
    metrics.sampled_at.set(15)
    now[0] += 15
    fired = {e.rule for e in evaluator.evaluate()}
    assert fired == {"Backlog", "NoWorkers"}
    metrics.queue_depth.labels("high").set(10)  # min over the window drops below at once
    metrics.workers.set(2)
    now[0] += 15
    # min over the window is now 10: Backlog resolves at once; max(0, 2) of NoWorkers is no longer < 1 either
    assert {(e.rule, e.type) for e in evaluator.evaluate()} == {("Backlog", "alert_resolved"),
                                                                ("NoWorkers", "alert_resolved")}
    now[0] += 61
    evaluator.evaluate()
    states = {a["rule"]: a["state"] for a in evaluator.current()}
    assert states == {"Backlog": "inactive", "NoWorkers": "inactive", "Failovers": "inactive"}
    assert [e.type for e in evaluator.events if e.rule == "NoWorkers"] == ["alert_firing", "alert_resolved"]
    await evaluator.aclose()


@pytest.mark.parametrize(("rule", "fragment"), [
    ({"name": "x", "metric": "not a series", "threshold": 1}, "not a series like"),
    ({"name": "x", "metric": "loomiq_runs_total", "threshold": 1, "window": "soon"}, "not a duration"),
    ({"name": "x", "metric": "loomiq_runs_total", "threshold": 1, "operator": "=>"}, "operator"),
    ({"name": "x", "metric": "loomiq_runs_total"}, "threshold"),
])
def test_bad_rules_are_one_line_config_errors(tmp_path: Path, rule: dict[str, object], fragment: str) -> None:
    config = tmp_path / "loomiq.yaml"
    config.write_text(json.dumps({"agents": [{"id": "a", "provider": "scripted", "model": "m"}],
                                  "alerts": {"rules": [rule]}}))
    with pytest.raises(ConfigError, match=fragment) as info:
        parse_config(config)
    assert "\n" not in str(info.value)


async def test_api_lists_rules_and_transitions(tmp_path: Path, settings: Settings) -> None:
    config = tmp_path / "loomiq.yaml"
    config.write_text(json.dumps({
        "agents": [{"id": "a", "provider": "scripted", "model": "m"}],
        "alerts": {"evaluate_every": "50ms", "rules": [
            {"name": "AnyRequest", "metric": "loomiq_http_requests_total", "aggregation": "last",
             "operator": ">", "threshold": 0, "severity": "info"}]},
    }))
    app = create_app(settings.with_(config_path=config), orchestrator=Orchestrator(scripted_agents()))
    async with serving(app) as client:
        assert (await client.get("/api/alerts", headers={"Authorization": ""})).status_code == 401
        body: dict[str, object] = {}
        for _ in range(100):
            body = (await client.get("/api/alerts", headers=bearer("viewer"))).json()
            if body["events"]:
                break
            import asyncio

            await asyncio.sleep(0.05)
        assert body["configured"] is True
        (alert,) = body["alerts"]  # type: ignore[misc]
        assert alert["rule"] == "AnyRequest" and alert["state"] == "firing"
        assert body["events"][0]["type"] == "alert_firing"  # type: ignore[index]


async def test_no_rules_configured(client: httpx2.AsyncClient) -> None:
    assert (await client.get("/api/alerts")).json() == {"configured": False, "alerts": [], "events": []}
