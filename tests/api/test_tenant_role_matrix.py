"""Every route of the OpenAPI document that takes an id, for two tenants and three roles.

The matrix below says, per route, the least role it needs and whether the resource belongs to a
tenant. The test reads the routes from ``/openapi.json``: a route with an id that is missing from the
matrix fails the test, so a new route cannot ship without its tenancy and role decided.
"""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import httpx2
import pytest

from loomiq import Agent, AgentConfig, Orchestrator, ScriptedModel

from .support import bearer

ROLES = ["viewer", "operator", "admin"]
OWNER = "acme"


@dataclass(frozen=True)
class Route:
    """What a route needs: the least role, whether its resource is a tenant's, and how to make one."""

    needed: str
    tenant_scoped: bool
    make: Callable[[httpx2.AsyncClient, Orchestrator], Awaitable[str]]
    body: dict[str, Any] | None = None
    ok: tuple[int, ...] = (200,)


async def completed_task(client: httpx2.AsyncClient, orch: Orchestrator) -> str:
    response = await client.post("/api/tasks", json={"prompt": "Name a colour", "strategy": "single"},
                                 headers=bearer("admin", OWNER))
    task_id = response.json()["id"]
    assert (await orch.wait(task_id, timeout_s=10)).status == "completed"
    return task_id


async def running_task(client: httpx2.AsyncClient, orch: Orchestrator) -> str:
    if "slow" not in orch.registry:
        orch.add_agent(Agent(AgentConfig("slow", "scripted", "s", capabilities=frozenset({"slow-only"})),
                             ScriptedModel(latency_s=30)))
    response = await client.post("/api/tasks", json={"prompt": "Take your time", "strategy": "single",
                                                     "agents": ["slow"]}, headers=bearer("admin", OWNER))
    return response.json()["id"]


async def fresh_agent(client: httpx2.AsyncClient, orch: Orchestrator) -> str:
    agent_id = f"temp{len(orch.registry)}"
    response = await client.post("/api/agents", json={"id": agent_id, "provider": "scripted", "model": "s"},
                                 headers=bearer("admin", OWNER))
    assert response.status_code == 201, response.text
    return agent_id


async def fresh_key(client: httpx2.AsyncClient, orch: Orchestrator) -> str:
    response = await client.post("/api/keys", json={"role": "viewer"}, headers=bearer("admin", OWNER))
    assert response.status_code == 201, response.text
    return response.json()["key_id"]


async def fresh_document(client: httpx2.AsyncClient, orch: Orchestrator) -> str:
    response = await client.post("/api/kb/documents", json={
        "source": "runbook.md", "text": f"Restart worker {uuid.uuid4().hex} with loomiq worker."},
        headers=bearer("admin", OWNER))
    assert response.status_code in (200, 201), response.text
    return str(response.json()["id"])


async def existing_agent(client: httpx2.AsyncClient, orch: Orchestrator) -> str:
    return "analyst"


GATE = """\
name: gate
nodes:
  ask: {kind: approval, message: "Go?", approvers: {roles: [viewer]}}
"""
"""A workflow whose run waits at once on an approval any role may answer (viewer is in every role)."""


async def gate_workflow(client: httpx2.AsyncClient, orch: Orchestrator) -> str:
    response = await client.post("/api/workflows", json={"source": GATE}, headers=bearer("admin", OWNER))
    assert response.status_code == 201, response.text
    return "gate"


async def waiting_run(client: httpx2.AsyncClient, orch: Orchestrator) -> str:
    await gate_workflow(client, orch)
    response = await client.post("/api/workflows/gate/runs", json={}, headers=bearer("admin", OWNER))
    assert response.status_code == 202, response.text
    return str(response.json()["id"])


async def ended_run(client: httpx2.AsyncClient, orch: Orchestrator) -> str:
    run_id = await waiting_run(client, orch)
    response = await client.post(f"/api/workflow-runs/{run_id}/cancel", headers=bearer("admin", OWNER))
    assert response.json()["status"] == "cancelled", response.text
    return run_id


