"""loomiq as an MCP server, through the official `mcp` Python client: over streamable HTTP against the
real ``loomiq serve`` app on a free port (JWT and API-key auth, roles, tenants, DNS-rebinding checks),
and over stdio against ``loomiq mcp serve`` in a subprocess."""

from __future__ import annotations

import json
import os
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx2
import mcp_types
import pytest
from mcp import Client, StdioServerParameters
from mcp.client.streamable_http import streamable_http_client
from mcp.shared.exceptions import MCPError

from tests.factories import make_agent

from ..api.support import token
from .conftest import LiveServer

TOOLS = {"run_task", "submit_task", "get_task", "cancel_task", "list_agents", "search_knowledge"}


@asynccontextmanager
async def connect(url: str, headers: dict[str, str]) -> AsyncIterator[Client]:
    async with httpx2.AsyncClient(headers=headers, timeout=httpx2.Timeout(30, read=None)) as http, \
            Client(streamable_http_client(url, http_client=http), mode="legacy") as client:
        yield client


def auth(role: str = "operator", tenant: str = "acme") -> dict[str, str]:
    return {"Authorization": f"Bearer {token(role, tenant)}"}  # type: ignore[arg-type]


def payload(result: mcp_types.CallToolResult) -> dict[str, Any]:
    assert not result.is_error, result.content
    assert result.structured_content is not None
    return dict(result.structured_content)


def error_text(result: mcp_types.CallToolResult) -> str:
    assert result.is_error
    return " ".join(b.text for b in result.content if isinstance(b, mcp_types.TextContent))


async def run_with_progress(client: Client) -> tuple[dict[str, Any], list[tuple[float, float | None, str | None]]]:
    progress: list[tuple[float, float | None, str | None]] = []

    async def on_progress(value: float, total: float | None, message: str | None) -> None:
        progress.append((value, total, message))

    result = await client.call_tool(
        "run_task", {"prompt": "Should we shard the ledger now?", "strategy": "consensus"},
        progress_callback=on_progress,
    )
    return payload(result), progress


def check_run(view: dict[str, Any], progress: list[tuple[float, float | None, str | None]]) -> None:
    assert view["status"] == "completed" and view["strategy"] == "consensus"
    assert view["output"]
    summary = view["agents_summary"]
    assert len(summary) == 4  # three analysts and the lead
    assert {s["role"] for s in summary} >= {"lead"}
    assert all(s["status"] == "answered" and s["usage"]["input_tokens"] > 0 for s in summary)
    assert view["usage"]["input_tokens"] == sum(s["usage"]["input_tokens"] for s in summary)
    assert "cost_usd" in view
    # One notification per agent as it finished, increasing, each naming the agent.
    assert [p[0] for p in progress] == [1, 2, 3, 4]
    agents = {s["agent"] for s in summary}
    assert all(any(a in (p[2] or "") for a in agents) for p in progress)


async def test_http_tools_run_task_with_progress_and_the_task_resource(live_server: LiveServer) -> None:
    async with connect(live_server.mcp_url, auth("operator")) as client:
        assert client.server_info is not None and client.server_info.name == "loomiq"
        listed = await client.list_tools()
        assert {t.name for t in listed.tools} == TOOLS
        assert not any(t.name.startswith("test_") for t in listed.tools)  # no conformance fixture in production
        templates = await client.list_resource_templates()
        assert [t.uri_template for t in templates.resource_templates] == ["loomiq://tasks/{task_id}"]

        view, progress = await run_with_progress(client)
        check_run(view, progress)

        read = await client.read_resource(view["uri"])
        (contents,) = read.contents
        assert isinstance(contents, mcp_types.TextResourceContents) and contents.mime_type == "application/json"
        task = json.loads(contents.text)
        assert task["id"] == view["task_id"] if "task_id" in view else task["id"] == view["id"]
        assert task["result"]["status"] == "completed" and len(task["result"]["steps"]) == 4

        agents = payload(await client.call_tool("list_agents", {}))["agents"]
        assert {a["id"] for a in agents} >= {"analyst", "critic", "pragmatist", "lead"}
        # Another tenant's agent (registered over the API) is not listed (issue 10, item 1).
        hidden = make_agent("globex-only")
        hidden.tenant = "globex"
        live_server.app.state.loomiq.orchestrator.add_agent(hidden)
        agents = payload(await client.call_tool("list_agents", {}))["agents"]
        assert "globex-only" not in {a["id"] for a in agents}

        queued = payload(await client.call_tool("submit_task", {"prompt": "Plan it", "agents": ["slow"],
                                                                "strategy": "single"}))
        got = payload(await client.call_tool("get_task", {"task_id": queued["id"]}))
        assert got["id"] == queued["id"] and got["status"] in ("queued", "running")
        cancelled = payload(await client.call_tool("cancel_task", {"task_id": queued["id"]}))
        assert cancelled["cancel_requested"] or cancelled["status"] == "cancelled"

        bad = await client.call_tool("run_task", {"prompt": "x", "agents": ["nobody"]})
        assert "nobody" in error_text(bad)


