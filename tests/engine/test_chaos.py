"""Chaos: four worker processes, a seeded killer that SIGKILLs a random one every 0.5-3 s and starts
a new one in its place, and 300 four-call consensus tasks fed in waves meanwhile.

The chaos lasts until all of these hold, whatever the machine's load: ``CHAOS_S`` have passed,
``MIN_TASKS`` were submitted, ``MIN_KILLS`` workers were killed, and at least one kill interrupted
runs in flight (tasks still leased to the dead worker). So the test never depends on how many kills a
loaded machine manages in a given time; what it checks is exact.

At the end every task is ``completed`` exactly once (one completed attempt, one ``task_finished``
event, a gap-free log, four journalled steps), and the workers' shared ledger (see `_procs`) shows
that no finished agent call was paid twice once its result had committed: the only calls made again
are those whose result had not committed when their worker died. Leases are short (2 s, renewed
every 0.5 s), so a dead worker's tasks are taken over within about 2 s.

Runs on SQLite and on PostgreSQL (the PostgreSQL case is skipped without a server, and fails in CI);
``LOOMIQ_CHAOS_SEED`` changes the killer's choices.
"""

from __future__ import annotations

import asyncio
import os
import random
import time
from pathlib import Path

import pytest

from loomiq import Orchestrator

from ._procs import AGENTS, check_durable_run, read_ledger, submit_agents, worker_pool
from .conftest import FAST, database

SEED = int(os.environ.get("LOOMIQ_CHAOS_SEED", "20261122"))
CHAOS_S = float(os.environ.get("LOOMIQ_CHAOS_S", "15"))
"""How long the killer runs; tasks are fed all along so that every worker always has work in hand."""
WORKERS = 4
CONCURRENCY = 4
MIN_TASKS = 300
BACKLOG = 40
"""The feeder tops the queue up to this many queued tasks every 0.1 s."""
KILL_EVERY_S = (0.5, 3.0)
MIN_KILLS = 4
"""The chaos goes on (tasks fed, workers killed) until at least this many kills were made."""
DEADLINE_S = 150.0
"""The test fails (with the task counts) if the tasks are not all done by then."""


@pytest.mark.parametrize("kind", ["sqlite", "postgresql"])
async def test_sigkill_chaos_loses_nothing_and_repeats_no_finished_call(kind: str, tmp_path: Path) -> None:
    rng = random.Random(SEED)
    async with database(kind, tmp_path) as url:
        orch = Orchestrator(submit_agents())
        engine = await orch.open_engine(url, config=FAST)
        try:
            async with worker_pool(url, tmp_path, concurrency=CONCURRENCY, lease_s=2.0, renew_s=0.5,
                                   latency_min=0.005, latency_max=0.020) as start:
                workers = [await start(f"w{i}") for i in range(WORKERS)]
                started = time.monotonic()
                ids: list[str] = []
                chaos_over = asyncio.Event()

                async def feed() -> None:
                    while not chaos_over.is_set():
                        queued = (await engine.store.counts()).get("queued", 0)
                        n = len(ids)
                        ids.extend(s.id for s in await asyncio.gather(*(
                            orch.submit(f"chaos task {i}: should service {i} be split in two?", strategy="consensus",
                                        agents=list(AGENTS))
                            for i in range(n, n + max(0, BACKLOG - queued))
                        )))
                        await asyncio.sleep(0.1)

                def enough() -> bool:
                    return (time.monotonic() - started >= CHAOS_S and len(ids) >= MIN_TASKS
                            and len(kills) >= MIN_KILLS and bool(interrupted))

                feeder = asyncio.create_task(feed())
                kills: list[tuple[float, str, int]] = []
                killed_pids: set[int] = set()
                interrupted: dict[str, str] = {}
                """Task id -> the killed worker that held it when it died (its run there was cut off)."""
                try:
                    while not enough():
                        if time.monotonic() - started > DEADLINE_S:
                            pytest.fail(f"chaos not over after {DEADLINE_S:.0f}s: {len(ids)} tasks, "
                                        f"{len(kills)} kills, {len(interrupted)} runs interrupted")
                        await asyncio.wait({feeder}, timeout=rng.uniform(*KILL_EVERY_S))
                        if feeder.done():
                            feeder.result()  # (it failed)
                        i = rng.randrange(WORKERS)
                        victim = workers[i]
                        killed_pids.add(victim.pid)
                        assert await victim.kill() == -9
                        # What the dead worker still holds it can never finish: each must be taken over.
                        held = await engine.list_tasks(status="running", limit=1000)
                        interrupted.update((t.id, victim.worker_id) for t in held if t.lease_owner == victim.worker_id)
                        kills.append((round(time.monotonic() - started, 2), victim.name, victim.pid))
                        workers[i] = await start(f"w{i}")
                    chaos_over.set()
                    await feeder
                    while True:  # no more kills: let the survivors finish (or take over) everything
                        counts = await engine.store.counts()
                        if counts.get("completed", 0) + counts.get("failed", 0) >= len(ids):
                            break
                        if time.monotonic() - started > DEADLINE_S:
                            pytest.fail(f"not done after {DEADLINE_S:.0f}s: {counts}; {len(kills)} kills")
                        await asyncio.sleep(0.1)
                finally:
                    chaos_over.set()
                    if not feeder.done():
                        feeder.cancel()
                    await asyncio.gather(feeder, return_exceptions=True)
                elapsed = time.monotonic() - started

                for w in workers:
                    assert await w.stop() == 0, w.stderr_tail()
                    stopped = w.stopped_line()
                    assert stopped is not None and stopped["worker_id"] == w.worker_id
            ledger = read_ledger(tmp_path / "ledger.jsonl")
            report = await check_durable_run(engine, ids, ledger, killed_pids)
            cut_off = {tid: await engine.attempts(tid) for tid in interrupted}
        finally:
            await orch.aclose()
    print(f"\nchaos[{kind}] seed {SEED}: {len(ids)} tasks in {elapsed:.1f}s, {len(kills)} kills "
          f"({len(interrupted)} runs interrupted) {kills}; attempts {dict(report.attempts)}, at most "
          f"{report.max_attempts} per task; {report.restarted_calls} unfinished calls started again; "
          f"{report.repeated_in_flight} finished-but-uncommitted calls made again; "
          f"{report.lost_by_live_workers} leases lost by live workers; {len(ledger)} ledger lines")
    assert report.problems == [], "\n".join(report.problems[:30])
    assert len(ids) >= MIN_TASKS and report.tasks == len(ids)
    assert report.attempts["completed"] == len(ids)
    assert len(kills) >= MIN_KILLS and interrupted  # (what ended the chaos)
    for tid, holder in interrupted.items():  # every run cut off by a kill was lost there and taken over
        attempts = cut_off[tid]
        assert any(a.status == "lost" and a.worker_id == holder for a in attempts), (tid, holder, attempts)
        assert attempts[-1].status == "completed" and attempts[-1].worker_id != holder, (tid, attempts)
    assert report.attempts["lost"] >= len(interrupted)
    done_lines = sum(1 for line in ledger if line["ev"] == "done")
    assert done_lines == len(ids) * 4 + report.repeated_in_flight  # every finished call accounted for
