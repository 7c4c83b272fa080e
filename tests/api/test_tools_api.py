"""``GET /api/tools`` and the knowledge base routes: per tenant, problems declared and returned."""

from __future__ import annotations

import base64

import httpx2
import pytest

from loomiq import Agent, AgentConfig, Orchestrator, ScriptedModel

from .support import bearer
from .test_problems import assert_problem


@pytest.fixture
def orchestrator() -> Orchestrator:
    config = AgentConfig("coder", "scripted", "scripted", tools=("python", "knowledge"))
    return Orchestrator([Agent(config, ScriptedModel()), Agent(AgentConfig("plain", "scripted", "s"), ScriptedModel())])


async def test_tools_lists_schemas_and_the_agents_that_may_use_each(client: httpx2.AsyncClient) -> None:
    response = await client.get("/api/tools")
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["tenant"] == "acme"
    by_name = {t["name"]: t for t in body["tools"]}
    assert {"python", "knowledge", "files", "http_fetch"} <= set(by_name)
    assert by_name["python"]["agents"] == ["coder"] and by_name["files"]["agents"] == []
    assert by_name["python"]["parameters"]["required"] == ["code"]
    assert by_name["knowledge"]["available"] is True


async def test_documents_are_added_searched_listed_and_removed_per_tenant(client: httpx2.AsyncClient) -> None:
    added = await client.post("/api/kb/documents", json={
        "source": "runbook.md", "text": "# Runbook\n\nRestart the ingestion worker when the queue stalls."})
    assert added.status_code == 201, added.text
    doc = added.json()
    assert added.headers["location"] == f"/api/kb/documents/{doc['id']}"
    assert doc["tenant_id"] == "acme" and doc["kind"] == "markdown" and doc["title"] == "Runbook"
    again = await client.post("/api/kb/documents", json={
        "source": "copy.md", "text": "# Runbook\n\nRestart the ingestion worker when the queue stalls."})
    assert again.json()["id"] == doc["id"]

    hits = (await client.get("/api/kb/search", params={"q": "ingestion queue"})).json()["hits"]
    assert hits and hits[0]["document_id"] == doc["id"] and hits[0]["chunk_id"].startswith(doc["id"] + "#")
    listed = (await client.get("/api/kb/documents")).json()["documents"]
    assert [d["id"] for d in listed] == [doc["id"]]

    other = bearer(tenant="other")
    assert (await client.get("/api/kb/search", params={"q": "ingestion"}, headers=other)).json()["hits"] == []
    assert (await client.get("/api/kb/documents", headers=other)).json()["documents"] == []
    assert_problem(await client.delete(f"/api/kb/documents/{doc['id']}", headers=other), 404, "not-found")

    assert (await client.delete(f"/api/kb/documents/{doc['id']}")).status_code == 204
    assert (await client.get("/api/kb/documents")).json()["documents"] == []
    assert_problem(await client.delete(f"/api/kb/documents/{doc['id']}"), 404, "not-found")


async def test_bad_documents_are_problems(client: httpx2.AsyncClient) -> None:
    both = await client.post("/api/kb/documents", json={"source": "a", "text": "x", "content_base64": "eA=="})
    assert_problem(both, 422, "invalid-request")
    bad = await client.post("/api/kb/documents", json={"source": "a.pdf", "content_base64": "%%%"})
    assert_problem(bad, 422, "invalid-request")
    empty = await client.post("/api/kb/documents", json={"source": "a.txt", "text": "   "})
    assert "no text" in assert_problem(empty, 422, "invalid-request")["detail"]
    raw = base64.b64encode(b"plain bytes about zebras").decode()
    ok = await client.post("/api/kb/documents", json={"source": "z.txt", "content_base64": raw})
    assert ok.status_code == 201 and ok.json()["kind"] == "text"
    assert_problem(await client.get("/api/kb/search"), 422, "invalid-request")


async def test_only_operators_change_the_knowledge_base(client: httpx2.AsyncClient) -> None:
    viewer = bearer(role="viewer")
    response = await client.post("/api/kb/documents", json={"source": "a", "text": "x"}, headers=viewer)
    assert response.status_code == 403


async def test_a_tenants_own_agent_is_listed_to_that_tenant_only(client: httpx2.AsyncClient,
                                                                 orchestrator: Orchestrator) -> None:
    own = Agent(AgentConfig("acme-bot", "scripted", "scripted", tools=("python",)), ScriptedModel(), tenant="acme")
    orchestrator.add_agent(own)
    mine = {t["name"]: t for t in (await client.get("/api/tools")).json()["tools"]}
    theirs = {t["name"]: t for t in (await client.get("/api/tools", headers=bearer(tenant="other"))).json()["tools"]}
    assert mine["python"]["agents"] == ["coder", "acme-bot"]
    assert theirs["python"]["agents"] == ["coder"]
