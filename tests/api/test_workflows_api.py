"""``/api/workflows``, ``/api/workflow-runs``, ``/api/approvals``: register, run, follow, pause, resume,
cancel; approvals answered by approvers only (403), per tenant (404), once (409 for a contradiction,
the same Idempotency-Key replayed); every error a problem document."""

from __future__ import annotations

import asyncio
import json
from typing import Any, get_args

import httpx2

from loomiq.runtime import WorkflowEvent, WorkflowFinished, decode_event

from ..workflows.conftest import RELEASE_NOTES
from .support import SECRET, bearer


def _as(subject: str, role: str = "operator", tenant: str = "acme") -> dict[str, str]:
    from loomiq.api import Settings
    from loomiq.api.auth import issue_token

    token = issue_token(tenant, role, settings=Settings(jwt_secret=SECRET), subject=subject)  # type: ignore[arg-type]
    return {"Authorization": f"Bearer {token}"}


async def _until(client: httpx2.AsyncClient, path: str, check: Any, timeout_s: float = 20) -> Any:
    async with asyncio.timeout(timeout_s):
        while True:
            body = (await client.get(path)).json()
            if check(body):
                return body
            await asyncio.sleep(0.05)


async def test_register_run_approve_and_follow(client: httpx2.AsyncClient) -> None:
    r = await client.post("/api/workflows", json={"source": RELEASE_NOTES})
    assert r.status_code == 201, r.text
    assert r.json() == {"name": "release-notes", "version": 1}
    assert (await client.post("/api/workflows", json={"source": RELEASE_NOTES})).json()["version"] == 2
    listed = (await client.get("/api/workflows")).json()["workflows"]
    assert [(w["name"], w["version"]) for w in listed] == [("release-notes", 2)]
    assert (await client.get("/api/workflows/release-notes")).json()["source"] == RELEASE_NOTES

    r = await client.post("/api/workflows/release-notes/runs", json={"inputs": {"version": "2.0"}})
    assert r.status_code == 202, r.text
    run = r.json()
    assert r.headers["Location"] == f"/api/workflow-runs/{run['id']}" and run["version"] == 2
    pending = await _until(client, "/api/approvals?status=pending", lambda b: b["approvals"])
    [approval] = pending["approvals"]
    assert approval["message"] == "Publish the notes for 2.0?" and approval["run_id"] == run["id"]

    # Another tenant sees nothing; a viewer is not an approver; the approver's answer decides once.
    other = _as("mallory", "admin", tenant="globex")
    assert (await client.get(f"/api/approvals/{approval['id']}", headers=other)).status_code == 404
    r = await client.post(f"/api/approvals/{approval['id']}", json={"decision": "approve"}, headers=other)
    assert r.status_code == 404 and r.headers["content-type"] == "application/problem+json"
    viewer = _as("vic", "viewer")
    r = await client.post(f"/api/approvals/{approval['id']}", json={"decision": "approve"}, headers=viewer)
    assert r.status_code == 403, r.text
    answers = await asyncio.gather(*(client.post(f"/api/approvals/{approval['id']}", headers={
        **_as("olga"), "Idempotency-Key": "k1"}, json={"decision": "approve", "comment": "go"}) for _ in range(5)))
    assert [a.status_code for a in answers] == [200] * 5
    verdicts = sorted(a.json()["verdict"] for a in answers)
    assert verdicts == ["accepted", "replayed", "replayed", "replayed", "replayed"], verdicts
    assert all(a.json()["approval"]["status"] == "approved" for a in answers)
    r = await client.post(f"/api/approvals/{approval['id']}", headers={**_as("oscar"), "Idempotency-Key": "k2"},
                          json={"decision": "reject"})
    assert r.status_code == 409 and r.headers["content-type"] == "application/problem+json"

    done = await _until(client, f"/api/workflow-runs/{run['id']}", lambda b: b["status"] != "running")
    assert done["status"] == "succeeded" and done["path"] == ["draft", "approve", "publish"]
    assert done["nodes"]["publish"]["attempts"] == 1
    async with client.stream("GET", f"/api/workflow-runs/{run['id']}/events") as stream:
        text = "".join([chunk async for chunk in stream.aiter_text()])
    types = [line.split(": ", 1)[1] for line in text.splitlines() if line.startswith("event: ")]
    assert types[0] == "workflow_started" and types[-1] == "workflow_finished"
    frames = [json.loads(line[6:]) for line in text.splitlines() if line.startswith("data: ")]
    assert [sorted(f) for f in frames] == [["at", "data", "seq", "type"]] * len(types)
    events = [decode_event({**f["data"], "type": f["type"]}) for f in frames]  # each a typed workflow event
    assert [e.type for e in events] == types and all(isinstance(e, get_args(WorkflowEvent)) for e in events)
    assert isinstance(events[-1], WorkflowFinished) and events[-1].status == "succeeded"
    assert types.count("approval_requested") == 1 and types.count("approval_resolved") == 1
    async with client.stream("GET", f"/api/workflow-runs/{run['id']}/events",
                             headers={"Last-Event-ID": "3"}) as stream:
        resumed = "".join([chunk async for chunk in stream.aiter_text()])
    first = [int(line[4:]) for line in text.splitlines() if line.startswith("id: ")]
    ids = [int(line[4:]) for line in resumed.splitlines() if line.startswith("id: ")]
    assert ids and ids == [i for i in first if i > 3]
    runs = (await client.get("/api/workflow-runs")).json()["runs"]
    assert [r["id"] for r in runs] == [run["id"]]


async def test_pause_resume_cancel_and_problems(client: httpx2.AsyncClient) -> None:
    r = await client.post("/api/workflows", json={"source": "name: bad\nnodes:\n  a: {kind: task}\n"})
    assert r.status_code == 422 and "prompt" in r.json()["detail"]
    assert (await client.get("/api/workflows/nope")).status_code == 404
    assert (await client.post("/api/workflows/nope/runs", json={})).status_code == 404
    await client.post("/api/workflows", json={"source": RELEASE_NOTES})
    r = await client.post("/api/workflows/release-notes/runs", json={"inputs": {}})
    assert r.status_code == 422 and "inputs.version" in r.json()["detail"]
    run = (await client.post("/api/workflows/release-notes/runs", json={"inputs": {"version": "9"}})).json()
    paused = (await client.post(f"/api/workflow-runs/{run['id']}/pause")).json()
    assert paused["paused"] is True
    assert (await client.post(f"/api/workflow-runs/{run['id']}/resume")).json()["paused"] is False
    cancelled = await client.post(f"/api/workflow-runs/{run['id']}/cancel")
    assert cancelled.status_code == 200 and cancelled.json()["status"] == "cancelled"
    assert (await client.post(f"/api/workflow-runs/{run['id']}/cancel")).status_code == 409
    assert (await client.get("/api/workflow-runs/wr-nope")).status_code == 404
    other = bearer("admin", "globex")
    assert (await client.get(f"/api/workflow-runs/{run['id']}", headers=other)).status_code == 404
    assert (await client.post(f"/api/workflow-runs/{run['id']}/pause", headers=bearer("viewer"))).status_code == 403
