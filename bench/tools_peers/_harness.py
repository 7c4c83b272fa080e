"""The tool workload of issue 11, shared by every framework's adapter (stdlib only, so it runs in
the peers' virtualenvs: see ../../../shared/bench-peers/README.md for how those are built).

One run: the fake model's first turn asks for two tool calls at once, ``get_weather(city="Paris")``
and ``get_weather(city="Rome")``; the framework runs both tools (each an async function returning
``"<city>: 18C"``) and sends their results back; the second turn answers with the fixed ANSWER.
The fake model is ``fake_turn``: it counts the turn, checks what the framework sent, optionally
sleeps ``Fake.latency``, and says which reply to give. Adapters only translate their message
objects to `fake_turn`'s arguments and its reply back.

Measured: the median wall time per run over ``--runs`` runs at zero model latency (after
``--warmup`` runs), which is what the framework costs around two model turns and two tool calls.
Each process first verifies one run (untimed): exactly two model turns, both tools run with the
right arguments, and both results reached the second turn. Output: one JSON line.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import platform
import statistics
import sys
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

TASK = "What is the weather in Paris and in Rome?"
ANSWER = "Paris and Rome are both at 18C."
CITIES = ("Paris", "Rome")
TOOL_NAME = "get_weather"


class Fake:
    """The fake model's and tools' counters (reset by `verify`)."""

    latency: float = 0.0
    turns: int = 0
    tool_runs: list[str] = []
    check: bool = False
    last_results: list[str] = []


def tool_result(city: str) -> str:
    """What the tool returns; adapters call it from their tool function."""
    if Fake.check:
        Fake.tool_runs.append(city)
    return f"{city}: 18C"


async def fake_turn(tool_results: Sequence[str]) -> list[tuple[str, dict[str, str]]] | str:
    """One model turn. `tool_results`: the tool results in the conversation so far. Returns the tool
    calls to make (name, arguments) on the first turn, the final answer once both results are in."""
    Fake.turns += 1
    if Fake.latency:
        await asyncio.sleep(Fake.latency)
    if not tool_results:
        return [(TOOL_NAME, {"city": c}) for c in CITIES]
    if Fake.check:
        Fake.last_results = list(tool_results)
    return ANSWER


async def verify(run: Callable[[str], Awaitable[str]]) -> dict[str, Any]:
    """One untimed run: two turns, both tools run, both results seen by the second turn."""
    Fake.turns, Fake.tool_runs, Fake.last_results, Fake.check = 0, [], [], True
    out = await run(TASK)
    Fake.check = False
    assert ANSWER in str(out), out
    assert Fake.turns == 2, f"{Fake.turns} model turns, expected 2"
    assert sorted(Fake.tool_runs) == sorted(CITIES), Fake.tool_runs
    assert sorted(r for r in Fake.last_results) == sorted(f"{c}: 18C" for c in CITIES), Fake.last_results
    return {"turns": Fake.turns, "tool_runs": len(Fake.tool_runs)}


async def _measure(run: Callable[[str], Awaitable[str]], runs: int, warmup: int) -> list[float]:
    for _ in range(warmup):
        await run(TASK)
    gc.collect()
    samples = []
    for _ in range(runs):
        t0 = time.perf_counter()
        await run(TASK)
        samples.append(time.perf_counter() - t0)
    return samples


def main(framework: str, packages: list[str], run: Callable[[str], Awaitable[str]], *, notes: str = "") -> None:
    """Parse ``--runs``/``--warmup``, verify, measure, print one JSON line."""
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=2000)
    ap.add_argument("--warmup", type=int, default=200)
    args = ap.parse_args()
    versions: dict[str, str | None] = {}
    from importlib.metadata import PackageNotFoundError, version

    for p in packages:
        try:
            versions[p] = version(p)
        except PackageNotFoundError:
            versions[p] = None

    async def go() -> dict[str, Any]:
        checked = await verify(run)
        samples = await _measure(run, args.runs, args.warmup)
        xs = sorted(samples)
        return {
            "verify": checked,
            "median_us": round(statistics.median(samples) * 1e6, 2),
            "p90_us": round(xs[int(0.9 * (len(xs) - 1))] * 1e6, 2),
            "runs": len(samples),
        }

    result = asyncio.run(go())
    out = {"framework": framework, "workload": "tools-2-parallel", "versions": versions,
           "python": platform.python_version(), "notes": notes, **result}
    sys.stdout.write(json.dumps(out) + "\n")
