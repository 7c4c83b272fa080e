"""Every number that comes from outside, at 0, -1, 2^63 and 10^23, on SQLite and on PostgreSQL.

The corpus is generated from ``/openapi.json``: every integer or number in a path, query or header
parameter or anywhere in a request body (nested objects included). Each must declare both bounds,
and the server must keep them: a value inside answers 2xx (and what it started ends: a task finishes,
a stream closes), a value outside answers 422 naming the field, never a 5xx. Numbers the document
cannot describe get their own cases: those inside a pagination cursor, inside a task's free-form
`context`, and JSON's NaN and Infinity.
"""

from __future__ import annotations

import asyncio
import base64
import itertools
import json
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx2
import pytest

from loomiq import Orchestrator
from loomiq.api import Settings, create_app

from ..engine.conftest import database
from .support import SECRET, bearer, scripted_agents

VALUES = (0, -1, 2**63, 10**23)
ASK = "Should we shard the database now?"


@dataclass(frozen=True)
class NumericInput:
    """One number an operation takes: where it goes and the bounds the document declares."""

    method: str
    path: str
    location: str  # path, query, header, body
    field: tuple[str, ...]  # ("retry", "max_attempts") in a body; (name,) for a parameter
    minimum: float
    maximum: float
    exclusive_minimum: bool
    exclusive_maximum: bool

    @property
    def name(self) -> str:
        """The field as problem documents name it."""
        return ".".join(self.field)

    def accepts(self, value: float) -> bool:
        """Whether the document says `value` is valid here."""
        low = value > self.minimum if self.exclusive_minimum else value >= self.minimum
        high = value < self.maximum if self.exclusive_maximum else value <= self.maximum
        return low and high


def _numbers(schema: dict[str, Any], components: dict[str, Any], field: tuple[str, ...]) -> Iterator[
        tuple[tuple[str, ...], dict[str, Any]]]:
    while "$ref" in schema:
        schema = components[schema["$ref"].rsplit("/", 1)[-1]]
    for alternative in schema.get("anyOf", []):
        yield from _numbers(alternative, components, field)
    if schema.get("type") in ("integer", "number"):
        yield field, schema
    for name, sub in schema.get("properties", {}).items():
        yield from _numbers(sub, components, (*field, name))


def numeric_inputs(document: dict[str, Any]) -> list[NumericInput]:
    """Every numeric input of every operation in `document`."""
    components = document["components"]["schemas"]
    found = []
    for path, operations in document["paths"].items():
        for method, operation in operations.items():
            sources = [(p["in"], (p["name"],), p["schema"]) for p in operation.get("parameters", [])]
            body = operation.get("requestBody", {}).get("content", {}).get("application/json")
            if body:
                sources.append(("body", (), body["schema"]))
            for location, prefix, schema in sources:
                for field, number in _numbers(schema, components, prefix):
                    low, high = number.get("exclusiveMinimum"), number.get("exclusiveMaximum")
                    found.append(NumericInput(
                        method.upper(), path, location, field,
                        number.get("minimum", low), number.get("maximum", high), low is not None, high is not None,
                    ))
    return found


