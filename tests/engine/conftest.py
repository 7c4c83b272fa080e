"""Fixtures of the engine suite: every test runs on SQLite and on PostgreSQL.

PostgreSQL comes from ``$LOOMIQ_TEST_POSTGRES_URL`` (default ``postgresql://postgres@127.0.0.1:5432/test``,
then the same as ``root``). Each test gets a fresh schema, dropped afterwards. Without a server the
PostgreSQL cases are skipped, unless ``$CI`` is set: then they fail.
"""

from __future__ import annotations

import asyncio
import os
import uuid
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from pathlib import Path
from weakref import WeakKeyDictionary

import pytest

from loomiq import Agent, AgentConfig, Orchestrator, RetryPolicy, ScriptedModel
from loomiq.engine import EngineConfig, TaskEngine, Worker

PG_URLS = [
    u for u in (
        os.environ.get("LOOMIQ_TEST_POSTGRES_URL"),
        "postgresql://postgres@127.0.0.1:5432/test",
        "postgresql://root@127.0.0.1:5432/test",
    ) if u
]
_pg_url: str | None | bool = False  # False: not probed yet

FAST = EngineConfig(lease_s=2.0, renew_s=0.2, aging_s=60.0, delta_flush_s=0.01)
"""Engine timings for tests: leases short enough to expire within a test."""


async def postgres_url() -> str | None:
    """The first PostgreSQL URL that answers, or None."""
    global _pg_url
    if _pg_url is False:
        _pg_url = None
        try:
            import asyncpg
        except ImportError:
            return None
        for url in PG_URLS:
            try:
                conn = await asyncpg.connect(url, timeout=3)
            except (TimeoutError, OSError, asyncpg.PostgresError):
                continue
            await conn.close()
            _pg_url = url
            break
    return _pg_url or None


@asynccontextmanager
async def database(kind: str, tmp: Path) -> AsyncIterator[str]:
    """A URL of an empty database of `kind` (sqlite, postgresql), removed afterwards."""
    if kind == "sqlite":
        yield f"sqlite:///{tmp / f'{uuid.uuid4().hex[:8]}.db'}"
        return
    url = await postgres_url()
    if url is None:
        if os.environ.get("CI"):
            pytest.fail(f"PostgreSQL is required in CI and none answered at {', '.join(PG_URLS)}")
        pytest.skip("no PostgreSQL server answered (set LOOMIQ_TEST_POSTGRES_URL)")
    import asyncpg

    schema = f"t_{uuid.uuid4().hex[:12]}"
    try:
        yield f"{url}?schema={schema}"
    finally:
        conn = await asyncpg.connect(url)
        try:
            await conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
        finally:
            await conn.close()


@pytest.fixture(params=["sqlite", "postgresql"])
async def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[str]:
    """A fresh database URL, on each dialect."""
    async with database(request.param, tmp_path) as url:
        yield url


def scripted(agent_id: str, model: ScriptedModel | None = None, capabilities: Sequence[str] = (),
             retries: int = 1) -> Agent:
    """An agent on a scripted model that does not retry by itself (tests decide failures)."""
    return Agent(
        AgentConfig(agent_id, "scripted", "scripted", capabilities=frozenset(capabilities),
                    retry=RetryPolicy(max_attempts=retries, base_delay_s=0.01), max_concurrency=64),
        model or ScriptedModel(replies=[f"answer from {agent_id}"]),
    )


def team(n: int = 4, latency_s: float = 0.0) -> list[Agent]:
    """`n` scripted agents a0, a1... answering "answer from aN"."""
    return [scripted(f"a{i}", ScriptedModel(replies=[f"answer from a{i}"], latency_s=latency_s)) for i in range(n)]


_OWNERS: WeakKeyDictionary[TaskEngine, Orchestrator] = WeakKeyDictionary()


def owned(orch: Orchestrator) -> TaskEngine:
    """`orch`'s engine, remembered so that `orch_of` finds `orch` again from it."""
    engine = orch.engine
    _OWNERS[engine] = orch
    return engine


def orch_of(engine: TaskEngine) -> Orchestrator:
    """The orchestrator that opened `engine` (the engine itself knows only its runner)."""
    return _OWNERS[engine]


@pytest.fixture
async def open_engine(db_url: str) -> AsyncIterator[Callable[..., object]]:
    """``await open_engine(agents, config=FAST)``: an engine on this test's database (several may be
    opened: each is like another process on the same database). All are closed afterwards."""
    opened: list[Orchestrator] = []

    async def factory(agents: Sequence[Agent] | None = None, config: EngineConfig = FAST,
                      agent_limits: dict[str, object] | None = None, **store_options: object) -> TaskEngine:
        orch = Orchestrator(agents if agents is not None else team())
        await orch.open_engine(db_url, config=config, agent_limits=agent_limits,  # type: ignore[arg-type]
                               store_options=store_options)
        opened.append(orch)
        return owned(orch)

    try:
        yield factory
    finally:
        for orch in reversed(opened):
            await orch.aclose()


@pytest.fixture
async def engine(open_engine: Callable[..., object]) -> TaskEngine:
    """An engine on four scripted agents a0..a3."""
    return await open_engine()  # type: ignore[misc]


@asynccontextmanager
async def running(engine: TaskEngine, **options: object) -> AsyncIterator[Worker]:
    """A `Worker` running on `engine` for the duration of the block, stopped gracefully after."""
    worker = Worker(engine, **options)  # type: ignore[arg-type]
    task = asyncio.create_task(worker.run())
    try:
        yield worker
    finally:
        if task.done():
            task.result()
        else:
            await worker.stop(drain_s=5.0)
            await task


async def eventually(predicate: Callable[[], object], timeout_s: float = 5.0, every_s: float = 0.01) -> None:
    """Wait until `predicate()` (sync or async) is true; fail the test after `timeout_s`."""
    async with asyncio.timeout(timeout_s):
        while True:
            value = predicate()
            if asyncio.iscoroutine(value):
                value = await value
            if value:
                return
            await asyncio.sleep(every_s)
