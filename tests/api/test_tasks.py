"""``/api/tasks`` in-process: submission, idempotency, tenancy, listing, cancel, collaborate, SSE replay."""

from __future__ import annotations

import asyncio
import json
import time
from itertools import groupby

import httpx2
import pytest

from loomiq import Agent, AgentConfig, Orchestrator, ScriptedModel

from .support import bearer
from .test_problems import assert_problem

ASK = {"prompt": "Should we shard the database?", "strategy": "consensus"}
CONSENSUS_TYPES = [
    "task_queued", "task_started", "run_started",
    *["step_started", "text_delta", "step_finished"] * 4,
    "run_finished", "task_finished",
]


def parse_sse(text: str) -> list[dict]:
    """SSE events as {id, event, data} dicts (comments and retry-only blocks left out)."""
    out = []
    for block in text.split("\n\n"):
        fields: dict[str, str] = {}
        for line in block.splitlines():
            name, _, value = line.partition(": ")
            if name in ("id", "event", "data"):
                fields[name] = value
        if "data" in fields:
            out.append({**fields, "data": json.loads(fields["data"])})
    return out


def add_slow_agent(orchestrator: Orchestrator, latency_s: float = 30.0) -> None:
    """An agent that takes `latency_s` per call, reachable only by naming it."""
    config = AgentConfig("slow", "scripted", "scripted", capabilities=frozenset({"slow-only"}))
    orchestrator.add_agent(Agent(config, ScriptedModel(latency_s=latency_s)))


async def submit(client: httpx2.AsyncClient, body: dict | None = None, **kw: object) -> httpx2.Response:
    response = await client.post("/api/tasks", json=body or ASK, **kw)  # type: ignore[arg-type]
    assert response.status_code == 202, response.text
    return response


async def test_submit_then_follow_the_event_sequence(client: httpx2.AsyncClient) -> None:
    accepted = await submit(client)
    task = accepted.json()
    assert accepted.headers["location"] == f"/api/tasks/{task['id']}" == task["links"]["self"]
    assert task["status"] in ("queued", "running") and task["tenant_id"] == "acme"

    stream = await client.get(task["links"]["events"])
    assert stream.headers["content-type"].startswith("text/event-stream")
    events = parse_sse(stream.text)
    assert [e["data"]["seq"] for e in events] == list(range(1, len(events) + 1))
    assert [e["id"] for e in events] == [str(e["data"]["seq"]) for e in events]
    assert [e["event"] for e in events] == [e["data"]["type"] for e in events]
    assert [kind for kind, _ in groupby(e["event"] for e in events)] == CONSENSUS_TYPES
    assert events[-1]["data"]["status"] == "completed"

    done = (await client.get(task["links"]["self"])).json()
    assert done["status"] == "completed" and done["output"] == events[-1]["data"]["output"]
    assert done["result"]["strategy"] == "consensus" and len(done["result"]["steps"]) == 4


async def test_replay_after_last_event_id_has_no_gap_and_no_duplicate(client: httpx2.AsyncClient) -> None:
    task_id = (await submit(client)).json()["id"]
    everything = parse_sse((await client.get(f"/api/tasks/{task_id}/events")).text)
    for last in (0, 1, 5, len(everything) - 1):
        replay = parse_sse((await client.get(f"/api/tasks/{task_id}/events",
                                             headers={"Last-Event-ID": str(last)})).text)
        assert [e["data"] for e in replay] == [e["data"] for e in everything[last:]]
    by_query = parse_sse((await client.get(f"/api/tasks/{task_id}/events", params={"after": 3})).text)
    assert by_query[0]["data"]["seq"] == 4
    bad = await client.get(f"/api/tasks/{task_id}/events", headers={"Last-Event-ID": "abc"})
    assert assert_problem(bad, 422, "invalid-request")["detail"].startswith("header field 'Last-Event-ID'")


async def test_resuming_a_finished_task_at_or_past_its_last_event_ends_at_once(client: httpx2.AsyncClient) -> None:
    task_id = (await submit(client)).json()["id"]
    last = len(parse_sse((await client.get(f"/api/tasks/{task_id}/events")).text))
    for resume in ({"headers": {"Last-Event-ID": str(last)}}, {"headers": {"Last-Event-ID": str(last + 50)}},
                   {"headers": {"Last-Event-ID": str(2**31 - 1)}}, {"params": {"after": last + 1}}):
        async with asyncio.timeout(2):  # it used to stay open with heartbeats forever
            response = await client.get(f"/api/tasks/{task_id}/events", **resume)  # type: ignore[arg-type]
        assert response.status_code == 200 and parse_sse(response.text) == [], resume


