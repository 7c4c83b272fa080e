"""Text no database stores (NUL, lone surrogates) is refused where it enters, and a write batch that one
row makes fail never wedges the others: the row's task fails with the reason, the rest commit."""

from __future__ import annotations

import asyncio

import pytest

from loomiq import ScriptedModel
from loomiq.engine import EngineConfig, InvalidTask, TaskEngine, TaskNotFound

from .conftest import orch_of, running, scripted

_BAD = ["a\x00b", "lone \ud800 surrogate", "\udfff"]


@pytest.mark.parametrize("bad", _BAD)
async def test_text_no_database_stores_is_refused_at_submission_naming_the_field(open_engine, bad: str) -> None:  # type: ignore[no-untyped-def]
    engine: TaskEngine = await open_engine([scripted("a0")])
    fields = {
        "prompt": {"prompt": bad}, "strategy": {"strategy": bad}, "agents": {"agents": ["a0", bad]},
        "capabilities": {"capabilities": [bad]}, "options": {"options": {"k": bad}},
        "context": {"context": {"user": [1, bad]}}, "after": {"after": [bad]},
        "idempotency_key": {"idempotency_key": bad},
        "tenant_id": {"tenant_id": bad}, "task_id": {"task_id": bad},
    }
    for field, kwargs in fields.items():
        args = {"prompt": "fine", **kwargs}
        with pytest.raises(InvalidTask, match="cannot be stored") as caught:
            await engine.submit(args.pop("prompt"), **args)  # type: ignore[arg-type]
        assert caught.value.field is not None and caught.value.field.startswith(field), (field, caught.value)
        assert isinstance(caught.value, ValueError)
    with pytest.raises(TaskNotFound):
        await engine.get_task(bad)  # (PostgreSQL answered its driver's error: a 500 over HTTP)
    with pytest.raises(TaskNotFound):
        await engine.cancel_task(bad)
    # Nothing was queued by any of them.
    assert await engine.list_tasks() == []


async def test_a_row_that_cannot_be_written_fails_its_task_with_the_reason_and_the_batch_goes_on(  # type: ignore[no-untyped-def]
    open_engine,
) -> None:
    """A model answer with a lone surrogate makes its journal row unwritable (neither driver encodes it).
    It shares its commit with the other runs' rows: those commit, and its task ends failed, saying why,
    within its attempts (it used to fail the whole batch on every try, and its task stayed running)."""
    bad = scripted("bad", ScriptedModel(replies=["broken \ud800 answer"] * 10))
    good = [scripted(f"g{i}", ScriptedModel(replies=[f"answer {i}"] * 10, latency_s=0.0)) for i in range(4)]
    engine: TaskEngine = await open_engine(
        [bad, *good], config=EngineConfig(lease_s=2.0, renew_s=0.2, aging_s=60.0, delta_flush_s=0.01))
    orch = orch_of(engine)
    ok_ids = [(await orch.submit(f"question {i}", strategy="single", agents=[f"g{i}"])).id for i in range(4)]
    bad_id = (await orch.submit("question", strategy="single", agents=["bad"], retry=2)).id
    async with running(engine, concurrency=8):
        done = await asyncio.wait_for(asyncio.gather(*(orch.wait(t) for t in [*ok_ids, bad_id])), 30)
    *oks, broken = done
    assert [t.status for t in oks] == ["completed"] * 4, [t.error for t in oks]
    assert [t.output for t in oks] == [f"answer {i}" for i in range(4)]
    assert broken.status == "failed" and broken.dead, (broken.status, broken.dead, broken.error, broken.attempts)
    assert "surrogate" in (broken.error or ""), broken.error
