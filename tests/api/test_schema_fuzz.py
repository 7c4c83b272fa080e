"""schemathesis against the real server, on SQLite and on PostgreSQL: requests generated from
``/openapi.json`` (valid and invalid ones, every operation), then sequences that follow the document's
links (submit a task, then read, follow, cancel, collaborate on it; register an agent, then change and
remove it; create a key, then revoke it). Every answer must pass the four checks: no 5xx that is not
documented, a documented status, a documented content type, and a body that matches its schema.

Two servers per database: one runs tasks (agents can be read, not changed: an agent registered by the
generator could be picked for every later task with an hour of scripted latency), the other changes
agents and keys (tasks off: agents it registers run nothing but ``/v1`` calls, cut at one second).

Text with NUL characters is not generated: storing it is the engine's contract (its own corpus tests
it on both databases); everything else of the document's input space is.
"""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from fastapi import FastAPI
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis.errors import Flaky, Unsatisfiable

from loomiq import Orchestrator
from loomiq.api import Settings, build_server, create_app

from ..engine.conftest import database
from .support import SECRET, scripted_agents, token

schemathesis = pytest.importorskip("schemathesis", reason="schemathesis is a test-only dependency")
from schemathesis.checks import not_a_server_error  # noqa: E402
from schemathesis.specs.openapi.checks import (  # noqa: E402
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance]
EXAMPLES = {schemathesis.GenerationMode.POSITIVE: 6, schemathesis.GenerationMode.NEGATIVE: 4}
"""Examples per operation and mode: with the stateful runs, about 15 s per server pair on 2 cores."""
STATEFUL_SCENARIOS = 12
TIMEOUT_S = 30

AGENT_MUTATIONS = r"^/api/agents"
TASKS_SERVER = {"path_regex": AGENT_MUTATIONS, "method": ["POST", "PATCH", "DELETE"]}