@pytest.mark.parametrize("value", ["-1", str(2**31), str(2**63), str(10**23), "99999999999999999999999", "1.5", "x"])
async def test_event_positions_out_of_bounds_are_422_naming_the_field(client: httpx2.AsyncClient, value: str) -> None:
    task_id = (await submit(client)).json()["id"]
    for where, name in (("headers", "Last-Event-ID"), ("params", "after")):
        response = await client.get(f"/api/tasks/{task_id}/events", **{where: {name: value}})  # type: ignore[arg-type]
        problem = assert_problem(response, 422, "invalid-request")
        kind = "header" if where == "headers" else "query"
        assert problem["detail"].startswith(f"{kind} field '{name}'"), problem
        assert problem["errors"][0]["field"] == name


async def test_submit_answers_at_once_without_waiting_for_a_model(
    client: httpx2.AsyncClient, orchestrator: Orchestrator
) -> None:
    add_slow_agent(orchestrator)
    started = time.perf_counter()
    accepted = await submit(client, {"prompt": "take your time", "strategy": "single", "agents": ["slow"]})
    assert time.perf_counter() - started < 1.0
    task_id = accepted.json()["id"]
    cancelled = await client.post(f"/api/tasks/{task_id}/cancel")
    assert cancelled.status_code in (200, 202)
    final = await orchestrator.wait(task_id, timeout_s=10)
    assert final.status == "cancelled"
    again = await client.post(f"/api/tasks/{task_id}/cancel")
    assert "already ended (cancelled)" in assert_problem(again, 409, "conflict")["detail"]


async def test_idempotency_key_returns_the_first_task(client: httpx2.AsyncClient) -> None:
    first = await submit(client, headers={"Idempotency-Key": "order-42"})
    second = await submit(client, headers={"Idempotency-Key": "order-42"})
    assert second.json()["id"] == first.json()["id"]
    assert second.headers["idempotent-replayed"] == "true" and "idempotent-replayed" not in first.headers
    reused = await client.post("/api/tasks", json={**ASK, "prompt": "another question"},
                               headers={"Idempotency-Key": "order-42"})
    detail = assert_problem(reused, 422, "idempotency-key-reused")["detail"]
    assert detail == (f"The Idempotency-Key 'order-42' was already used for task {first.json()['id']} with a "
                      "different prompt. Use a new key for a new request.")
    other_priority = await client.post("/api/tasks", json={**ASK, "priority": "critical"},
                                       headers={"Idempotency-Key": "order-42"})
    assert "with a different priority" in assert_problem(other_priority, 422, "idempotency-key-reused")["detail"]
    # Keys are per tenant: another tenant's same key makes its own task.
    other = await submit(client, headers={"Idempotency-Key": "order-42", **bearer("operator", "globex")})
    assert other.json()["id"] != first.json()["id"]


async def test_another_tenants_task_is_not_found(client: httpx2.AsyncClient) -> None:
    task_id = (await submit(client)).json()["id"]
    globex = bearer("admin", "globex")
    for method, path in [("GET", ""), ("GET", "/events"), ("POST", "/cancel"), ("POST", "/collaborate")]:
        response = await client.request(method, f"/api/tasks/{task_id}{path}", headers=globex,
                                        json={} if method == "POST" else None)
        assert_problem(response, 404, "not-found")
    assert (await client.get("/api/tasks", headers=globex)).json()["tasks"] == []
    depends = await client.post("/api/tasks", json={**ASK, "after": [task_id]}, headers=globex)
    assert_problem(depends, 404, "not-found")


async def test_roles_on_tasks(client: httpx2.AsyncClient) -> None:
    assert_problem(await client.post("/api/tasks", json=ASK, headers=bearer("viewer")), 403, "forbidden")
    task_id = (await submit(client, headers=bearer("operator"))).json()["id"]
    assert (await client.get(f"/api/tasks/{task_id}", headers=bearer("viewer"))).status_code == 200
    assert_problem(await client.post(f"/api/tasks/{task_id}/cancel", headers=bearer("viewer")), 403, "forbidden")


