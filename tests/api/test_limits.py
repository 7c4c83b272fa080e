"""Body size (413) and per-tenant rate (429) limits."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from loomiq import Orchestrator
from loomiq.api import Settings, create_app
from loomiq.api.limits import TenantRateLimiter

from .support import bearer, scripted_agents, serving
from .test_problems import assert_problem


class Clock:
    """A clock the test moves by hand."""

    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_bucket_allows_a_burst_then_refills_at_the_rate() -> None:
    clock = Clock()
    limiter = TenantRateLimiter(rate_per_s=2.0, burst=3, clock=clock)
    assert [limiter.acquire("a") for _ in range(3)] == [0.0, 0.0, 0.0]
    assert limiter.acquire("a") == pytest.approx(0.5)
    clock.now += 0.5
    assert limiter.acquire("a") == 0.0
    assert limiter.acquire("a") > 0


def test_one_tenant_over_its_rate_does_not_slow_another() -> None:
    limiter = TenantRateLimiter(rate_per_s=1.0, burst=1, clock=Clock())
    assert limiter.acquire("noisy") == 0.0
    assert limiter.acquire("noisy") > 0
    assert limiter.acquire("quiet") == 0.0


def test_idle_buckets_are_evicted_past_the_bound() -> None:
    clock = Clock()
    limiter = TenantRateLimiter(rate_per_s=1.0, burst=1, clock=clock)
    limiter.max_tenants = 3
    for tenant in "abc":
        limiter.acquire(tenant)
    clock.now += 10
    limiter.acquire("d")
    assert len(limiter._buckets) <= 3


async def test_429_with_retry_after_for_one_tenant_only(settings: Settings) -> None:
    app = create_app(settings.with_(rate_per_s=0.5, rate_burst=2), orchestrator=Orchestrator(scripted_agents()))
    async with serving(app) as client:
        noisy = bearer("viewer", "noisy")
        assert [(await client.get("/api/agents", headers=noisy)).status_code for _ in range(2)] == [200, 200]
        limited = await client.get("/api/agents", headers=noisy)
        body = assert_problem(limited, 429, "rate-limited")
        assert int(limited.headers["retry-after"]) >= 1
        assert body["retry_after_s"] == int(limited.headers["retry-after"])
        assert "'noisy'" in body["detail"]
        assert (await client.get("/api/agents", headers=bearer("viewer", "quiet"))).status_code == 200
        # Liveness is not rate limited.
        assert (await client.get("/api/health", headers=noisy)).status_code == 200


async def test_declared_body_over_the_limit_is_413(settings: Settings) -> None:
    app = create_app(settings.with_(max_body_bytes=200), orchestrator=Orchestrator(scripted_agents()))
    async with serving(app, headers=bearer()) as client:
        big = {"model": "analyst", "messages": [{"role": "user", "content": "x" * 500}]}
        body = assert_problem(await client.post("/v1/chat/completions", json=big), 413, "body-too-large")
        assert "200 bytes" in body["detail"]
        assert body["error"]["code"] == "body_too_large"
        small = {"model": "analyst", "messages": [{"role": "user", "content": "hi"}]}
        assert (await client.post("/v1/chat/completions", json=small)).status_code == 200


async def test_streamed_body_over_the_limit_is_413(settings: Settings) -> None:
    app = create_app(settings.with_(max_body_bytes=200), orchestrator=Orchestrator(scripted_agents()))

    async def chunks() -> AsyncIterator[bytes]:
        yield b'{"id": "big", "provider": "scripted", "model": "'
        for _ in range(10):
            yield b"x" * 50
        yield b'"}'

    async with serving(app, headers=bearer()) as client:
        response = await client.post("/api/agents", content=chunks(), headers={"content-type": "application/json"})
        assert "content-length" not in response.request.headers
        body = assert_problem(response, 413, "body-too-large")
        assert "200 bytes" in body["detail"]


async def test_guessing_api_keys_is_rate_limited_per_address(settings: Settings) -> None:
    app = create_app(settings.with_(rate_per_s=0.5, rate_burst=3), orchestrator=Orchestrator(scripted_agents()))
    async with serving(app, client=("198.51.100.7", 4000)) as client:
        guesses = [await client.get("/api/agents", headers={"X-API-Key": f"lq_{i:012x}_{'x' * 43}"}) for i in range(4)]
        assert [g.status_code for g in guesses] == [401, 401, 401, 429]
        assert "Address 198.51.100.7" in guesses[-1].json()["detail"]
