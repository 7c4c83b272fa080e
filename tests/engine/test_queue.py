"""The queue's pure decisions: claim order with aging, cycles, retries (no database, no loop)."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from loomiq.engine import TaskRetry
from loomiq.engine._queue import QueuedItem, after_run, claim_order, effective_rank, find_cycle_in, sort_key

priorities = st.sampled_from(["critical", "high", "medium", "low"])
items = st.lists(st.tuples(priorities, st.floats(0, 100)), max_size=30)


@given(items, st.floats(0.5, 50))
def test_claim_order_is_effective_rank_order(specs: list[tuple[str, float]], aging_s: float) -> None:
    now = 200.0
    queued = [QueuedItem(str(i), p, t, i) for i, (p, t) in enumerate(specs)]
    order = claim_order(queued, now, aging_s)
    ranks = {q.id: effective_rank(q.priority, now - q.ready_at, aging_s) for q in queued}
    for a, b in zip(order, order[1:], strict=False):
        assert ranks[a] <= ranks[b] + 1e-9  # never a worse-ranked task before a better one


@given(items)
def test_without_waiting_higher_priority_starts_first(specs: list[tuple[str, float]]) -> None:
    queued = [QueuedItem(str(i), p, 0.0, i) for i, (p, _) in enumerate(specs)]
    order = claim_order(queued, 0.0, 60.0)
    levels = ["critical", "high", "medium", "low"]
    ranked = [levels.index(q.priority) for q in sorted(queued, key=lambda q: order.index(q.id))]
    assert ranked == sorted(ranked)
    # Equal priorities keep submission order.
    for level in levels:
        same = [q.id for q in queued if q.priority == level]
        assert [i for i in order if i in same] == same


def test_aging_lets_a_low_task_start() -> None:
    low = QueuedItem("low", "low", 0.0)
    fresh_critical = QueuedItem("crit", "critical", 31.0)
    assert claim_order([fresh_critical, low], now=31.0, aging_s=10.0) == ["low", "crit"]
    assert claim_order([fresh_critical, low], now=31.0, aging_s=60.0) == ["crit", "low"]
    assert sort_key("low", 0.0, 10.0) == 30.0


def test_not_ready_tasks_are_not_claimed() -> None:
    assert claim_order([QueuedItem("later", "critical", 5.0)], now=1.0, aging_s=1.0) == []


def test_find_cycle() -> None:
    assert find_cycle_in({"a": ["b"], "b": ["c"], "c": []}) is None
    cycle = find_cycle_in({"a": ["b"], "b": ["c"], "c": ["a"]})
    assert cycle is not None and cycle[0] == cycle[-1]
    assert find_cycle_in({"a": ["a"]}) == ["a", "a"]


def test_retry_decisions() -> None:
    once = TaskRetry()
    assert after_run("completed", 0, once) == ("finish", "completed", False)
    assert after_run("failed", 0, once) == ("finish", "failed", True)
    assert after_run("timed_out", 0, TaskRetry(3)) == ("finish", "timed_out", False)
    policy = TaskRetry(max_attempts=3, backoff_s=1.0, backoff_factor=2.0, max_backoff_s=1.5)
    assert after_run("failed", 0, policy) == ("retry", 1.0)
    assert after_run("failed", 1, policy) == ("retry", 1.5)
    assert after_run("failed", 2, policy) == ("finish", "failed", True)
