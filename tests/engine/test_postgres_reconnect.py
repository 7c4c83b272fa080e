"""The PostgreSQL store survives losing its connections (see `loomiq.engine._postgres`).

The whole-server restart is in `test_processes.py`; here the server stays up and the store's own
sessions are ended under it with ``pg_terminate_backend``, as a failover or a network cut would.
"""

from __future__ import annotations

import asyncio

import asyncpg
import pytest

from loomiq.engine import StoreUnavailable, TaskEngine

from .conftest import eventually, running, team

postgresql_only = pytest.mark.parametrize("db_url", ["postgresql"], indirect=True)


async def terminate(url: str, pids: list[int]) -> None:
    conn = await asyncpg.connect(url.split("?", 1)[0])
    try:
        ended = await conn.fetchval("SELECT count(*) FILTER (WHERE pg_terminate_backend(p)) FROM unnest($1::int[]) p",
                                    pids)
    finally:
        await conn.close()
    assert ended == len(pids), f"only {ended} of the sessions {pids} were ended"


def session_pids(engine: TaskEngine) -> list[int]:
    store = engine.store
    writer, listener = store._wconn, store._lconn  # type: ignore[attr-defined]
    assert writer is not None and listener is not None
    return [writer.get_server_pid(), listener.get_server_pid()]


@postgresql_only
async def test_writer_and_listener_reconnect_and_every_task_completes(open_engine, db_url: str) -> None:  # type: ignore[no-untyped-def]
    agents = team(2, latency_s=0.02)
    engine: TaskEngine = await open_engine(agents)
    store = engine.store
    async with running(engine, concurrency=4):
        ids = [(await engine.submit(f"t{i}", strategy="sequential", agents=["a0", "a1"])).id for i in range(12)]
        await eventually(lambda: sum(len(a.model.calls) for a in agents) >= 4)  # type: ignore[attr-defined]
        await terminate(db_url, session_pids(engine))

        # The next write either reconnects at once or fails with StoreUnavailable; the one after works.
        failures = 0
        for attempt in range(2):
            try:
                ids.append((await engine.submit(f"after {attempt}", strategy="sequential", agents=["a0", "a1"])).id)
            except StoreUnavailable:
                failures += 1
        assert failures <= 1 and len(ids) == 12 + 2 - failures

        # The listener is back: a notification sent now reaches this process's hub.
        await eventually(lambda: store.reconnects >= 2, timeout_s=10)  # type: ignore[attr-defined]
        woken = asyncio.Event()
        store.hub.work_listeners.add(woken.set)
        conn = await asyncpg.connect(db_url.split("?", 1)[0])
        try:
            await conn.execute("SELECT pg_notify($1, '')", f"{store.dialect.notify_channel}_tasks")
        finally:
            await conn.close()
        async with asyncio.timeout(5):
            await woken.wait()

        # Runs cut off mid-flight were abandoned and are taken over once their leases run out.
        tasks = [await engine.wait(t, timeout_s=20) for t in ids]
    assert [t.status for t in tasks] == ["completed"] * len(ids)
    calls = sum(len(a.model.calls) for a in agents)  # type: ignore[attr-defined]
    assert len(ids) * 2 <= calls <= len(ids) * 2 + 4  # at most the 4 calls in flight were made again


@postgresql_only
async def test_a_read_on_a_cut_pooled_connection_is_retried(open_engine, db_url: str) -> None:  # type: ignore[no-untyped-def]
    engine: TaskEngine = await open_engine(team(1), min_size=1, max_size=1)
    tid = (await engine.submit("hello", strategy="single", agents=["a0"])).id
    pool = engine.store._pool  # type: ignore[attr-defined]
    async with pool.acquire() as conn:
        pid = conn.get_server_pid()
    await terminate(db_url, [pid])
    assert (await engine.get_task(tid)).status == "queued"


@postgresql_only
async def test_a_store_that_cannot_reach_the_server_says_so(open_engine, db_url: str) -> None:  # type: ignore[no-untyped-def]
    engine: TaskEngine = await open_engine(team(1))
    engine.store.dsn = "postgresql://postgres@127.0.0.1:1/test"  # type: ignore[attr-defined]  # nothing listens
    await terminate(db_url, session_pids(engine))
    await asyncio.sleep(0.1)
    with pytest.raises(StoreUnavailable, match="cannot be reached"):
        await engine.submit("lost", strategy="single", agents=["a0"])


@postgresql_only
async def test_closing_a_store_that_cannot_reach_the_server_still_closes_every_connection(  # type: ignore[no-untyped-def]
        open_engine, db_url: str) -> None:
    # The closing engine's last writes (agent statistics, queued events) cannot commit: the close must
    # not stop there and leave the read pool's connections open (they were leaked, with a ResourceWarning).
    agents = team(1)
    engine: TaskEngine = await open_engine(agents)
    await engine.submit("before", strategy="single", agents=["a0"])
    agents[0].stats.calls += 1  # a delta the recorder writes at close
    pool = engine.store._pool  # type: ignore[attr-defined]
    async with pool.acquire() as conn:
        pooled = conn.get_server_pid()
    engine.store.dsn = "postgresql://postgres@127.0.0.1:1/test"  # type: ignore[attr-defined]  # nothing listens
    await terminate(db_url, session_pids(engine))
    await asyncio.sleep(0.1)

    await engine.close()  # does not raise: what could not be written failed its writers (none waits here)

    assert pool._closed  # type: ignore[attr-defined]
    watcher = await asyncpg.connect(db_url.split("?", 1)[0])
    try:
        await eventually(lambda: watcher.fetchval("SELECT count(*) = 0 FROM pg_stat_activity WHERE pid = $1", pooled))
    finally:
        await watcher.close()
