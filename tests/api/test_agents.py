"""``/api/agents``, ``/api/health``, ``/api/ready`` and ``/metrics``."""

from __future__ import annotations

import httpx2

from loomiq import Orchestrator

from .support import bearer
from .test_problems import assert_problem

NEW_AGENT = {"id": "writer", "provider": "scripted", "model": "scripted", "capabilities": ["writing"],
             "scripted": {"replies": ["A scripted draft."]}}


async def test_list_agents_shows_state_capabilities_and_statistics(client: httpx2.AsyncClient) -> None:
    agents = (await client.get("/api/agents", headers=bearer("viewer", "any-tenant"))).json()["agents"]
    assert [a["id"] for a in agents] == ["analyst", "critic", "pragmatist", "lead"]
    first = agents[0]
    for field in ("state", "capabilities", "success_rate", "mean_latency_ms", "input_tokens", "output_tokens",
                  "cost_usd", "offline", "enabled"):
        assert field in first
    assert first["state"] == "idle" and first["offline"] is True


async def test_statistics_move_after_a_run(client: httpx2.AsyncClient) -> None:
    await client.post("/v1/chat/completions", json={"model": "analyst", "messages": [{"role": "user", "content": "q"}]})
    analyst = (await client.get("/api/agents/analyst")).json()
    assert analyst["calls"] == 1 and analyst["output_tokens"] > 0 and analyst["success_rate"] == 1.0


async def test_register_patch_disable_and_remove(client: httpx2.AsyncClient, orchestrator: Orchestrator) -> None:
    created = await client.post("/api/agents", json=NEW_AGENT)
    assert created.status_code == 201, created.text
    assert created.headers["location"] == "/api/agents/writer"
    assert created.json()["capabilities"] == ["writing"]
    assert "writer" in orchestrator.registry

    answer = await client.post("/v1/chat/completions", json={"model": "writer", "messages": [
        {"role": "user", "content": "Draft it"}]})
    assert answer.json()["choices"][0]["message"]["content"] == "A scripted draft."

    patched = await client.patch("/api/agents/writer", json={"capabilities": ["writing", "review"], "timeout_s": 5})
    assert patched.status_code == 200, patched.text
    assert patched.json()["capabilities"] == ["review", "writing"] and patched.json()["timeout_s"] == 5
    assert patched.json()["calls"] == 1  # statistics carried over
    assert orchestrator.registry.get("writer").config.timeout_s == 5

    disabled = (await client.patch("/api/agents/writer", json={"enabled": False})).json()
    assert disabled["enabled"] is False and disabled["state"] == "offline"
    assert "writer" not in [a.id for a in orchestrator.registry.rank()]

    assert (await client.delete("/api/agents/writer")).status_code == 204
    assert "writer" not in orchestrator.registry
    assert_problem(await client.get("/api/agents/writer"), 404, "not-found")
    assert_problem(await client.delete("/api/agents/writer"), 404, "not-found")


async def test_register_refusals(client: httpx2.AsyncClient) -> None:
    dup = await client.post("/api/agents", json={**NEW_AGENT, "id": "analyst"})
    assert "exists" in assert_problem(dup, 409, "conflict")["detail"]
    bad = await client.post("/api/agents", json={**NEW_AGENT, "provider": "skynet"})
    assert assert_problem(bad, 422, "invalid-request")["errors"][0]["field"] == "provider"
    env = await client.post("/api/agents", json={**NEW_AGENT, "provider": "openai", "model": "gpt",
                                                  "api_key_env": "LOOMIQ_UNSET_TEST_KEY"})
    assert assert_problem(env, 422, "invalid-request")["detail"].startswith("api_key_env")
    # A variable the deployment does not allow the tenant (test_tenant_agents.py has the allowed ones).
    missing = await client.post("/api/agents", json={**NEW_AGENT, "provider": "openai", "model": "gpt",
                                                      "api_key_env": "NO_SUCH_VARIABLE_FOR_TEST"})
    detail = assert_problem(missing, 422, "invalid-request")["detail"]
    assert "NO_SUCH_VARIABLE_FOR_TEST is not a secret this deployment lets tenant 'acme' use" in detail


