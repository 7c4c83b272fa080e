"""The Prometheus exposition after a scripted workload: every series docs/operations.md documents is
present, parsed with prometheus_client's own parser, with counts that match what the runs did."""

from __future__ import annotations

import re
from pathlib import Path

import httpx2
from prometheus_client.parser import text_string_to_metric_families

from loomiq import Agent, AgentConfig, Orchestrator, RetryPolicy, ScriptedModel
from loomiq.api.metrics import MAX_TENANT_LABELS, ApiMetrics
from loomiq.models import Pricing
from loomiq.observe import bind_ids
from loomiq.runtime import RunFinished, StepFinished, StepResult, ToolFinished, ToolRefused
from loomiq.tools.records import ToolCallFinished, ToolCallRecord, ToolCallRefused

from .support import bearer, scripted_agents

DOCS = Path(__file__).parents[2] / "docs" / "operations.md"


def documented_series() -> set[str]:
    """The series named in the metrics table of docs/operations.md."""
    return set(re.findall(r"^\| `(loomiq_[a-z_]+)` \|", DOCS.read_text(), re.MULTILINE))


def samples(text: str) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    """(sample name, labels) -> value, as Prometheus would read the exposition."""
    out = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out[(s.name, frozenset(s.labels.items()))] = s.value
    return out


def family_names(text: str) -> set[str]:
    """The metric families the exposition declares (a labelled counter with no sample yet included), with
    counters under their exposed ``_total`` name."""
    names = set()
    for family in text_string_to_metric_families(text):
        names.add(family.name + "_total" if family.type == "counter" else family.name)
    return names


def total(values: dict[tuple[str, frozenset[tuple[str, str]]], float], name: str, **labels: str) -> float:
    want = set(labels.items())
    return sum(v for (n, ls), v in values.items() if n == name and want <= ls)


async def test_every_documented_series_is_exposed_with_the_runs_counts(client: httpx2.AsyncClient,
                                                                       orchestrator: Orchestrator) -> None:
    ids = []
    for prompt, strategy in (("Shard the database?", "parallel"), ("Cache the catalogue?", "consensus"),
                             ("Rename the service?", "single")):
        accepted = await client.post("/api/tasks", json={"prompt": prompt, "strategy": strategy})
        assert accepted.status_code == 202
        ids.append(accepted.json()["id"])
    steps, tokens_in, tokens_out = 0, 0, 0
    for task_id in ids:
        assert (await orchestrator.wait(task_id, timeout_s=15)).status == "completed"
        result = (await client.get(f"/api/tasks/{task_id}")).json()["result"]
        steps += len(result["steps"])
        tokens_in += result["usage"]["input_tokens"]
        tokens_out += result["usage"]["output_tokens"]

    text = (await client.get("/metrics", headers={"Authorization": ""})).text
    values = samples(text)
    documented = documented_series()
    assert len(documented) >= 20
    missing = documented - family_names(text)
    assert not missing, f"documented but not exposed: {sorted(missing)}"
    exposed = {n for n in family_names(text) if n.startswith("loomiq_") and not n.endswith("_created")}
    undocumented = exposed - documented
    assert not undocumented, f"exposed but not in docs/operations.md: {sorted(undocumented)}"

    assert total(values, "loomiq_model_calls_total", tenant="acme", outcome="ok") == steps > 0
    assert total(values, "loomiq_model_calls_total", outcome="failed") == 0
    assert total(values, "loomiq_model_tokens_total", tenant="acme", kind="input") == tokens_in > 0
    assert total(values, "loomiq_model_tokens_total", tenant="acme", kind="output") == tokens_out > 0
    assert total(values, "loomiq_model_calls_total", provider="scripted") == steps
    assert total(values, "loomiq_model_call_duration_seconds_count") == steps
    assert total(values, "loomiq_runs_total", status="completed") == 3
    assert total(values, "loomiq_run_duration_seconds_count") == 3
    for priority in ("critical", "high", "medium", "low"):
        assert values[("loomiq_queue_depth", frozenset({("priority", priority)}))] == 0
    assert values[("loomiq_tasks_running", frozenset())] == 0
    assert values[("loomiq_workers_alive", frozenset())] >= 1
    for agent in ("analyst", "critic", "pragmatist", "lead"):
        assert values[("loomiq_agent_breaker_state", frozenset({("agent", agent)}))] == 0
    assert total(values, "loomiq_http_requests_total", route="/api/tasks", method="POST", status="202") == 3