@pytest.mark.parametrize(("body", "field"), [
    ({"prompt": "x", "strategy": "telepathy"}, "strategy"),
    ({"prompt": "x", "strategy": "single", "agents": ["ghost"]}, "agents"),
    ({"prompt": "x", "priority": "urgent"}, "priority"),
    ({"prompt": ""}, "prompt"),
    ({"prompt": "x", "timeout_s": 0}, "timeout_s"),
    ({"prompt": "x", "after": ["0" * 32]}, None),
])
async def test_invalid_submissions(client: httpx2.AsyncClient, body: dict, field: str | None) -> None:
    response = await client.post("/api/tasks", json=body)
    if field is None:
        assert_problem(response, 404, "not-found")  # an unknown dependency is not in this tenant
    else:
        problem = assert_problem(response, 422, "invalid-request")
        assert field in problem["detail"]


async def test_list_filters_and_pages_without_duplicates(
    client: httpx2.AsyncClient, orchestrator: Orchestrator
) -> None:
    ids = [(await submit(client, {"prompt": f"question {i}", "strategy": "single"})).json()["id"] for i in range(5)]
    for task_id in ids:
        await orchestrator.wait(task_id, timeout_s=10)
    first = await client.get("/api/tasks", params={"limit": 2})
    page = first.json()
    assert [t["id"] for t in page["tasks"]] == ids[::-1][:2]
    assert 'rel="next"' in first.headers["link"]
    newer = (await submit(client, {"prompt": "submitted while paging", "strategy": "single"})).json()["id"]
    seen = [t["id"] for t in page["tasks"]]
    while page["next_cursor"]:
        page = (await client.get("/api/tasks", params={"limit": 2, "cursor": page["next_cursor"]})).json()
        seen += [t["id"] for t in page["tasks"]]
    assert seen == ids[::-1] and newer not in seen
    await orchestrator.wait(newer, timeout_s=10)
    completed = (await client.get("/api/tasks", params={"status": ["completed", "failed"]})).json()["tasks"]
    assert len(completed) == 6
    assert (await client.get("/api/tasks", params={"status": "queued"})).json()["tasks"] == []
    assert_problem(await client.get("/api/tasks", params={"cursor": "nonsense"}), 422, "invalid-request")
    assert_problem(await client.get("/api/tasks", params={"status": "sleeping"}), 422, "invalid-request")


async def test_collaborate_on_a_completed_task(client: httpx2.AsyncClient, orchestrator: Orchestrator) -> None:
    source_id = (await submit(client, {"prompt": "Draft a plan", "strategy": "single"})).json()["id"]
    source = await orchestrator.wait(source_id, timeout_s=10)
    accepted = await client.post(f"/api/tasks/{source_id}/collaborate", json={"instruction": "Tighten it."})
    assert accepted.status_code == 202, accepted.text
    follow_up = accepted.json()
    assert follow_up["after"] == [source_id] and follow_up["strategy"] == "consensus"
    assert follow_up["prompt"].startswith("Draft a plan\n\nPrevious result")
    assert source.output in follow_up["prompt"] and follow_up["prompt"].endswith("Tighten it.")
    assert (await orchestrator.wait(follow_up["id"], timeout_s=10)).status == "completed"


async def test_collaborate_needs_a_completed_task(client: httpx2.AsyncClient, orchestrator: Orchestrator) -> None:
    add_slow_agent(orchestrator)
    task_id = (await submit(client, {"prompt": "slow", "strategy": "single", "agents": ["slow"]})).json()["id"]
    response = await client.post(f"/api/tasks/{task_id}/collaborate", json={})
    detail = assert_problem(response, 409, "conflict")["detail"]
    assert "completed task" in detail and "try again once it completes" in detail
    await client.post(f"/api/tasks/{task_id}/cancel")
    await orchestrator.wait(task_id, timeout_s=10)
    # A task that ended without completing never will: the message says so, and what to do instead.
    cancelled = await client.post(f"/api/tasks/{task_id}/collaborate", json={})
    detail = assert_problem(cancelled, 409, "conflict")["detail"]
    assert "ended cancelled and will never complete" in detail and "Submit the task again" in detail
    assert "try again once it completes" not in detail


async def test_ready_checks_the_database_and_workers(client: httpx2.AsyncClient) -> None:
    checks = (await client.get("/api/ready")).json()["checks"]
    assert checks["database"].startswith("ok") and checks["workers"]["embedded"] is True
