"""The workflow driver's fold in memory (SQLite and PostgreSQL): a stale fold writes nothing and is
rebuilt from the journal; a node's result and the next node's task are written by one transaction;
a run parked on an approval holds no fold."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from loomiq import ScriptedModel
from loomiq.engine import TaskEngine, WorkflowRuns
from loomiq.engine._ops import Stmt
from tests.engine.conftest import running, scripted

LINEAR = """\
name: three
nodes:
  n0: {kind: task, strategy: single, prompt: "Step 0"}
  n1: {kind: task, strategy: single, needs: [n0], prompt: "Step 1 after ${{ nodes.n0.output }}"}
  n2: {kind: task, strategy: single, needs: [n1], prompt: "Step 2 after ${{ nodes.n1.output }}"}
"""

GATE = """\
name: gate
nodes:
  ask: {kind: approval, message: "Go?", approvers: {roles: [admin]}}
  after: {kind: task, needs: [ask], strategy: single, prompt: "Go on"}
"""


async def _engine(open_engine: Callable[..., object]) -> tuple[TaskEngine, ScriptedModel]:
    model = ScriptedModel(replies=lambda request, i: f"reply {i}")
    engine = await open_engine([scripted("a0", model)])
    return engine, model  # type: ignore[return-value]


async def _prompts(engine: TaskEngine) -> list[str]:
    return [t.request.prompt for t in sorted(await engine.list_tasks(), key=lambda t: t.created_at)]


async def _journal(engine: TaskEngine, run_id: str) -> list[tuple[Any, ...]]:
    rows = await engine.store.fetch(Stmt(
        "SELECT seq, key, kind, created_at FROM workflow_events WHERE run_id = ? ORDER BY seq", (run_id,), "all"))
    return [tuple(r) for r in rows]


async def test_a_stale_fold_writes_nothing_and_is_rebuilt(open_engine: Callable[..., object]) -> None:
    engine, model = await _engine(open_engine)
    runs, other = WorkflowRuns(engine), WorkflowRuns(engine)
    run = await runs.start(LINEAR)  # n0's task queued (no worker yet); `runs` holds the fold
    # Another driver (as another process would) journals two events `runs` has not folded.
    await other.pause(run.id)
    await other.resume(run.id)
    await other.close()
    # `runs` never reads rows written by others before acting: only its transaction's check on the
    # journal's end can tell that its fold is stale.
    news_read: list[str] = []

    async def blind(f: Any) -> list[Any]:
        news_read.append(f.run.id)
        return []

    rebuilt: list[str] = []
    rebuild = runs._rebuild

    async def counting(run_id: str) -> Any:
        built = await rebuild(run_id)
        if built is not None:  # (once the run ended, a drive finds nothing to fold)
            rebuilt.append(run_id)
        return built

    runs._news = blind  # type: ignore[method-assign]
    runs._rebuild = counting  # type: ignore[method-assign]
    async with running(engine):
        done = await runs.wait(run.id, timeout_s=10)
    await runs.close()
    assert done.status == "succeeded", done
    assert news_read and rebuilt == [run.id]  # n0's end found the fold stale: rebuilt once, then went on
    assert await _prompts(engine) == ["Step 0", "Step 1 after reply 0", "Step 2 after reply 1"]
    assert len(model.calls) == 3
    types = [e.type for e in await runs.events(run.id)]
    assert types.count("node_started") == 3 and types.count("node_finished") == 3, types
    assert types[0] == "workflow_started" and types[-1] == "workflow_finished"
    keys = [r[1] for r in await _journal(engine, run.id)]
    assert len(keys) == len(set(keys))
    state = await runs.state(run.id)
    assert [state.nodes[n].attempts for n in ("n0", "n1", "n2")] == [1, 1, 1]  # type: ignore[index]


async def test_a_result_and_the_next_task_are_written_together(open_engine: Callable[..., object]) -> None:
    engine, _ = await _engine(open_engine)
    runs = WorkflowRuns(engine)
    async with running(engine):
        run = await runs.start(LINEAR)
        done = await runs.wait(run.id, timeout_s=10)
    await runs.close()
    assert done.status == "succeeded"
    rows = {r[1]: r for r in await _journal(engine, run.id)}
    tasks = {t.request.prompt.split(" after")[0]: t for t in await engine.list_tasks()}
    for before, after in (("n0", "n1"), ("n1", "n2")):
        result, started = rows[f"result/node/{before}/1"], rows[f"notice/node_started/node/{after}/1"]
        # One transaction (one clock reading): the result, then the next node's notice and task.
        assert result[3] == started[3] and result[0] < started[0]
        step = "Step " + after[1]
        assert tasks[step].created_at == result[3]


async def test_a_parked_run_holds_no_fold(open_engine: Callable[..., object]) -> None:
    engine, model = await _engine(open_engine)
    runs = WorkflowRuns(engine)
    run = await runs.start(GATE)
    assert run.id not in runs._folds  # waiting on an answer: nothing in memory
    [approval] = await runs.approvals(status="pending", run_id=run.id)
    await runs.answer(approval.id, subject="ann", roles=["admin"], decision="approve")
    assert run.id in runs._folds  # its task is out (queued: no worker yet)
    async with running(engine):
        done = await runs.wait(run.id, timeout_s=10)
    await runs.close()
    assert done.status == "succeeded" and len(model.calls) == 1
    assert run.id not in runs._folds


async def test_a_fresh_driver_journals_a_task_that_ended_unseen(open_engine: Callable[..., object]) -> None:
    """The process that submitted a node's task is gone before the task ends: a fresh driver finds the
    ended task under its idempotency key, journals its result once and goes on."""
    engine, model = await _engine(open_engine)
    first = WorkflowRuns(engine)
    run = await first.start(LINEAR)
    await first.close()  # nothing watches n0's task any more
    [task] = await engine.list_tasks()
    async with running(engine):
        ended = await engine.wait(task.id, timeout_s=10)
        assert ended.status == "completed"
        keys = [r[1] for r in await _journal(engine, run.id)]
        assert "result/node/n0/1" not in keys  # nobody journalled it
        fresh = WorkflowRuns(engine)
        done = await fresh.wait(run.id, timeout_s=10)
    await fresh.close()
    assert done.status == "succeeded", done
    assert await _prompts(engine) == ["Step 0", "Step 1 after reply 0", "Step 2 after reply 1"]
    assert len(model.calls) == 3
    keys = [r[1] for r in await _journal(engine, run.id)]
    assert keys.count("result/node/n0/1") == 1 and keys.count("notice/node_started/node/n0/1") == 1
    assert len(keys) == len(set(keys))
