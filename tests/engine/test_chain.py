"""Dependency chains on a worker: the end of a run that makes dependents ready claims the next task for
the same worker in the same transaction (`_ops.ClaimNext`), in rank order, and a stopping worker
claims nothing that way."""

from __future__ import annotations

import asyncio

from loomiq import ScriptedModel
from loomiq.engine import TaskEngine

from .conftest import eventually, orch_of, running, scripted


async def test_a_dependent_is_claimed_in_the_transaction_of_its_parents_end(open_engine) -> None:  # type: ignore[no-untyped-def]
    engine: TaskEngine = await open_engine()
    orch = orch_of(engine)
    a = (await orch.submit("a", strategy="single")).id
    b = (await orch.submit("b", strategy="single", after=[a])).id
    c = (await orch.submit("c", strategy="single", after=[b])).id
    async with running(engine, concurrency=1) as worker:
        done = await engine.wait(c, timeout_s=10)
    assert done.status == "completed"
    ta, tb, tc = [await engine.get_task(i) for i in (a, b, c)]
    # Claimed at the very moment (the same transaction) its dependency's end was recorded.
    assert tb.started_at == ta.finished_at and tc.started_at == tb.finished_at
    assert worker.claimed == 3
    for t in (tb, tc):
        [attempt] = await engine.attempts(t.id)
        assert (attempt.status, attempt.worker_id) == ("completed", worker.id)
        events = [e async for e in engine.events(t.id)]
        assert [e.type for e in events][:3] == ["task_waiting", "task_ready", "task_started"]
        assert [e.seq for e in events] == list(range(1, len(events) + 1))


async def test_the_next_claim_takes_the_head_of_the_queue_not_the_dependent(open_engine) -> None:  # type: ignore[no-untyped-def]
    """While `a` runs, a critical task `x` is queued and `b` waits for `a`: `a`'s end claims `x`
    (it ranks first), and `b` runs after it, as a separate claim would have ordered them."""
    slow = ScriptedModel(replies=["slow"], latency_s=0.2)
    engine: TaskEngine = await open_engine([scripted("a0", slow), scripted("a1")])
    orch = orch_of(engine)
    a = (await orch.submit("a", strategy="single", agents=["a0"])).id
    async with running(engine, concurrency=1):
        await eventually(lambda: _status(engine, a, "running"), timeout_s=5)
        b = (await orch.submit("b", strategy="single", agents=["a1"], after=[a])).id
        x = (await orch.submit("x", strategy="single", agents=["a1"], priority="critical")).id
        await engine.wait(b, timeout_s=10)
    ta, tb, tx = [await engine.get_task(i) for i in (a, b, x)]
    assert tx.started_at == ta.finished_at
    assert tx.finished_at is not None and tb.started_at is not None and tb.started_at >= tx.finished_at


async def test_a_stopping_worker_claims_nothing_at_a_runs_end(open_engine) -> None:  # type: ignore[no-untyped-def]
    slow = ScriptedModel(replies=["slow"], latency_s=0.2)
    engine: TaskEngine = await open_engine([scripted("a0", slow)])
    orch = orch_of(engine)
    a = (await orch.submit("a", strategy="single")).id
    b = (await orch.submit("b", strategy="single", after=[a])).id
    async with running(engine, concurrency=1) as worker:
        await eventually(lambda: _status(engine, a, "running"), timeout_s=5)
        stopping = asyncio.create_task(worker.stop(drain_s=5.0))
        await stopping
    assert (await engine.get_task(a)).status == "completed"
    tb = await engine.get_task(b)
    assert tb.status == "queued" and await engine.attempts(b) == []
    assert worker.claimed == 1


async def _status(engine: TaskEngine, task_id: str, status: str) -> bool:
    return (await engine.get_task(task_id)).status == status
