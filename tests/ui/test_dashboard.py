"""The dashboard in a real browser (Debian's chromium through Playwright): sign in, watch a task appear and
stream, cancel it, follow a workflow run's graph and approve its approval from the inbox, and check that a
viewer gets no buttons, forged requests are refused, and another tenant's items never appear."""

from __future__ import annotations

import asyncio
import re
import time
from typing import Any

import httpx2

from loomiq.agents import AgentRegistry
from loomiq.config import load_agents
from loomiq.engine import TaskEngine, WorkflowRuns
from loomiq.strategies import StrategyRunner

from ..api.conftest import LiveServer, live_server  # noqa: F401 - the fixture
from ..api.support import bearer, token

APPROVAL_FLOW = """
name: ship-it
inputs:
  version: {type: string}
nodes:
  draft:
    kind: task
    prompt: "Draft notes for ${{ inputs.version }}"
    strategy: single
  approve:
    kind: approval
    needs: [draft]
    message: "Publish ${{ inputs.version }}?"
    approvers: {roles: [admin, operator]}
    timeout: 72h
    on_timeout: reject
  publish:
    kind: task
    needs: [approve]
    if: ${{ nodes.approve.decision == 'approved' }}
    prompt: "Publish: ${{ nodes.draft.output }}"
"""


async def sign_in(page: Any, server: LiveServer, role: str = "admin", tenant: str = "acme") -> None:
    await page.goto(f"{server.url}/ui")
    assert "/ui/login" in page.url
    await page.fill("#credential", token(role, tenant))  # type: ignore[arg-type]
    await page.click("button[type=submit]")
    await page.wait_for_url(re.compile(r".*/ui/?$"))
    assert await page.text_content("#tenant") == tenant


async def test_sign_in_every_page_and_keyboard(new_page: Any, live_server: LiveServer) -> None:  # noqa: F811
    page = await new_page()
    await page.goto(f"{live_server.url}/ui/tasks")
    assert "/ui/login" in page.url
    await page.shot("login")
    await page.fill("#credential", "not-a-token")
    await page.click("button[type=submit]")
    assert "token" in (await page.text_content("#login-error") or "").lower()
    await page.fill("#credential", token("admin", "acme"))
    await page.click("button[type=submit]")
    await page.wait_for_url(re.compile(r".*/ui/tasks$"))  # back where it was going
    cookies = {c["name"]: c for c in await page.context.cookies()}
    session = cookies["loomiq_session"]
    assert session["httpOnly"] and session["sameSite"] == "Strict"
    for path, name in (("/ui", "overview"), ("/ui/tasks", "tasks"), ("/ui/workflows", "workflows"),
                       ("/ui/approvals", "approvals"), ("/ui/agents", "agents"), ("/ui/alerts", "alerts")):
        response = await page.goto(live_server.url + path)
        assert response.status == 200, path
        await page.shot(name)
    # keyboard: the first Tab reaches the skip link, Enter moves focus to the content
    await page.goto(f"{live_server.url}/ui")
    await page.keyboard.press("Tab")
    assert await page.evaluate("document.activeElement.className") == "skip"
    await page.keyboard.press("Enter")
    assert await page.evaluate("document.activeElement.id") == "main"
    assert page.errors == []


async def test_a_task_appears_streams_and_is_cancelled(new_page: Any, live_server: LiveServer) -> None:  # noqa: F811
    page = await new_page()
    await sign_in(page, live_server)
    await page.goto(f"{live_server.url}/ui/tasks")
    async with httpx2.AsyncClient(base_url=live_server.url, headers=bearer("operator", "acme")) as api:
        done = await api.post("/api/tasks", json={"prompt": "Name a colour", "strategy": "single"})
        slow = await api.post("/api/tasks", json={"prompt": "Write slowly about rivers", "strategy": "single",
                                                  "agents": ["slow"]})
    assert done.status_code == slow.status_code == 202
    slow_id = slow.json()["id"]
    await page.wait_for_selector(f'tr[data-task="{slow_id}"]', timeout=15_000)  # appears without a reload
    await page.click(f'tr[data-task="{slow_id}"] a')
    await page.wait_for_selector("#live pre", timeout=15_000)
    first = await page.text_content("#live pre") or ""
    await page.wait_for_function("(n) => document.querySelector('#live pre').textContent.length > n",
                                 arg=len(first), timeout=15_000)  # text grows as the agent writes it
    await page.shot("task-streaming")
    await page.click("#cancel")
    await page.wait_for_function("document.querySelector('#task-status').textContent.trim() === 'cancelled'",
                                 timeout=15_000)
    await page.shot("task-cancelled")
    assert page.errors == []


