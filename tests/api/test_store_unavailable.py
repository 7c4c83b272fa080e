"""A task database that cannot be reached answers 503 problem details, and the server recovers."""

from __future__ import annotations

from typing import Any

import httpx2
import pytest

from loomiq import Orchestrator
from loomiq.engine import StoreUnavailable


async def test_an_unreachable_database_is_a_503_with_retry_after(
    client: httpx2.AsyncClient, orchestrator: Orchestrator, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = orchestrator.engine.store  # type: ignore[union-attr]
    real_run_op = store.run_op

    async def cut(*args: Any, **kwargs: Any) -> Any:
        raise StoreUnavailable("the PostgreSQL server cannot be reached (ConnectionRefusedError: secret-host:5432)")

    monkeypatch.setattr(store, "run_op", cut)
    response = await client.post("/api/tasks", json={"prompt": "Should we shard?"}, headers={"Idempotency-Key": "k1"})
    assert response.status_code == 503
    assert response.headers["content-type"].startswith("application/problem+json")
    assert response.headers["retry-after"] == "2"
    body = response.json()
    assert body["status"] == 503 and "Idempotency-Key" in body["detail"]
    assert "secret-host" not in response.text  # the database's address stays in the server's log

    monkeypatch.setattr(store, "run_op", real_run_op)
    again = await client.post("/api/tasks", json={"prompt": "Should we shard?"}, headers={"Idempotency-Key": "k1"})
    assert again.status_code == 202