@contextmanager
def _server(settings_: Settings) -> Iterator[str]:
    """The real server (uvicorn in a thread, as `live_server`) with `settings_` and the scripted team."""
    app: FastAPI = create_app(settings_, orchestrator=Orchestrator(scripted_agents()))
    server = build_server("127.0.0.1", 0, settings=settings_, app=app, log_level="warning", gc_tuning=False)
    thread = threading.Thread(target=server.run, name="loomiq-fuzz-server", daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError("the fuzz server did not start")
        time.sleep(0.01)
    try:
        yield f"http://127.0.0.1:{server.servers[0].sockets[0].getsockname()[1]}"
    finally:
        server.should_exit = True
        thread.join(timeout=15)
        assert not thread.is_alive(), "the fuzz server did not stop"


@pytest.fixture(params=["sqlite", "postgresql"])
async def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> Any:
    async with database(request.param, tmp_path) as url:
        yield url


def _settings(db_url: str, tmp_path: Path, **changes: Any) -> Settings:
    return Settings(jwt_secret=SECRET, database_url=db_url, keys_path=None if db_url.startswith("postgres") else
                    tmp_path / "keys.db", rate_per_s=1e6, rate_burst=1_000_000, sse_ping_s=0.5,
                    worker_drain_s=0.2, **changes)


SERVER_ERRORS_BY_DESIGN = ["502", "503", "504"]
"""Documented answers about the agents (all failed: 502; too slow: 504) and availability (503, with
Retry-After): `not_a_server_error` lets these
through, `status_code_conformance` still fails any that an operation does not document."""


def _load(url: str) -> Any:
    config = schemathesis.Config.from_dict({
        "generation": {"allow-x00": False, "with-security-parameters": False},
        "checks": {"not_a_server_error": {"expected-statuses": ["2xx", "3xx", "4xx", *SERVER_ERRORS_BY_DESIGN]}},
    })
    return schemathesis.openapi.from_url(f"{url}/openapi.json", config=config)


def _stateless(schema: Any, headers: dict[str, str]) -> int:
    """Every operation, valid and invalid inputs; returns how many operations ran."""
    operations = [result.ok() for result in schema.get_all_operations()]
    for operation in operations:
        for mode, examples in EXAMPLES.items():

            @given(case=operation.as_strategy(generation_mode=mode))
            @settings(max_examples=examples, deadline=None, suppress_health_check=list(HealthCheck), database=None,
                      phases=[Phase.explicit, Phase.generate])
            def check(case: Any) -> None:
                case.call_and_validate(headers=headers, checks=CHECKS, timeout=TIMEOUT_S)

            try:
                check()
            except Unsatisfiable:
                assert mode is schemathesis.GenerationMode.NEGATIVE  # some operations have no invalid input
    return len(operations)


def _stateful(schema: Any, headers: dict[str, str]) -> None:
    """Sequences along the document's links."""
    base = schema.as_state_machine()
    failures: list[Exception] = []

    class Machine(base):  # type: ignore[misc, valid-type]
        def get_call_kwargs(self, case: Any) -> dict[str, Any]:
            return {"headers": headers, "timeout": TIMEOUT_S}

        def validate_response(self, response: Any, case: Any, additional_checks: Any = None, **kwargs: Any) -> None:
            try:
                case.validate_response(response, checks=CHECKS, transport_kwargs=kwargs or None,
                                       recorder=self.recorder)
            except Exception as exc:
                failures.append(exc)
                raise

    for _ in range(3):
        try:
            Machine.run(settings=settings(max_examples=STATEFUL_SCENARIOS, stateful_step_count=6, deadline=None,
                                          suppress_health_check=list(HealthCheck), database=None,
                                          phases=[Phase.generate]))
            return
        except Flaky:
            # What the machine draws depends on the server's state (the resources earlier steps created),
            # so Hypothesis may find a replayed choice sequence drawing differently and stop. As in
            # schemathesis's own runner, that is a failure only when a check failed; else run again.
            if failures:
                raise failures[0] from None


def _follow(schema: Any, headers: dict[str, str], path: str, method: str, body: dict[str, Any]) -> list[str]:
    """Call an operation that creates something, then every operation its answer links to, with the
    link's parameter taken from the answer; each answer must pass the checks and find the resource.
    Returns the links followed."""
    made = schema[path][method].Case(body=body)
    response = made.call_and_validate(headers=headers, checks=CHECKS, timeout=TIMEOUT_S)
    assert response.status_code in (201, 202), response.text
    followed = []
    for name, link in schema.raw_schema["paths"][path][method.lower()]["responses"][str(response.status_code)][
            "links"].items():
        target = schema.find_operation_by_id(link["operationId"])
        (parameter, expression), = link["parameters"].items()
        value = response.json()[expression.removeprefix("$response.body#/")]
        extra = {"body": {}} if target.body else {}  # collaborate takes a body; its fields have defaults
        case = target.Case(path_parameters={parameter: value}, **extra)
        answer = case.call_and_validate(headers=headers, checks=CHECKS, timeout=TIMEOUT_S)
        assert answer.status_code < 400 or answer.status_code == 409, (name, answer.status_code, answer.text)
        followed.append(name)
    return followed


def _links(schema: Any) -> set[str]:
    raw = schema.raw_schema
    return {name for ops in raw["paths"].values() for op in ops.values()
            for response in op["responses"].values() for name in response.get("links", {})}


def test_the_task_server_answers_as_documented(db_url: str, tmp_path: Path) -> None:
    headers = {"Authorization": f"Bearer {token('admin')}"}
    with _server(_settings(db_url, tmp_path, agent_admin_tenants=("operations",))) as url:
        schema = _load(url)
        schema.validate()  # a valid OpenAPI 3.1 document
        assert {"GetTask", "TaskEvents", "CancelTask", "Collaborate"} <= _links(schema)
        task = {"prompt": "Should we shard the database now?", "strategy": "single"}
        assert _follow(schema, headers, "/api/tasks", "POST", task) == ["GetTask", "TaskEvents", "CancelTask",
                                                                       "Collaborate"]
        tasks = schema.exclude(**TASKS_SERVER)
        assert _stateless(tasks, headers) >= 14
        _stateful(tasks.include(path_regex=r"^/api/tasks"), headers)


def test_the_agent_and_key_server_answers_as_documented(db_url: str, tmp_path: Path) -> None:
    headers = {"Authorization": f"Bearer {token('admin')}"}
    with _server(_settings(db_url, tmp_path, tasks_enabled=False, run_timeout_s=1.0)) as url:
        schema = _load(url)
        assert {"GetAgent", "UpdateAgent", "RemoveAgent", "RevokeKey"} <= _links(schema)
        agent = {"id": "linked", "provider": "scripted", "model": "scripted"}
        assert _follow(schema, headers, "/api/agents", "POST", agent) == ["GetAgent", "UpdateAgent", "RemoveAgent"]
        assert _follow(schema, headers, "/api/keys", "POST", {"role": "viewer"}) == ["RevokeKey"]
        agents = schema.include(path_regex=r"^/(api/agents|api/keys|v1/)")
        assert _stateless(agents, headers) >= 8
        _stateful(agents.include(path_regex=r"^/api/(agents|keys)"), headers)


def test_every_error_is_documented_as_a_problem_and_no_default_422_is_left(live_server: Any) -> None:
    import httpx2

    document = httpx2.get(f"{live_server.url}/openapi.json").json()
    assert "HTTPValidationError" not in str(document) and "ValidationError" not in document["components"]["schemas"]
    problem_refs = {"#/components/schemas/ProblemDocument", "#/components/schemas/OpenAIProblemDocument"}
    for path, operations in document["paths"].items():
        for method, operation in operations.items():
            for status, response in operation["responses"].items():
                if status[0] in "45":
                    assert list(response["content"]) == ["application/problem+json"], (method, path, status)
                    assert response["content"]["application/problem+json"]["schema"]["$ref"] in problem_refs
                elif status != "204":
                    assert response["content"], (method, path, status)
            if path.startswith("/v1/"):
                refs = {r["content"]["application/problem+json"]["schema"]["$ref"]
                        for s, r in operation["responses"].items() if s[0] in "45"}
                assert refs == {"#/components/schemas/OpenAIProblemDocument"}, path
            if path not in ("/api/health", "/api/ready"):
                assert operation["security"] == [{"bearer": []}, {"apiKey": []}], path
                assert {"401", "403", "429", "503"} <= set(operation["responses"]), (method, path)
    events = document["paths"]["/api/tasks/{task_id}/events"]["get"]
    assert list(events["responses"]["200"]["content"]) == ["text/event-stream"]
    assert "access_token" in document["info"]["description"] and "/ws" in document["info"]["description"]



async def test_docs_are_served_from_the_package_without_a_cdn(client: Any) -> None:
    page = await client.get("/docs", headers={})
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    sources = re.findall(r'(?:src|href)="([^"]+)"', page.text)
    assert sources and all(s.startswith("/docs/assets/") for s in sources), sources
    assert "http" not in page.text.replace("window.location.origin", ""), page.text  # nothing from the internet
    for source in sources:
        asset = await client.get(source, headers={})
        assert asset.status_code == 200 and len(asset.content) > 1000, source
    bundle = (await client.get("/docs/assets/swagger-ui-bundle.js")).text
    assert "SwaggerUIBundle" in bundle and "isOAS31" in bundle  # Swagger UI 5: renders the OpenAPI 3.1 document
    assert "url: '/openapi.json'" in page.text
