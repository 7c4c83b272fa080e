"""The sandbox's cost: `print(1)` through the `python` tool against a bare ``python3 -c 'print(1)'``.

Both are started from the same process and their output read through pipes, interleaved call by
call so that load on the machine hits both alike; the tool's figure is everything a call pays from
`run` to its result. Three modes: the default tool (two sandboxes started ahead) with a pause before
each call, as between an agent's turns (the figure the target is about: the tool's p50 at most 1.5x
the bare p50); the same back to back, where starting the next sandbox competes with the call for the
CPU; and sandboxes started at their call (``warm: 0``), the whole set-up paid by the call.

    .venv/bin/python bench/bench_sandbox.py [--runs 200] [--out FILE]

Prints one JSON object (also written to --out when given).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import platform
import shutil
import statistics
import sys
import time

from loomiq.tools import ToolContext
from loomiq.tools.builtin.code_exec import PythonTool


def _pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def _bare(python: str) -> float:
    started = time.perf_counter()
    proc = await asyncio.create_subprocess_exec(
        python, "-c", "print(1)", stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )
    out, _ = await proc.communicate()
    assert out.strip() == b"1", out
    return (time.perf_counter() - started) * 1000


async def _tool(tool: PythonTool, ctx: ToolContext) -> float:
    started = time.perf_counter()
    result = await tool.run({"code": "print(1)"}, ctx)
    assert not result.is_error and result.data["stdout"].strip() == "1", result.content
    return (time.perf_counter() - started) * 1000


async def _mode(python: str, runs: int, warmup: int, warm: int, pause_s: float) -> dict[str, object]:
    tool = PythonTool.configure({"warm": warm})
    ctx = ToolContext()
    for _ in range(warmup):
        await _bare(python)
        await _tool(tool, ctx)
    bare: list[float] = []
    sandboxed: list[float] = []
    for _ in range(runs):
        await asyncio.sleep(pause_s)
        bare.append(await _bare(python))
        await asyncio.sleep(pause_s)
        sandboxed.append(await _tool(tool, ctx))
    tool.sandbox.close()
    bare_p50, tool_p50 = statistics.median(bare), statistics.median(sandboxed)
    return {
        "warm": warm,
        "pause_ms": pause_s * 1000,
        "bare_ms": {"p50": round(bare_p50, 3), "p90": round(_pct(bare, 0.9), 3)},
        "tool_ms": {"p50": round(tool_p50, 3), "p90": round(_pct(sandboxed, 0.9), 3)},
        "ratio_p50": round(tool_p50 / bare_p50, 3),
    }


async def main(runs: int, warmup: int, pause_ms: float) -> dict[str, object]:
    """Interleave `runs` bare and tool calls after `warmup` of each, in three modes: sandboxes started
    ahead with a pause between calls (as between an agent's turns: the default), the same back to back
    (the refill competes with the next call), and each sandbox started at its call."""
    python = shutil.which("python3", path="/usr/local/bin:/usr/bin:/bin")
    assert python, "python3 not found under /usr"
    modes = {
        "warm_paced": await _mode(python, runs, warmup, 2, pause_ms / 1000),
        "warm_back_to_back": await _mode(python, runs, warmup, 2, 0.0),
        "cold_paced": await _mode(python, runs, warmup, 0, pause_ms / 1000),
    }
    return {
        "bench": "sandbox_print1",
        "python": python,
        "runs": runs,
        "modes": modes,
        "ratio_p50": modes["warm_paced"]["ratio_p50"],
        "target_ratio_p50": 1.5,
        "machine": {"cpus": __import__("os").cpu_count(), "platform": platform.platform(),
                    "loadavg": [round(x, 2) for x in __import__("os").getloadavg()]},
        "time": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=200)
    parser.add_argument("--warmup", type=int, default=10)
    parser.add_argument("--pause-ms", type=float, default=25.0, help="pause before each call (paced modes)")
    parser.add_argument("--out", default=None)
    opts = parser.parse_args()
    report = asyncio.run(main(opts.runs, opts.warmup, opts.pause_ms))
    text = json.dumps(report, indent=2)
    if opts.out:
        with open(opts.out, "w") as fh:
            fh.write(text + "\n")
    sys.stdout.write(text + "\n")
