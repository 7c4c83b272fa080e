"""Properties of the engine, checked by hypothesis against small pure models, on SQLite and PostgreSQL:
dependency resolution (and `_queue.find_cycle_in`), leases and fencing under a simulated clock, and
cancellation at random moments. Priority order has its own property in test_tasks.py."""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from itertools import permutations
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from loomiq import Agent, Orchestrator, ScriptedModel, StepResult
from loomiq.engine import DependencyError, LeaseLost, TaskEngine, TaskRetry, _ops, _records
from loomiq.engine._queue import find_cycle_in
from loomiq.engine.task import WorkerID
from tests.factories import NO_RETRY, PromptLog, make_agent

from .conftest import FAST, database, eventually, orch_of, owned, running, scripted

KINDS = pytest.mark.parametrize("kind", ["sqlite", "postgresql"])


def examples(n: int) -> settings:
    """Hypothesis settings of a database property: `n` examples, each opening a fresh database."""
    return settings(max_examples=n, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


@asynccontextmanager
async def engine_on(kind: str, tmp: Path, agents: Sequence[Agent]) -> AsyncIterator[TaskEngine]:
    """An engine on a fresh database of `kind`, closed (and the database dropped) afterwards."""
    async with database(kind, tmp) as url:
        orch = Orchestrator(agents)
        await orch.open_engine(url, config=FAST)
        try:
            yield owned(orch)
        finally:
            await orch.aclose()


def prompt(i: int) -> str:
    """Task i's prompt: the last message of each of its model calls, so calls tell which task made them."""
    return f"<task {i}>"


def calls_of(log: PromptLog, i: int) -> list[str]:
    """The prompt texts of the model calls task i made."""
    return [p for p in log.prompts if p.endswith(prompt(i))]


def cancelled_by(dep: str) -> str:
    return f"dependency {dep} was cancelled"


# -- dependency resolution ---------------------------------------------------------------------


@dataclass
class Expected:
    """What the model says of one task: its final status, the errors allowed (None: the run's own
    error, or none), and whether it ran."""

    status: str = "pending"
    errors: set[str] | None = None
    ran: bool = False


@st.composite
def dags(draw: st.DrawFn) -> tuple[list[tuple[list[int], str]], int]:
    """Tasks (each may depend on earlier ones) with an outcome each, and the index where the second
    submission phase starts (it is submitted once the first phase has run)."""
    n = draw(st.integers(1, 7))
    tasks = []
    for i in range(n):
        deps = draw(st.lists(st.integers(0, i - 1), unique=True, max_size=3)) if i else []
        tasks.append((deps, draw(st.sampled_from(["complete", "fail", "cancel_at_once", "cancel_later"]))))
    return tasks, draw(st.integers(0, n))


def resolve(tasks: list[tuple[list[int], str]], split: int, ids: list[str]) -> list[Expected]:
    """The model: how each task ends when the two phases are submitted, cancelled and run in order."""
    ex = [Expected() for _ in tasks]

    def end(i: int, status: str, *errors: str) -> None:
        ex[i].status, ex[i].errors = status, set(errors)

    run_failed: list[int] = []  # tasks failed because a dependency failed while the workers ran

    def cascade(status: str) -> None:
        # A pending task with an ended dependency ends too, naming one such dependency.
        changed = True
        while changed:
            changed = False
            for i, (deps, _) in enumerate(tasks[: len(submitted)]):
                bad = [ids[d] for d in deps if ex[d].status == status]
                if ex[i].status == "pending" and bad:
                    end(i, status, *(cancelled_by(d) if status == "cancelled" else f"dependency {d} failed"
                                     for d in bad))
                    if status == "failed":
                        run_failed.append(i)
                    changed = True

    submitted: list[int] = []
    for phase in (range(split), range(split, len(tasks))):
        for i in phase:
            submitted.append(i)
            for d in tasks[i][0]:  # the first ended dependency, in `after` order, decides at submission
                if ex[d].status == "failed":
                    end(i, "failed", f"dependency {ids[d]} failed")
                    break
                if ex[d].status == "cancelled":
                    end(i, "cancelled", cancelled_by(ids[d]))
                    break
            if tasks[i][1] == "cancel_at_once" and ex[i].status == "pending":
                end(i, "cancelled", "cancelled by request")
        for i in phase:
            if tasks[i][1] == "cancel_later" and ex[i].status == "pending":
                end(i, "cancelled", "cancelled by request")
                cascade("cancelled")
        for i in submitted:  # the run, in topological order
            if ex[i].status == "pending" and all(ex[d].status == "completed" for d in tasks[i][0]):
                ex[i].status, ex[i].ran = ("completed" if tasks[i][1] == "complete" else "failed"), True
                cascade("failed")
    # The workers run several tasks at once, so of the dependencies that fail while they run, whichever
    # fails first is the one named: any dependency that ends failed may be.
    for i in run_failed:
        ex[i].errors = {f"dependency {ids[d]} failed" for d in tasks[i][0] if ex[d].status == "failed"}
    return ex


@KINDS
@examples(15)
@given(dags())
# Task 3 waits on 0, 1 and 2; 1 and 2 fail while the workers run: either may be named (found in CI).
@example(dag=([([], "complete"), ([0], "fail"), ([], "fail"), ([0, 1, 2], "complete")], 0))
def test_dependencies_resolve_as_the_model_says(kind: str, tmp_path: Path,
                                                dag: tuple[list[tuple[list[int], str]], int]) -> None:
    """Property: a task runs only after all it depends on completed, and sees their outputs; a failed or
    cancelled dependency ends its dependents (naming it) before they ever run."""
    tasks, split = dag

    async def check() -> None:
        log = PromptLog(lambda k: f"answer {k}")
        good = scripted("good", ScriptedModel(replies=log))
        # A capability nobody else has: no stand-in answers for it, so its tasks fail.
        bad = make_agent("bad", ["x"], retry=NO_RETRY, breaker_threshold=1000,
                         failures=dict.fromkeys(range(len(tasks)), "server_error"))
        async with engine_on(kind, tmp_path, [good, bad]) as engine:
            orch = orch_of(engine)
            ids: list[str] = []
            for phase in (range(split), range(split, len(tasks))):
                for i in phase:
                    deps, outcome = tasks[i]
                    ids.append((await orch.submit(prompt(i), strategy="single", after=[ids[d] for d in deps],
                                                 agents=["bad" if outcome == "fail" else "good"])).id)
                    if outcome == "cancel_at_once":
                        await orch.cancel_task(ids[i])
                for i in phase:
                    if tasks[i][1] == "cancel_later":
                        await orch.cancel_task(ids[i])
                async with running(engine, concurrency=4):
                    for i in phase:
                        await orch.wait(ids[i], timeout_s=10)
            done = [await orch.get_task(t) for t in ids]
            started = [[e for e in await engine.store.read_events(t) if e.type == "task_started"] for t in ids]

            expected = resolve(tasks, split, ids)
            assert [t.status for t in done] == [e.status for e in expected]
            for i, (task, ex) in enumerate(zip(done, expected, strict=True)):
                deps = [done[d] for d in tasks[i][0]]
                if not ex.ran:
                    assert ex.errors is not None and task.error in ex.errors
                    assert task.attempts == 0 and not started[i] and not calls_of(log, i)
                    continue
                assert task.attempts == 1 and len(started[i]) == 1
                assert task.started_at is not None
                assert all(d.finished_at is not None and d.finished_at <= task.started_at for d in deps)
                if ex.status == "failed":
                    assert task.error and not task.error.startswith("dependency")
                    continue
                assert task.error is None
                (seen,) = calls_of(log, i)
                for d in deps:
                    assert f"Result of task {d.id}:\n{d.output}" in seen
            assert len(bad.model.calls) == sum(e.ran and e.status == "failed" for e in expected)  # type: ignore[attr-defined]

            before = len(await orch.list_tasks(tenant_id=None))
            with pytest.raises(DependencyError, match="unknown task id.*no-such-task"):
                await orch.submit("x", strategy="single", after=[*ids, "no-such-task"])
            assert len(await orch.list_tasks(tenant_id=None)) == before

    asyncio.run(check())


def acyclic(graph: dict[str, list[str]]) -> bool:
    """Kahn's topological sort: every node can be placed after all it depends on."""
    nodes = set(graph).union(*graph.values())
    placed: set[str] = set()
    while True:
        ready = {n for n in nodes - placed if set(graph.get(n, ())) <= placed}
        if not ready:
            return placed == nodes
        placed |= ready


# Nodes g and h are depended upon but have no entry of their own.
graphs = st.dictionaries(st.sampled_from("abcdef"), st.lists(st.sampled_from("abcdefgh"), max_size=3), max_size=6)


@given(graphs)
def test_find_cycle_in_finds_exactly_the_real_cycles(graph: dict[str, list[str]]) -> None:
    cycle = find_cycle_in(graph)
    assert (cycle is None) == acyclic(graph)
    if cycle is not None:
        assert len(cycle) >= 2 and cycle[0] == cycle[-1]
        assert all(b in graph.get(a, ()) for a, b in zip(cycle, cycle[1:], strict=False))


# -- leases and fencing ------------------------------------------------------------------------

HOLDERS = ("w0", "w1", "w2")
LEASE_S = 3.0
END_STATUSES = ("completed", "failed", "cancelled", "timed_out")

claims = st.tuples(st.just("claim"), st.sampled_from(HOLDERS), st.integers(1, 2))
advances = st.tuples(st.just("advance"), st.integers(1, 4))
# A write names one of the (holder, task) leases handed out so far, by index: it carries that epoch.
writes = st.tuples(st.sampled_from(["renew", "step", "event", "hand_back", "finish", "finish_fast"]),
                   st.integers(0, 5), st.sampled_from(END_STATUSES))
lease_ops = st.lists(st.one_of(claims, advances, writes, writes), min_size=8, max_size=40)


@dataclass
class Lease:
    """The model of one task under leases: where it is, who holds it, and what its log must hold."""

    status: str = "queued"
    epoch: int = 0
    owner: str | None = None
    expires: float = 0.0
    log: list[tuple[object, ...]] = field(default_factory=lambda: [("task_queued",)])
    attempts: list[list[object]] = field(default_factory=list)
    """[status, epoch, worker] per claim."""
    steps: set[str] = field(default_factory=set)

    def accepts(self, epoch: int) -> bool:
        """Whether a write under `epoch` is accepted: the task still runs under that very lease."""
        return self.status == "running" and self.epoch == epoch


def claimable(model: list[Lease], now: float, n: int) -> set[frozenset[int]]:
    """Every set of tasks a claim of up to `n` may take: expired leases first, earliest expiry first (ties
    in any order), then queued tasks in submission order (one handed back keeps its place: all have the
    same priority)."""
    expired = [i for i, t in enumerate(model) if t.status == "running" and t.expires < now]
    queued = [i for i, t in enumerate(model) if t.status == "queued"]
    orders = [p for p in permutations(expired) if [model[i].expires for i in p] == sorted(model[i].expires for i in p)]
    return {frozenset([*p, *queued][:n]) for p in orders}


def logged(data: dict[str, object]) -> tuple[object, ...]:
    """An event as the model writes it down: its type and the fields the lease rules decide."""
    fields = {"task_started": ("attempt", "epoch", "worker"), "task_handed_back": ("attempt", "worker"),
              "task_finished": ("status",), "probe": ("holder", "epoch")}
    return (data["type"], *(data[f] for f in fields.get(str(data["type"]), ())))


@KINDS
@examples(25)
@given(lease_ops)
def test_leases_and_fencing_match_the_model(kind: str, tmp_path: Path, ops: list[tuple[Any, ...]]) -> None:
    """Property: under a simulated clock, only the holder of a task's current lease epoch can write
    (journal rows, events, its end, a hand-back); every other write is refused with `LeaseLost`; epochs
    only grow; an unexpired lease is never taken over and an expired one is, by the next claim; a task
    ends at most once."""

    async def check() -> None:
        async with engine_on(kind, tmp_path, [scripted("a0")]) as engine:
            ids = [(await orch_of(engine).submit(f"t{i}", strategy="single")).id for i in range(2)]
            holders = Holders(engine, ids)
            for op in ops:
                await holders.apply(*op)
                await check_store(engine, ids, holders.model)

    asyncio.run(check())


class Holders:
    """Simulated lease holders driving the store's operations as workers do, on a simulated clock
    that starts after the tasks were submitted, beside the model of what each operation must do."""

    def __init__(self, engine: TaskEngine, ids: list[str]) -> None:
        self.store, self.ids = engine.store, ids
        self.now = float(math.ceil(time.time()) + 10)
        self.model = [Lease() for _ in ids]
        self.held: dict[tuple[str, int], list[int]] = {}
        """(holder, task) -> [epoch, next event seq] of the holder's last claim of the task."""
        self.writes = 0

    async def apply(self, kind: str, *args: Any) -> None:
        """Run one generated operation (see `lease_ops`)."""
        if kind == "advance":
            self.now += args[0]
        elif kind == "claim":
            await self.claim(*args)
        elif self.held:
            k, status = args
            holder, i = sorted(self.held)[k % len(self.held)]
            await self.write(kind, holder, i, status)

    async def claim(self, holder: str, n: int) -> None:
        store, now = self.store, self.now
        may = claimable(self.model, now, n)
        out = await store.run_op(_ops.claim(store.dialect, WorkerID(holder), n, now, LEASE_S), fence="*")
        got = [self.ids.index(c.task.id) for c in out.value]
        assert frozenset(got) in may and len(set(got)) == len(got), f"claimed {got}, the model: {may}"
        for c, i in zip(out.value, got, strict=True):
            t = self.model[i]
            for a in t.attempts:
                a[0] = "lost" if a[0] == "running" else a[0]
            t.status, t.epoch, t.owner, t.expires = "running", t.epoch + 1, holder, now + LEASE_S
            t.attempts.append(["running", t.epoch, holder])
            t.log.append(("task_started", len(t.attempts), t.epoch, holder))
            assert c.epoch == t.epoch and c.next_seq == len(t.log) + 1
            (started,) = await store.read_events(c.task.id, len(t.log) - 1)
            # Resumed: an earlier holder ran it (lease expired or handed back), so its journal replays.
            assert started.data["resumed"] is (t.epoch > 1)
            self.held[holder, i] = [c.epoch, c.next_seq]

    async def write(self, kind: str, holder: str, i: int, status: str) -> None:
        store, d, now = self.store, self.store.dialect, self.now
        t, tid = self.model[i], self.ids[i]
        epoch, seq = self.held[holder, i]
        ok = t.accepts(epoch)
        if kind == "renew":
            out = await store.run_op(_ops.renew(d, [(tid, epoch, holder)], now, LEASE_S))
            assert out.value == (set() if ok else {tid})
            if ok:
                t.expires = now + LEASE_S
            return
        if kind == "event":
            # Not awaited, like a holder's events: after the flush it is in the log, or was fenced off.
            store.put_event_row("default", tid, epoch, seq, "probe", {"type": "probe", "holder": holder,
                                                                     "epoch": epoch})
            await store.flush()
            self.held[holder, i][1] += 1
            if ok:
                t.log.append(("probe", holder, epoch))
            return
        self.writes += 1
        try:
            if kind == "step":
                key = f"{holder}/{epoch}/{self.writes}"
                await store.put_step("default", tid, epoch, StepResult(key, "a0", "answer", "x"))
                t.steps.add(key)
            elif kind == "hand_back":
                await store.run_op(_ops.hand_back(d, tid, epoch, seq, WorkerID(holder), now), fence=tid)
                t.status, t.owner, t.attempts[-1][0] = "queued", None, "handed_back"
                t.log.append(("task_handed_back", len(t.attempts), holder))
            else:
                end = _ops.RunEnd(status, None if status == "completed" else "why", "out", 0, 0, 0.0, None)
                op, fast = _records.finish_op(d, tid, epoch, seq, end, now, FAST.aging_s, TaskRetry())
                if kind == "finish_fast":  # as the engine ends a run: the record the writer may batch
                    ending = store.start_op(op, fence=tid, fast=fast)
                    store.expedite()
                    await ending
                else:
                    await store.run_op(op, fence=tid)
                t.status, t.owner, t.attempts[-1][0] = status, None, status
                t.log.append(("task_finished", status))
            assert ok, f"{kind} by {holder} under stale epoch {epoch} was accepted (the task's is {t.epoch})"
        except LeaseLost:
            assert not ok, f"{kind} by {holder} under its current epoch {epoch} was refused"


async def check_store(engine: TaskEngine, ids: list[str], model: list[Lease]) -> None:
    """The database holds what the model says, and its logs show one writer per epoch."""
    store = engine.store
    for tid, t in zip(ids, model, strict=True):
        task = await store.get_task(tid)
        assert task is not None
        assert (task.status, task.lease_epoch, task.lease_owner, task.attempts) == (
            t.status, t.epoch, t.owner, len(t.attempts))
        events = await store.read_events(tid)
        assert [e.seq for e in events] == list(range(1, len(events) + 1))
        assert [logged(dict(e.data)) for e in events] == t.log
        assert [e.type for e in events].count("task_finished") <= 1
        epochs = [e.data["epoch"] for e in events if e.type == "task_started"]
        assert epochs == sorted(set(epochs))  # epochs only grow
        writer = None
        for e in events:  # every probe was written by the holder of the lease last started
            if e.type == "task_started":
                writer = (e.data["worker"], e.data["epoch"])
            elif e.type == "probe":
                assert (e.data["holder"], e.data["epoch"]) == writer
        assert set(await store.journal(tid)) == t.steps
        assert [[a.status, a.epoch, a.worker_id] for a in await store.attempts(tid)] == t.attempts


# -- cancellation ------------------------------------------------------------------------------


@st.composite
def cancel_plans(draw: st.DrawFn) -> tuple[list[tuple[list[int], str | None]], list[int]]:
    """Tasks (each may depend on earlier ones) with when each is cancelled, and the order of the late
    cancellations. ``early``: before any worker runs; ``late``: once every task that can run has run
    or is running (a ``late_slow`` task is then in the middle of a model call); None: never."""
    n = draw(st.integers(1, 6))
    tasks = []
    for i in range(n):
        deps = draw(st.lists(st.integers(0, i - 1), unique=True, max_size=2)) if i else []
        tasks.append((deps, draw(st.sampled_from([None, "early", "late", "late_slow"]))))
    return tasks, draw(st.permutations(range(n)))


def cancel_model(tasks: list[tuple[list[int], str | None]], order: list[int], ids: list[str]
                 ) -> tuple[list[Expected], list[Expected]]:
    """The model: each task as it is once everything that can run has (`mid`), and at the end."""
    ex = [Expected() for _ in tasks]

    def cancel(i: int) -> None:
        if ex[i].status not in ("pending", "waiting", "in_flight"):
            return  # a finished task stays as it is
        ex[i].status, ex[i].errors = "cancelled", {"cancelled by request"}
        changed = True
        while changed:  # its waiting dependents end, naming a cancelled dependency
            changed = False
            for j, (deps, _) in enumerate(tasks):
                bad = {cancelled_by(ids[d]) for d in deps if ex[d].status == "cancelled"}
                if ex[j].status in ("pending", "waiting") and bad:
                    ex[j].status, ex[j].errors, changed = "cancelled", bad, True

    for i, (_, when) in enumerate(tasks):
        if when == "early":
            cancel(i)
    for i, (deps, when) in enumerate(tasks):  # the worker runs what it can
        if ex[i].status != "pending":
            continue
        if any(ex[d].status in ("waiting", "in_flight") for d in deps):
            ex[i].status = "waiting"
        else:
            ex[i].status, ex[i].ran = ("in_flight" if when == "late_slow" else "completed"), True
    mid = [Expected(e.status, e.errors, e.ran) for e in ex]
    for i in order:
        if tasks[i][1] in ("late", "late_slow"):
            cancel(i)
    return mid, ex


@KINDS
@examples(15)
@given(cancel_plans())
def test_cancellation_matches_the_model(kind: str, tmp_path: Path,
                                        plan: tuple[list[tuple[list[int], str | None]], list[int]]) -> None:
    """Property: a task cancelled while queued or waiting never starts; one cancelled while running ends
    cancelled; the tasks depending on a cancelled one end cancelled, naming it; every other task completes;
    cancelling a finished task changes nothing."""
    tasks, order = plan

    async def check() -> None:
        quick, hanging = PromptLog(lambda k: f"answer {k}"), PromptLog("never")
        agents = [scripted("quick", ScriptedModel(replies=quick)),
                  scripted("slow", ScriptedModel(replies=hanging, latency_s=30))]
        async with engine_on(kind, tmp_path, agents) as engine:
            orch = orch_of(engine)
            ids = []
            for i, (deps, when) in enumerate(tasks):
                ids.append((await orch.submit(prompt(i), strategy="single", after=[ids[d] for d in deps],
                                             agents=["slow" if when == "late_slow" else "quick"])).id)
            mid, expected = cancel_model(tasks, order, ids)
            for i, (_, when) in enumerate(tasks):
                if when == "early":
                    await orch.cancel_task(ids[i])
            async with running(engine, concurrency=len(tasks)):
                for i, ex in enumerate(mid):
                    if ex.status == "completed":
                        await orch.wait(ids[i], timeout_s=10)
                    elif ex.status == "in_flight":
                        await eventually(lambda i=i: calls_of(hanging, i))
                for i in order:
                    if tasks[i][1] in ("late", "late_slow"):
                        if mid[i].status == "in_flight":
                            assert (await orch.get_task(ids[i])).status == "running"
                        await orch.cancel_task(ids[i])
                done = [await orch.wait(t, timeout_s=10) for t in ids]
            logs = [await engine.store.read_events(t) for t in ids]

            assert [t.status for t in done] == [e.status for e in expected]
            for i, (task, ex) in enumerate(zip(done, expected, strict=True)):
                types = [e.type for e in logs[i]]
                assert types.count("task_finished") == 1 and logs[i][-1].data["status"] == task.status
                assert ("task_started" in types) == ex.ran == (task.attempts == 1)
                assert len(calls_of(quick, i) + calls_of(hanging, i)) == int(ex.ran)
                assert task.error in ex.errors if ex.errors is not None else task.error is None

            for tid, task, log in zip(ids, done, logs, strict=True):  # cancelling a finished task changes nothing
                assert await orch.cancel_task(tid) == task
                assert await engine.store.read_events(tid) == log

    asyncio.run(check())
