"""Workers as real processes, in the situations a deployment meets: a worker killed and never
restarted, a worker paused past its lease (SIGSTOP) and resumed, a PostgreSQL restart in the middle
of a run, and SIGTERM with tasks in hand.

The worker subprocesses run `_procs.main` (`python -m tests.engine._procs`): the engine's `Worker`
on ledger agents, so that the checks can see, across processes, which agent calls were made under
which lease epoch and which journal writes were refused. Leases are short (2 s, renewed every
0.5 s). The SQLite and PostgreSQL cases share the code; PostgreSQL is skipped without a server
(failed in CI), and the restart case runs on a private cluster of its own (skipped only without
the PostgreSQL binaries, failed in CI).
"""

from __future__ import annotations

import asyncio
import os
import signal
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import pytest

from loomiq import Orchestrator
from loomiq.engine import TaskEngine

from ._procs import (
    AGENTS,
    STALL_MARK,
    PrivateCluster,
    WorkerProc,
    check_durable_run,
    event_epochs,
    pid_of,
    postgres_bin,
    read_ledger,
    submit_agents,
    wait_ledger,
    worker_pool,
)
from .conftest import FAST, database

TAKEOVER_LIMIT_S = 30.0
"""The issue's bound for a dead worker's tasks to finish elsewhere (with 2 s leases: about 3 s)."""


@asynccontextmanager
async def own_engine(url: str) -> AsyncIterator[TaskEngine]:
    """The test process's own engine (it submits and inspects; it runs nothing)."""
    orch = Orchestrator(submit_agents())
    try:
        yield await orch.open_engine(url, config=FAST)
    finally:
        await orch.aclose()


async def submit(engine: TaskEngine, n: int, label: str, strategy: str = "consensus") -> list[str]:
    """`n` tasks over agents a0..a3 (consensus: four calls; sequential: three, a0 first)."""
    agents = list(AGENTS) if strategy == "consensus" else list(AGENTS[:3])
    return [
        (await engine.submit(f"{label} {i}: which queue should service {i} use?", strategy=strategy, agents=agents)).id
        for i in range(n)
    ]


async def wait_all(engine: TaskEngine, ids: list[str], timeout_s: float) -> None:
    async with asyncio.timeout(timeout_s):
        for tid in ids:
            await engine.wait(tid)


async def open_transactions(engine: TaskEngine) -> list[tuple[str, str]]:
    """PostgreSQL: (state, last query) of the sessions idle in a transaction (diagnostics)."""
    if engine.store.dialect.name != "postgresql":
        return []
    from loomiq.engine._ops import Stmt

    rows = await engine.store.fetch(Stmt(
        "SELECT state, query FROM pg_stat_activity WHERE state LIKE 'idle in transaction%'", (), "all"))
    return [(r[0], r[1][:200]) for r in rows]


def assert_clean(report: object) -> None:
    problems = report.problems  # type: ignore[attr-defined]
    assert problems == [], "\n".join(problems[:30])


# --- (a) a worker killed and not restarted -------------------------------------------------------


@pytest.mark.parametrize("kind", ["sqlite", "postgresql"])
async def test_killed_worker_tasks_finish_on_the_others(kind: str, tmp_path: Path) -> None:
    async with database(kind, tmp_path) as url, own_engine(url) as engine, \
            worker_pool(url, tmp_path, concurrency=2, latency_min=0.15, latency_max=0.3) as start:
        workers = [await start(f"w{i}") for i in range(3)]
        victim = workers[0]
        ids = await submit(engine, 12, "takeover")
        # Kill the victim once one of its runs has a journalled analysis (the resumption must replay
        # it), while that run's lead call is still to come.
        committed = await wait_ledger(start.ledger, lambda e: e["ev"] == "commit" and e["pid"] == victim.pid
                                      and e["agent"] != "a3")
        assert await victim.kill() == -signal.SIGKILL
        killed_at = time.monotonic()
        held = {t.id for t in await engine.list_tasks(status="running") if t.lease_owner == victim.worker_id}
        assert committed["task"] in held
        await wait_all(engine, ids, TAKEOVER_LIMIT_S)
        took = time.monotonic() - killed_at
        assert took < TAKEOVER_LIMIT_S
        for tid in held:
            attempts = await engine.attempts(tid)
            assert [a.status for a in attempts] == ["lost", "completed"]
            assert attempts[0].worker_id == victim.worker_id
            assert attempts[1].worker_id in (workers[1].worker_id, workers[2].worker_id)
        for w in workers[1:]:
            assert await w.stop() == 0, w.stderr_tail()
        report = await check_durable_run(engine, ids, read_ledger(start.ledger), {victim.pid})
    assert_clean(report)
    assert report.attempts["lost"] == len(held) and report.lost_by_live_workers == 0
    print(f"\n[{kind}] {len(held)} task(s) of the killed worker finished elsewhere {took:.1f}s after the kill")


