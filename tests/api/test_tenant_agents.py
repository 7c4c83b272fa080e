"""Agents and tenants (issue 10, item 1): an agent registered over the API belongs to its tenant
(others never see, change or use it), the deployment's agents are shared and only deployment admins
change them, and an API agent reaches only the secrets and hosts the deployment allows its tenant.

The matrix is generated: every tenant (the agent's owner, another tenant, the deployment admins'
tenant) x every role x every route that shows, changes or uses an agent (and the keys routes), on
SQLite and PostgreSQL; the expected answer comes from the rules, one place below.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx2
import pytest

from loomiq import Orchestrator
from loomiq.api import Settings, create_app
from tests.factories import NO_RETRY, make_agent

from ..engine.conftest import database
from .support import SECRET, bearer

OWNER, OTHER, DEPLOYMENT = "acme", "globex", "ops"
TENANTS = [OWNER, OTHER, DEPLOYMENT]
ROLES = ["viewer", "operator", "admin"]
ACME_KEY = "ACME_TEST_PROVIDER_KEY"

CONFIG = f"""
agents:
  - {{id: shared, provider: scripted, model: scripted, capabilities: [general]}}
secrets:
  tenants:
    {OWNER}: [{ACME_KEY}, ACME_UNSET_TEST_KEY]
api_agents:
  allowed_hosts: [allowed.internal.example]
