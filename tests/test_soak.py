"""Issue 15: the service's memory levels off under sustained load (a short soak of `bench/soak.py`).

A real ``loomiq serve --no-auth`` on SQLite takes ``POST /api/tasks`` (strategy parallel) at a steady
rate; after a warm-up, its resident memory is fitted against the tasks finished. The target is
< 5 MB per 100,000 tasks (0.05 KB/task); on a shared 2-core machine a short run carries the noise of
SQLite's page caches filling and of the allocator, so the bound asserted is `MAX_KB_PER_TASK`: well
below the leaks this guards against (1.0 KB/task in ``serve``, 1.4 in ``loomiq worker``, before
issue 15's fixes). A leak fails two runs in a row; a one-off step of the allocator fails one.
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
MAX_KB_PER_SSE_CLIENT = 1.0

pytestmark = pytest.mark.timeout(400)


def soak(*args: str) -> dict[str, Any]:
    done = subprocess.run([sys.executable, str(SOAK), *args], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_serve_memory_levels_off_under_sustained_load() -> None:
    runs = []
    for _ in range(2):
        result = soak("--mode", "serve", "--db", "sqlite", "--rate", "120", "--duration", "70", "--warmup", "40",
                      "--drain", "20")
        assert result["errors"] == 0, result["error_samples"]
        assert result["finished"] >= result["accepted"] * 0.9, result  # the worker kept up
        fit = result["slope_kb_per_task"]["api"]
        runs.append(fit)
        if fit["kb_per_unit"] < MAX_KB_PER_TASK:
            return
    pytest.fail(f"RSS grows per task in two runs (KB/task): {[r['kb_per_unit'] for r in runs]}; {runs}")


def test_sse_clients_connecting_and_disconnecting_leave_no_growth() -> None:
    result = soak("--scenario", "sse", "--clients", "200", "--cycles", "10", "--warmup-cycles", "3")
    assert result["errors"] == 0, result["error_samples"]
    fit = result["slope_kb_per_connection"]["api"]
    assert fit["kb_per_unit"] < MAX_KB_PER_SSE_CLIENT, fit
