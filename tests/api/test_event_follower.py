"""The store's shared follower of event logs (`loomiq.engine._follow`), which the SSE and WebSocket
streams stand on: events logged by another engine (another process) reach every follower, in order,
without gap or duplicate, and a thousand followers cost one poll of the log, not one each."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Sequence
from pathlib import Path
from typing import Any

import pytest

from loomiq import Orchestrator, ScriptedModel
from loomiq.engine import EngineConfig, TaskEngine, TaskEvent, _follow
from loomiq.engine._follow import follower_for

from ..engine.conftest import database, eventually, running, scripted

CONFIG = EngineConfig(lease_s=2.0, renew_s=0.2, delta_flush_s=0.01)
WORDS = " ".join(f"w{i}" for i in range(30))


def _agents() -> list:  # type: ignore[type-arg]
    return [scripted(f"a{i}", ScriptedModel(replies=[WORDS], latency_s=0.3, chunk_words=1)) for i in range(2)]


@pytest.fixture(params=["sqlite", "postgresql"])
async def two_engines(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[tuple[TaskEngine, TaskEngine]]:
    """Two engines on one database, each with its own store: like two processes."""
    async with database(request.param, tmp_path) as url:
        opened: list[Orchestrator] = []
        try:
            for _ in range(2):
                orch = Orchestrator(_agents())
                await orch.open_engine(url, config=CONFIG)
                opened.append(orch)
            yield opened[0].engine, opened[1].engine
        finally:
            for orch in reversed(opened):
                await orch.aclose()


async def _collect(events: AsyncIterator[TaskEvent], sink: list[TaskEvent]) -> None:
    async for event in events:
        sink.append(event)


def _same_log(got: Sequence[TaskEvent], log: Sequence[TaskEvent], after: int = 0) -> None:
    assert [e.seq for e in got] == list(range(after + 1, after + 1 + len(got)))
    assert [(e.seq, e.type, dict(e.data)) for e in got] == [(e.seq, e.type, dict(e.data)) for e in log[after:]]
    assert got[-1].type == "task_finished"


async def test_events_logged_by_another_engine_reach_every_follower(two_engines: tuple[TaskEngine, TaskEngine]) -> None:
    runner, watcher = two_engines
    tids = [(await runner.submit(f"stream {i}", strategy="sequential", agents=["a0", "a1"])).id for i in range(2)]
    followed: dict[tuple[str, int], list[TaskEvent]] = {}
    collectors = []
    for tid in tids:
        for k in range(5):
            after = 1 if k == 4 else 0  # one of them replays from seq 1
            sink = followed[(tid, k)] = []
            collectors.append(asyncio.create_task(_collect(watcher.events(tid, after=after), sink)))
    await eventually(lambda: follower_for(watcher.store).followed == 2)
    async with running(runner):
        await asyncio.wait_for(asyncio.gather(*collectors), 20)
    for (tid, k), got in followed.items():
        _same_log(got, await runner.store.read_events(tid), after=1 if k == 4 else 0)
    # Text was streamed between the first read and the end: it came live, not in the first read.
    assert any(e.type == "text_delta" for got in followed.values() for e in got)
    follower = follower_for(watcher.store)
    assert follower.followed == 0
    assert follower._runner is None  # the poll stops with the last follower


async def test_many_followers_share_one_poll(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """SQLite: no NOTIFY, so the other engine's events reach the followers only through polls of
    the log. 60 followers must cost about one read per poll interval, not one each."""
    async with database("sqlite", tmp_path) as url:
        runner_orch, watcher_orch = Orchestrator(_agents()), Orchestrator(_agents())
        runner = await runner_orch.open_engine(url, config=CONFIG)
        watcher = await watcher_orch.open_engine(url, config=CONFIG)
        try:
            store = watcher.store
            reads = 0
            fetch = store.fetch

            async def counting(*args: Any, **kwargs: Any) -> Any:
                nonlocal reads
                reads += 1
                return await fetch(*args, **kwargs)

            monkeypatch.setattr(store, "fetch", counting)
            tids = [(await runner.submit(f"stream {i}", strategy="sequential", agents=["a0", "a1"])).id
                    for i in range(3)]
            sinks: list[list[TaskEvent]] = [[] for _ in range(60)]
            collectors = [asyncio.create_task(_collect(watcher.events(tids[i % 3]), sink))
                          for i, sink in enumerate(sinks)]
            await eventually(lambda: reads >= 60)  # every follower read its log once
            follower = follower_for(store)
            reads_before, polls_before, started = reads, follower.polls, time.monotonic()
            async with running(runner):
                await asyncio.wait_for(asyncio.gather(*collectors), 20)
            intervals = (time.monotonic() - started) / store.follow_poll_s
            for i, sink in enumerate(sinks):
                _same_log(sink, await runner.store.read_events(tids[i % 3]))
            polls = follower.polls - polls_before
            assert polls >= 3, "the events should have come through the shared poll"
            # One query per poll (3 tasks: one chunk), and a poll at most every interval. A follower
            # re-reads its own log only to fill a gap; 60 followers polling would make ~60 reads per interval.
            assert polls <= intervals + 2
            assert reads - reads_before <= polls + 60
        finally:
            await watcher_orch.aclose()
            await runner_orch.aclose()


async def test_polls_cut_into_pages_and_chunks_keep_order(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Queries of 2 tasks at most, 7 rows at most, and off the loop: still every event, in order."""
    monkeypatch.setattr(_follow, "_TASKS_PER_QUERY", 2)
    monkeypatch.setattr(_follow, "_ON_LOOP_TASKS", 1)
    monkeypatch.setattr(_follow, "ROWS_PER_POLL", 7)
    async with database("sqlite", tmp_path) as url:
        runner_orch, watcher_orch = Orchestrator(_agents()), Orchestrator(_agents())
        runner = await runner_orch.open_engine(url, config=CONFIG)
        watcher = await watcher_orch.open_engine(url, config=CONFIG)
        try:
            tids = [(await runner.submit(f"stream {i}", strategy="sequential", agents=["a0", "a1"])).id
                    for i in range(5)]
            sinks: dict[str, list[TaskEvent]] = {tid: [] for tid in tids}
            collectors = [asyncio.create_task(_collect(watcher.events(tid), sink)) for tid, sink in sinks.items()]
            await eventually(lambda: follower_for(watcher.store).followed == 5)
            async with running(runner, concurrency=5):
                await asyncio.wait_for(asyncio.gather(*collectors), 20)
            for tid, sink in sinks.items():
                _same_log(sink, await runner.store.read_events(tid))
        finally:
            await watcher_orch.aclose()
            await runner_orch.aclose()


async def test_a_follower_of_a_closed_store_is_told(tmp_path: Path) -> None:
    """The store closes under a follower waiting for events: it raises instead of waiting forever."""
    async with database("sqlite", tmp_path) as url:
        orch = Orchestrator(_agents())
        engine = await orch.open_engine(url, config=CONFIG)
        tid = (await engine.submit("never runs", strategy="single", agents=["a0"])).id
        events = engine.events(tid)
        assert (await anext(events)).type == "task_queued"
        waiting = asyncio.create_task(anext(events))
        await asyncio.sleep(0.1)
        assert not waiting.done()
        await orch.aclose()
        with pytest.raises(Exception) as raised:  # noqa: PT011 - EngineClosed, or the store's own error
            await asyncio.wait_for(waiting, 5)
        assert not isinstance(raised.value, TimeoutError)
        await events.aclose()
