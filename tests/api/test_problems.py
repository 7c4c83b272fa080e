"""Every error is an RFC 9457 problem document with a detail a person can act on."""

from __future__ import annotations

import httpx2
import pytest
from fastapi import FastAPI

from loomiq.api import PROBLEM_JSON
from loomiq.api.problems import Problem, field_name, validation_problem

from .support import bearer

MEMBERS = {"type", "title", "status", "detail", "instance"}


def assert_problem(response: httpx2.Response, status: int, slug: str) -> dict:
    """The response is a problem of `status` whose type ends with `slug`; returns its body."""
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == PROBLEM_JSON
    body = response.json()
    assert body.keys() >= MEMBERS
    assert body["status"] == status
    assert body["type"] == f"urn:loomiq:problem:{slug}"
    assert body["instance"] == response.request.url.path
    assert len(body["detail"]) > 20
    return body


async def test_unknown_route_is_a_404_problem(client: httpx2.AsyncClient) -> None:
    body = assert_problem(await client.get("/api/nope"), 404, "not-found")
    assert "/docs" in body["detail"]
    assert "error" not in body  # the OpenAI member is only under /v1


async def test_wrong_method_is_a_405_problem_naming_the_allowed_ones(client: httpx2.AsyncClient) -> None:
    response = await client.delete("/api/health")
    body = assert_problem(response, 405, "method-not-allowed")
    assert response.headers["allow"] == "GET"
    assert "use GET" in body["detail"]


async def test_invalid_body_is_a_422_problem_naming_the_field(client: httpx2.AsyncClient) -> None:
    response = await client.post("/api/agents", json={"id": "x", "provider": "scripted", "model": "m",
                                                      "timeout_s": -1})
    body = assert_problem(response, 422, "invalid-request")
    assert "'timeout_s'" in body["detail"]
    assert body["errors"][0]["field"] == "timeout_s"


async def test_nested_field_and_several_errors_are_all_listed(client: httpx2.AsyncClient) -> None:
    response = await client.post("/v1/chat/completions", json={"model": "", "messages": [{"role": "robot"}]})
    body = assert_problem(response, 422, "invalid-request")
    fields = {e["field"] for e in body["errors"]}
    assert {"model", "messages[0].role"} <= fields
    assert "more problem" in body["detail"]
    assert body["error"]["param"] in fields


async def test_malformed_json_is_a_422_problem(client: httpx2.AsyncClient) -> None:
    response = await client.post("/api/agents", content=b'{"id": ', headers={"content-type": "application/json"})
    body = assert_problem(response, 422, "invalid-request")
    assert "not valid JSON" in body["detail"]
    # Bytes that are not UTF-8 are the same problem (FastAPI alone answers them 400, undocumented).
    response = await client.post("/api/agents", content=b'["\xff\xfe"]', headers={"content-type": "application/json"})
    body = assert_problem(response, 422, "invalid-request")
    assert "not valid JSON (not UTF-8 text" in body["detail"] and body["errors"][0]["field"] == "body"


async def test_v1_problems_also_carry_an_openai_error_object(client: httpx2.AsyncClient) -> None:
    response = await client.post("/v1/chat/completions", json={"model": "nobody", "messages": [
        {"role": "user", "content": "hi"}]})
    body = assert_problem(response, 404, "model-not-found")
    assert body["error"] == {"message": body["detail"], "type": "invalid_request_error", "param": "model",
                             "code": "model_not_found"}


async def test_unexpected_error_is_a_500_problem_with_an_id(app: FastAPI) -> None:
    @app.get("/api/boom")
    async def boom() -> None:
        raise RuntimeError("kaput")

    transport = httpx2.ASGITransport(app=app, raise_app_exceptions=False)
    async with httpx2.AsyncClient(transport=transport, base_url="http://t", headers=bearer()) as client:
        response = await client.get("/api/boom")
    body = assert_problem(response, 500, "internal-error")
    assert body["error_id"] in body["detail"]
    assert "kaput" not in body["detail"]  # internals stay in the log


def test_field_names_read_like_paths() -> None:
    assert field_name(("body", "messages", 0, "role")) == "messages[0].role"
    assert field_name(("query", "limit")) == "limit"
    assert field_name(("body",)) == "body"


def test_problem_defaults_follow_the_status() -> None:
    problem = Problem(429, "slow down", headers={"Retry-After": "3"})
    assert (problem.slug, problem.title, problem.headers) == ("rate-limited", "Too many requests", {"Retry-After": "3"})
    assert validation_problem([]).status == 422


@pytest.mark.parametrize("path", ["/api/agents", "/v1/models"])
async def test_every_auth_failure_is_a_problem(app: FastAPI, path: str) -> None:
    async with httpx2.AsyncClient(transport=httpx2.ASGITransport(app=app), base_url="http://t") as anonymous:
        response = await anonymous.get(path)
    assert_problem(response, 401, "unauthenticated")
    assert response.headers["www-authenticate"].startswith("Bearer")


async def test_openapi_schema_lists_every_route(client: httpx2.AsyncClient) -> None:
    schema = (await client.get("/openapi.json")).json()
    for path in ("/api/agents", "/api/tasks", "/api/tasks/{task_id}/events", "/v1/chat/completions", "/v1/models",
                 "/api/keys", "/api/ready"):
        assert path in schema["paths"], path
    assert (await client.get("/docs")).status_code == 200
