"""``GET /api/stats``: counts by status and strategy, duration, usage and cost, per tenant."""

from __future__ import annotations

import httpx2

from loomiq import Orchestrator

from .support import bearer


async def test_stats_count_the_callers_tenant_only(client: httpx2.AsyncClient, orchestrator: Orchestrator) -> None:
    ids = []
    for body in ({"prompt": "Should we shard?", "strategy": "consensus"},
                 {"prompt": "Should we cache?", "strategy": "consensus"},
                 {"prompt": "Name a colour", "strategy": "single"}):
        response = await client.post("/api/tasks", json=body)
        assert response.status_code == 202
        ids.append(response.json()["id"])
    for task_id in ids:
        assert (await orchestrator.wait(task_id, timeout_s=10)).status == "completed"
    stats = (await client.get("/api/stats", headers=bearer("viewer", "acme"))).json()
    assert stats["tenant"] == "acme" and stats["total"] == 3
    assert stats["by_status"] == {"completed": 3}
    assert stats["by_strategy"]["consensus"]["count"] == 2
    assert stats["by_strategy"]["single"] == {"count": 1, "by_status": {"completed": 1}, "cost_usd": 0.0}
    assert stats["mean_duration_s"] is not None and stats["mean_duration_s"] >= 0
    tasks = [(await client.get(f"/api/tasks/{i}")).json() for i in ids]
    assert stats["usage"]["total_tokens"] == sum(t["usage"]["total_tokens"] for t in tasks) > 0
    other = (await client.get("/api/stats", headers=bearer("admin", "globex"))).json()
    assert other["total"] == 0 and other["by_status"] == {} and other["usage"]["total_tokens"] == 0


async def test_stats_need_credentials(client: httpx2.AsyncClient) -> None:
    response = await client.get("/api/stats", headers={"Authorization": "Bearer nonsense"})
    assert response.status_code == 401
    assert response.headers["content-type"].startswith("application/problem+json")
