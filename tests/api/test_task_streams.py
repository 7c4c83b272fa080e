"""Task event streams against the real server: SSE heartbeats, disconnects and resumption, and the
WebSocket."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Iterator
from typing import Any

import httpx2
import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

from .conftest import LiveServer
from .support import token


def _http(server: LiveServer, role: str = "admin", tenant: str = "acme") -> httpx2.Client:
    return httpx2.Client(base_url=server.url, headers={"Authorization": f"Bearer {token(role, tenant)}"}, timeout=30)


def _submit(server: LiveServer, body: dict[str, Any]) -> str:
    with _http(server) as http:
        response = http.post("/api/tasks", json=body)
        assert response.status_code == 202, response.text
        return response.json()["id"]


def _subscriptions(server: LiveServer) -> dict[str, Any]:
    return server.app.state.loomiq.orchestrator.engine.store.hub._subs


SLOW = {"prompt": "take your time", "strategy": "single", "agents": ["slow"]}


def test_sse_heartbeats_and_disconnect_frees_the_subscription(live_server: LiveServer) -> None:
    task_id = _submit(live_server, SLOW)
    with _http(live_server) as http:
        with http.stream("GET", f"/api/tasks/{task_id}/events") as response:
            assert response.status_code == 200
            lines: list[str] = []
            for line in response.iter_lines():
                lines.append(line)
                if any(x.startswith("data: ") for x in lines) and any(x.startswith(": ping") for x in lines):
                    # Still reading: the stream holds one subscription to the task's events.
                    assert task_id in _subscriptions(live_server)
                    break
            assert any(x.startswith("id: 1") for x in lines)
        deadline = time.monotonic() + 5
        while task_id in _subscriptions(live_server):
            assert time.monotonic() < deadline, "the event subscription outlived the client"
            time.sleep(0.02)
        http.post(f"/api/tasks/{task_id}/cancel")


def _sse_events(lines: Iterator[str]) -> Iterator[tuple[str, dict[str, Any]]]:
    """(``id:`` field, event) of each SSE frame with data; comments and pings are skipped."""
    frame: dict[str, str] = {}
    for line in lines:
        if line:
            name, _, value = line.partition(": ")
            frame[name] = value
            continue
        if "data" in frame:
            yield frame["id"], json.loads(frame["data"])
        frame = {}


def test_sse_resumes_after_a_dropped_connection_from_last_event_id(live_server: LiveServer) -> None:
    paced = [f"paced{i}" for i in range(3)]
    with _http(live_server) as http:
        for agent in paced:  # a capability of their own: only this test's task runs on them
            response = http.post("/api/agents", json={"id": agent, "provider": "scripted", "model": "scripted",
                                                      "capabilities": ["paced-only"], "scripted": {"latency_s": 0.25}})
            assert response.status_code == 201, response.text
    task_id = _submit(live_server, {"prompt": "take it step by step", "strategy": "sequential", "agents": paced})

    first: list[dict[str, Any]] = []
    with _http(live_server) as http, http.stream("GET", f"/api/tasks/{task_id}/events") as response:
        assert response.status_code == 200
        for frame_id, event in _sse_events(response.iter_lines()):
            assert frame_id == str(event["seq"])
            first.append(event)
            if event["type"] == "step_finished":
                break  # the first of three steps: the client goes away mid-task
    last_id = str(first[-1]["seq"])
    with _http(live_server) as http:
        assert http.get(f"/api/tasks/{task_id}").json()["status"] == "running"  # cut before the task finished
        with http.stream("GET", f"/api/tasks/{task_id}/events", headers={"Last-Event-ID": last_id}) as response:
            assert response.status_code == 200
            second = [event for _, event in _sse_events(response.iter_lines())]

    assert "task_finished" not in [e["type"] for e in first]
    seqs = [e["seq"] for e in first + second]
    assert seqs == list(range(1, len(seqs) + 1))  # every event once: no gap, no duplicate
    assert second[-1]["type"] == "task_finished" and second[-1]["status"] == "completed"
    assert [e["type"] for e in second].count("step_finished") == 2


async def test_websocket_sends_the_same_events_as_sse(live_server: LiveServer) -> None:
    task_id = _submit(live_server, {"prompt": "Should we shard?", "strategy": "consensus"})
    ws_url = live_server.url.replace("http", "ws") + f"/api/tasks/{task_id}/ws"
    received = []
    async with connect(ws_url, additional_headers={"Authorization": f"Bearer {token('viewer')}"}) as ws:
        with pytest.raises(ConnectionClosed) as closed:
            while True:
                received.append(json.loads(await ws.recv()))
    assert closed.value.rcvd is not None and closed.value.rcvd.code == 1000
    assert [e["seq"] for e in received] == list(range(1, len(received) + 1))
    assert received[-1]["type"] == "task_finished" and received[-1]["status"] == "completed"
    with _http(live_server) as http:
        sse = [json.loads(line[6:]) for line in http.get(f"/api/tasks/{task_id}/events").text.splitlines()
               if line.startswith("data: ")]
    assert sse == received
    # Resume after a seq, with the token in the query string (browsers cannot set headers).
    async with connect(f"{ws_url}?after=3&access_token={token('viewer')}") as ws:
        first = json.loads(await ws.recv())
    assert first["seq"] == 4


async def test_websocket_resumed_at_or_past_the_end_of_a_finished_task_closes_at_once(
    live_server: LiveServer,
) -> None:
    task_id = _submit(live_server, {"prompt": "Should we shard?", "strategy": "single"})
    with _http(live_server) as http:
        last = sum(1 for line in http.get(f"/api/tasks/{task_id}/events").text.splitlines()
                   if line.startswith("data: "))
    ws_url = live_server.url.replace("http", "ws") + f"/api/tasks/{task_id}/ws"
    for after in (last, last + 7, 2**31 - 1):
        async with connect(f"{ws_url}?after={after}&access_token={token('viewer')}") as ws:
            with pytest.raises(ConnectionClosed) as closed:
                await asyncio.wait_for(ws.recv(), 3)  # no event: it closes normally at once
        assert closed.value.rcvd is not None and closed.value.rcvd.code == 1000
    for bad in (-1, 2**31, 2**63, 10**23, "x"):  # out of bounds: refused with a 422 problem naming the field
        with pytest.raises(InvalidStatus) as refused:
            async with connect(f"{ws_url}?after={bad}&access_token={token('viewer')}"):
                pass
        assert refused.value.response.status_code == 422
        problem = json.loads(refused.value.response.body)
        assert problem["type"] == "urn:loomiq:problem:invalid-request"
        assert problem["detail"].startswith("query field 'after'") and problem["errors"][0]["field"] == "after"


async def test_websocket_cancel(live_server: LiveServer) -> None:
    task_id = _submit(live_server, SLOW)
    ws_url = live_server.url.replace("http", "ws") + f"/api/tasks/{task_id}/ws"
    async with connect(ws_url, additional_headers={"Authorization": f"Bearer {token('viewer')}"}) as viewer:
        assert json.loads(await viewer.recv())["type"] == "task_queued"
        await viewer.send(json.dumps({"type": "cancel"}))
        refusal = json.loads(await viewer.recv())
        while refusal["type"] != "error":
            refusal = json.loads(await viewer.recv())
        assert refusal["status"] == 403
    messages = []
    async with connect(ws_url, additional_headers={"Authorization": f"Bearer {token('operator')}"}) as ws:
        await ws.send("not json")
        await ws.send(json.dumps({"type": "cancel"}))
        with pytest.raises(ConnectionClosed):
            while True:
                messages.append(json.loads(await ws.recv()))
    kinds = [m["type"] for m in messages]
    assert "error" in kinds and "cancel_requested" in kinds
    assert messages[-1]["type"] == "task_finished" and messages[-1]["status"] == "cancelled"


async def test_websocket_refusals_are_problem_responses(live_server: LiveServer) -> None:
    task_id = _submit(live_server, {"prompt": "q", "strategy": "single"})
    ws_url = live_server.url.replace("http", "ws") + f"/api/tasks/{task_id}/ws"
    with pytest.raises(InvalidStatus) as anonymous:
        async with connect(ws_url):
            pass
    assert anonymous.value.response.status_code == 401
    problem = json.loads(anonymous.value.response.body)
    assert problem["type"] == "urn:loomiq:problem:unauthenticated"
    with pytest.raises(InvalidStatus) as other_tenant:
        async with connect(ws_url, additional_headers={"Authorization": f"Bearer {token('admin', 'globex')}"}):
            pass
    assert other_tenant.value.response.status_code == 404


async def test_websocket_clients_leaving_mid_stream_end_quietly(live_server: LiveServer,
                                                                caplog: pytest.LogCaptureFixture) -> None:
    # A client that drops the connection while events are still being sent to it is the normal end
    # of a stream: it used to escape the handler as an error, logged with its traceback, per client.
    task_id = _submit(live_server, SLOW)
    url = live_server.url.replace("http://", "ws://") + f"/api/tasks/{task_id}/ws"
    headers = {"Authorization": f"Bearer {token()}"}
    for _ in range(30):
        ws = await connect(url, additional_headers=headers)
        await ws.recv()
        ws.transport.abort()  # no closing handshake, while the replay is still under way
    deadline = time.monotonic() + 5
    while task_id in _subscriptions(live_server):
        assert time.monotonic() < deadline, "a subscription outlived its WebSocket client"
        await asyncio.sleep(0.02)
    with _http(live_server) as http:
        http.post(f"/api/tasks/{task_id}/cancel")
    errors = [r for r in caplog.records if r.levelname == "ERROR"]
    assert not errors, errors[0].getMessage()