# --- (b) a worker paused past its lease ----------------------------------------------------------


@pytest.mark.parametrize("kind", ["sqlite", "postgresql"])
async def test_paused_worker_is_fenced_when_it_resumes(kind: str, tmp_path: Path) -> None:
    # Calls of 0.3 s: the victim's writes before a0's answer (its first events) have long committed
    # when it gets stuck, so it is not frozen inside a transaction (that case is the next test).
    async with database(kind, tmp_path) as url, own_engine(url) as engine, \
            worker_pool(url, tmp_path, concurrency=2, latency_min=0.3, latency_max=0.35) as start:
        victim = await start("victim", stall_s=1.0)
        # Sequential, a0 first: when a0 has its answer and the victim gets stuck before journalling
        # it, nothing else of the victim is in flight. Freeze it there.
        (tid,) = await submit(engine, 1, f"Pick a sharding key {STALL_MARK}", "sequential")
        stall = await wait_ledger(start.ledger, lambda e: e["ev"] == "stall" and e["pid"] == victim.pid)
        victim.signal(signal.SIGSTOP)
        try:
            rescuer = await start("rescuer")
            try:
                task = await engine.wait(tid, timeout_s=TAKEOVER_LIMIT_S)
            except TimeoutError:
                task = await engine.get_task(tid)
                stuck = await open_transactions(engine)
                pytest.fail(f"the rescuer did not complete the task (open transactions: {stuck}): {task.status}, "
                            f"lease {task.lease_owner} epoch {task.lease_epoch}, "
                            f"attempts {await engine.attempts(tid)}; "
                            f"rescuer: {worker_states([rescuer])} {rescuer.stderr_tail()}")
            assert task.status == "completed"
            completed_at = time.time()
        finally:
            victim.signal(signal.SIGCONT)
        # Resumed, the victim's first act is its late journal write under epoch 1: refused.
        refused = await wait_ledger(start.ledger, lambda e: e["ev"] == "refused" and e["pid"] == victim.pid)
        assert refused["task"] == tid and refused["epoch"] == 1 and refused["agent"] == "a0"
        late = [e for e in read_ledger(start.ledger) if e["ev"] == "done" and e["pid"] == victim.pid]
        assert any(e["agent"] == "a0" and e["t"] > completed_at for e in late)

        # The victim survives its fencing and keeps working: it runs the next task alone.
        assert await rescuer.stop() == 0, rescuer.stderr_tail()
        (after,) = await submit(engine, 1, "after the pause", "sequential")
        assert (await engine.wait(after, timeout_s=TAKEOVER_LIMIT_S)).status == "completed"
        assert await victim.stop() == 0, victim.stderr_tail()

        attempts = await engine.attempts(tid)
        assert [(a.status, a.worker_id) for a in attempts] == [
            ("lost", victim.worker_id), ("completed", rescuer.worker_id)]
        assert [a.worker_id for a in await engine.attempts(after)] == [victim.worker_id]
        # Nothing of epoch 1 was logged once epoch 2 started, and exactly one end was recorded.
        events = await event_epochs(engine, tid)
        takeover = next(seq for seq, epoch, type_ in events if type_ == "task_started" and epoch == 2)
        assert all(seq < takeover for seq, epoch, _ in events if epoch == 1)
        assert [type_ for _, _, type_ in events].count("task_finished") == 1
        ledger = read_ledger(start.ledger)
        assert not [e for e in ledger if e["ev"] == "commit" and e["task"] == tid and e["epoch"] == 1]
        assert stall["task"] == tid and stall["epoch"] == 1
        report = await check_durable_run(engine, [tid, after], ledger, set(), calls_per_task=3)
    assert_clean(report)
    assert report.lost_by_live_workers == 1 and report.repeated_in_flight >= 1