async def test_a_workflow_run_is_drawn_and_approved_from_the_inbox(new_page: Any,
                                                                  live_server: LiveServer) -> None:  # noqa: F811
    # A workflow driver on the same database, as every `loomiq worker` runs one; the live server's embedded
    # workers run the nodes' tasks.
    engine = await TaskEngine.open(StrategyRunner(AgentRegistry(load_agents(live_server.settings.config_path))),
                                   live_server.settings.database_url)
    runs = WorkflowRuns(engine, poll_s=0.1)
    driver = asyncio.get_running_loop().create_task(runs.serve())
    try:
        run = await runs.start(APPROVAL_FLOW, {"version": "2.0"}, tenant_id="acme")
        await _approve_through_the_dashboard(new_page, live_server, run.id)
    finally:
        driver.cancel()
        await asyncio.gather(driver, return_exceptions=True)
        await engine.close()


async def _approve_through_the_dashboard(new_page: Any, live_server: LiveServer, run_id: str) -> None:  # noqa: F811
    page = await new_page()
    await sign_in(page, live_server)
    await page.goto(f"{live_server.url}/ui/workflows/{run_id}")
    await page.wait_for_selector('.dag g[data-node="draft"]')
    await page.wait_for_selector('.dag g[data-node="approve"][data-status="waiting_approval"]', timeout=30_000)
    await page.shot("workflow-waiting")
    await page.goto(f"{live_server.url}/ui/approvals")
    await page.wait_for_selector("article.approval", timeout=15_000)
    await page.shot("approvals")
    await page.fill("article.approval input[name=comment]", "ship it")
    await page.click("article.approval button[value=approve]")
    await page.wait_for_selector("text=No pending approvals", timeout=15_000)
    await page.goto(f"{live_server.url}/ui/workflows/{run_id}")
    await page.wait_for_function("document.querySelector('#run-status').textContent.includes('succeeded')",
                                 timeout=30_000)
    assert await page.get_attribute('.dag g[data-node="publish"]', "data-status") == "succeeded"
    await page.shot("workflow-succeeded")
    assert page.errors == []


async def test_viewers_get_no_buttons_and_forged_requests_are_refused(new_page: Any,
                                                                     live_server: LiveServer) -> None:  # noqa: F811
    async with httpx2.AsyncClient(base_url=live_server.url, headers=bearer("operator", "acme")) as api:
        slow = await api.post("/api/tasks", json={"prompt": "Take your time", "strategy": "single",
                                                  "agents": ["slow"]})
    task_id = slow.json()["id"]
    viewer = await new_page()
    await sign_in(viewer, live_server, "viewer")
    await viewer.goto(f"{live_server.url}/ui/tasks/{task_id}")
    assert await viewer.query_selector("#cancel") is None
    await viewer.goto(f"{live_server.url}/ui/agents")
    assert await viewer.query_selector("#agent-rows button") is None
    # a viewer's POST is refused even with the right CSRF token
    csrf = await viewer.evaluate("JSON.parse(document.body.getAttribute('hx-headers'))['X-CSRF-Token']")
    refused = await viewer.request.post(f"{live_server.url}/ui/tasks/{task_id}/cancel",
                                        form={"csrf_token": csrf})
    assert refused.status == 403
    operator = await new_page()
    await sign_in(operator, live_server, "operator")
    # an operator's POST without the CSRF token, or from another origin, is refused
    forged = await operator.request.post(f"{live_server.url}/ui/tasks/{task_id}/cancel", form={})
    assert forged.status == 403
    csrf = await operator.evaluate("JSON.parse(document.body.getAttribute('hx-headers'))['X-CSRF-Token']")
    other_origin = await operator.request.post(f"{live_server.url}/ui/tasks/{task_id}/cancel",
                                               form={"csrf_token": csrf}, headers={"Origin": "http://evil.test"})
    assert other_origin.status == 403
    async with httpx2.AsyncClient(base_url=live_server.url, headers=bearer("viewer", "acme")) as api:
        assert (await api.get(f"/api/tasks/{task_id}")).json()["status"] != "cancelled"
    assert viewer.errors == [] and operator.errors == []


async def test_another_tenants_items_never_appear(new_page: Any, live_server: LiveServer) -> None:  # noqa: F811
    async with httpx2.AsyncClient(base_url=live_server.url, headers=bearer("operator", "globex")) as api:
        theirs = (await api.post("/api/tasks", json={"prompt": "Globex secret plan", "strategy": "single"})).json()
    page = await new_page()
    await sign_in(page, live_server, "admin", "acme")
    await page.goto(f"{live_server.url}/ui/tasks")
    deadline = time.monotonic() + 3
    while time.monotonic() < deadline:  # a few refreshes of the live list
        assert "Globex secret plan" not in await page.content()
        assert await page.query_selector(f'tr[data-task="{theirs["id"]}"]') is None
        await asyncio.sleep(0.5)
    response = await page.goto(f"{live_server.url}/ui/tasks/{theirs['id']}")
    assert response.status == 404
    stream = await page.request.get(f"{live_server.url}/ui/tasks/{theirs['id']}/stream")
    assert stream.status == 404
    assert page.errors == [] or all("404" in e for e in page.errors)


