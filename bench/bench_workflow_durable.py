"""Durable workflow runs on SQLite against the same work as plain engine tasks, and the cost of runs
parked on approvals. One JSON object on stdout (and in --out when given).

    python bench/bench_workflow_durable.py [--reps 5] [--parked 1000] [--out results.json]

All in one process, one in-process `Worker` (concurrency 4), zero-latency scripted agents:
- ``linear_workflow_s``: a 10-node linear workflow (each node a `single` task reading the previous
  output) from `start` to `succeeded`, durable on SQLite (median of --reps).
- ``task_chain_s``: the same 10 prompts submitted as engine tasks, each `after` the previous one,
  until the last completes (median). ``ratio`` = workflow / chain (the issue's target: at most 1.2).
- ``floor_s``: the 10 runs awaited in a row in process (`Orchestrator.run`: plain asyncio, no engine).
- ``parked``: --parked runs of an approval-first workflow started: ``rss_growth_mb`` (resident memory
  after minus before, with the runs' rows in the database and nothing in memory for them),
  ``running_tasks`` (engine tasks running or queued: 0, no worker slot held), ``start_ms_each``.
- ``answer_to_next_start_ms``: from `answer()` to the next node's task being submitted (p50, p95)
  over 50 runs (the issue's target: p50 under 50 ms).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import platform
import resource
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from loomiq import Agent, AgentConfig, Orchestrator, ScriptedModel
from loomiq.engine import EngineConfig, Worker, WorkflowRuns

LINEAR = "name: linear\nnodes:\n" + "".join(
    f"  n{i}:\n    kind: task\n    strategy: single\n"
    + (f"    needs: [n{i - 1}]\n    prompt: \"Step {i} after ${{{{ nodes.n{i - 1}.output }}}}\"\n" if i else
       "    prompt: \"Step 0\"\n")
    for i in range(10))

GATE = """\
name: gate
nodes:
  ask: {kind: approval, message: "Go?", approvers: {roles: [admin]}, timeout: 72h}
  after: {kind: task, needs: [ask], strategy: single, prompt: "Go on"}
"""


def agents() -> list[Agent]:
    return [Agent(AgentConfig("a0", "scripted", "s", max_concurrency=256), ScriptedModel(replies=["ok"]))]


def rss_mb() -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


async def main_async(args: argparse.Namespace) -> dict[str, Any]:
    tmp = Path(tempfile.mkdtemp(prefix="loomiq-wf-bench-"))
    orch = Orchestrator(agents())
    engine = await orch.open_engine(f"sqlite:///{tmp / 'bench.db'}", config=EngineConfig())
    runs = WorkflowRuns(engine, poll_s=0.05)
    worker = Worker(engine, concurrency=4)
    working = asyncio.create_task(worker.run())
    out: dict[str, Any] = {"bench": "workflow_durable", "python": platform.python_version(), "reps": args.reps}
    try:
        wf, chain, floor = [], [], []
        for _ in range(args.reps + 1):  # the first of each is a warm-up
            t0 = time.perf_counter()
            run = await runs.start(LINEAR)
            done = await runs.wait(run.id)
            assert done.status == "succeeded", done
            wf.append(time.perf_counter() - t0)
            t0 = time.perf_counter()
            previous: list[str] = []
            for i in range(10):
                submitted = await engine.submit(f"Step {i}", strategy="single", after=previous)
                previous = [submitted.id]
            last = await engine.wait(previous[0])
            assert last.status == "completed", last
            chain.append(time.perf_counter() - t0)
            t0 = time.perf_counter()
            for i in range(10):
                await orch.run(f"Step {i}", strategy="single")
            floor.append(time.perf_counter() - t0)
        out["linear_workflow_s"] = round(statistics.median(wf[1:]), 4)
        out["task_chain_s"] = round(statistics.median(chain[1:]), 4)
        out["ratio"] = round(out["linear_workflow_s"] / out["task_chain_s"], 3)
        out["floor_s"] = round(statistics.median(floor[1:]), 5)

        # Answer -> next node's task submitted.
        starts: dict[str, float] = {}
        runs.on_node_start.append(lambda run_id, key: starts.setdefault(f"{run_id}:{key}", time.perf_counter()))
        latencies = []
        for _ in range(50):
            run = await runs.start(GATE)
            [approval] = await runs.approvals(status="pending", run_id=run.id)
            t0 = time.perf_counter()
            await runs.answer(approval.id, subject="ann", roles=["admin"], decision="approve")
            latencies.append((starts[f"{run.id}:node/after/1"] - t0) * 1000)
        latencies.sort()
        out["answer_to_next_start_ms"] = {"p50": round(statistics.median(latencies), 2),
                                          "p95": round(latencies[int(len(latencies) * 0.95) - 1], 2)}
        await runs.wait(run.id)

        # Parked runs: nothing in memory, no task out.
        await worker.stop()
        await working
        await asyncio.sleep(0.2)
        fresh = WorkflowRuns(engine)
        before = rss_mb()
        t0 = time.perf_counter()
        for _ in range(args.parked):
            await fresh.start(GATE)
        spent = time.perf_counter() - t0
        after = rss_mb()
        running = len(await engine.list_tasks(status=["running", "queued"], limit=10_000))
        pending = len(await fresh.approvals(status="pending", limit=100_000))
        out["parked"] = {"runs": args.parked, "pending_approvals": pending, "running_tasks": running,
                         "rss_growth_mb": round(after - before, 1),
                         "start_ms_each": round(spent / args.parked * 1000, 2)}
    finally:
        if not working.done():
            await worker.stop()
            await working
        await runs.close()
        await orch.aclose()
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reps", type=int, default=5)
    parser.add_argument("--parked", type=int, default=1000)
    parser.add_argument("--out", default=None)
    args = parser.parse_args()
    result = asyncio.run(main_async(args))
    text = json.dumps(result, indent=2)
    sys.stdout.write(text + "\n")
    if args.out:
        Path(args.out).write_text(text + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
