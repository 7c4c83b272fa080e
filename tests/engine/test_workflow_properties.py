"""Property test of durable runs (hypothesis, SQLite and PostgreSQL): random DAGs of task nodes, some failing, with
random `on` conditions, run on the engine with a worker and two drivers: every node's task is
submitted at most once, only after every node it needs has settled, a skipped node submits nothing,
and the run ends with the state the pure semantics give for the same outcomes."""

from __future__ import annotations

import asyncio
import os
import tempfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from loomiq import Orchestrator, ScriptedModel
from loomiq.engine import Worker, WorkflowRuns
from loomiq.engine._ops import Stmt
from loomiq.workflows import NodeFailed, NodeSucceeded, RunStarted, StartTask, advance, initial_state, loads_workflow
from tests.engine.conftest import FAST, database, scripted


@st.composite
def dags(draw: st.DrawFn) -> tuple[str, set[str]]:
    n = draw(st.integers(2, 6))
    lines = ["name: random", "nodes:"]
    failing: set[str] = set()
    for i in range(n):
        needs = sorted(draw(st.sets(st.integers(0, i - 1), max_size=3))) if i else []
        fails = draw(st.booleans())
        on = draw(st.sampled_from(["success", "always", "failure"])) if needs else "success"
        agent = "broken" if fails else "a0"
        if fails:
            failing.add(f"n{i}")
        lines += [f"  n{i}:", "    kind: task", f"    prompt: \"node {i}\"", f"    agents: [{agent}]",
                  f"    on: {on}"]
        if needs:
            lines.append(f"    needs: [{', '.join(f'n{j}' for j in needs)}]")
    return "\n".join(lines) + "\n", failing


def expected(source: str, failing: set[str]) -> dict[str, str]:
    d = loads_workflow(source)
    t = advance(d, initial_state(d), RunStarted({}, 0.0))
    state, pending = t.state, list(t.actions)
    while pending:
        a = pending.pop(0)
        if isinstance(a, StartTask):
            event: NodeFailed | NodeSucceeded = (NodeFailed(a.node, a.attempt, "x", 1.0) if a.node in failing
                                                 else NodeSucceeded(a.node, a.attempt, "ok", 1.0))
            t = advance(d, state, event)
            state = t.state
            pending += list(t.actions)
    return {k: str(v.status) for k, v in state.nodes.items()}


async def run_durably(source: str, kind: str, tmp: Path) -> tuple[dict[str, str], list[tuple[str, float, float]]]:
    async with database(kind, tmp) as url:  # a fresh database (PostgreSQL: a schema) per example
        return await _run_durably(source, url)


async def _run_durably(source: str, url: str) -> tuple[dict[str, str], list[tuple[str, float, float]]]:
    broken = scripted("broken", ScriptedModel(failures={i: "server_error" for i in range(50)}))
    orch = Orchestrator([scripted("a0"), broken])
    engine = await orch.open_engine(url, config=FAST)
    drivers = [WorkflowRuns(engine), WorkflowRuns(engine)]
    worker = Worker(engine, concurrency=4)
    working = asyncio.create_task(worker.run())
    try:
        run = await drivers[0].start(source)
        async with asyncio.timeout(30):
            while (await drivers[1].get_run(run.id)).status == "running":
                await asyncio.gather(*(d.tick() for d in drivers))
                await asyncio.sleep(0.02)
        state = await drivers[0].state(run.id)
        rows = await engine.store.fetch(Stmt(
            "SELECT idempotency_key, created_at, COALESCE(finished_at, 0) FROM tasks", (), "all"))
        return {k: str(v.status) for k, v in state.nodes.items()}, [(r[0], r[1], r[2]) for r in rows]
    finally:
        await worker.stop()
        await working
        for d in drivers:
            await d.close()
        await orch.aclose()


@pytest.fixture(params=["sqlite", "postgresql"])
def kind(request: pytest.FixtureRequest) -> str:
    """The dialect; PostgreSQL is skipped (failed under $CI) when no server answers, as elsewhere."""
    if request.param == "postgresql":
        from tests.engine.conftest import postgres_url

        if asyncio.run(postgres_url()) is None:
            if os.environ.get("CI"):
                pytest.fail("PostgreSQL is required in CI and none answered")
            pytest.skip("no PostgreSQL server answered (set LOOMIQ_TEST_POSTGRES_URL)")
    return str(request.param)


@settings(max_examples=12, deadline=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(dag=dags())
def test_random_dags_run_each_node_once_after_its_needs(kind: str, dag: tuple[str, set[str]]) -> None:
    source, failing = dag
    with tempfile.TemporaryDirectory() as tmp:
        statuses, tasks = asyncio.run(run_durably(source, kind, Path(tmp)))
    assert statuses == expected(source, failing)
    keys = [k for k, _, _ in tasks]
    assert len(keys) == len(set(keys))  # each node's task once
    by_node = {k.rsplit(":", 1)[1].split("/")[1]: (created, finished) for k, created, finished in tasks}
    d = loads_workflow(source)
    for node in d.nodes:
        if statuses[node.id] == "skipped":
            assert node.id not in by_node
            continue
        assert node.id in by_node
        for need in node.needs:
            if need in by_node:
                assert by_node[need][1] <= by_node[node.id][0], (need, node.id)
