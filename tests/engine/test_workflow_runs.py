"""Durable workflow runs on the engine (SQLite and PostgreSQL): nodes as engine tasks, journalled
once; approvals parked in the database and answered idempotently; deadlines taken once (fake clock);
a run resumed by a fresh process; pause, resume and cancel."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import get_args

import pytest

from loomiq import ScriptedModel
from loomiq.engine import TaskEngine
from loomiq.engine.workflow_runs import (
    ApprovalConflict,
    ApprovalForbidden,
    ApprovalNotFound,
    WorkflowRuns,
)
from loomiq.runtime import (
    ApprovalRequested,
    ApprovalResolved,
    NodeFinished,
    NodeStarted,
    WorkflowEvent,
    WorkflowFinished,
    WorkflowStarted,
)
from tests.engine.conftest import eventually, running, scripted
from tests.workflows.conftest import RELEASE_NOTES


class Clock:
    """A fake clock the test moves."""

    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


def counting(agent_id: str = "a0") -> tuple[object, ScriptedModel]:
    model = ScriptedModel(replies=lambda request, i: f"reply {i}")
    return scripted(agent_id, model), model


async def _engine(open_engine: Callable[..., object], agents: object) -> TaskEngine:
    team = agents if isinstance(agents, list) else [agents]
    return await open_engine(team)  # type: ignore[misc,no-any-return]


async def prompts(engine: TaskEngine) -> list[str]:
    """The prompts of the engine's tasks, oldest first."""
    return [t.request.prompt for t in sorted(await engine.list_tasks(), key=lambda t: t.created_at)]


async def test_release_notes_runs_through_an_approval_and_a_fresh_process(open_engine: Callable[..., object]) -> None:
    agent, model = counting()
    clock = Clock()
    engine = await _engine(open_engine, agent)
    runs = WorkflowRuns(engine, clock=clock)
    async with running(engine):
        run = await runs.start(RELEASE_NOTES, {"version": "2.0"})
        async with asyncio.timeout(10):
            while not await runs.approvals(status="pending"):
                await runs.tick()
                await asyncio.sleep(0.02)
    await runs.close()
    [approval] = await runs.approvals(status="pending")
    assert approval.node == "approve" and approval.message == "Publish the notes for 2.0?"
    assert approval.deadline == pytest.approx(clock.now + 72 * 3600)
    assert len(model.calls) == 1 and await prompts(engine) == ["Draft release notes for 2.0"]
    # Parked: no node task is out, nothing is leased, no process holds it.
    assert (await engine.store.fetch(_active(run.id))) == 0

    # A fresh process (engine and driver) takes the answer and finishes the run.
    agent2, model2 = counting("a0")
    engine2 = await _engine(open_engine, agent2)
    runs2 = WorkflowRuns(engine2, clock=clock)
    with pytest.raises(ApprovalForbidden):
        await runs2.answer(approval.id, subject="eve", roles=["viewer"], decision="approve")
    with pytest.raises(ApprovalNotFound):
        await runs2.answer(approval.id, subject="ann", roles=["admin"], decision="approve", tenant_id="other")
    async with running(engine2):
        answered = await runs2.answer(approval.id, subject="ann", roles=["admin"], decision="approve",
                                      comment="ship it", idempotency_key="k1")
        assert answered.verdict == "accepted" and answered.approval.status == "approved"
        again = await runs2.answer(approval.id, subject="ann", roles=["admin"], decision="approve",
                                   idempotency_key="k1")
        assert again.verdict == "replayed"
        with pytest.raises(ApprovalConflict):
            await runs2.answer(approval.id, subject="bob", roles=["operator"], decision="reject")
        done = await runs2.wait(run.id, timeout_s=10)
    await runs2.close()
    assert done.status == "succeeded"
    status = await runs2.status(run.id)
    assert status["nodes"]["draft"]["attempts"] == 1
    assert status["nodes"]["publish"]["status"] == "succeeded"
    assert status["nodes"]["held_back"]["status"] == "skipped"
    assert status["path"] == ["draft", "approve", "publish"]
    # The draft ran once (in the first process), the publication once (in the second).
    assert len(model.calls) == 1 and len(model2.calls) == 1
    assert (await prompts(engine2))[1] == "Polish for publication: reply 0"
    entries = await runs2.events(run.id)
    types = [e.type for e in entries]
    assert types.count("approval_requested") == 1 and types.count("approval_resolved") == 1
    assert types[0] == "workflow_started" and types[-1] == "workflow_finished"
    # Typed: each entry holds an event of the closed union, its data the event's JSON form.
    events = [e.event for e in entries]
    assert all(isinstance(e, get_args(WorkflowEvent)) for e in events)
    assert events[0] == WorkflowStarted("release-notes", 0, {"version": "2.0"}, None, None)
    [requested] = [e for e in events if isinstance(e, ApprovalRequested)]
    assert (requested.approval_id, requested.node, requested.round) == (approval.id, "approve", 1)
    assert requested.approvers == {"roles": list(approval.roles), "subjects": list(approval.subjects)}
    assert requested.deadline == approval.deadline and requested.message == approval.message
    [resolved] = [e for e in events if isinstance(e, ApprovalResolved)]
    assert (resolved.outcome, resolved.decision, resolved.comment, resolved.decided_by) == (
        "approved", "approved", "ship it", "ann")
    started = [e for e in events if isinstance(e, NodeStarted)]
    assert [(e.node, e.attempt, e.index) for e in started] == [("draft", 1, None), ("publish", 1, None)]
    assert [(e.node, e.status, e.error) for e in events if isinstance(e, NodeFinished)] == [
        ("draft", "completed", None), ("publish", "completed", None)]
    assert events[-1] == WorkflowFinished("succeeded", None, dict(done.outputs or {}))
    for entry in entries:  # the wire form: {seq, type, data, at}, data the event's fields
        assert entry.to_dict() == {"seq": entry.seq, "type": entry.type, "data": entry.data, "at": entry.at}
        assert {"type": entry.type, **entry.data} == entry.event.to_dict()
    assert [e.seq for e in entries] == sorted({e.seq for e in entries})
    assert [e.seq for e in await runs2.events(run.id, after=entries[2].seq)] == [e.seq for e in entries[3:]]