async def test_queue_depth_counts_queued_and_waiting_tasks_by_priority(tmp_path: Path) -> None:
    orch = Orchestrator(scripted_agents())
    await orch.open_engine(f"sqlite:///{tmp_path}/q.db")  # no worker: everything stays queued
    try:
        first = await orch.submit("a", strategy="single", priority="high")
        await orch.submit("b", strategy="single", priority="high")
        await orch.submit("c", strategy="single", priority="low")
        await orch.submit("d", strategy="single", after=[first.task.id])
        metrics = ApiMetrics(orch.registry)
        await metrics.sample(orch.engine)
        values = samples(metrics.render(None)[0].decode())
        depth = {p: values[("loomiq_queue_depth", frozenset({("priority", p)}))] for p in
                 ("critical", "high", "medium", "low")}
        assert depth == {"critical": 0, "high": 2, "medium": 0, "low": 1}
        assert values[("loomiq_tasks_waiting", frozenset())] == 1
        assert values[("loomiq_tasks_running", frozenset())] == 0
        assert values[("loomiq_workers_alive", frozenset())] == 0
    finally:
        await orch.aclose()


async def test_failovers_failures_and_cost_are_counted() -> None:
    flaky = Agent(AgentConfig("flaky", "scripted", "flaky-1", retry=RetryPolicy(max_attempts=1)),
                  ScriptedModel(failures={i: "server_error" for i in range(10)}, model_name="flaky-1"))
    priced = Agent(AgentConfig("priced", "scripted", "priced-1"),
                   ScriptedModel(model_name="priced-1", pricing=Pricing(0.001, 0.002)))
    orch = Orchestrator([flaky, priced])
    metrics = ApiMetrics(orch.registry)
    finished = []
    with bind_ids(tenant="acme"):
        async for event in orch.stream("Rename the service?", strategy="single", agents=["flaky", "priced"]):
            metrics.observe(event)
            if isinstance(event, RunFinished):
                finished.append(event.result)
    (result,) = finished
    values = samples(metrics.render(None)[0].decode())
    assert total(values, "loomiq_failovers_total", agent="flaky") == 1
    assert total(values, "loomiq_agent_failures_total", agent="flaky") == 1
    assert total(values, "loomiq_model_calls_total", agent="flaky", outcome="failed", tenant="acme") == 1
    assert total(values, "loomiq_model_calls_total", agent="priced", outcome="ok", provider="scripted",
                 model="priced-1") == 1
    cost = total(values, "loomiq_model_cost_usd_total", agent="priced", tenant="acme")
    assert cost > 0 and abs(cost - result.cost_usd) < 1e-12
    await orch.aclose()


def test_tool_calls_are_counted_by_tool_and_outcome() -> None:
    metrics = ApiMetrics()
    ok = ToolCallRecord(key="turn/0/call/0", turn=0, index=0, call_id="c1", name="python", arguments={},
                        status="finished", content="1", duration_ms=12.0)
    failed = ToolCallRecord(key="turn/0/call/1", turn=0, index=1, call_id="c2", name="python", arguments={},
                            status="finished", content="", error="boom", duration_ms=3.0)
    refused = ToolCallRecord(key="turn/0/call/2", turn=0, index=2, call_id="c3", name="shell", arguments={},
                             status="refused", content="", error="not allowed")
    for event in (ToolCallFinished(ok), ToolCallFinished(failed), ToolCallRefused(refused)):
        metrics.observe(event)
    values = samples(metrics.render(None)[0].decode())
    assert values[("loomiq_tool_calls_total", frozenset({("tool", "python"), ("outcome", "ok")}))] == 1
    assert values[("loomiq_tool_calls_total", frozenset({("tool", "python"), ("outcome", "error")}))] == 1
    assert values[("loomiq_tool_calls_total", frozenset({("tool", "shell"), ("outcome", "refused")}))] == 1
    assert values[("loomiq_tool_call_duration_seconds_count", frozenset({("tool", "python")}))] == 2


