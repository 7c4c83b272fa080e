"""Scoring, the capability index, ranking and selection, failover candidates, and agent health."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from loomiq.agents import (
    Agent,
    AgentRegistry,
    AgentState,
    BreakerState,
    CircuitBreaker,
    NoAgentAvailable,
    ScoreWeights,
    UnknownAgent,
    UnknownCapability,
)
from loomiq.agents._scoring import score
from tests.factories import make_agent

BASE = dict(capability_fit=1.0, success_rate=0.9, mean_latency_s=1.0, cost_per_call_usd=0.01, load=0.25)


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def ids(agents: list[Agent]) -> list[str]:
    return [a.id for a in agents]


# --- scoring -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("field", "worse", "better"),
    [
        ("capability_fit", 0.5, 1.0),
        ("success_rate", 0.5, 0.95),
        ("mean_latency_s", 4.0, 0.5),
        ("cost_per_call_usd", 0.05, 0.001),
        ("load", 0.75, 0.0),
    ],
)
def test_each_term_moves_the_score_the_right_way(field: str, worse: float, better: float) -> None:
    assert score(**{**BASE, field: better}) > score(**{**BASE, field: worse})


unit = st.floats(min_value=0.0, max_value=1.0, allow_nan=False)
positive = st.floats(min_value=0.0, max_value=1e4, allow_nan=False)


@given(fit=unit, rate=unit, latency=positive, cost=positive, load=unit, a=unit, b=unit)
def test_success_rate_and_capability_fit_are_monotone(
    fit: float, rate: float, latency: float, cost: float, load: float, a: float, b: float
) -> None:
    lo, hi = sorted((a, b))
    kw = dict(capability_fit=fit, success_rate=rate, mean_latency_s=latency, cost_per_call_usd=cost, load=load)
    assert score(**{**kw, "success_rate": hi}) >= score(**{**kw, "success_rate": lo})
    assert score(**{**kw, "capability_fit": hi}) >= score(**{**kw, "capability_fit": lo})
    assert score(**{**kw, "load": lo}) >= score(**{**kw, "load": hi})


@given(rate=unit, a=positive, b=positive)
def test_lower_latency_and_cost_never_score_lower(rate: float, a: float, b: float) -> None:
    lo, hi = sorted((a, b))
    kw = dict(capability_fit=1.0, success_rate=rate, mean_latency_s=1.0, cost_per_call_usd=0.01, load=0.0)
    assert score(**{**kw, "mean_latency_s": lo}) >= score(**{**kw, "mean_latency_s": hi})
    assert score(**{**kw, "cost_per_call_usd": lo}) >= score(**{**kw, "cost_per_call_usd": hi})


def test_load_beyond_full_counts_as_full() -> None:
    assert score(**{**BASE, "load": 3.0}) == score(**{**BASE, "load": 1.0})


def test_reference_latency_and_cost_score_one_half() -> None:
    w = ScoreWeights(capability=0.0, success=0.0, latency=1.0, cost=0.0, load=0.0)
    assert score(**{**BASE, "mean_latency_s": w.latency_ref_s}, weights=w) == pytest.approx(0.5)
    w = ScoreWeights(capability=0.0, success=0.0, latency=0.0, cost=1.0, load=0.0)
    assert score(**{**BASE, "cost_per_call_usd": w.cost_ref_usd}, weights=w) == pytest.approx(0.5)


# --- ranking on live statistics ----------------------------------------------------------------


def test_rank_prefers_the_more_reliable_agent() -> None:
    flaky, steady = make_agent("flaky"), make_agent("steady")
    flaky.stats.successes, flaky.stats.failures = 5, 5
    steady.stats.successes, steady.stats.failures = 10, 0
    registry = AgentRegistry([flaky, steady])
    assert ids(registry.rank()) == ["steady", "flaky"]
    assert registry.score(steady) > registry.score(flaky)


def test_rank_prefers_the_faster_then_the_cheaper_agent() -> None:
    slow, fast = make_agent("slow"), make_agent("fast")
    for agent, latency in ((slow, 10.0), (fast, 1.0)):
        agent.stats.successes, agent.stats.total_latency_s = 2, latency
    assert ids(AgentRegistry([slow, fast]).rank()) == ["fast", "slow"]

    dear, cheap = make_agent("dear"), make_agent("cheap")
    for agent, cost in ((dear, 1.0), (cheap, 0.001)):
        agent.stats.successes, agent.stats.cost_usd = 2, cost
    assert ids(AgentRegistry([dear, cheap]).rank()) == ["cheap", "dear"]


def test_rank_prefers_the_less_loaded_agent() -> None:
    busy, free = make_agent("busy", max_concurrency=4), make_agent("free", max_concurrency=4)
    busy.stats.in_flight = 3
    assert busy.load == 0.75
    assert ids(AgentRegistry([busy, free]).rank()) == ["free", "busy"]


def test_rank_prefers_preferred_capabilities() -> None:
    plain, coder = make_agent("plain", {"general"}), make_agent("coder", {"general", "coding"})
    registry = AgentRegistry([plain, coder])
    assert ids(registry.rank(["general"])) == ["plain", "coder"]  # a tie keeps registration order
    assert ids(registry.rank(["general"], preferred=["coding"])) == ["coder", "plain"]


def test_rank_ties_keep_registration_order() -> None:
    registry = AgentRegistry([make_agent(i) for i in ("c", "a", "b")])
    assert ids(registry.rank()) == ["c", "a", "b"]


# --- capability index --------------------------------------------------------------------------


def test_with_capabilities_is_an_intersection() -> None:
    registry = AgentRegistry(
        [make_agent("xy", {"x", "y"}), make_agent("yz", {"y", "z"}), make_agent("xyz", {"x", "y", "z"})]
    )
    assert ids(registry.with_capabilities(["x", "y"])) == ["xy", "xyz"]
    assert ids(registry.with_capabilities(["y"])) == ["xy", "yz", "xyz"]
    assert ids(registry.with_capabilities(["x", "z"])) == ["xyz"]
    assert registry.with_capabilities(["x", "nobody-has-this"]) == []
    assert ids(registry.with_capabilities([])) == ["xy", "yz", "xyz"]


def test_removing_an_agent_updates_the_index() -> None:
    registry = AgentRegistry([make_agent("a", {"x"}), make_agent("b", {"x", "y"})])
    registry.remove("b")
    assert ids(registry.with_capabilities(["x"])) == ["a"]
    assert registry.with_capabilities(["y"]) == []


# --- health filtering and selection --------------------------------------------------------------


def test_rank_leaves_out_open_circuit_and_offline_agents() -> None:
    ok, broken, off, shaky = (make_agent(i, {"x"}, breaker_threshold=2) for i in ("ok", "broken", "off", "shaky"))
    broken.breaker.record_failure()
    broken.breaker.record_failure()
    off.enabled = False
    shaky.breaker.record_failure()  # degraded, not open: still usable
    registry = AgentRegistry([ok, broken, off, shaky])
    assert broken.state is AgentState.OPEN_CIRCUIT
    assert off.state is AgentState.OFFLINE
    assert shaky.state is AgentState.DEGRADED
    assert set(ids(registry.rank(["x"]))) == {"ok", "shaky"}
    assert "broken" not in ids(registry.select(["x"], n=10))


def test_select_returns_the_n_best_or_fewer() -> None:
    registry = AgentRegistry([make_agent(i, {"x"}) for i in "abc"])
    assert ids(registry.select(["x"], 2)) == ["a", "b"]
    assert ids(registry.select(["x"], 10)) == ["a", "b", "c"]
    assert ids(registry.select(["x"], 2, exclude=["a"])) == ["b", "c"]


def test_select_without_a_match_names_the_capabilities() -> None:
    registry = AgentRegistry([make_agent("a", {"writing"})])
    # Capabilities no agent has are the caller's mistake (UnknownCapability, a NoAgentAvailable).
    with pytest.raises(UnknownCapability, match=r"^unknown capabilities 'coding', 'review': no agent has them "):
        registry.select(["coding", "review"])
    with pytest.raises(NoAgentAvailable, match="no healthy agent has any capability"):
        AgentRegistry().select()


def test_select_raises_when_every_match_is_unhealthy() -> None:
    agent = make_agent("a", {"x"}, breaker_threshold=1)
    agent.breaker.record_failure()
    with pytest.raises(NoAgentAvailable, match="x"):
        AgentRegistry([agent]).select(["x"])


def test_adding_a_duplicate_id_is_refused() -> None:
    registry = AgentRegistry([make_agent("a")])
    with pytest.raises(ValueError, match="'a' is already registered"):
        registry.add(make_agent("a"))
    assert len(registry) == 1


def test_removed_agent_is_never_picked_again() -> None:
    a, b = make_agent("a", {"x"}), make_agent("b", {"x"})
    registry = AgentRegistry([a, b])
    assert registry.remove("a") is a
    assert a.enabled is False
    assert a.state is AgentState.OFFLINE
    assert "a" not in registry and len(registry) == 1
    assert ids(registry.select(["x"], 5)) == ["b"]
    assert ids(registry.fallbacks(b)) == []
    with pytest.raises(UnknownAgent):
        registry.remove("a")


def test_get_unknown_names_the_known_ids() -> None:
    registry = AgentRegistry([make_agent("beta"), make_agent("alpha")])
    with pytest.raises(UnknownAgent, match=r"unknown agent 'gamma' \(known: alpha, beta\)"):
        registry.get("gamma")
    with pytest.raises(UnknownAgent, match=r"known: none"):
        AgentRegistry().get("x")


def test_fallbacks_use_the_failed_agents_capabilities_by_default() -> None:
    failed = make_agent("failed", {"x", "y"})
    both, only_x, other = make_agent("both", {"x", "y", "z"}), make_agent("only_x", {"x"}), make_agent("z", {"z"})
    registry = AgentRegistry([failed, both, only_x, other])
    assert ids(registry.fallbacks(failed)) == ["both"]


def test_fallbacks_use_the_required_capabilities_when_given() -> None:
    failed = make_agent("failed", {"x", "y"})
    registry = AgentRegistry([failed, make_agent("both", {"x", "y"}), make_agent("only_x", {"x"})])
    assert ids(registry.fallbacks(failed, ["x"])) == ["both", "only_x"]
    assert ids(registry.fallbacks(failed, ["x"], exclude=["both"])) == ["only_x"]


def test_fallbacks_for_an_agent_without_capabilities_is_anyone_healthy() -> None:
    failed = make_agent("failed")
    registry = AgentRegistry([failed, make_agent("a", {"x"}), make_agent("b")])
    assert ids(registry.fallbacks(failed)) == ["a", "b"]


# --- Agent state and snapshot ------------------------------------------------------------------


def test_agent_state_transitions() -> None:
    agent = make_agent("a", {"x"}, breaker_threshold=2, breaker_cooldown_s=5.0)
    clock = FakeClock()
    agent.breaker = CircuitBreaker(2, 5.0, clock=clock)
    assert agent.state is AgentState.IDLE
    agent.stats.in_flight = 1
    assert agent.state is AgentState.BUSY
    agent.stats.in_flight = 0
    agent.breaker.record_failure()
    assert agent.state is AgentState.DEGRADED
    agent.breaker.record_failure()
    assert agent.state is AgentState.OPEN_CIRCUIT
    clock.now += 5.0
    assert agent.breaker.state is BreakerState.HALF_OPEN
    assert agent.state is AgentState.DEGRADED
    agent.breaker.record_success()
    assert agent.state is AgentState.IDLE
    agent.breaker.record_failure()
    agent.breaker.record_failure()
    agent.enabled = False
    assert agent.state is AgentState.OFFLINE  # offline wins over an open circuit


def test_snapshot_describes_the_agent() -> None:
    agent = make_agent("a", {"y", "x"}, name="Alice")
    agent.stats.successes, agent.stats.failures, agent.stats.calls = 3, 1, 4
    agent.stats.total_latency_s = 0.3
    agent.stats.last_error = "rate_limited: slow down"
    snap = agent.snapshot()
    assert set(snap) == {
        "id", "name", "provider", "model", "capabilities", "state", "offline", "calls", "success_rate",
        "mean_latency_ms", "input_tokens", "output_tokens", "cost_usd", "in_flight", "last_error",
    }
    assert snap["id"] == "a"
    assert snap["name"] == "Alice"
    assert snap["provider"] == "scripted"
    assert snap["capabilities"] == ["x", "y"]
    assert snap["state"] == "idle"
    assert snap["offline"] is True
    assert snap["calls"] == 4
    assert snap["success_rate"] == 0.75
    assert snap["mean_latency_ms"] == pytest.approx(100.0)
    assert snap["last_error"] == "rate_limited: slow down"
    assert make_agent("b").snapshot()["name"] == "b"  # the id when no name is set


def test_new_agent_stats_give_the_benefit_of_the_doubt() -> None:
    agent = make_agent("a")
    assert agent.stats.success_rate == 1.0
    assert agent.stats.mean_latency_s == 0.0
    assert agent.load == 0.0