def _active(run_id: str) -> object:
    from loomiq.engine._ops import Stmt

    return Stmt("SELECT COUNT(*) FROM tasks WHERE status IN ('queued', 'running') AND lease_owner IS NOT NULL "
                "OR status = 'queued'", (), "val")


async def test_concurrent_answers_with_one_key_decide_once(open_engine: Callable[..., object]) -> None:
    agent, model = counting()
    clock = Clock()
    engine = await _engine(open_engine, agent)
    runs = WorkflowRuns(engine, clock=clock)
    async with running(engine):
        run = await runs.start(RELEASE_NOTES, {"version": "3.1"})
        async with asyncio.timeout(10):
            while not await runs.approvals(status="pending"):
                await runs.tick()
                await asyncio.sleep(0.02)
        [approval] = await runs.approvals(status="pending")
        # Five drivers (as many processes) answer at once with one key, a sixth with another.
        drivers = [WorkflowRuns(engine, clock=clock) for _ in range(6)]
        calls = [d.answer(approval.id, subject="ann", roles=["admin"], decision="reject", comment="not yet",
                          idempotency_key="same") for d in drivers[:5]]
        calls.append(drivers[5].answer(approval.id, subject="bob", roles=["operator"], decision="approve",
                                       idempotency_key="other"))
        results = await asyncio.gather(*calls, return_exceptions=True)
        done = await runs.wait(run.id, timeout_s=10)
        for d in drivers:
            await d.close()
    await runs.close()
    verdicts = [r.verdict if not isinstance(r, BaseException) else type(r).__name__ for r in results]
    accepted = [v for v in verdicts if v == "accepted"]
    assert len(accepted) == 1, verdicts
    assert set(verdicts[:5]) <= {"accepted", "duplicate", "replayed"}, verdicts
    # bob's answer came before or after the decision: counted first (approve wins... then ann conflicts) or 409.
    state = await runs.state(run.id)
    assert done.status == "succeeded"
    decided = state.nodes["approve"].approval
    assert decided is not None and decided.decision in ("approved", "rejected")
    branch = "held_back" if decided.decision == "rejected" else "publish"
    assert state.nodes[branch].attempts == 1
    assert len(model.calls) == 2  # draft once, the chosen branch once


