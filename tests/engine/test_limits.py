"""Per-agent concurrency and rate limits across workers of different processes."""

from __future__ import annotations

import asyncio
import time

import pytest

from loomiq import ScriptedModel
from loomiq.engine import TaskEngine
from loomiq.engine.limits import AgentLimit

from .conftest import orch_of, running, scripted


async def test_concurrency_limit_holds_across_processes(open_engine) -> None:  # type: ignore[no-untyped-def]
    limits = {"a0": AgentLimit(max_concurrency=1)}
    models = [ScriptedModel(replies=["ok"], latency_s=0.05) for _ in range(2)]
    e1: TaskEngine = await open_engine([scripted("a0", models[0])], agent_limits=limits)
    e2: TaskEngine = await open_engine([scripted("a0", models[1])], agent_limits=limits)
    ids = [(await orch_of(e1).submit(f"t{i}", strategy="single")).id for i in range(6)]
    async with running(e1, concurrency=3), running(e2, concurrency=3):
        for tid in ids:
            assert (await orch_of(e1).wait(tid, timeout_s=10)).status == "completed"
    calls = sorted((c.started_at, c) for m in models for c in m.calls)
    assert len(calls) == 6
    # One at a time: each call started after the previous one's latency had passed.
    starts = [s for s, _ in calls]
    assert all(b - a >= 0.045 for a, b in zip(starts, starts[1:], strict=False))


async def test_rate_limit(open_engine) -> None:  # type: ignore[no-untyped-def]
    model = ScriptedModel(replies=["ok"])
    engine: TaskEngine = await open_engine(
        [scripted("a0", model)], agent_limits={"a0": {"requests_per_minute": 2, "window_s": 0.4}}
    )
    started = time.monotonic()
    results = await asyncio.gather(*(orch_of(engine).run(f"t{i}", strategy="single", durable=True)
                                     for i in range(4)))
    assert all(r.status == "completed" for r in results)
    offsets = sorted(c.started_at - started for c in model.calls)
    assert offsets[1] < 0.3 and offsets[2] >= 0.35  # two per window


async def test_rate_limit_is_a_sliding_window_across_processes(open_engine) -> None:  # type: ignore[no-untyped-def]
    """No interval of `window_s` sees more than `requests_per_minute` starts, a window boundary
    included: one call, two more just before the first's window ends, then three at once must wait
    for each of the first three to be a whole window old (a fixed window would start them all at
    its restart, five starts in 0.1 s)."""
    window, rpm = 0.5, 3
    limits = {"a0": {"requests_per_minute": rpm, "window_s": window}}
    models = [ScriptedModel(replies=["ok"]) for _ in range(2)]
    e1: TaskEngine = await open_engine([scripted("a0", models[0])], agent_limits=limits)
    e2: TaskEngine = await open_engine([scripted("a0", models[1])], agent_limits=limits)
    await orch_of(e1).run("first", strategy="single", durable=True)
    await asyncio.sleep(window * 0.8)
    engines = [e1, e2, e1, e2, e1]
    results = await asyncio.gather(*(orch_of(e).run(f"t{i}", strategy="single", durable=True)
                                     for i, e in enumerate(engines)))
    assert all(r.status == "completed" for r in results)
    starts = sorted(c.started_at for m in models for c in m.calls)
    assert len(starts) == 6
    gaps = [b - a for a, b in zip(starts, starts[rpm:], strict=False)]
    # The limit holds between grants; a model call starts one commit after its grant, so starts jitter
    # by a few ms (a fixed window would give a gap of about 0.1 s here).
    assert min(gaps) >= window - 0.03, f"{rpm + 1} starts within {min(gaps):.3f}s (window {window}s): {starts}"


def test_limit_validation() -> None:
    with pytest.raises(ValueError):
        AgentLimit(max_concurrency=0)