@pytest.mark.parametrize("kind", ["postgresql"])
async def test_worker_frozen_inside_a_write_transaction_does_not_block_takeover(kind: str, tmp_path: Path) -> None:
    """A worker paused (SIGSTOP, a VM freeze, a long stop-the-world pause) while its write batch is
    open holds the row locks of that batch. Its lease expires all the same; another worker must
    still take its task over within a bounded time (not wait for the frozen one to come back)."""
    async with database(kind, tmp_path) as url, own_engine(url) as engine, \
            worker_pool(url, tmp_path, concurrency=2, latency_min=0.02, latency_max=0.05) as start:
        victim = await start("victim", freeze_in_tx_s=1.0)
        (tid,) = await submit(engine, 1, f"Pick a sharding key {STALL_MARK}", "sequential")
        await wait_ledger(start.ledger, lambda e: e["ev"] == "freeze" and e["pid"] == victim.pid)
        victim.signal(signal.SIGSTOP)  # frozen inside its transaction, the task's row locked
        try:
            rescuer = await start("rescuer")
            try:
                task = await engine.wait(tid, timeout_s=TAKEOVER_LIMIT_S)
            except TimeoutError:
                task = await engine.get_task(tid)
                pytest.fail(f"{TAKEOVER_LIMIT_S:.0f}s after the rescuer started (the 2 s lease of the worker frozen "
                            "mid-transaction long expired), "
                            f"its task is still {task.status} under lease epoch {task.lease_epoch} of "
                            f"{task.lease_owner}: the rescuer's claims skip the row the frozen transaction "
                            "holds locked")
            assert task.status == "completed"
            assert [a.worker_id for a in await engine.attempts(tid)] == [victim.worker_id, rescuer.worker_id]
        finally:
            victim.signal(signal.SIGCONT)
        assert await rescuer.stop() == 0


# --- (c) PostgreSQL restarted during a run -------------------------------------------------------


@pytest.fixture
def private_postgres() -> object:
    """A private PostgreSQL cluster (never the machine's shared server, which other tests use)."""
    bindir = postgres_bin()
    if bindir is None:
        if os.environ.get("CI"):
            pytest.fail("PostgreSQL binaries (initdb, pg_ctl) are required in CI: none in /usr/lib/postgresql")
        pytest.skip("no PostgreSQL binaries (initdb, pg_ctl) in /usr/lib/postgresql")
    cluster = PrivateCluster(bindir)
    try:
        cluster.init()
        cluster.start()
        yield cluster
    finally:
        cluster.remove()


async def test_postgres_restart_mid_run_every_accepted_task_completes(private_postgres: PrivateCluster,
                                                                      tmp_path: Path) -> None:
    cluster = private_postgres
    url = cluster.url
    async with own_engine(url) as engine, \
            worker_pool(url, tmp_path, concurrency=3, latency_min=0.05, latency_max=0.15) as start:
        workers = [await start(f"w{i}") for i in range(2)]
        ids = await submit(engine, 20, "before")
        await wait_ledger(start.ledger, lambda e: e["ev"] == "commit", timeout_s=30)
        await asyncio.to_thread(cluster.stop, "fast")  # every connection is cut, mid-run
        refused = 0
        for i in range(3):  # submissions while the server is down are refused, not lost silently
            try:
                ids.append((await engine.submit(f"during {i}", strategy="consensus", agents=list(AGENTS))).id)
            except Exception:  # noqa: BLE001 - any connection error: the task was not accepted
                refused += 1
        await asyncio.sleep(1.0)
        await asyncio.to_thread(cluster.start)
        accepted_after: list[str] = []
        deadline = time.monotonic() + 30
        while not accepted_after:  # the test's own engine must reconnect too
            try:
                accepted_after = await submit(engine, 10, "after")
            except Exception as exc:  # noqa: BLE001 - still reconnecting
                if time.monotonic() > deadline:
                    pytest.fail(f"30 s after the restart, submit still fails: {type(exc).__name__}: {exc}; "
                                f"workers: {worker_states(workers)}")
                await asyncio.sleep(0.5)
        ids += accepted_after
        try:
            await wait_all(engine, ids, 60)
        except TimeoutError:
            counts = await engine.store.counts()
            pytest.fail(f"not every accepted task completed within 60 s: {counts}; workers: {worker_states(workers)}")
        for w in workers:
            assert w.proc is not None and w.proc.poll() is None, f"{w.name} died:\n{w.stderr_tail()}"
            assert await w.stop() == 0, w.stderr_tail()
        report = await check_durable_run(engine, ids, read_ledger(start.ledger), set())
    assert_clean(report)
    assert refused + len(ids) == 33


