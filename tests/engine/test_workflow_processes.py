"""Workflow runs across real worker processes killed with SIGKILL (SQLite and PostgreSQL): a run
parked on an approval survives every worker being killed three times, is answered concurrently (one
key five times, another key once) and finished by fresh workers; every node task ran once and no
finished model call was repeated (the workers' ledger against the journal)."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from loomiq import Orchestrator
from loomiq.engine import WorkflowRuns
from loomiq.engine._ops import Stmt
from tests.engine._procs import (
    STALL_MARK,
    check_durable_run,
    read_ledger,
    step_rows,
    submit_agents,
    wait_ledger,
    worker_pool,
)
from tests.engine.conftest import FAST, eventually
from tests.workflows.conftest import RELEASE_NOTES


async def test_a_parked_run_survives_kill_9_of_every_worker(db_url: str, tmp_path: Path) -> None:
    orch = Orchestrator(submit_agents())
    engine = await orch.open_engine(db_url, config=FAST)
    runs = WorkflowRuns(engine)
    killed: set[int] = set()
    try:
        async with worker_pool(db_url, tmp_path, workflows=1, lease_s=2.0, renew_s=0.5) as start:
            run = await runs.start(RELEASE_NOTES, {"version": "2.0"})
            await runs.close()  # this process only submitted: the workers' drivers take it from here
            workers = [await start("w1"), await start("w2")]
            await eventually(lambda: runs.approvals(status="pending"), timeout_s=60, every_s=0.1)
            for _ in range(3):  # kill -9 every worker while the run waits, then start fresh ones
                for w in workers:
                    killed.add(w.pid)
                    await w.kill()
                workers = [await start("w1"), await start("w2")]
                await asyncio.sleep(0.3)
            [approval] = await runs.approvals(status="pending")
            answerers = [WorkflowRuns(engine) for _ in range(6)]
            results = await asyncio.gather(
                *(a.answer(approval.id, subject="ann", roles=["admin"], decision="approve", idempotency_key="k")
                  for a in answerers[:5]),
                answerers[5].answer(approval.id, subject="bob", roles=["operator"], decision="reject",
                                    idempotency_key="other"),
                return_exceptions=True)
            for a in answerers:
                await a.close()
            await eventually(lambda: _finished(runs, run.id), timeout_s=60, every_s=0.1)
            for w in workers:
                await w.stop()
        verdicts = [r.verdict if not isinstance(r, BaseException) else type(r).__name__ for r in results]
        assert sum(v == "accepted" for v in verdicts) == 1, verdicts
        assert set(verdicts) <= {"accepted", "replayed", "duplicate", "ApprovalConflict"}, verdicts
        state = await runs.state(run.id)
        assert (await runs.get_run(run.id)).status == "succeeded"
        decision = state.nodes["approve"].approval.decision  # type: ignore[union-attr]
        after = "publish" if decision == "approved" else "held_back"
        rows = await engine.store.fetch(Stmt(
            "SELECT idempotency_key, id FROM tasks WHERE idempotency_key LIKE ? ORDER BY created_at",
            (f"wf:{run.id}:%",), "all"))
        assert [r[0] for r in rows] == [f"wf:{run.id}:node/draft/1", f"wf:{run.id}:node/{after}/1"]
        steps = await step_rows(engine)
        ledger = read_ledger(tmp_path / "ledger.jsonl")
        for _, task_id in rows:
            calls = sum(1 for (t, _a) in steps if t == task_id)
            report = await check_durable_run(engine, [task_id], ledger, killed, calls_per_task=calls)
            assert report.problems == [], report.problems
        notices = [e.type for e in await runs.events(run.id)]
        assert notices.count("approval_requested") == 1 and notices.count("approval_resolved") == 1
        assert notices.count("node_started") == 2 and notices.count("workflow_finished") == 1
    finally:
        await orch.aclose()


async def _finished(runs: WorkflowRuns, run_id: str) -> bool:
    return (await runs.get_run(run_id)).status != "running"


SLOW = """\
name: slow
nodes:
  long:
    kind: task
    strategy: single
    agents: [a0]
    prompt: "Take your time"
  next:
    kind: task
    needs: [long]
    prompt: "Never starts"
