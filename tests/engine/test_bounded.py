"""Issue 15: what the engine keeps per task is released or bounded under sustained load."""

from __future__ import annotations

import asyncio
from pathlib import Path

from loomiq import Orchestrator

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