def worker_states(workers: list[WorkerProc]) -> str:
    """Each worker's state, with the last line of its stderr when it died."""
    out = []
    for w in workers:
        rc = w.proc.poll() if w.proc is not None else None
        if rc is None:
            out.append(f"{w.name} running")
        else:
            last = (w.stderr_tail().strip().splitlines() or ["(no stderr)"])[-1]
            out.append(f"{w.name} exited {rc} ({last})")
    return "; ".join(out)


# --- (d) SIGTERM with tasks in hand --------------------------------------------------------------


@pytest.mark.parametrize("kind", ["sqlite", "postgresql"])
async def test_sigterm_hands_back_what_it_cannot_finish(kind: str, tmp_path: Path) -> None:
    async with database(kind, tmp_path) as url, own_engine(url) as engine, \
            worker_pool(url, tmp_path, concurrency=2, latency_min=0.6, latency_max=0.8) as start:
        victim = await start("victim", drain_s=0.3)
        ids = await submit(engine, 2, "long")
        # Both runs are in their lead call (the three analyses journalled) when SIGTERM comes.
        for tid in ids:
            await wait_ledger(start.ledger, lambda e, t=tid: e["ev"] == "start" and e["task"] == t
                              and e["agent"] == "a3")
        victim.signal(signal.SIGTERM)
        assert await victim.wait(30) == 0, victim.stderr_tail()
        assert victim.stopped_line() == {"event": "worker_stopped", "worker_id": victim.worker_id, "claimed": 2}
        for tid in ids:
            task = await engine.get_task(tid)
            assert task.status == "queued" and task.lease_owner is None  # claimable at once
        rescuer = await start("rescuer")
        await wait_all(engine, ids, TAKEOVER_LIMIT_S)
        for tid in ids:
            assert [(a.status, a.worker_id) for a in await engine.attempts(tid)] == [
                ("handed_back", victim.worker_id), ("completed", rescuer.worker_id)]
        assert await rescuer.stop() == 0
        ledger = read_ledger(start.ledger)
        report = await check_durable_run(engine, ids, ledger, set())
    assert_clean(report)
    # The rescuer replayed the analyses and made only the lead calls again.
    rescued = [e for e in ledger if e["ev"] == "done" and pid_of(rescuer.worker_id) == e["pid"]]
    assert sorted(e["agent"] for e in rescued) == ["a3", "a3"]


@pytest.mark.parametrize("kind", ["sqlite", "postgresql"])
async def test_sigterm_lets_tasks_in_hand_finish(kind: str, tmp_path: Path) -> None:
    async with database(kind, tmp_path) as url, own_engine(url) as engine, \
            worker_pool(url, tmp_path, concurrency=2, latency_min=0.2, latency_max=0.3) as start:
        victim = await start("victim", drain_s=30)
        ids = await submit(engine, 2, "short")
        for tid in ids:
            await wait_ledger(start.ledger, lambda e, t=tid: e["ev"] == "start" and e["task"] == t)
        victim.signal(signal.SIGTERM)
        assert await victim.wait(30) == 0, victim.stderr_tail()
        for tid in ids:
            task = await engine.get_task(tid)
            assert task.status == "completed"
            assert [(a.status, a.worker_id) for a in await engine.attempts(tid)] == [("completed", victim.worker_id)]
        report = await check_durable_run(engine, ids, read_ledger(start.ledger), set())
    assert_clean(report)