"""


async def test_cancel_reaches_a_node_running_in_another_process_within_2_s(db_url: str, tmp_path: Path) -> None:
    orch = Orchestrator(submit_agents())
    engine = await orch.open_engine(db_url, config=FAST)
    runs = WorkflowRuns(engine)
    try:
        async with worker_pool(db_url, tmp_path, workflows=1, latency_min=60.0, latency_max=60.0) as start:
            worker = await start("w1")
            run = await runs.start(SLOW)
            ledger = tmp_path / "ledger.jsonl"
            await eventually(lambda: ledger.exists() and any(
                line["ev"] == "start" for line in read_ledger(ledger)), timeout_s=30)
            t0 = asyncio.get_running_loop().time()
            assert (await runs.cancel(run.id)).status == "cancelled"
            [task] = await engine.list_tasks()
            await eventually(lambda: _task_ended(engine, task.id), timeout_s=2.0, every_s=0.02)
            assert asyncio.get_running_loop().time() - t0 < 2.0
            await asyncio.sleep(0.5)
            await worker.stop()
        assert (await engine.get_task(task.id)).status == "cancelled"
        assert not any(line["ev"] == "done" for line in read_ledger(ledger))  # the provider call was aborted
        assert len(await engine.list_tasks()) == 1  # nothing started after the cancel
        assert (await runs.state(run.id)).nodes["next"].attempts == 0
    finally:
        await runs.close()
        await orch.aclose()


async def _task_ended(engine: object, task_id: str) -> bool:
    return (await engine.get_task(task_id)).terminal  # type: ignore[attr-defined,no-any-return]


KILL_CHILD = """\
name: kchild
inputs:
  topic: {type: string}
nodes:
  c1:
    kind: task
    strategy: single
    agents: [a0]
    prompt: "First [stall] on ${{ inputs.topic }}"
  c2:
    kind: task
    strategy: single
    agents: [a1]
    needs: [c1]
    prompt: "Second [stall] after ${{ nodes.c1.output }}"
outputs:
  said: ${{ nodes.c2.output }}
"""

KILL_PARENT = """\
name: kparent
nodes:
  pre:
    kind: task
    strategy: single
    agents: [a2]
    prompt: "Before the child"
  sub:
    kind: subworkflow
    workflow: kchild
    needs: [pre]
    inputs:
      topic: ${{ nodes.pre.output }}
  post:
    kind: task
    strategy: single
    agents: [a3]
    needs: [sub]
    prompt: "After ${{ nodes.sub.output.said }}"