async def pending_approval(client: httpx2.AsyncClient, orch: Orchestrator) -> str:
    return f"{await waiting_run(client, orch)}.ask.1"


MATRIX: dict[tuple[str, str], Route] = {
    ("GET", "/api/agents/{agent_id}"): Route("viewer", False, existing_agent),
    # An agent registered over the API is its tenant's (deployment agents: test_tenant_agents.py).
    ("PATCH", "/api/agents/{agent_id}"): Route("admin", True, fresh_agent, {"name": "Renamed"}),
    ("DELETE", "/api/agents/{agent_id}"): Route("admin", True, fresh_agent, ok=(204,)),
    ("DELETE", "/api/keys/{key_id}"): Route("admin", True, fresh_key, ok=(204,)),
    ("DELETE", "/api/kb/documents/{document_id}"): Route("operator", True, fresh_document, ok=(204,)),
    ("GET", "/api/tasks/{task_id}"): Route("viewer", True, completed_task),
    ("POST", "/api/tasks/{task_id}/cancel"): Route("operator", True, running_task, ok=(200, 202)),
    ("POST", "/api/tasks/{task_id}/collaborate"): Route("operator", True, completed_task, {}, ok=(202,)),
    ("GET", "/api/tasks/{task_id}/events"): Route("viewer", True, completed_task),
    ("GET", "/v1/models/{model_id}"): Route("viewer", False, existing_agent),
    ("GET", "/api/workflows/{name}"): Route("viewer", True, gate_workflow),
    ("POST", "/api/workflows/{name}/runs"): Route("operator", True, gate_workflow, {}, ok=(202,)),
    ("GET", "/api/workflow-runs/{run_id}"): Route("viewer", True, waiting_run),
    ("GET", "/api/workflow-runs/{run_id}/events"): Route("viewer", True, ended_run),
    ("POST", "/api/workflow-runs/{run_id}/pause"): Route("operator", True, waiting_run),
    ("POST", "/api/workflow-runs/{run_id}/resume"): Route("operator", True, waiting_run),
    ("POST", "/api/workflow-runs/{run_id}/cancel"): Route("operator", True, waiting_run),
    ("GET", "/api/approvals/{approval_id}"): Route("viewer", True, pending_approval),
    # Any role may call it; whether the caller is an approver is the approval's (403 without required_role).
    ("POST", "/api/approvals/{approval_id}"): Route("viewer", True, pending_approval, {"decision": "approve"}),
}


async def test_every_route_with_an_id_is_in_the_matrix(client: httpx2.AsyncClient) -> None:
    schema = (await client.get("/openapi.json")).json()
    with_ids = {(method.upper(), path) for path, item in schema["paths"].items() if "{" in path for method in item}
    assert with_ids == set(MATRIX), f"routes missing from the matrix: {sorted(with_ids - set(MATRIX))}"


@pytest.mark.parametrize("route_key", list(MATRIX), ids=lambda k: f"{k[0]} {k[1]}")
@pytest.mark.parametrize("tenant", [OWNER, "globex"])
@pytest.mark.parametrize("role", ROLES)
async def test_role_and_tenant(client: httpx2.AsyncClient, orchestrator: Orchestrator, route_key: tuple[str, str],
                               tenant: str, role: str) -> None:
    method, template = route_key
    route = MATRIX[route_key]
    resource = await route.make(client, orchestrator)
    path = template.replace(template[template.index("{"):template.index("}") + 1], resource)
    response = await client.request(method, path, json=route.body, headers=bearer(role, tenant))  # type: ignore[arg-type]
    if ROLES.index(role) < ROLES.index(route.needed):
        assert response.status_code == 403, response.text
        assert response.json()["required_role"] == route.needed
    elif route.tenant_scoped and tenant != OWNER:
        assert response.status_code == 404, response.text  # another tenant's id does not exist for the caller
        assert response.headers["content-type"].startswith("application/problem+json")
    else:
        assert response.status_code in route.ok, response.text
