"""Issue 15: what the engine keeps per task is released or bounded under sustained load."""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path

from loomiq import Orchestrator
from loomiq.engine._sqlite import SQLiteStore
from loomiq.engine.store import Stmt

from .conftest import running, team


def size(path: Path) -> int:
    return path.stat().st_size


async def test_sqlite_wal_stays_bounded_under_steady_writes_and_reads(tmp_path: Path) -> None:
    # Passive checkpoints copy the log into the database but never rewind it while readers and
    # writers keep coming: the -wal file grew without end (1 GB after 9,000 tasks in a soak).
    limit = 256 * 1024
    db = tmp_path / "wal.db"
    orch = Orchestrator(team(4))
    await orch.open_engine(f"sqlite:///{db}", store_options={"wal_limit_bytes": limit})
    wal = Path(f"{db}-wal")
    peak = 0
    try:
        engine = orch.engine
        async with running(engine, concurrency=8):
            for round_ in range(12):
                ids = [(await orch.submit(f"task {round_}.{i}", strategy="parallel")).id for i in range(40)]
                for task_id in ids:
                    await engine.wait(task_id, timeout_s=30)
                peak = max(peak, size(wal))
            await asyncio.sleep(1.2)  # a checkpoint round or two
            after = size(wal)
    finally:
        await orch.aclose()
    # Without the bound this run's log reaches several MB (each task writes ~15 KB of events).
    assert after <= limit, f"-wal is {after} bytes after the load (limit {limit}, peak {peak})"


def read_threads() -> list[str]:
    return sorted(t.name for t in threading.enumerate() if t.name.startswith("loomiq-sqlite-read"))


async def test_sqlite_read_pool_starts_every_thread_and_connection_at_open(tmp_path: Path) -> None:
    # The pool started its second thread (with its own connection's page cache and malloc arena)
    # only when two blocking reads first overlapped: in a soak of `loomiq serve`, minutes in, a
    # one-off step of 4-7 MB. Started at open, overlapping reads add nothing.
    before = read_threads()
    store = SQLiteStore(f"sqlite:///{tmp_path / 'pool.db'}", readers=3)
    await store.open()
    try:
        started = [t for t in read_threads() if t not in before]
        assert len(started) == 3, started
        assert len(store._pool_conns) == 3
        gate = threading.Barrier(3)

        def overlapping(conn: object) -> None:
            gate.wait(timeout=10)  # all three reads at once

        loop = asyncio.get_running_loop()
        assert store._pool is not None
        await asyncio.gather(*(loop.run_in_executor(store._pool, overlapping, None) for _ in range(3)))
        await asyncio.gather(*(store.fetch(Stmt("SELECT 1", (), "val"), blocking=True) for _ in range(6)))
        assert [t for t in read_threads() if t not in before] == started
        assert len(store._pool_conns) == 3
    finally:
        await store.close()
    assert [t for t in read_threads() if t not in before] == []
