"""Issue 15: the service's memory levels off under sustained load (a short soak of `bench/soak.py`).

A real ``loomiq serve --no-auth`` on SQLite takes ``POST /api/tasks`` (strategy parallel) at a steady
rate; after a warm-up, its memory is fitted against the tasks finished. The target is < 5 MB per
100,000 tasks (0.05 KB/task) of RSS in steady state, which needs a run of minutes (`bench/soak.py`,
figures in docs/benchmarks.md). A short run's RSS still carries the warm-up: SQLite's page caches
filling (five connections, whose read-pool ones start at open) and the allocators' high-water marks,
and a shared machine's noise; it is held to the loose `MAX_KB_PER_TASK`.
The leak detector is the memory *in use* outside SQLite (glibc malloc's bytes in use plus pymalloc's
used blocks, less SQLite's own, read inside the server by ``bench/soak_probe/sitecustomize.py``), which
has no warm-up to speak of: a per-task structure kept (any Python object or C allocation) shows in it at
once, and it must stay under `MAX_IN_USE_KB_PER_TASK` (the leaks issue 15 fixed were 1.0 KB/task in
``serve`` and 1.4 in ``loomiq worker``). The probe runs a full collection before each sample
(``--probe-garbage``): garbage in reference cycles waits for the server's rare collections
(`GC_THRESHOLDS`) and made a sawtooth of ~5 MB in use over ~30 s, which a fit over a short window reads
as growth or shrinkage by its phase; it is not kept memory. The soak scrapes ``/metrics`` every second,
as Prometheus would: the metrics queue finished steps (up to 10,000) until the next collection, ~6 MB
in use that rose and fell every ~20 s without scrapes. SQLite's own memory has a configured bound
(page caches and statements per connection), checked against `MAX_SQLITE_MB`. A leak fails two runs in
a row; a one-off step fails one.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

SOAK = Path(__file__).resolve().parent.parent / "bench" / "soak.py"
MAX_KB_PER_TASK = 0.4
MAX_IN_USE_KB_PER_TASK = 0.1
MAX_SQLITE_MB = 24.0
MAX_KB_PER_SSE_CLIENT = 1.0

pytestmark = pytest.mark.timeout(400)


def soak(*args: str) -> dict[str, Any]:
    done = subprocess.run([sys.executable, str(SOAK), *args], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_serve_memory_levels_off_under_sustained_load(tmp_path: Path) -> None:
    runs = []
    for attempt in range(2):
        result = soak("--mode", "serve", "--db", "sqlite", "--rate", "120", "--duration", "60", "--warmup", "25",
                      "--drain", "20", "--probe", str(tmp_path / str(attempt)), "--probe-s", "2", "--probe-garbage",
                      "--scrape-s", "1")
        assert result["errors"] == 0, result["error_samples"]
        assert result["finished"] >= result["accepted"] * 0.9, result  # the worker kept up
        probe = result["probe"]["api"]
        rss = result["slope_kb_per_task"]["api"]["kb_per_unit"]
        assert probe["in_use_outside_sqlite"]["samples"] >= 10, probe  # the probe ran in the server
        in_use = probe["in_use_outside_sqlite"]["kb_per_task"]
        sqlite_mb = probe["sqlite_in_use"]["mb_max"]
        runs.append({"rss_kb_per_task": rss, "in_use_outside_sqlite_kb_per_task": in_use, "sqlite_mb_max": sqlite_mb})
        if rss < MAX_KB_PER_TASK and in_use < MAX_IN_USE_KB_PER_TASK and sqlite_mb < MAX_SQLITE_MB:
            return
    pytest.fail(f"memory grows per task in two runs: {runs}")


def test_sse_clients_connecting_and_disconnecting_leave_no_growth() -> None:
    result = soak("--scenario", "sse", "--clients", "200", "--cycles", "10", "--warmup-cycles", "3")
    assert result["errors"] == 0, result["error_samples"]
    fit = result["slope_kb_per_connection"]["api"]
    assert fit["kb_per_unit"] < MAX_KB_PER_SSE_CLIENT, fit
