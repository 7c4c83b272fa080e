"""Every string field of ``POST /api/tasks`` (generated from its OpenAPI schema) with text no database
stores (NUL, lone surrogates) is a 422 naming the field, and with text a database does store (1 MB,
right-to-left, control characters) never a 500, on SQLite and PostgreSQL; a task id or dependency that
cannot be stored is a 4xx (PostgreSQL answered 500). Issue 10 item 5."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx2
import pytest

from loomiq import Orchestrator
from loomiq.api import Settings, create_app

from ..engine.conftest import database
from .support import SECRET, bearer, scripted_agents

UNSTORABLE = {"nul": "a\x00b", "lone-high-surrogate": "x\ud800y", "lone-low-surrogate": "\udfff"}
STORABLE = {"1mb": "é" * 500_000, "rtl": "\u202eمرحبا שלום", "controls": "a\x01\x1b]0;title\x07\x7fz"}


@pytest.fixture(params=["sqlite", "postgresql"])
async def http(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[httpx2.AsyncClient]:
    async with database(request.param, tmp_path) as url:
        settings = Settings(jwt_secret=SECRET, database_url=url, keys_path=tmp_path / "keys.db", rate_per_s=1e6,
                            rate_burst=1_000_000, sse_ping_s=0, worker_drain_s=0.2, max_body_bytes=4_000_000)
        app = create_app(settings, orchestrator=Orchestrator(scripted_agents()))
        async with app.router.lifespan_context(app):
            transport = httpx2.ASGITransport(app=app)
            async with httpx2.AsyncClient(transport=transport, base_url="http://t", headers=bearer(),
                                          timeout=60) as client:
                yield client


def _string_fields(schema: dict[str, Any], components: dict[str, Any]) -> Iterator[tuple[str, str]]:
    """(field, shape) for each property of the body that carries text: ``str``, ``list`` of strings,
    or ``dict`` (free-form objects: the text goes in a value)."""
    if "$ref" in schema:
        schema = components[schema["$ref"].rsplit("/", 1)[-1]]
    for name, prop in schema.get("properties", {}).items():
        options = prop.get("anyOf", [prop])
        types = {o.get("type") for o in options}
        items = {(o.get("items") or {}).get("type") for o in options if o.get("type") == "array"}
        if "string" in types and "enum" not in prop and not any("enum" in o for o in options):
            yield name, "str"
        elif "string" in items:
            yield name, "list"
        elif "object" in types:
            yield name, "dict"


async def _post(http: httpx2.AsyncClient, body: dict[str, Any]) -> httpx2.Response:
    """POST as a client does (JSON with \\u escapes: a lone surrogate is valid JSON text). (Headers
    cannot carry these characters: HTTP sends them as bytes.)"""
    return await http.post("/api/tasks", content=json.dumps(body).encode(),
                           headers={"Content-Type": "application/json"})


def _shaped(shape: str, text: str) -> Any:
    return text if shape == "str" else [text] if shape == "list" else {"k": text}


async def test_every_string_field_of_a_submission(http: httpx2.AsyncClient) -> None:
    doc = (await http.get("/openapi.json")).json()
    body = doc["paths"]["/api/tasks"]["post"]["requestBody"]["content"]["application/json"]["schema"]
    fields = list(_string_fields(body, doc["components"]["schemas"]))
    assert {"prompt", "strategy", "agents", "after", "context"} <= {f for f, _ in fields}, fields
    for field, shape in fields:
        for label, text in UNSTORABLE.items():
            answer = await _post(http, {"prompt": "fine", field: _shaped(shape, text)})
            assert answer.status_code == 422, (field, label, answer.status_code, answer.text[:300])
            assert field in answer.json()["detail"] or field in answer.text, (field, label, answer.text[:300])
        for label, text in STORABLE.items():
            answer = await _post(http, {"prompt": "fine", field: _shaped(shape, text)})
            assert answer.status_code < 500, (field, label, answer.status_code, answer.text[:300])


async def test_storable_text_is_accepted_and_its_task_ends(http: httpx2.AsyncClient) -> None:
    for label, text in STORABLE.items():
        answer = await _post(http, {"prompt": text, "strategy": "single"})
        if answer.status_code == 422:  # (a prompt over the API's length limit)
            assert "prompt" in answer.text, (label, answer.text[:300])
            continue
        assert answer.status_code == 202, (label, answer.text[:300])
        task_id = answer.json()["id"]
        for _ in range(400):  # it ends (within 20 s): nothing about its text wedges it
            task = (await http.get(f"/api/tasks/{task_id}")).json()
            if task["status"] in ("completed", "failed"):
                break
            await asyncio.sleep(0.05)
        assert task["status"] == "completed", (label, task.get("error"))


async def test_an_id_that_cannot_be_stored_is_not_found(http: httpx2.AsyncClient) -> None:
    for path in ("/api/tasks/a%00b", "/api/tasks/a%00b/events"):
        answer = await http.get(path)
        assert 400 <= answer.status_code < 500, (path, answer.status_code, answer.text[:300])
    answer = await http.delete("/api/tasks/a%00b")
    assert 400 <= answer.status_code < 500, answer.text[:300]
