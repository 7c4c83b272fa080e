"""Durable runs: journal and replay after a crash, fencing, group commit, in-process durable runs."""

from __future__ import annotations

import asyncio

from loomiq import Orchestrator, ScriptedModel, ScriptedReply
from loomiq.engine import EngineConfig, LeaseLost, TaskEngine, Worker, _ops
from loomiq.engine.task import WorkerID

from .conftest import FAST, eventually, orch_of, running, scripted, team


def _consensus_team(slow_first_call: bool) -> list:  # type: ignore[type-arg]
    """a0, a1 answer at once; a2's first call hangs (the crash hits it), later calls are quick."""
    a2_replies = [ScriptedReply("answer from a2", latency_s=30.0), ScriptedReply("answer from a2")]
    return [
        scripted("a0"), scripted("a1"),
        scripted("a2", ScriptedModel(replies=a2_replies if slow_first_call else ["answer from a2"])),
        scripted("a3", ScriptedModel(replies=["the synthesis"])),
    ]


async def test_crashed_worker_task_resumes_without_repeating_finished_calls(open_engine) -> None:  # type: ignore[no-untyped-def]
    agents = _consensus_team(slow_first_call=True)
    engine: TaskEngine = await open_engine(agents, config=EngineConfig(lease_s=0.5, renew_s=0.1, aging_s=60))
    orch = orch_of(engine)
    tid = (await orch.submit("Shard the database?", strategy="consensus", agents=["a0", "a1", "a2", "a3"])).id

    crashing = Worker(engine, concurrency=2)
    run = asyncio.create_task(crashing.run())
    await eventually(lambda: _journalled(engine, tid, 2))
    run.cancel()  # kill -9: nothing more is written; the lease is left to expire
    await asyncio.gather(run, return_exceptions=True)
    assert (await orch.get_task(tid)).status == "running"

    async with running(engine, concurrency=2) as rescuer:
        task = await orch.wait(tid, timeout_s=10)
    assert task.status == "completed" and task.output == "the synthesis"
    assert rescuer.claimed == 1
    ledgers = {a.id: a.model.calls for a in agents}  # type: ignore[attr-defined]
    # Each finished call was made exactly once; a2's first call never finished (the crash cut it).
    assert [c.finished for c in ledgers["a0"]] == [True]
    assert [c.finished for c in ledgers["a1"]] == [True]
    assert [c.finished for c in ledgers["a2"]] == [False, True]
    assert [c.finished for c in ledgers["a3"]] == [True]
    assert [s["key"] for s in task.result["steps"]] == ["analyst/0", "analyst/1", "analyst/2", "lead"]  # type: ignore[index]
    attempts = await engine.attempts(tid)
    assert [a.status for a in attempts] == ["lost", "completed"] and [a.epoch for a in attempts] == [1, 2]
    started = [e for e in await engine.store.read_events(tid) if e.type == "task_started"]
    assert [e.data["resumed"] for e in started] == [False, True]


async def _journalled(engine: TaskEngine, task_id: str, n: int) -> bool:
    return len(await engine.store.journal(task_id)) >= n


async def test_a_worker_whose_lease_was_taken_over_cannot_write(open_engine) -> None:  # type: ignore[no-untyped-def]
    config = EngineConfig(lease_s=0.4, renew_s=0.1, aging_s=60)
    slow = scripted("a0", ScriptedModel(replies=["late answer"], latency_s=1.2))
    fast = scripted("a0", ScriptedModel(replies=["quick answer"]))
    stalled: TaskEngine = await open_engine([slow], config=config)  # "process" 1, about to stall
    healthy: TaskEngine = await open_engine([fast], config=config)  # "process" 2
    tid = (await orch_of(stalled).submit("x", strategy="single", agents=["a0"])).id

    async with running(stalled, concurrency=1) as w1:  # busy: it claims nothing more
        await eventually(lambda: bool(slow.model.calls))  # type: ignore[attr-defined]
        assert stalled._keeper is not None
        stalled._keeper.cancel()  # its renewals stop (SIGSTOP), the run goes on
        async with running(healthy):
            task = await orch_of(healthy).wait(tid, timeout_s=10)
            assert task.status == "completed" and task.output == "quick answer"
            await eventually(lambda: slow.model.calls[0].finished)  # type: ignore[attr-defined]
            await eventually(lambda: not w1.running)
    # The stalled worker's late answer was refused: one journal row (epoch 2), one end, one finish event.
    journal = await healthy.store.journal(tid)
    assert journal["single"].output == "quick answer"
    assert (await orch_of(healthy).get_task(tid)).output == "quick answer"
    finished = [e for e in await healthy.store.read_events(tid) if e.type == "task_finished"]
    assert len(finished) == 1
    assert [a.status for a in await healthy.attempts(tid)] == ["lost", "completed"]