async def test_patch_refusals(client: httpx2.AsyncClient) -> None:
    out_of_range = await client.patch("/api/agents/analyst", json={"temperature": 7})
    body = assert_problem(out_of_range, 422, "invalid-request")
    assert body["errors"][0]["field"] == "temperature"
    model_change = await client.patch("/api/agents/analyst", json={"model": "gpt-5"})
    assert assert_problem(model_change, 422, "invalid-request")["errors"][0]["field"] == "model"
    assert_problem(await client.patch("/api/agents/ghost", json={"name": "x"}), 404, "not-found")


async def test_deployment_agents_are_shared_but_only_admins_change_them(client: httpx2.AsyncClient) -> None:
    other_tenant = bearer("viewer", "globex")
    assert len((await client.get("/api/agents", headers=other_tenant)).json()["agents"]) == 4
    assert_problem(await client.post("/api/agents", json=NEW_AGENT, headers=bearer("operator")), 403, "forbidden")
    assert_problem(await client.delete("/api/agents/analyst", headers=bearer("operator")), 403, "forbidden")


async def test_health_ready_and_metrics_need_no_credentials(client: httpx2.AsyncClient) -> None:
    await client.post("/v1/chat/completions", json={"model": "consensus", "messages": [
        {"role": "user", "content": "Should we shard the database?"}]})
    anonymous = {"Authorization": ""}
    health = (await client.get("/api/health", headers=anonymous)).json()
    assert set(health["components"]) == {"agents", "database", "workers", "mcp_servers", "sandbox"}
    assert health["components"]["agents"]["status"] == "ok"
    assert health["components"]["database"]["status"] == "ok"
    ready = (await client.get("/api/ready", headers=anonymous)).json()
    assert ready["status"] == "ready" and ready["checks"]["usable_agents"] == 4
    assert ready["components"]["workers"]["details"]["embedded"] is True

    metrics = await client.get("/metrics", headers=anonymous)
    assert metrics.headers["content-type"].startswith("text/plain")
    text = metrics.text
    assert 'loomiq_runs_total{status="completed",strategy="consensus"} 1.0' in text
    assert 'loomiq_agent_calls_total{agent="lead",outcome="ok"} 1.0' in text
    assert 'loomiq_http_requests_total{method="POST",route="/v1/chat/completions",status="200"} 1.0' in text
    assert 'route="/api/agents/{agent_id}"' not in text  # templates, not raw paths
    assert "loomiq_runs_in_progress 0.0" in text


async def test_not_ready_without_a_usable_agent(client: httpx2.AsyncClient) -> None:
    for ident in ("analyst", "critic", "pragmatist", "lead"):
        await client.patch(f"/api/agents/{ident}", json={"enabled": False})
    body = assert_problem(await client.get("/api/ready"), 503, "unavailable")
    assert body["checks"]["usable_agents"] == 0


async def test_metrics_count_the_runs_of_this_servers_workers(client: httpx2.AsyncClient,
                                                              orchestrator: Orchestrator) -> None:
    ids = []
    for prompt in ("Should we shard the database?", "Should we cache the catalogue?"):
        accepted = await client.post("/api/tasks", json={"prompt": prompt, "strategy": "parallel"})
        assert accepted.status_code == 202
        ids.append(accepted.json()["id"])
    for task_id in ids:
        assert (await orchestrator.wait(task_id, timeout_s=10)).status == "completed"
    text = (await client.get("/metrics", headers={"Authorization": ""})).text
    assert 'loomiq_runs_total{status="completed",strategy="parallel"} 2.0' in text
    calls = sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
                if line.startswith("loomiq_agent_calls_total{") and 'outcome="ok"' in line)
    steps = 0
    for task_id in ids:
        steps += len((await client.get(f"/api/tasks/{task_id}")).json()["result"]["steps"])
    assert calls == steps > 0
    assert "loomiq_runs_in_progress 0.0" in text