async def test_deadline_takes_on_timeout_once(open_engine: Callable[..., object]) -> None:
    agent, model = counting()
    clock = Clock()
    engine = await _engine(open_engine, agent)
    runs = WorkflowRuns(engine, clock=clock)
    async with running(engine):
        run = await runs.start(RELEASE_NOTES, {"version": "4"})
        async with asyncio.timeout(10):
            while not await runs.approvals(status="pending"):
                await runs.tick()
                await asyncio.sleep(0.02)
        assert await runs.due() == []  # parked: nothing to drive until the deadline
        clock.now += 72 * 3600 - 1
        assert await runs.due() == []
        clock.now += 1
        assert await runs.due() == [run.id]
        others = [WorkflowRuns(engine, clock=clock) for _ in range(3)]
        await asyncio.gather(*(o.tick() for o in others), runs.tick())
        done = await runs.wait(run.id, timeout_s=10)
        for o in others:
            await o.close()
    await runs.close()
    assert done.status == "succeeded"
    state = await runs.state(run.id)
    approval = state.nodes["approve"].approval
    assert approval is not None and approval.timed_out and approval.decision == "rejected"
    journal = await runs._journal(run.id)
    assert sum(1 for e in journal if e.type == "approval_timed_out") == 1
    assert state.nodes["held_back"].attempts == 1 and len(model.calls) == 2
    [closed] = await runs.approvals(status="timed_out")
    with pytest.raises(ApprovalConflict):  # 409: the decision (rejected) stands
        await runs.answer(closed.id, subject="ann", roles=["admin"], decision="approve")


SLOW = """\
name: slow
nodes:
  first:
    kind: task
    prompt: "first"
  second:
    kind: task
    needs: [first]
    prompt: "second"
"""


async def test_cancel_reaches_the_running_node_and_nothing_starts_after(open_engine: Callable[..., object]) -> None:
    model = ScriptedModel(replies=["done"], latency_s=30.0)
    engine = await _engine(open_engine, scripted("a0", model))
    runs = WorkflowRuns(engine)
    async with running(engine):
        run = await runs.start(SLOW)
        async with asyncio.timeout(10):
            await eventually(lambda: model.calls)
        t0 = asyncio.get_running_loop().time()
        cancelled = await runs.cancel(run.id)
        assert cancelled.status == "cancelled"
        assert asyncio.get_running_loop().time() - t0 < 2.0
        await asyncio.sleep(0.3)
        await runs.tick()
    await runs.close()
    state = await runs.state(run.id)
    assert state.nodes["second"].attempts == 0
    assert len(model.calls) == 1
    [task] = await engine.list_tasks()
    assert task.status == "cancelled"


async def test_pause_holds_new_nodes_until_resume(open_engine: Callable[..., object]) -> None:
    agent, model = counting()
    engine = await _engine(open_engine, agent)
    runs = WorkflowRuns(engine)
    run = await runs.start(SLOW, drive=False)
    await runs.pause(run.id)
    assert (await runs.get_run(run.id)).paused
    async with running(engine):
        # The first node was started with the run (a pause stops only what has not started).
        async with asyncio.timeout(10):
            while (await runs.state(run.id)).nodes["first"].status != "succeeded":
                await runs.tick()
                await asyncio.sleep(0.02)
        await asyncio.sleep(0.2)
        await runs.tick()
        assert len(model.calls) == 1 and (await runs.state(run.id)).nodes["second"].attempts == 0
        await runs.resume(run.id)
        done = await runs.wait(run.id, timeout_s=10)
    await runs.close()
    assert done.status == "succeeded" and len(model.calls) == 2
    types = [e.type for e in await runs.events(run.id)]
    assert types.count("workflow_paused") == 1 and types.count("workflow_resumed") == 1
    assert types.index("workflow_paused") < types.index("workflow_resumed") < types.index("workflow_finished")


async def test_cancel_of_a_paused_run_is_quick(open_engine: Callable[..., object]) -> None:
    agent, _ = counting()
    engine = await _engine(open_engine, agent)
    runs = WorkflowRuns(engine)
    run = await runs.start(SLOW, drive=False)
    await runs.pause(run.id)
    t0 = asyncio.get_running_loop().time()
    assert (await runs.cancel(run.id)).status == "cancelled"
    assert asyncio.get_running_loop().time() - t0 < 2.0
    await runs.close()


THREE = """\
name: three
nodes:
""" + "".join(f"""\
  ask{i}: {{kind: approval, message: "Branch {i}?", approvers: {{roles: [admin]}}}}
  go{i}: {{kind: task, needs: [ask{i}], prompt: "Branch {i} goes on"}}
""" for i in (1, 2, 3))