async def test_stale_epoch_writes_are_refused(engine: TaskEngine) -> None:
    store, d = engine.store, engine.store.dialect
    tid = (await orch_of(engine).submit("x", strategy="single", agents=["a0"])).id
    first = (await store.run_op(_ops.claim(d, WorkerID("w1"), 1, 0.0 + __import__("time").time(), 0.01),
                                fence="*")).value[0]
    await asyncio.sleep(0.05)
    second = (await store.run_op(_ops.claim(d, WorkerID("w2"), 1, __import__("time").time(), 10.0),
                                 fence="*")).value[0]
    assert (first.epoch, second.epoch) == (1, 2) and second.resumed
    from loomiq import StepResult

    try:
        await store.put_step("default", tid, first.epoch, StepResult("single", "a0", "answer", "stale"))
        raise AssertionError("a stale write was accepted")
    except LeaseLost:
        pass
    end = _ops.RunEnd("completed", None, "stale", 0, 0, 0.0, None)
    try:
        await store.run_op(_ops.finish(d, tid, first.epoch, 99, end, 0.0, 60.0), fence=tid)
        raise AssertionError("a stale finish was accepted")
    except LeaseLost:
        pass
    await store.put_step("default", tid, second.epoch, StepResult("single", "a0", "answer", "fresh"))
    assert (await store.journal(tid))["single"].output == "fresh"
    lost = (await store.run_op(_ops.renew(d, [(tid, 1, "w1"), (tid, 2, "w2")], 0.0, 10.0))).value
    assert lost == {tid}


async def test_durable_run_matches_the_in_memory_run(engine: TaskEngine) -> None:
    orch = orch_of(engine)
    plain = await orch.run("Pick a queue", strategy="consensus", agents=["a0", "a1", "a2", "a3"])
    durable = await orch.run("Pick a queue", strategy="consensus", agents=["a0", "a1", "a2", "a3"], durable=True)
    assert durable.status == plain.status == "completed"
    assert durable.output == plain.output and durable.outputs == plain.outputs
    assert [s.key for s in durable.steps] == [s.key for s in plain.steps]
    task = await orch.get_task(durable.task_id)
    assert task.status == "completed" and task.output == durable.output
    assert task.usage == durable.usage
    assert set(await engine.store.journal(durable.task_id)) == {"analyst/0", "analyst/1", "analyst/2", "lead"}
    types = [e.type for e in await engine.store.read_events(durable.task_id)]
    assert types[:3] == ["task_queued", "task_started", "run_started"]
    assert types[-2:] == ["run_finished", "task_finished"]
    assert types.count("step_finished") == 4


async def test_group_commit_batches_many_steps(open_engine) -> None:  # type: ignore[no-untyped-def]
    engine: TaskEngine = await open_engine(team(3, latency_s=0.02))
    orch, stats = orch_of(engine), engine.store.stats
    before_tx, before_rows = stats.transactions, stats.rows
    results = await asyncio.gather(*(orch.run(f"q{i}", strategy="parallel", agents=["a0", "a1", "a2"],
                                              durable=True) for i in range(100)))
    assert all(r.status == "completed" for r in results)
    steps = sum(len(r.steps) for r in results)
    transactions = stats.transactions - before_tx
    assert steps == 300 and stats.rows - before_rows > steps  # journal rows and their events
    assert transactions < steps / 10, f"{transactions} transactions for {steps} steps"


async def test_submitted_task_runs_on_a_worker_of_another_orchestrator(open_engine) -> None:  # type: ignore[no-untyped-def]
    client: TaskEngine = await open_engine()
    worker_side: TaskEngine = await open_engine()
    tid = (await orch_of(client).submit("Hello", strategy="sequential", agents=["a0", "a1"])).id
    async with running(worker_side):
        task = await orch_of(client).wait(tid, timeout_s=10)
    assert task.status == "completed" and task.output == "answer from a1"
    assert client.runner is orch_of(client).runner  # the engine runs through its orchestrator's runner
    assert isinstance(orch_of(client), Orchestrator)


async def test_workers_are_listed(engine: TaskEngine) -> None:
    async with running(engine, concurrency=3, worker_id="w-test"):
        await eventually(lambda: _has_worker(engine, "running"))
    workers = await engine.workers()
    assert [(w.id, w.status, w.concurrency) for w in workers] == [("w-test", "stopped", 3)]
    assert FAST.lease_s > FAST.renew_s


async def _has_worker(engine: TaskEngine, status: str) -> bool:
    return any(w.status == status for w in await engine.workers())