"""


async def test_kill_9_while_a_subworkflow_child_runs(db_url: str, tmp_path: Path) -> None:
    """Every worker is killed (SIGKILL) while the child run's first node has its model's answer but
    has not journalled it (its worker stuck, as in a long pause: ``[stall]``), and again at the same
    point of the child's second node (its first node finished); fresh workers finish the child, the
    parent continues with the child's output, and no finished node ran twice: one task per node, one
    attempt of each node in both runs, no finished model call repeated (the ledger), each notice once."""
    assert STALL_MARK in KILL_CHILD
    orch = Orchestrator(submit_agents())
    engine = await orch.open_engine(db_url, config=FAST)
    runs = WorkflowRuns(engine)
    killed: set[int] = set()
    ledger = tmp_path / "ledger.jsonl"

    async def kill_all(workers: list[Any]) -> None:
        assert (await runs.get_run(child)).status == "running"
        for w in workers:
            killed.add(w.pid)
            await w.kill()

    try:
        await runs.register(KILL_CHILD)
        async with worker_pool(db_url, tmp_path, workflows=1, lease_s=2.0, renew_s=0.5,
                               latency_min=0.8, latency_max=1.0) as start:
            run = await runs.start(KILL_PARENT)
            await runs.close()  # this process only submitted: the workers' drivers take it from here
            child = f"{run.id}.sub.1"
            workers = [await start("w1", stall_s=60), await start("w2", stall_s=60)]  # stall on a0: c1
            c1 = await _task_of(engine, child, "c1")
            await wait_ledger(ledger, lambda line: line["ev"] == "stall" and line["task"] == c1, timeout_s=60)
            await kill_all(workers)  # c1 answered, its worker stuck before journalling it
            workers = [await start("w1", stall_s=60, stall_agent="a1"),  # stall on a1: c2
                       await start("w2", stall_s=60, stall_agent="a1")]
            c2 = await _task_of(engine, child, "c2")
            await wait_ledger(ledger, lambda line: line["ev"] == "stall" and line["task"] == c2, timeout_s=60)
            await kill_all(workers)  # c2 answered, its worker stuck before journalling it
            workers = [await start("w1"), await start("w2")]
            await eventually(lambda: _finished(runs, run.id), timeout_s=90, every_s=0.1)
            for w in workers:
                await w.stop()
        done = await runs.get_run(run.id)
        assert done.status == "succeeded", done.error
        assert (await runs.get_run(child)).status == "succeeded"
        for rid, nodes in ((run.id, ("pre", "sub", "post")), (child, ("c1", "c2"))):
            state = await runs.state(rid)
            for node in nodes:
                assert (str(state.nodes[node].status), state.nodes[node].attempts) == ("succeeded", 1), (rid, node)
        rows = await engine.store.fetch(Stmt("SELECT idempotency_key, id FROM tasks ORDER BY created_at", (), "all"))
        assert [r[0] for r in rows] == [f"wf:{run.id}:node/pre/1", f"wf:{child}:node/c1/1",
                                        f"wf:{child}:node/c2/1", f"wf:{run.id}:node/post/1"]
        post = await engine.get_task(rows[-1][1])
        assert post.request.prompt == f"After {(await engine.get_task(c2)).output}"  # the child's output
        report = await check_durable_run(engine, [r[1] for r in rows], read_ledger(ledger), killed, calls_per_task=1)
        assert report.problems == [], report.problems
        assert [a.status for a in await engine.attempts(c1)] == ["lost", "completed"]
        assert [a.status for a in await engine.attempts(c2)] == ["lost", "completed"]
        stalled = [line["task"] for line in read_ledger(ledger) if line["ev"] == "stall"]
        assert stalled == [c1, c2]  # each answered once under a killed worker, never journalled, run again
        parent_notices = [e.type for e in await runs.events(run.id)]
        assert parent_notices.count("subworkflow_started") == 1 and parent_notices.count("subworkflow_finished") == 1
        assert parent_notices.count("node_started") == 2 and parent_notices.count("workflow_finished") == 1
        child_notices = [e.type for e in await runs.events(child)]
        assert child_notices.count("node_started") == 2 and child_notices.count("node_finished") == 2
        assert child_notices.count("workflow_started") == 1 and child_notices.count("workflow_finished") == 1
    finally:
        await runs.close()
        await orch.aclose()


async def _task_of(engine: object, run_id: str, node: str) -> str:
    """The id of the engine task of `node`'s first attempt in run `run_id`, once it was submitted."""
    found: list[str] = []

    async def submitted() -> bool:
        tid = await engine.store.fetch(Stmt(  # type: ignore[attr-defined]
            "SELECT id FROM tasks WHERE idempotency_key = ?", (f"wf:{run_id}:node/{node}/1",), "val"))
        if tid is not None:
            found.append(tid)
        return tid is not None

    await eventually(submitted, timeout_s=60, every_s=0.05)
    return found[0]
