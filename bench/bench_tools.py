"""What loomiq's tool loop costs per tool call, beside a plain-asyncio floor in the same process.

    python bench/bench_tools.py                       # --mode overhead: one JSON line
    python bench/bench_tools.py --summary FILE.jsonl  # summarise a bench/run_tools.sh results file

Workload (zero model latency, nothing leaves the process): a model turn that asks for N calls of a
no-op async tool (``noop(x: int)``), then a final turn. The fake model is a coroutine returning
prebuilt responses. The floor does the same calls with plain asyncio: await the model, await the
tool coroutine (``asyncio.gather`` for N > 1), append the messages, await the model again; nothing
validated, no timeout, no record. loomiq does it through `ToolLoop.run` with a `@tool` function:
arguments validated by pydantic, footprints, the scheduler, a timeout per call, a record per call.

Floor and loomiq alternate in blocks of ``--block`` runs, ``--reps`` times, so both see the same
minutes of a busy machine; the figure is the difference of the medians, per tool call, for N = 1
(the issue's target: at most 30 µs) and N = 8 (calls run concurrently: what one more call costs).
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
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from loomiq.models import Message, ModelRequest, ModelResponse, ToolCall
from loomiq.tools import ToolLoop, tool

TARGET_US = 30.0


@tool
async def noop(x: int) -> str:
    """Do nothing."""
    return "ok"


async def raw_noop(x: int) -> str:
    return "ok"


FINAL = ModelResponse("done", "fake")
REQUEST = ModelRequest((Message("user", "go"),))


def fake_model(n: int) -> Callable[[ModelRequest], Awaitable[ModelResponse]]:
    """A model whose first turn asks for `n` noop calls and whose second answers."""
    calls = ModelResponse("", "fake", finish_reason="tool_calls",
                          tool_calls=tuple(ToolCall(f"c{i}", "noop", {"x": i}) for i in range(n)))

    async def model(request: ModelRequest) -> ModelResponse:
        return FINAL if request.messages[-1].role == "tool" else calls

    return model


def floor_run(n: int) -> Callable[[], Awaitable[ModelResponse]]:
    model = fake_model(n)

    async def run() -> ModelResponse:
        response = await model(REQUEST)
        messages = [*REQUEST.messages, Message("assistant", response.text, tool_calls=response.tool_calls)]
        if len(response.tool_calls) == 1:
            (c,) = response.tool_calls
            outputs = [await raw_noop(**c.arguments)]
        else:
            outputs = await asyncio.gather(*(raw_noop(**c.arguments) for c in response.tool_calls))
        for c, out in zip(response.tool_calls, outputs, strict=True):
            messages.append(Message("tool", out, tool_call_id=c.id))
        return await model(ModelRequest(tuple(messages)))

    return run


def loomiq_run(n: int) -> Callable[[], Awaitable[ModelResponse]]:
    model = fake_model(n)
    loop = ToolLoop([noop])

    async def run() -> ModelResponse:
        result = await loop.run(model, REQUEST)
        assert len(result.tool_calls) == n and result.tool_calls[-1].error is None
        return result.response

    return run


async def _block(run: Callable[[], Awaitable[ModelResponse]], runs: int) -> list[float]:
    gc.collect()
    samples = []
    for _ in range(runs):
        t0 = time.perf_counter()
        await run()
        samples.append(time.perf_counter() - t0)
    return samples


async def overhead(args: argparse.Namespace) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for n in (1, 8):
        floor, loomiq = floor_run(n), loomiq_run(n)
        assert (await loomiq()).text == (await floor()).text == "done"
        for run in (floor, loomiq):
            await _block(run, args.warmup)
        samples: dict[str, list[float]] = {"floor": [], "loomiq": []}
        for _ in range(args.reps):
            samples["floor"] += await _block(floor, args.block)
            samples["loomiq"] += await _block(loomiq, args.block)
        f = statistics.median(samples["floor"]) * 1e6
        m = statistics.median(samples["loomiq"]) * 1e6
        out[f"calls_{n}"] = {
            "floor_us": round(f, 2),
            "loomiq_us": round(m, 2),
            "overhead_per_call_us": round((m - f) / n, 2),
            "runs_each": len(samples["floor"]),
        }
    out["target_us"] = TARGET_US
    out["meets_target"] = out["calls_1"]["overhead_per_call_us"] <= TARGET_US
    return out


def summary(path: Path) -> dict[str, Any]:
    """Medians over repetitions of each framework's tool-workload figure, and loomiq's overhead rows."""
    rows = [json.loads(line) for line in path.read_text().splitlines() if line.startswith("{")]
    per: dict[str, list[float]] = {}
    overheads: list[dict[str, Any]] = []
    for row in rows:
        if row.get("mode") == "overhead":
            overheads.append(row)
        elif row.get("workload") == "tools-2-parallel":
            per.setdefault(row["framework"], []).append(row["median_us"])
    workload = {name: round(statistics.median(v), 2) for name, v in per.items()}
    out: dict[str, Any] = {"tool_workload_us_per_run": workload, "reps": {k: len(v) for k, v in per.items()}}
    peers = [v for k, v in workload.items() if k not in ("loomiq", "floor (plain asyncio)")]
    if "loomiq" in workload and peers:
        out["faster_peer_us"] = min(peers)
        out["loomiq_cheaper_by"] = round(min(peers) / workload["loomiq"], 1)
        out["meets_10x"] = out["loomiq_cheaper_by"] >= 10
    if overheads:
        for n in ("calls_1", "calls_8"):
            out[f"overhead_{n}_per_call_us"] = round(
                statistics.median(o[n]["overhead_per_call_us"] for o in overheads), 2
            )
        out["meets_30us"] = out["overhead_calls_1_per_call_us"] <= TARGET_US
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--mode", choices=["overhead"], default="overhead")
    ap.add_argument("--block", type=int, default=2000, help="runs per block")
    ap.add_argument("--reps", type=int, default=5, help="floor/loomiq blocks, alternating")
    ap.add_argument("--warmup", type=int, default=500)
    ap.add_argument("--summary", type=Path, help="summarise a run_tools.sh results file instead")
    args = ap.parse_args()
    if args.summary is not None:
        sys.stdout.write(json.dumps(summary(args.summary), indent=2) + "\n")
        return
    result = asyncio.run(overhead(args))
    line = {"bench": "tools", "mode": "overhead", "python": platform.python_version(), **result}
    sys.stdout.write(json.dumps(line) + "\n")


if __name__ == "__main__":
    main()