"""


@dataclass
class Service:
    client: httpx2.AsyncClient
    orch: Orchestrator


async def _service(url: str, tmp_path: Path, config: str = CONFIG) -> AsyncIterator[Service]:
    path = tmp_path / "loomiq.yaml"
    path.write_text(config, encoding="utf-8")
    settings = Settings(jwt_secret=SECRET, database_url=url, config_path=path,
                        keys_path=None if url.startswith("postgres") else tmp_path / "keys.db",
                        rate_per_s=1e6, rate_burst=1_000_000, sse_ping_s=0, worker_drain_s=0.3,
                        agent_admin_tenants=(DEPLOYMENT,))
    orch = Orchestrator.from_config(path)
    app = create_app(settings, orchestrator=orch)
    async with app.router.lifespan_context(app), httpx2.AsyncClient(
        transport=httpx2.ASGITransport(app=app), base_url="http://testserver"
    ) as client:
        yield Service(client, orch)


@pytest.fixture(params=["sqlite", "postgresql"])
async def service(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Service]:
    async with database(request.param, tmp_path) as url:
        async for s in _service(url, tmp_path):
            yield s


@pytest.fixture
async def sqlite_service(tmp_path: Path) -> AsyncIterator[Service]:
    async with database("sqlite", tmp_path) as url:
        async for s in _service(url, tmp_path):
            yield s


async def register(s: Service, agent_id: str, tenant: str = OWNER, **fields: Any) -> httpx2.Response:
    body = {"id": agent_id, "provider": "scripted", "model": "scripted", "capabilities": [f"{agent_id}-cap"],
            "scripted": {"replies": [f"{agent_id} answers"]}, **fields}
    return await s.client.post("/api/agents", json=body, headers=bearer("admin", tenant))


# -- the matrix ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Call:
    """One route of the matrix: the least role it needs, who may use it beyond that, and the request."""

    name: str
    needed: str
    request: Callable[[str], tuple[str, str, dict[str, Any] | None]]
    """(method, path, JSON body) given a fresh suffix."""
    allowed: Callable[[str], bool] = lambda tenant: True
    """Tenants (of a role high enough) that get the success answer."""
    ok: int = 200
    refused: int = 404
    """The answer to a tenant that is not allowed: 404 (it cannot know the agent exists), or 403."""


def own() -> Callable[[str], bool]:
    return lambda tenant: tenant == OWNER


def chat(model: str) -> dict[str, Any]:
    return {"model": model, "messages": [{"role": "user", "content": "Say hi."}]}


CALLS = [
    Call("list agents", "viewer", lambda n: ("GET", "/api/agents", None)),
    Call("get own agent", "viewer", lambda n: ("GET", "/api/agents/owned", None), own()),
    Call("get shared agent", "viewer", lambda n: ("GET", "/api/agents/shared", None)),
    Call("register", "admin", lambda n: ("POST", "/api/agents", {"id": f"new{n}", "provider": "scripted",
                                                               "model": "scripted"}), ok=201),
    Call("patch own agent", "admin", lambda n: ("PATCH", "/api/agents/owned", {"name": f"renamed {n}"}), own()),
    Call("patch shared agent", "admin", lambda n: ("PATCH", "/api/agents/shared", {"name": f"renamed {n}"}),
         lambda t: t == DEPLOYMENT, refused=403),
    Call("delete own agent", "admin", lambda n: ("DELETE", "/api/agents/doomed", None), own(), ok=204),
    Call("delete shared agent", "admin", lambda n: ("DELETE", "/api/agents/shared", None),
         lambda t: t == DEPLOYMENT, ok=204, refused=403),
    Call("model list", "viewer", lambda n: ("GET", "/v1/models", None)),
    Call("model own agent", "viewer", lambda n: ("GET", "/v1/models/owned", None), own()),
    Call("chat own agent", "operator", lambda n: ("POST", "/v1/chat/completions", chat("owned")), own()),
    Call("chat shared agent", "operator", lambda n: ("POST", "/v1/chat/completions", chat("shared"))),
    Call("task naming own agent", "operator", lambda n: ("POST", "/api/tasks", {
        "prompt": "Say hi.", "strategy": "single", "agents": ["owned"]}), own(), ok=202, refused=422),
    Call("task needing own capability", "operator", lambda n: ("POST", "/api/tasks", {
        "prompt": "Say hi.", "strategy": "single", "capabilities": ["owned-cap"]}), own(), ok=202, refused=422),
    Call("list keys", "admin", lambda n: ("GET", "/api/keys", None)),
]


def expected(call: Call, tenant: str, role: str) -> int:
    if ROLES.index(role) < ROLES.index(call.needed):
        return 403
    return call.ok if call.allowed(tenant) else call.refused


@pytest.mark.parametrize("role", ROLES)
@pytest.mark.parametrize("tenant", TENANTS)
async def test_tenant_role_route_matrix(service: Service, tenant: str, role: str) -> None:
    assert (await register(service, "owned")).status_code == 201
    mismatches = []
    for n, call in enumerate(CALLS):
        if call.name == "delete own agent":
            assert (await register(service, "doomed")).status_code == 201
        method, path, body = call.request(str(n))
        response = await service.client.request(method, path, json=body, headers=bearer(role, tenant))
        want = expected(call, tenant, role)
        if response.status_code != want:
            mismatches.append(f"{call.name}: {response.status_code} (want {want}): {response.text[:300]}")
        elif want >= 400:
            assert response.headers["content-type"].startswith("application/problem+json"), call.name
            assert "owned answers" not in response.text
        if call.name == "list agents" and want == 200:
            ids = {a["id"] for a in response.json()["agents"]}
            if ("owned" in ids) != (tenant == OWNER):
                mismatches.append(f"list agents as {tenant}: {sorted(ids)}")
        if call.name == "model list" and want == 200:
            ids = {m["id"] for m in response.json()["data"]}
            if ("owned" in ids) != (tenant == OWNER):
                mismatches.append(f"model list as {tenant}: {sorted(ids)}")
        if call.name == "delete own agent" and "doomed" in service.orch.registry:
            service.orch.remove_agent("doomed")
        if call.name == "delete shared agent" and want == 204:
            break  # the shared agent is gone: the rest of the list needs it
    assert mismatches == []
    owned = service.orch.registry.get("owned")
    assert owned.tenant == OWNER


async def test_registered_agents_are_the_tenants_and_ids_stay_unique(sqlite_service: Service) -> None:
    s = sqlite_service
    created = await register(s, "mine")
    assert created.status_code == 201 and created.json()["tenant"] == OWNER
    shared = (await s.client.get("/api/agents/shared", headers=bearer("viewer", OWNER))).json()
    assert shared["tenant"] is None
    # Ids are unique in the deployment: another tenant cannot take one (nor learn more than that).
    taken = await register(s, "mine", tenant=OTHER)
    assert taken.status_code == 409


async def test_another_tenants_runs_never_fail_over_to_its_agent(tmp_path: Path) -> None:
    failing = make_agent("shared", ["general"], retry=NO_RETRY, failures={i: "server_error" for i in range(20)})
    private = make_agent("private", ["general"], retry=NO_RETRY)
    private.tenant = OWNER
    orch = Orchestrator([failing, private])
    plan = orch.plan("Say hi.", strategy="single", capabilities=["general"], tenant_id=OTHER)
    result = await orch.execute(plan)
    assert result.status == "failed"
    assert {s.agent for s in result.steps} == {"shared"}
    # The owner's run does fail over to it.
    result = await orch.execute(orch.plan("Say hi.", strategy="single", agents=["shared"], tenant_id=OWNER,
                                          allow_failover_outside=True))
    assert result.status == "completed" and result.steps[0].agent == "private"


# -- what an API agent may reach ------------------------------------------------------------------------


async def test_secrets_allow_list(sqlite_service: Service, monkeypatch: pytest.MonkeyPatch) -> None:
    s = sqlite_service
    monkeypatch.setenv(ACME_KEY, "sk-acme-test-0123456789")
    openai = {"provider": "openai", "model": "gpt-test"}  # the provider's public endpoint
    for variable in ("HOME", "PATH", "OPENAI_API_KEY", "ANTHROPIC_API_KEY", "LOOMIQ_JWT_SECRET"):
        refused = await register(s, f"x{len(variable)}", api_key_env=variable, **openai)
        assert refused.status_code == 422, refused.text
        detail = refused.json()["detail"]
        assert detail.startswith("api_key_env") and (variable in detail or "LOOMIQ_" in detail)
        assert "sk-acme" not in refused.text
    # The provider's own default variable is a secret too: it must be allowed to be used implicitly.
    implicit = await register(s, "implicit", **openai)
    assert implicit.status_code == 422 and "OPENAI_API_KEY" in implicit.json()["detail"]
    # Another tenant may not use acme's secret.
    other = await register(s, "borrowed", tenant=OTHER, api_key_env=ACME_KEY, **openai)
    assert other.status_code == 422 and f"tenant '{OTHER}'" in other.json()["detail"]
    allowed = await register(s, "acme-gpt", api_key_env=ACME_KEY, **openai)
    assert allowed.status_code == 201, allowed.text
    assert "sk-acme" not in allowed.text
    unset = await register(s, "acme-unset", api_key_env="ACME_UNSET_TEST_KEY", **openai)
    assert unset.status_code == 422 and "is not set" in unset.json()["detail"]


@pytest.mark.parametrize("url", [
    "http://127.0.0.1:9098/v1", "http://localhost:9098/v1", "http://[::1]:8000/v1", "http://10.1.2.3/v1",
    "http://169.254.169.254/latest", "http://2130706433/v1", "http://0x7f.1/v1", "http://[::ffff:127.0.0.1]/v1",
    "file:///etc/passwd", "ftp://example.com/",
])
async def test_base_url_passes_the_ssrf_guard(sqlite_service: Service, url: str) -> None:
    refused = await register(sqlite_service, "probe", base_url=url, provider="ollama", model="m")
    assert refused.status_code == 422, refused.text
    assert "base_url" in refused.json()["detail"][:30]
    assert "probe" not in sqlite_service.orch.registry


async def test_the_deployment_can_allow_a_private_network(tmp_path: Path) -> None:
    config = CONFIG.replace("allowed_hosts: [allowed.internal.example]",
                            "allowed_networks: [127.0.0.0/8]")
    async with database("sqlite", tmp_path) as url:
        async for s in _service(url, tmp_path, config):
            ok = await register(s, "local", base_url="http://127.0.0.1:11434/v1", provider="ollama", model="m")
            assert ok.status_code == 201, ok.text
            metadata = await register(s, "meta", base_url="http://169.254.169.254/v1", provider="ollama", model="m")
            assert metadata.status_code == 422


def test_the_dashboard_lists_only_the_shared_agents_and_the_tenants_own() -> None:
    from types import SimpleNamespace

    from loomiq.api.auth import Principal
    from loomiq.api.ui.routes import _agents

    mine, theirs = make_agent("mine"), make_agent("theirs")
    mine.tenant, theirs.tenant = OWNER, OTHER
    state = SimpleNamespace(orchestrator=Orchestrator([make_agent("shared"), mine, theirs]),
                            settings=SimpleNamespace(agent_admin_tenants=(DEPLOYMENT,)))
    owner, other = (Principal(f"{t}-admin", t, "admin", "jwt") for t in (OWNER, OTHER))
    assert [a["id"] for a in _agents(state, owner)] == ["shared", "mine"]  # type: ignore[arg-type]
    assert [a["id"] for a in _agents(state, other)] == ["shared", "theirs"]  # type: ignore[arg-type]
    # Its own agent is the tenant admin's to change; the shared one only the deployment admins'.
    assert {a["id"]: a["may_change"] for a in _agents(state, owner)} == {"shared": False, "mine": True}  # type: ignore[arg-type]