def test_a_runs_tool_events_are_counted() -> None:
    metrics = ApiMetrics()
    ok = ToolCallRecord(key="s/turn/0/call/0", turn=0, index=0, call_id="c1", name="add", arguments={},
                        status="finished", content="2", duration_ms=1.0)
    refused = ToolCallRecord(key="s/turn/0/call/1", turn=0, index=1, call_id="c2", name="wipe", arguments={},
                             status="refused", content="", error="not allowed")
    metrics.observe(ToolFinished("run", "s", "a", ok))
    metrics.observe(ToolRefused("run", "s", "a", refused))
    values = samples(metrics.render(None)[0].decode())
    assert values[("loomiq_tool_calls_total", frozenset({("tool", "add"), ("outcome", "ok")}))] == 1
    assert values[("loomiq_tool_calls_total", frozenset({("tool", "wipe"), ("outcome", "refused")}))] == 1


def test_tenant_labels_are_bounded() -> None:
    metrics = ApiMetrics()
    for i in range(MAX_TENANT_LABELS + 50):
        with bind_ids(tenant=f"t{i}"):
            metrics.observe(StepFinished("r", StepResult("k", "a", "r", output="x", model="m")))
    values = samples(metrics.render(None)[0].decode())
    tenants = {dict(ls)["tenant"] for (n, ls) in values if n == "loomiq_model_calls_total"}
    assert len(tenants) == MAX_TENANT_LABELS + 1 and "other" in tenants
    assert total(values, "loomiq_model_calls_total", tenant="other") == 50


async def test_another_tenants_runs_are_labelled_as_theirs(client: httpx2.AsyncClient,
                                                            orchestrator: Orchestrator) -> None:
    accepted = await client.post("/api/tasks", json={"prompt": "Shard?", "strategy": "single"},
                                 headers=bearer("operator", "globex"))
    assert (await orchestrator.wait(accepted.json()["id"], timeout_s=15)).status == "completed"
    values = samples((await client.get("/metrics", headers={"Authorization": ""})).text)
    assert total(values, "loomiq_model_calls_total", tenant="globex") == 1
    assert total(values, "loomiq_model_calls_total", tenant="acme") == 0


async def test_pending_approvals_and_their_age_are_sampled(tmp_path: Path) -> None:
    from loomiq.engine import WorkflowRuns

    flow = """
name: gate
nodes:
  ask:
    kind: approval
    message: "Go?"
    approvers: {roles: [admin]}
"""
    orch = Orchestrator(scripted_agents())
    await orch.open_engine(f"sqlite:///{tmp_path}/a.db")
    try:
        metrics = ApiMetrics(orch.registry)
        await metrics.sample(orch.engine)
        values = samples(metrics.render(None)[0].decode())
        assert values[("loomiq_approvals_pending", frozenset())] == 0
        assert values[("loomiq_approval_oldest_pending_seconds", frozenset())] == 0
        runs = WorkflowRuns(orch.engine)
        for tenant in ("acme", "globex"):
            await runs.start(flow, tenant_id=tenant)
        await metrics.sample(orch.engine)
        values = samples(metrics.render(None)[0].decode())
        assert values[("loomiq_approvals_pending", frozenset())] == 2
        assert values[("loomiq_approval_oldest_pending_seconds", frozenset())] >= 0
    finally:
        await orch.aclose()
