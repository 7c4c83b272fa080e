"""The event log: replay from a sequence number, then live, without gap or duplicate."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from loomiq import Orchestrator, ScriptedModel
from loomiq.engine import EngineConfig, TaskEngine, TaskEvent, _postgres

from .conftest import database, eventually, orch_of, running, scripted

WORDS = " ".join(f"w{i}" for i in range(40))


def _streamer() -> list:  # type: ignore[type-arg]
    model = ScriptedModel(replies=[WORDS], latency_s=0.4, chunk_words=1)
    return [scripted("a0", model), scripted("a1", ScriptedModel(replies=[WORDS], latency_s=0.4, chunk_words=2))]


async def _collect(events, sink: list[TaskEvent], seen=None) -> None:  # type: ignore[no-untyped-def]
    async for e in events:
        sink.append(e)
        if seen is not None:
            seen.set()


def _assert_contiguous(events: list[TaskEvent], after: int) -> None:
    assert [e.seq for e in events] == list(range(after + 1, after + 1 + len(events)))
    assert events[-1].type == "task_finished"


async def test_replay_then_live_without_gap_or_duplicate(open_engine) -> None:  # type: ignore[no-untyped-def]
    config = EngineConfig(lease_s=2, renew_s=0.2, delta_flush_s=0.05)  # a chunk every 10 ms, logged every 50
    engine: TaskEngine = await open_engine(_streamer(), config=config)
    elsewhere: TaskEngine = await open_engine(_streamer(), config=config)  # another process follows through the log
    orch = orch_of(engine)
    tid = (await orch.submit("stream it", strategy="sequential", agents=["a0", "a1"])).id
    first: list[TaskEvent] = []
    remote: list[TaskEvent] = []
    late: list[TaskEvent] = []
    async with running(engine):
        c1 = asyncio.create_task(_collect(orch.events(tid), first))
        c2 = asyncio.create_task(_collect(orch_of(elsewhere).events(tid), remote))
        await eventually(lambda: len(first) >= 8)
        c3 = asyncio.create_task(_collect(orch.events(tid, after=5), late))  # joins mid-run
        await asyncio.wait_for(asyncio.gather(c1, c2, c3), 10)
    log = await engine.store.read_events(tid)
    _assert_contiguous(first, 0)
    _assert_contiguous(remote, 0)
    _assert_contiguous(late, 5)
    assert [(e.seq, e.type, dict(e.data)) for e in first] == [(e.seq, e.type, dict(e.data)) for e in log]
    assert [e.seq for e in remote] == [e.seq for e in log]
    assert [e.seq for e in late] == [e.seq for e in log[5:]]
    # Deltas are coalesced: fewer logged than streamed chunks, and they spell the whole text.
    deltas = [e for e in log if e.type == "text_delta" and e.data["step"] == "seq/0"]
    assert 1 <= len(deltas) < 20
    assert "".join(e.data["text"] for e in deltas) == WORDS
    assert [e.type for e in log][:3] == ["task_queued", "task_started", "run_started"]


async def test_events_of_a_finished_task_replay_and_end(engine: TaskEngine) -> None:
    result = await orch_of(engine).run("q", strategy="single", agents=["a0"], durable=True)
    events = [e async for e in orch_of(engine).events(result.task_id)]
    _assert_contiguous(events, 0)
    assert [e async for e in orch_of(engine).events(result.task_id, after=len(events) - 1)] == events[-1:]
    finished = events[-1].to_dict()
    assert finished["status"] == "completed" and finished["task_id"] == result.task_id


async def test_postgres_listens_for_events_only_while_a_task_is_followed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Another process's events reach a follower by NOTIFY (its log poll is 30 s apart, so only a
    notification can deliver them during the run); a process nobody follows tasks in does not listen
    for them, and the follower's process stops listening once its last follower leaves."""
    monkeypatch.setattr(_postgres, "_UNLISTEN_AFTER_S", 0.05)
    config = EngineConfig(lease_s=2, renew_s=0.2, delta_flush_s=0.05)
    async with database("postgresql", tmp_path) as url:
        runner, follower = Orchestrator(_streamer()), Orchestrator(_streamer())
        try:
            engine = await runner.open_engine(url, config=config)
            remote = await follower.open_engine(url, config=config, store_options={"poll_s": 30.0})
            assert not remote.store._events_listened
            tid = (await runner.submit("stream it", strategy="sequential", agents=["a0", "a1"])).id
            got: list[TaskEvent] = []
            async with running(engine):
                collector = asyncio.create_task(_collect(remote.events(tid), got))
                await eventually(lambda: remote.store._events_listened)
                await asyncio.wait_for(collector, 10)  # the run takes ~1 s; a poll would take 30
                assert not engine.store._events_listened  # nobody follows a task in the runner's process
            _assert_contiguous(got, 0)
            assert [e.seq for e in got] == [e.seq for e in await engine.store.read_events(tid)]
            await eventually(lambda: not remote.store._events_listened)
        finally:
            await runner.aclose()
            await follower.aclose()


async def _all(events, within_s: float = 3.0) -> list[TaskEvent]:  # type: ignore[no-untyped-def]
    """Every event of a follower, which must end by itself within `within_s`."""
    async with asyncio.timeout(within_s):
        return [e async for e in events]


async def test_resuming_at_or_past_the_end_of_a_finished_task_ends_at_once(open_engine) -> None:  # type: ignore[no-untyped-def]
    engine: TaskEngine = await open_engine()
    elsewhere: TaskEngine = await open_engine()  # another process on the same database
    result = await orch_of(engine).run("q", strategy="single", agents=["a0"], durable=True)
    log = await _all(engine.events(result.task_id))  # the whole log, once committed
    end = log[-1].seq
    assert log[-1].type == "task_finished"
    for follower in (engine, elsewhere):
        for after in (end, end + 1, end + 1000, 2**63 - 1):
            started = asyncio.get_running_loop().time()
            assert await _all(follower.events(result.task_id, after=after), within_s=1.0) == []
            assert asyncio.get_running_loop().time() - started < 0.5  # at once, not after a poll
        assert await _all(follower.events(result.task_id, after=end - 1)) == log[-1:]


async def test_a_follower_past_the_end_of_a_running_task_ends_when_the_task_does(open_engine) -> None:  # type: ignore[no-untyped-def]
    slow = [scripted(f"a{i}", ScriptedModel(replies=["done"], latency_s=0.3)) for i in range(2)]
    engine: TaskEngine = await open_engine(slow)
    elsewhere: TaskEngine = await open_engine(slow)  # follows only through the log (or NOTIFY)
    tid = (await orch_of(engine).submit("q", strategy="single", agents=["a0"])).id
    async with running(engine):
        here = asyncio.create_task(_all(engine.events(tid, after=10**6), within_s=5.0))
        there = asyncio.create_task(_all(elsewhere.events(tid, after=10**6), within_s=5.0))
        # A client a few events ahead of the log (it saw them live from another server) gets the rest.
        close = asyncio.create_task(_all(elsewhere.events(tid, after=3), within_s=5.0))
        assert await here == [] and await there == []
        log = await engine.store.read_events(tid)
        assert [e.seq for e in await close] == [e.seq for e in log[3:]]
    assert (await engine.get_task(tid)).status == "completed"