async def test_three_approvals_answered_in_reverse_each_resume_only_their_branch(
        open_engine: Callable[..., object]) -> None:
    agent, model = counting()
    engine = await _engine(open_engine, agent)
    run = await WorkflowRuns(engine).start(THREE)
    async with running(engine):
        for i in (3, 2, 1):
            runs = WorkflowRuns(engine)  # a fresh driver between answers: as if every process had died
            await runs.answer(f"{run.id}.ask{i}.1", subject="ann", roles=["admin"], decision="approve")
            await eventually(lambda i=i, runs=runs: _succeeded(runs, run.id, f"go{i}"), timeout_s=10)
            state = await runs.state(run.id)
            for j in (1, 2, 3):
                expected = "succeeded" if j >= i else "pending"
                assert state.nodes[f"go{j}"].status == expected, (i, j, state.nodes[f"go{j}"])
            await runs.close()
        done = await WorkflowRuns(engine).wait(run.id, timeout_s=10)
    assert done.status == "succeeded" and len(model.calls) == 3
    types = [e.type for e in await WorkflowRuns(engine).events(run.id)]
    assert types.count("approval_requested") == 3 and types.count("approval_resolved") == 3


async def _succeeded(runs: WorkflowRuns, run_id: str, node: str) -> bool:
    await runs.drive(run_id)
    return str((await runs.state(run_id)).nodes[node].status) == "succeeded"


HANDLED = """\
name: handled
nodes:
  flaky:
    kind: task
    prompt: "This one breaks"
    agents: [broken]
    retry: {max_attempts: 2, backoff: 1s}
  fix:
    kind: error_handler
    handles: [flaky]
    action: route
    prompt: "Recover from: ${{ error.message }}"
    agents: [a0]
  route:
    kind: decision
    needs: [fix]
    cases:
      - when: ${{ nodes.fix.status == 'succeeded' }}
        value: recovered
        then: [finish]
  finish:
    kind: task
    needs: [route]
    prompt: "Finish after ${{ nodes.route.decision }}"
    agents: [a0]
"""


async def test_a_failing_node_retries_then_its_handler_runs_once_and_a_decision_routes(
        open_engine: Callable[..., object]) -> None:
    agent, model = counting()
    broken_model = ScriptedModel(failures={i: "server_error" for i in range(20)})
    clock = Clock()
    engine = await _engine(open_engine, [agent, scripted("broken", broken_model)])  # type: ignore[arg-type]
    runs = WorkflowRuns(engine, clock=clock)
    async with running(engine):
        run = await runs.start(HANDLED)
        await eventually(lambda: _failed_once(runs, run.id), timeout_s=10)
        assert await runs.due() == []  # the retry waits for its backoff (1 s on the fake clock)
        clock.now += 1
        assert await runs.due() == [run.id]
        drivers = [WorkflowRuns(engine, clock=clock) for _ in range(3)]
        await asyncio.gather(*(d.tick() for d in drivers))
        done = await runs.wait(run.id, timeout_s=20)
        for d in drivers:
            await d.close()
    await runs.close()
    assert done.status == "succeeded", done.error
    state = await runs.state(run.id)
    assert state.nodes["flaky"].status == "failed" and state.nodes["flaky"].attempts == 2
    assert state.nodes["fix"].attempts == 1 and state.nodes["route"].decision == "recovered"
    assert state.nodes["finish"].attempts == 1
    keys = sorted(t.request.prompt for t in await engine.list_tasks())
    assert sum(k.startswith("Recover from:") for k in keys) == 1
    assert len(model.calls) == 2  # the handler and the finish, once each


async def _failed_once(runs: WorkflowRuns, run_id: str) -> bool:
    await runs.drive(run_id)
    return (await runs.state(run_id)).nodes["flaky"].error is not None


def test_a_log_row_written_before_the_events_were_typed_reads_as_its_typed_event() -> None:
    """Rows from before the typed events hold the fields without ``type``: they read the same."""
    from loomiq.engine.workflow_runs import WorkflowRunEvent
    from loomiq.runtime import EventDecodeError, encode_event

    old = WorkflowRunEvent.from_row("wr-1", (4, "node_started", '{"node":"a","attempt":1,"index":null,"task_id":"t"}',
                                             12.5))
    new = WorkflowRunEvent.from_row("wr-1", (4, "node_started", encode_event(NodeStarted("a", 1, None, "t")), 12.5))
    assert old == new and old.event == NodeStarted("a", 1, None, "t")
    assert old.to_dict() == {"seq": 4, "type": "node_started", "at": 12.5,
                             "data": {"node": "a", "attempt": 1, "index": None, "task_id": "t"}}
    with pytest.raises(EventDecodeError, match="holds no 'task_queued' event"):
        _ = WorkflowRunEvent.from_row("wr-1", (5, "task_queued", '{"priority":"normal"}', 1.0)).event