@pytest.fixture(params=["sqlite", "postgresql"])
async def client(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[httpx2.AsyncClient]:
    async with database(request.param, tmp_path) as url:
        settings = Settings(jwt_secret=SECRET, database_url=url, keys_path=tmp_path / "keys.db", rate_per_s=1e6,
                            rate_burst=1_000_000, sse_ping_s=0, worker_drain_s=0.2, run_timeout_s=10,
                            agent_admin_tenants=("acme",))  # acme's admins may change the shared agents' numbers
        app = create_app(settings, orchestrator=Orchestrator(scripted_agents()))
        async with app.router.lifespan_context(app):
            transport = httpx2.ASGITransport(app=app)
            async with httpx2.AsyncClient(transport=transport, base_url="http://t", headers=bearer(),
                                          timeout=30) as http:
                yield http


async def _finished_task(http: httpx2.AsyncClient, **fields: Any) -> str:
    response = await http.post("/api/tasks", json={"prompt": ASK, "strategy": "single", **fields})
    assert response.status_code == 202, response.text
    task_id = response.json()["id"]
    await _ends(http, task_id)
    return task_id


async def _ends(http: httpx2.AsyncClient, task_id: str) -> dict[str, Any]:
    """The task, once it ended (it must: a number must never wedge it)."""
    async with asyncio.timeout(15):
        while True:
            task = (await http.get(f"/api/tasks/{task_id}")).json()
            if task["status"] in ("completed", "failed", "cancelled", "timed_out"):
                return task
            await asyncio.sleep(0.02)


_ids = itertools.count()


FLOW = "name: num\nnodes:\n  only:\n    kind: task\n    prompt: Name a colour\n    strategy: single\n"


async def _finished_workflow_run(http: httpx2.AsyncClient) -> str:
    """A registered workflow ``num`` and a run of it that ended (the run-id routes' resource)."""
    assert (await http.post("/api/workflows", json={"source": FLOW})).status_code == 201
    started = await http.post("/api/workflows/num/runs", json={})
    assert started.status_code == 202, started.text
    run_id: str = started.json()["id"]
    async with asyncio.timeout(20):
        while True:
            if (await http.get(f"/api/workflow-runs/{run_id}")).json()["status"] in ("succeeded", "failed"):
                return run_id
            await asyncio.sleep(0.05)


def _request(spec: NumericInput, value: float, task_id: str, run_id: str = "") -> dict[str, Any]:
    """A valid request to `spec`'s operation with `value` in `spec`'s place."""
    body: dict[str, Any] | None = None
    params: dict[str, Any] = {}
    headers: dict[str, str] = {}
    path = (spec.path.replace("{task_id}", task_id).replace("{agent_id}", "analyst").replace("{name}", "num")
            .replace("{run_id}", run_id))
    if spec.path == "/api/agents":
        body = {"id": f"num{next(_ids)}", "provider": "scripted", "model": "scripted"}
    elif spec.path == "/api/tasks" and spec.method == "POST":
        strategy = {"min_agents": "consensus", "max_rounds": "adaptive"}.get(spec.field[-1], "single")
        body = {"prompt": ASK, "strategy": strategy, **({"options": {"allow_fewer": True}} if strategy ==
                                                        "consensus" else {})}
    elif spec.path == "/v1/chat/completions":
        body = {"model": "single", "messages": [{"role": "user", "content": ASK}]}
    elif spec.method in ("POST", "PATCH"):
        body = {}
    if spec.location == "body":
        assert body is not None
        place = body
        for part in spec.field[:-1]:
            place = place.setdefault(part, {})
        place[spec.field[-1]] = value
    elif spec.location == "query":
        params[spec.name] = str(value)
    elif spec.location == "header":
        headers[spec.name] = str(value)
    else:
        raise AssertionError(f"no numeric path parameters are expected: {spec}")
    return {"method": spec.method, "url": path, "params": params, "headers": headers,
            **({"json": body} if body is not None else {})}


async def test_every_numeric_input_is_bounded_and_the_bounds_hold(client: httpx2.AsyncClient) -> None:
    document = (await client.get("/openapi.json")).json()
    inputs = numeric_inputs(document)
    assert len(inputs) >= 25 and {s.location for s in inputs} == {"query", "header", "body"}
    unbounded = [s for s in inputs if s.minimum is None or s.maximum is None]
    assert not unbounded, f"numbers without both bounds in the document: {unbounded}"
    task_id = await _finished_task(client)
    run_id = await _finished_workflow_run(client)
    for spec, value in itertools.product(inputs, VALUES):
        response = await client.request(**_request(spec, value, task_id, run_id))
        label = f"{spec.method} {spec.path} {spec.location} {spec.name}={value}: {response.status_code} {response.text}"
        assert response.status_code < 500, label
        if not spec.accepts(value):
            assert response.status_code == 422, label
            problem = response.json()
            assert response.headers["content-type"] == "application/problem+json", label
            assert spec.name in {e["field"] for e in problem["errors"]}, label
            continue
        assert response.status_code < 300, label
        if spec.path == "/api/tasks" and spec.method == "POST":
            await _ends(client, response.json()["id"])
        if spec.path.endswith("/events") and "{task_id}" in spec.path:  # a finished task: the events after `value`
            frames = [line for line in response.text.splitlines() if line.startswith("event: ")]
            assert frames == [] if value else frames[-1] == "event: task_finished", label
        if spec.path.endswith("/collaborate"):
            await _ends(client, response.json()["id"])


def _cursor(raw: str) -> str:
    return base64.urlsafe_b64encode(raw.encode()).rstrip(b"=").decode()


async def test_numbers_inside_a_cursor_are_bounded(client: httpx2.AsyncClient) -> None:
    for _ in range(3):
        await _finished_task(client)
    first = (await client.get("/api/tasks", params={"limit": 1})).json()
    created_at, item_id, offset = json.loads(base64.urlsafe_b64decode(first["next_cursor"] + "=="))
    assert (await client.get("/api/tasks", params={"limit": 1, "cursor": first["next_cursor"]})).status_code == 200
    for value in VALUES:
        for forged in ([created_at, item_id, value], [value, item_id, offset]):
            response = await client.get("/api/tasks", params={"limit": 1, "cursor": _cursor(json.dumps(forged))})
            label = f"cursor {forged}: {response.status_code} {response.text}"
            if value in (0,):  # 0 is a valid offset and a valid (if odd) time: a page, maybe empty
                assert response.status_code == 200, label
                continue
            assert response.status_code == 422 and response.json()["errors"][0]["field"] == "cursor", label


@pytest.mark.parametrize("value", [*VALUES, 2**63 - 1, -(2**63), 1.5e308])
async def test_numbers_in_a_task_context_are_stored_and_run(client: httpx2.AsyncClient, value: float) -> None:
    task_id = await _finished_task(client, context={"n": value, "nested": [{"n": value}]})
    task = await _ends(client, task_id)
    assert task["status"] == "completed", task


@pytest.mark.parametrize("literal", ["NaN", "Infinity", "-Infinity"])
async def test_non_finite_json_numbers_are_refused_where_they_would_be_stored(
    client: httpx2.AsyncClient, literal: str
) -> None:
    # Python's JSON parser accepts these literals; no database column or JSON document can hold them.
    cases = [
        ("/api/tasks", f'{{"prompt": "{ASK}", "timeout_s": {literal}}}', "timeout_s"),
        ("/api/tasks", f'{{"prompt": "{ASK}", "context": {{"n": {literal}}}}}', "context"),
        ("/api/agents", f'{{"id": "inf{next(_ids)}", "provider": "scripted", "model": "scripted", '
                        f'"timeout_s": {literal}}}', "timeout_s"),
    ]
    for path, raw, field in cases:
        response = await client.post(path, content=raw.encode(), headers={"content-type": "application/json"})
        assert response.status_code == 422, (raw, response.status_code, response.text)
        assert any(e["field"].startswith(field) for e in response.json()["errors"]), (raw, response.text)
