"""Property-based requests from the OpenAPI schema (schemathesis) against the real server: no request
makes a 5xx other than the documented 502/503/504, and every error is a problem document."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis.errors import Unsatisfiable

from .conftest import LiveServer
from .support import token

schemathesis = pytest.importorskip("schemathesis", reason="schemathesis is a test-only dependency")
GenerationMode = schemathesis.GenerationMode

PROBLEM_MEMBERS = {"type", "title", "status", "detail", "instance"}


@pytest.mark.parametrize("mode", [GenerationMode.POSITIVE, GenerationMode.NEGATIVE])
def test_no_server_error_and_problem_documents(live_server: LiveServer, mode: object) -> None:
    # schemathesis's pytest plugin does not run on pytest 9 yet, so each operation's strategy is driven here.
    schema = schemathesis.openapi.from_url(f"{live_server.url}/openapi.json")
    headers = {"Authorization": f"Bearer {token('admin')}"}
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) >= 15

    for operation in operations:

        @given(case=operation.as_strategy(generation_mode=mode))
        @settings(max_examples=8, deadline=None, suppress_health_check=list(HealthCheck), database=None)
        def check(case) -> None:  # noqa: ANN001 - a schemathesis Case
            response = case.call(base_url=live_server.url, headers=headers, timeout=30)
            label = f"{case.method} {case.formatted_path}: {response.status_code} {response.text[:300]}"
            assert response.status_code < 500 or response.status_code in (502, 503, 504), label
            if response.status_code >= 400:
                content_type = response.headers["content-type"]  # schemathesis keeps every value of a header
                assert content_type in ("application/problem+json", ["application/problem+json"]), label
                body = response.json()
                assert body.keys() >= PROBLEM_MEMBERS and body["status"] == response.status_code, label

        try:
            check()
        except Unsatisfiable:
            assert mode is GenerationMode.NEGATIVE  # some operations have no invalid input at all