async def test_http_wrong_token_is_401(live_server: LiveServer) -> None:
    async with httpx2.AsyncClient() as http:
        for headers in ({}, {"Authorization": "Bearer not-a-token"},
                        {"Authorization": f"Bearer {token('admin', 'acme')[:-3]}abc"}):
            response = await http.post(live_server.mcp_url, headers={**headers, "content-type": "application/json",
                                                                     "accept": "application/json, text/event-stream"},
                                       json={"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {}})
            assert response.status_code == 401
            assert response.headers["content-type"].startswith("application/problem+json")
            assert response.headers["www-authenticate"].startswith("Bearer")
    with pytest.raises(Exception):  # noqa: B017 - the SDK surfaces the 401 as its own error type
        async with connect(live_server.mcp_url, {"Authorization": "Bearer nope"}):
            pass


async def test_http_viewer_cannot_start_a_task_and_tenants_are_apart(live_server: LiveServer) -> None:
    async with connect(live_server.mcp_url, auth("operator", "acme")) as acme:
        queued = payload(await acme.call_tool("submit_task", {"prompt": "Acme's secret plan"}))
    async with connect(live_server.mcp_url, auth("viewer", "acme")) as viewer:
        refused = await viewer.call_tool("run_task", {"prompt": "Do it"})
        assert "run_task needs the operator role" in error_text(refused)
        refused = await viewer.call_tool("submit_task", {"prompt": "Do it"})
        assert "needs the operator role" in error_text(refused)
        refused = await viewer.call_tool("cancel_task", {"task_id": queued["id"]})
        assert "needs the operator role" in error_text(refused)
        assert payload(await viewer.call_tool("get_task", {"task_id": queued["id"]}))["id"] == queued["id"]
    async with connect(live_server.mcp_url, auth("admin", "globex")) as other:
        missing = await other.call_tool("get_task", {"task_id": queued["id"]})
        assert f"no task {queued['id']!r} in tenant 'globex'" in error_text(missing)
        missing = await other.call_tool("cancel_task", {"task_id": queued["id"]})
        assert "no task" in error_text(missing)
        with pytest.raises(MCPError) as caught:
            await other.read_resource(f"loomiq://tasks/{queued['id']}")
        assert "no task" in str(caught.value) and "Acme" not in str(caught.value)


async def test_http_dns_rebinding_is_refused(live_server: LiveServer) -> None:
    body = {"jsonrpc": "2.0", "id": 1, "method": "initialize",
            "params": {"protocolVersion": "2025-11-25", "capabilities": {},
                       "clientInfo": {"name": "t", "version": "1"}}}
    headers = {**auth("admin"), "content-type": "application/json", "accept": "application/json, text/event-stream"}
    async with httpx2.AsyncClient() as http:
        evil_host = await http.post(live_server.mcp_url, json=body, headers={**headers, "Host": "evil.example.com"})
        assert evil_host.status_code == 421
        evil_origin = await http.post(live_server.mcp_url, json=body,
                                      headers={**headers, "Origin": "http://evil.example.com"})
        assert evil_origin.status_code == 403
        fine = await http.post(live_server.mcp_url, json=body,
                               headers={**headers, "Origin": live_server.url.replace("127.0.0.1", "localhost")})
        assert fine.status_code == 200


async def test_stdio_serve_lists_runs_and_reads(tmp_path: Path, config_file: Path) -> None:
    env = {"LOOMIQ_DATABASE_URL": f"sqlite:///{tmp_path}/stdio.db", "LOOMIQ_CONFIG": str(config_file),
           "PATH": os.environ.get("PATH", "")}
    serve = ["-m", "loomiq.cli", "mcp", "serve"]
    params = StdioServerParameters(command=sys.executable, args=[*serve, "--tenant", "acme"], env=env,
                                   cwd=str(tmp_path))
    async with Client(params, mode="legacy") as client:
        assert {t.name for t in (await client.list_tools()).tools} == TOOLS
        view, progress = await run_with_progress(client)
        check_run(view, progress)
        read = await client.read_resource(view["uri"])
        assert json.loads(read.contents[0].text)["tenant_id"] == "acme"  # type: ignore[union-attr]
    viewer = StdioServerParameters(command=sys.executable, args=[*serve, "--role", "viewer"], env=env,
                                   cwd=str(tmp_path))
    async with Client(viewer, mode="legacy") as client:
        assert "needs the operator role" in error_text(await client.call_tool("run_task", {"prompt": "x"}))


async def test_loomiq_uses_loomiq_over_http(live_server: LiveServer, monkeypatch: pytest.MonkeyPatch) -> None:
    """Both ways at once: loomiq's MCP client (a streamable-HTTP server of ``mcp_servers:``, its token
    read from the environment) calls another loomiq's ``/mcp``: a consensus as one tool call."""
    from loomiq.tools import ToolLoop, ToolRegistry, ToolSourceError
    from loomiq.tools.mcp import EnvValue, McpServerSpec, McpToolSource

    registry = ToolRegistry(builtins=False)
    registry.add_source(McpToolSource(McpServerSpec(
        "team", url=live_server.mcp_url, headers={"Authorization": EnvValue("TEAM_TOKEN", "Bearer ")}, timeout_s=60,
    )))
    try:
        monkeypatch.setenv("TEAM_TOKEN", "wrong")
        with pytest.raises(ToolSourceError, match="MCP server 'team'"):
            await registry.prepare(["team"])
        monkeypatch.setenv("TEAM_TOKEN", token("operator", "acme"))  # type: ignore[arg-type]
        await registry.prepare(["team"])
        assert set(registry.providers()["team"]) == {f"team__{t}" for t in TOOLS}
        record = await ToolLoop(registry.select(["team__run_task"])).call(
            "team__run_task", {"prompt": "Should we shard?", "strategy": "consensus"})
    finally:
        await registry.aclose()
    assert record.error is None, record.content
    assert record.data["status"] == "completed" and len(record.data["agents_summary"]) == 4


async def test_search_knowledge_searches_the_callers_knowledge_base(live_server: LiveServer) -> None:
    from loomiq.tools.builtin import KnowledgeBase

    async with await KnowledgeBase.open(live_server.settings.database_url) as kb:
        await kb.add("acme", "runbook.md", "# Keys\n\nRotate the signing keys every ninety days.", kind="markdown")
    async with connect(live_server.mcp_url, auth("viewer", "acme")) as client:
        found = payload(await client.call_tool("search_knowledge", {"query": "rotate signing keys"}))
    assert found["query"] == "rotate signing keys"
    (hit,) = found["hits"]
    assert hit["source"] == "runbook.md" and "ninety days" in hit["text"] and hit["chunk_id"]
    async with connect(live_server.mcp_url, auth("viewer", "globex")) as other:
        assert payload(await other.call_tool("search_knowledge", {"query": "rotate signing keys"}))["hits"] == []
