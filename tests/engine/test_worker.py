"""Workers: concurrency, graceful stop with hand-back, and the subprocess entry point."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
from pathlib import Path

import pytest

from loomiq import Orchestrator, ScriptedModel, ScriptedReply
from loomiq.engine import EngineConfig, TaskEngine, Worker

from .conftest import database, eventually, orch_of, running, scripted, team


async def test_concurrency_is_respected(open_engine) -> None:  # type: ignore[no-untyped-def]
    engine: TaskEngine = await open_engine(team(1, latency_s=0.05))
    orch = orch_of(engine)
    ids = [(await orch.submit(f"t{i}", strategy="single")).id for i in range(6)]
    peak = 0
    async with running(engine, concurrency=2) as worker:
        while True:
            peak = max(peak, len(worker.running))
            if all([(await orch.get_task(i)).terminal for i in ids]):
                break
            await asyncio.sleep(0.005)
    assert peak == 2 and worker.claimed == 6


async def test_global_concurrency_holds_across_workers_of_different_processes(open_engine) -> None:  # type: ignore[no-untyped-def]
    """`max_running` caps the tasks running at once on the whole database, whatever each worker's
    own concurrency: two engines (two processes), two slots each, a global limit of three. Reaching
    three takes both; four would break the limit."""
    config = EngineConfig(lease_s=2.0, renew_s=0.2, aging_s=60.0, delta_flush_s=0.01, max_running=3)
    models = [ScriptedModel(replies=["ok"], latency_s=0.05) for _ in range(2)]
    engines: list[TaskEngine] = [await open_engine([scripted("a0", m)], config=config) for m in models]
    ids = [(await orch_of(engines[0]).submit(f"t{i}", strategy="single")).id for i in range(12)]
    peak = 0
    async with running(engines[0], concurrency=2) as w0, running(engines[1], concurrency=2) as w1:
        while True:
            counts = await engines[0].store.counts()
            peak = max(peak, counts.get("running", 0))
            if counts.get("completed", 0) == len(ids):
                break
            await asyncio.sleep(0.005)
    assert peak <= 3
    assert w0.claimed + w1.claimed == 12 and w0.claimed and w1.claimed
    # The model calls (50 ms each) never overlapped more than three at a time, and did reach three.
    edges = sorted((t, d) for m in models for c in m.calls for t, d in ((c.started_at, 1), (c.started_at + 0.05, -1)))
    overlap = most = 0
    for _, d in edges:
        overlap += d
        most = max(most, overlap)
    assert most == 3


def test_max_running_comes_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LOOMIQ_MAX_RUNNING", "7")
    assert EngineConfig().max_running == 7
    assert EngineConfig(max_running=2).max_running == 2
    monkeypatch.setenv("LOOMIQ_MAX_RUNNING", "lots")
    with pytest.raises(ValueError, match="LOOMIQ_MAX_RUNNING='lots'"):
        EngineConfig()
    monkeypatch.delenv("LOOMIQ_MAX_RUNNING")
    assert EngineConfig().max_running is None
    with pytest.raises(ValueError, match="at least 1"):
        EngineConfig(max_running=0)


async def test_stop_hands_back_unfinished_tasks(open_engine) -> None:  # type: ignore[no-untyped-def]
    slow_then_fast = ScriptedModel(replies=[ScriptedReply("slow", latency_s=30), ScriptedReply("second")])
    agents = [*team(1), scripted("a1", slow_then_fast)]
    engine: TaskEngine = await open_engine(agents, config=EngineConfig(lease_s=30, renew_s=1))
    orch = orch_of(engine)
    tid = (await orch.submit("x", strategy="sequential", agents=["a0", "a1"])).id
    worker = Worker(engine, drain_s=0.05)
    run = asyncio.create_task(worker.run())
    await eventually(lambda: bool(slow_then_fast.calls))
    await worker.stop()
    await run
    task = await orch.get_task(tid)
    assert task.status == "queued" and task.lease_owner is None  # claimable at once, not after 30 s
    async with running(engine) as second:
        task = await orch.wait(tid, timeout_s=5)
    assert task.status == "completed" and task.output == "second" and second.claimed == 1
    assert len(agents[0].model.calls) == 1  # type: ignore[attr-defined]  # seq/0 replayed
    assert [a.status for a in await engine.attempts(tid)] == ["handed_back", "completed"]


async def test_stop_lets_short_tasks_finish(engine: TaskEngine) -> None:
    orch = orch_of(engine)
    tid = (await orch.submit("x", strategy="single")).id
    worker = Worker(engine, drain_s=5)
    run = asyncio.create_task(worker.run())
    await eventually(lambda: worker.claimed == 1)
    await worker.stop()
    await run
    assert (await orch.get_task(tid)).status == "completed"


@pytest.mark.parametrize("kind", ["sqlite", "postgresql"])
async def test_worker_process_runs_tasks_and_stops_on_sigterm(kind: str, tmp_path: Path,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)  # no loomiq.yaml here: the offline scripted agents
    monkeypatch.delenv("LOOMIQ_CONFIG", raising=False)
    async with database(kind, tmp_path) as url:
        orch = Orchestrator.from_config()
        await orch.open_engine(url)
        env = {**os.environ, "LOOMIQ_DATABASE_URL": url}
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "loomiq.engine.worker", "--concurrency", "2",
            "--drain-s", "5", stdout=asyncio.subprocess.PIPE, env=env, cwd=tmp_path,
        )
        try:
            assert proc.stdout is not None
            ready = json.loads(await asyncio.wait_for(proc.stdout.readline(), 20))
            assert ready["event"] == "worker_ready"
            tid = (await orch.submit("Is a worker process alive?", strategy="single")).id
            task = await orch.wait(tid, timeout_s=20)
            assert task.status == "completed" and task.output
            proc.send_signal(signal.SIGTERM)
            assert await asyncio.wait_for(proc.wait(), 20) == 0
            stopped = json.loads(await proc.stdout.readline())
            assert stopped == {"event": "worker_stopped", "worker_id": ready["worker_id"], "claimed": 1}
        finally:
            if proc.returncode is None:
                proc.kill()
                await proc.wait()
            await orch.aclose()
