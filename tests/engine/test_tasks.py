"""Submitting, reading and listing tasks; idempotency; claim order with priorities and aging."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from loomiq import Orchestrator, StrategyError
from loomiq.engine import (
    EngineConfig,
    IdempotencyConflict,
    InvalidTask,
    TaskEngine,
    TaskNotFound,
    TaskRetry,
    _ops,
    open_store,
)
from loomiq.engine._queue import QueuedItem, claim_order
from loomiq.engine.task import WorkerID

from .conftest import FAST, database, orch_of, running, team


async def test_submit_get_list(engine: TaskEngine) -> None:
    orch = orch_of(engine)
    tid = (await orch.submit("Compare A and B", strategy="parallel", agents=["a0", "a1"], priority="high",
                            context={"ticket": 7}, timeout_s=30, retry=TaskRetry(2))).id
    task = await orch.get_task(tid)
    assert task.status == "queued" and task.id == tid
    r = task.request
    assert (r.prompt, r.strategy, r.agents, r.priority, r.timeout_s) == ("Compare A and B", "parallel",
                                                                         ("a0", "a1"), "high", 30)
    assert r.context == {"ticket": 7} and r.retry.max_attempts == 2 and r.tenant_id == "default"
    auto = (await orch.submit("Summarise this")).id
    assert (await orch.get_task(auto)).request.strategy != "auto"  # resolved at submission
    other = (await orch.submit("x", strategy="single", tenant_id="acme")).id
    assert [t.id for t in await orch.list_tasks()] == [auto, tid]
    assert [t.id for t in await orch.list_tasks(tenant_id="acme")] == [other]
    assert {t.id for t in await orch.list_tasks(tenant_id=None, status="queued")} == {tid, auto, other}
    assert await orch.list_tasks(status=["running", "completed"]) == []
    assert task.to_dict()["status"] == "queued"
    events = [e async for e in _take(orch.events(tid), 1)]
    assert events[0].type == "task_queued" and events[0].seq == 1


async def _take(it, n):  # type: ignore[no-untyped-def]
    got = 0
    async for e in it:
        yield e
        got += 1
        if got == n:
            return


async def test_bad_submissions_are_refused(engine: TaskEngine) -> None:
    orch = orch_of(engine)
    with pytest.raises(InvalidTask, match="priority"):
        await orch.submit("x", priority="urgent")
    with pytest.raises(InvalidTask, match="not JSON-serialisable"):
        await orch.submit("x", context={"f": object()})
    with pytest.raises(StrategyError):
        await orch.submit("x", strategy="nope")
    with pytest.raises(TaskNotFound):
        await orch.get_task("missing")
    assert await orch.list_tasks() == []


async def test_idempotency_key(engine: TaskEngine) -> None:
    orch = orch_of(engine)
    answers = await asyncio.gather(*(orch.submit("once", strategy="single", idempotency_key="k1") for _ in range(8)))
    ids = [a.id for a in answers]
    assert len(set(ids)) == 1
    assert [a.replayed for a in answers].count(False) == 1  # one insert; the seven others are replays
    assert all(a.task == answers[0].task for a in answers if a.replayed)
    with pytest.raises(IdempotencyConflict, match=f"'k1' was already used for task {ids[0]} with a different prompt"):
        await orch.submit("once again", idempotency_key="k1")
    other_tenant = (await orch.submit("once", idempotency_key="k1", tenant_id="acme")).id
    assert other_tenant != ids[0]
    assert len(await orch.list_tasks(tenant_id=None)) == 2
    async with running(engine):
        assert (await orch.wait(ids[0], 10)).status == "completed"
    assert (await orch.submit("once", idempotency_key="k1")).id == ids[0]  # never a second run
    assert (await engine.attempts(ids[0]))[0].status == "completed" and len(await engine.attempts(ids[0])) == 1


@pytest.mark.parametrize(("change", "field"), [
    ({"prompt": "another prompt"}, "prompt"),
    ({"strategy": "parallel"}, "strategy"),
    ({"agents": ["a1"]}, "agents"),
    ({"context": {"ticket": 7}}, "context"),
    ({"priority": "high"}, "priority"),
    ({"timeout_s": 30.0}, "timeout_s"),
    ({"retry": 5}, "retry"),
])
async def test_an_idempotency_key_with_any_other_request_is_refused(engine: TaskEngine, change: dict,
                                                                     field: str) -> None:
    orch = orch_of(engine)
    first = {"prompt": "plan", "strategy": "single", "agents": ["a0"]}
    task = (await orch.submit(**first, idempotency_key="k")).task
    with pytest.raises(IdempotencyConflict, match=f"task {task.id} with a different {field}") as refused:
        await orch.submit(**{**first, **change}, idempotency_key="k")
    assert isinstance(refused.value, InvalidTask) and refused.value.task_id == task.id
    assert (await orch.submit(**first, idempotency_key="k")).replayed  # the same request is still a replay
    assert len(await orch.list_tasks()) == 1


async def _claim_all(engine: TaskEngine) -> list[str]:
    order = []
    store = engine.store
    while True:
        out = await store.run_op(_ops.claim(store.dialect, WorkerID("w"), 1, time.time(), 60.0), fence="*")
        if not out.value:
            return order
        order.append(out.value[0].task.id)


async def test_priority_order_and_aging(open_engine) -> None:  # type: ignore[no-untyped-def]
    engine = await open_engine(config=EngineConfig(lease_s=2, renew_s=0.2, aging_s=0.05))
    orch = orch_of(engine)
    low = (await orch.submit("low", strategy="single", priority="low")).id
    await asyncio.sleep(0.25)  # five aging periods: low now outranks a fresh critical task
    crit = (await orch.submit("crit", strategy="single", priority="critical")).id
    medium = (await orch.submit("medium", strategy="single", priority="medium")).id
    assert await _claim_all(engine) == [low, crit, medium]


async def test_priority_without_aging(engine: TaskEngine) -> None:
    orch = orch_of(engine)
    ids = {}
    for p in ("low", "medium", "critical", "high", "medium"):
        ids.setdefault(p, []).append((await orch.submit(p, strategy="single", priority=p)).id)
    expected = ids["critical"] + ids["high"] + ids["medium"] + ids["low"]
    assert await _claim_all(engine) == expected


@pytest.mark.parametrize("kind", ["sqlite", "postgresql"])
@settings(max_examples=8, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(st.sampled_from(["critical", "high", "medium", "low"]), min_size=1, max_size=12))
def test_claim_order_matches_the_model(kind: str, tmp_path: Path, priorities: list[str]) -> None:
    """Property: the database claims in exactly the order `_queue.claim_order` defines."""

    async def check() -> None:
        async with database(kind, tmp_path) as url:
            orch = Orchestrator(team(1))
            engine = await orch.open_engine(url, config=FAST)
            try:
                queued = []
                for i, p in enumerate(priorities):
                    tid = (await orch.submit(f"t{i}", strategy="single", priority=p)).id
                    task = await orch.get_task(tid)
                    queued.append(QueuedItem(tid, p, task.created_at, i))
                expected = claim_order(queued, time.time(), FAST.aging_s)
                assert await _claim_all(engine) == expected
            finally:
                await orch.aclose()

    asyncio.run(check())


async def test_store_can_be_used_alone(db_url: str) -> None:
    async with await open_store(db_url) as store:
        assert await store.get_task("nope") is None
        assert await store.counts() == {}
