"""Each strategy end to end on scripted agents whose replies name them and whose prompts are recorded."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterable
from typing import Any

import pytest

from loomiq import Orchestrator
from loomiq.agents import Agent, AgentRegistry, NoAgentAvailable, UnknownAgent
from loomiq.models import ScriptedReply
from loomiq.runtime import AgentFailedOver, RunEvent, RunFinished, RunResult, StepFinished, StepStarted
from loomiq.strategies import (
    AdaptiveStrategy,
    RuleRouter,
    StrategyError,
    choose_strategy,
)
from loomiq.strategies._prompts import analyst_prompt
from tests.factories import NO_RETRY, PromptLog, make_agent, scripted

TASK = "Plan the migration of the billing service to Postgres."
SERVER_ERROR = "provider_unavailable: scripted 500: internal server error"
ALWAYS_FAILING: dict[int, Any] = {i: "server_error" for i in range(50)}


def answer_of(agent_id: str) -> str:
    """A confident answer long enough for the rule router to accept it."""
    return f"answer from {agent_id}: migrate table by table behind a feature flag and verify each step."


class Team:
    """Scripted agents that answer `answer_of(id)` (unless told otherwise) and record their prompts."""

    def __init__(self) -> None:
        self.agents: dict[str, Agent] = {}
        self.logs: dict[str, PromptLog] = {}

    def add(self, agent_id: str, caps: Iterable[str] = (), answer: str | None = None, **kw: Any) -> Agent:
        log = PromptLog(answer if answer is not None else answer_of(agent_id))
        kw.setdefault("replies", log)
        agent = make_agent(agent_id, caps, **kw)
        self.agents[agent_id] = agent
        self.logs[agent_id] = log
        return agent

    def failing(self, agent_id: str, caps: Iterable[str] = (), **kw: Any) -> Agent:
        """An agent whose every call fails with a 500, without retrying."""
        return self.add(agent_id, caps, retry=NO_RETRY, failures=ALWAYS_FAILING, **kw)

    def prompts(self, agent_id: str) -> list[str]:
        return self.logs[agent_id].prompts

    def orchestrator(self) -> Orchestrator:
        return Orchestrator(self.agents.values())


async def collect(orch: Orchestrator, prompt: str = TASK, **kwargs: Any) -> tuple[list[RunEvent], RunResult]:
    handle = orch.stream(prompt, **kwargs)
    async with asyncio.timeout(2.0):
        events = [event async for event in handle]
    final = events[-1]
    assert isinstance(final, RunFinished)
    return events, final.result


def step_agents(result: RunResult) -> dict[str, str]:
    return {s.key: s.agent for s in result.steps}


# --- single ------------------------------------------------------------------------------------


async def test_single_uses_the_best_agent() -> None:
    team = Team()
    for agent_id in ("a", "b", "c"):
        team.add(agent_id)
    team.agents["a"].stats.successes, team.agents["a"].stats.failures = 1, 3
    team.agents["c"].stats.successes, team.agents["c"].stats.failures = 2, 2
    result = await team.orchestrator().run(TASK, strategy="single")
    assert result.status == "completed"
    assert result.output == answer_of("b")
    assert [(s.key, s.agent, s.role) for s in result.steps] == [("single", "b", "answer")]
    assert team.prompts("b") == [TASK]
    assert team.prompts("a") == team.prompts("c") == []


async def test_single_with_a_named_agent() -> None:
    team = Team()
    team.add("a")
    team.add("b")
    result = await team.orchestrator().run(TASK, strategy="single", agents=["b"])
    assert result.output == answer_of("b")
    assert result.answered == ["b"]


# --- sequential --------------------------------------------------------------------------------


async def test_sequential_passes_each_output_to_the_next() -> None:
    team = Team()
    for agent_id in ("a", "b", "c"):
        team.add(agent_id)
    result = await team.orchestrator().run(TASK, strategy="sequential", agents=["a", "b", "c"])
    assert result.status == "completed"
    assert result.output == answer_of("c")
    assert [(s.key, s.agent, s.role) for s in result.steps] == [
        ("seq/0", "a", "draft"), ("seq/1", "b", "refine"), ("seq/2", "c", "refine"),
    ]
    assert team.prompts("a") == [TASK]
    (b_prompt,) = team.prompts("b")
    (c_prompt,) = team.prompts("c")
    assert b_prompt.startswith(TASK) and f"(a):\n{answer_of('a')}" in b_prompt
    assert f"(b):\n{answer_of('b')}" in c_prompt
    assert answer_of("a") not in c_prompt


async def test_sequential_skips_a_failing_agent() -> None:
    team = Team()
    team.add("a", {"a-only"})
    team.failing("b", {"b-only"})  # nobody else has b-only: no stand-in
    team.add("c", {"c-only"})
    result = await team.orchestrator().run(TASK, strategy="sequential", agents=["a", "b", "c"])
    assert result.status == "completed"
    assert result.output == answer_of("c")
    (c_prompt,) = team.prompts("c")
    assert f"(a):\n{answer_of('a')}" in c_prompt
    assert [s.ok for s in result.steps] == [True, False, True]
    assert result.steps[2].role == "refine"
    assert result.failed == {"b": SERVER_ERROR}
    assert result.degraded


async def test_sequential_fails_when_every_agent_fails() -> None:
    team = Team()
    team.failing("a", {"a-only"})
    team.failing("b", {"b-only"})
    result = await team.orchestrator().run(TASK, strategy="sequential", agents=["a", "b"])
    assert result.status == "failed"
    assert result.error == "every agent in the sequence failed"
    assert result.output == ""
    assert not result.degraded
    assert set(result.failed) == {"a", "b"}


# --- parallel ----------------------------------------------------------------------------------


async def test_parallel_runs_concurrently_and_concatenates() -> None:
    team = Team()
    for agent_id in ("a", "b", "c"):
        team.add(agent_id, latency_s=0.1)
    started = time.perf_counter()
    result = await team.orchestrator().run(TASK, strategy="parallel", agents=["a", "b", "c"])
    elapsed = time.perf_counter() - started
    assert 0.1 <= elapsed < 0.2
    assert result.status == "completed"
    assert result.output == "\n\n".join(f"## {i}\n{answer_of(i)}" for i in ("a", "b", "c"))
    assert result.outputs == tuple(answer_of(i) for i in ("a", "b", "c"))
    assert [s.key for s in sorted(result.steps, key=lambda s: s.key)] == ["par/0", "par/1", "par/2"]
    for agent_id in ("a", "b", "c"):
        assert team.prompts(agent_id) == [TASK]


async def test_parallel_vote_returns_the_majority_answer() -> None:
    team = Team()
    team.add("a", answer="Paris")
    team.add("b", answer="London")
    team.add("c", answer=" paris")
    result = await team.orchestrator().run(
        "Capital of France?", strategy="parallel", agents=["a", "b", "c"], options={"aggregate": "vote"}
    )
    assert result.output == "Paris"
    assert result.outputs == ("Paris", "London", " paris")


async def test_parallel_aggregates_what_came_back() -> None:
    team = Team()
    team.add("a", {"a-only"})
    team.failing("b", {"b-only"})
    result = await team.orchestrator().run(TASK, strategy="parallel", agents=["a", "b"])
    assert result.status == "completed"
    assert result.output == f"## a\n{answer_of('a')}"
    assert result.failed == {"b": SERVER_ERROR}


async def test_parallel_fails_when_every_agent_fails() -> None:
    team = Team()
    team.failing("a", {"a-only"})
    team.failing("b", {"b-only"})
    result = await team.orchestrator().run(TASK, strategy="parallel", agents=["a", "b"])
    assert result.status == "failed"
    assert result.error == "every agent failed"


# --- consensus ---------------------------------------------------------------------------------


async def test_consensus_analysts_run_concurrently_and_the_lead_sees_every_analysis() -> None:
    team = Team()
    for agent_id in ("a", "b", "c"):
        team.add(agent_id, latency_s=0.1)
    team.add("lead")
    started = time.perf_counter()
    result = await team.orchestrator().run(TASK, strategy="consensus", agents=["a", "b", "c", "lead"])
    elapsed = time.perf_counter() - started
    assert elapsed < 0.2
    assert result.status == "completed"
    assert result.output == answer_of("lead")
    assert {(s.key, s.agent, s.role) for s in result.steps} == {
        ("analyst/0", "a", "analyst"), ("analyst/1", "b", "analyst"), ("analyst/2", "c", "analyst"),
        ("lead", "lead", "lead"),
    }
    assert result.steps[-1].key == "lead"
    for agent_id in ("a", "b", "c"):
        assert team.prompts(agent_id) == [analyst_prompt(TASK)]
    (lead_prompt,) = team.prompts("lead")
    assert lead_prompt.startswith(TASK)
    assert "3 analysts answered" in lead_prompt
    for agent_id in ("a", "b", "c"):
        assert f"Analysis from {agent_id}:\n{answer_of(agent_id)}" in lead_prompt
    assert result.outputs == tuple(answer_of(i) for i in ("a", "b", "c"))


async def test_consensus_explicit_lead() -> None:
    team = Team()
    for agent_id in ("a", "b", "c", "boss"):
        team.add(agent_id)
    result = await team.orchestrator().run(
        TASK, strategy="consensus", agents=["a", "b", "c"], options={"lead": "boss"}
    )
    assert step_agents(result) == {"analyst/0": "a", "analyst/1": "b", "analyst/2": "c", "lead": "boss"}
    assert len(team.prompts("boss")) == 1


async def test_consensus_explicit_lead_among_the_named_agents() -> None:
    team = Team()
    for agent_id in ("a", "boss", "b", "c"):
        team.add(agent_id)
    result = await team.orchestrator().run(
        TASK, strategy="consensus", agents=["a", "boss", "b", "c"], options={"lead": "boss"}
    )
    assert step_agents(result) == {"analyst/0": "a", "analyst/1": "b", "analyst/2": "c", "lead": "boss"}
    assert len(team.prompts("boss")) == 1


def test_consensus_unknown_lead_is_refused() -> None:
    team = Team()
    for agent_id in ("a", "b", "c"):
        team.add(agent_id)
    with pytest.raises(UnknownAgent, match="unknown agent 'zed'"):
        team.orchestrator().plan(TASK, strategy="consensus", options={"lead": "zed"})


async def test_consensus_with_more_named_agents_than_needed_the_last_leads() -> None:
    team = Team()
    for agent_id in ("a", "b", "c", "d", "e"):
        team.add(agent_id)
    result = await team.orchestrator().run(TASK, strategy="consensus", agents=["a", "b", "c", "d", "e"])
    assert step_agents(result)["lead"] == "e"
    assert {s.agent for s in result.steps if s.role == "analyst"} == {"a", "b", "c", "d"}


async def test_consensus_with_exactly_min_named_agents_the_first_also_leads() -> None:
    team = Team()
    for agent_id in ("a", "b", "c"):
        team.add(agent_id)
    result = await team.orchestrator().run(TASK, strategy="consensus", agents=["a", "b", "c"])
    assert step_agents(result) == {"analyst/0": "a", "analyst/1": "b", "analyst/2": "c", "lead": "a"}


async def test_consensus_registry_picks_a_synthesis_agent_as_lead() -> None:
    team = Team()
    team.add("chair", {"analysis", "synthesis"})  # registered first: still kept out of the analysts
    for agent_id in ("a", "b", "c"):
        team.add(agent_id, {"analysis"})
    result = await team.orchestrator().run(TASK, strategy="consensus", capabilities=["analysis"])
    assert step_agents(result) == {"analyst/0": "a", "analyst/1": "b", "analyst/2": "c", "lead": "chair"}


async def test_consensus_registry_lead_stays_lead_when_fewer_analysts_are_allowed() -> None:
    """The class docstring: registry-picked agents get "the best agent with a synthesis or lead
    capability outside the analysts" as lead, whatever the number of analysts."""
    team = Team()
    team.add("chair", {"synthesis"})
    team.add("a")
    team.add("b")
    result = await team.orchestrator().run(TASK, strategy="consensus", options={"allow_fewer": True})
    assert result.status == "completed"
    assert step_agents(result).get("lead") == "chair"
    assert {s.agent for s in result.steps if s.role == "analyst"} == {"a", "b"}


async def test_consensus_with_fewer_than_three_analysts_is_refused() -> None:
    team = Team()
    team.add("a")
    team.add("b")
    orch = team.orchestrator()
    with pytest.raises(StrategyError, match="consensus needs at least 3 analysts but only 2 are available"):
        await orch.run(TASK, strategy="consensus", agents=["a", "b"])
    with pytest.raises(StrategyError, match="needs at least 3 analysts"):
        orch.plan(TASK, strategy="consensus")
    with pytest.raises(StrategyError, match="only 1 is available"):
        orch.plan(TASK, strategy="consensus", agents=["a"])
    assert team.prompts("a") == team.prompts("b") == []


async def test_consensus_with_fewer_analysts_when_allowed() -> None:
    team = Team()
    team.add("a")
    team.add("b")
    result = await team.orchestrator().run(
        TASK, strategy="consensus", agents=["a", "b"], options={"allow_fewer": True}
    )
    assert result.status == "completed"
    assert step_agents(result) == {"analyst/0": "a", "analyst/1": "b", "lead": "a"}
    assert "2 analysts answered" in team.prompts("a")[1]


async def test_consensus_no_agent_with_the_capabilities() -> None:
    team = Team()
    team.add("a", {"writing"})
    with pytest.raises(NoAgentAvailable, match="coding"):
        team.orchestrator().plan(TASK, strategy="consensus", capabilities=["coding"])


async def test_consensus_one_failing_analyst_degrades_the_run() -> None:
    team = Team()
    team.add("a", {"a-only"})
    team.failing("b", {"b-only"})  # no stand-in has b-only
    team.add("c", {"c-only"})
    team.add("lead", {"lead-only"})
    result = await team.orchestrator().run(TASK, strategy="consensus", agents=["a", "b", "c", "lead"])
    assert result.status == "completed"
    assert result.degraded
    assert result.failed == {"b": SERVER_ERROR}
    assert result.output == answer_of("lead")
    (lead_prompt,) = team.prompts("lead")
    assert "2 analysts answered" in lead_prompt
    assert "Analysis from b" not in lead_prompt
    assert result.to_dict()["failed"] == {"b": SERVER_ERROR}


async def test_consensus_failing_analyst_is_replaced_by_a_stand_in() -> None:
    team = Team()
    for agent_id in ("a", "b", "c", "lead"):
        team.add(agent_id, {"analysis"})
    team.failing("b", {"analysis"})
    team.add("spare", {"analysis"})
    # Failover outside the named agents is opt-in (issue 10, item 2; test_pinned_agents.py).
    result = await team.orchestrator().run(TASK, strategy="consensus", agents=["a", "b", "c", "lead"],
                                           allow_failover_outside=True)
    assert result.status == "completed"
    b_step = next(s for s in result.steps if s.key == "analyst/1")
    assert b_step.agent == "spare"  # outside the run's agents first
    assert b_step.failed_over_from == (("b", SERVER_ERROR),)
    assert result.failed == {"b": SERVER_ERROR}
    assert result.degraded
    assert f"Analysis from spare:\n{answer_of('spare')}" in team.prompts("lead")[0]


async def test_consensus_fails_when_every_analyst_fails() -> None:
    team = Team()
    for agent_id in ("a", "b", "c"):
        team.failing(agent_id, {f"{agent_id}-only"})
    team.add("lead", {"lead-only"})
    result = await team.orchestrator().run(TASK, strategy="consensus", agents=["a", "b", "c", "lead"])
    assert result.status == "failed"
    assert result.error == "every analyst failed; nothing to synthesise"
    assert team.prompts("lead") == []
    assert set(result.failed) == {"a", "b", "c"}
    assert not result.degraded


async def test_consensus_fails_when_the_lead_fails() -> None:
    team = Team()
    for agent_id in ("a", "b", "c"):
        team.add(agent_id, {f"{agent_id}-only"})
    team.failing("lead", {"lead-only"})
    result = await team.orchestrator().run(TASK, strategy="consensus", agents=["a", "b", "c", "lead"])
    assert result.status == "failed"
    assert result.error == f"the lead failed: {SERVER_ERROR}"
    assert result.outputs == tuple(answer_of(i) for i in ("a", "b", "c"))


# --- adaptive ----------------------------------------------------------------------------------

EMAIL_TASK = "Write an email announcing the billing database migration to customers."


async def test_adaptive_rules_route_a_short_answer_to_a_reviewer() -> None:
    team = Team()
    team.add("writer", {"writing"}, answer="Dear customers, we migrate.")
    team.add("generalist", {"general"})
    team.add("reviewer", {"review"})
    result = await team.orchestrator().run(
        EMAIL_TASK, strategy="adaptive", agents=["generalist", "writer", "reviewer"],
        options={"router": RuleRouter()},
    )
    assert result.status == "completed"
    assert [(s.key, s.agent, s.role) for s in result.steps] == [
        ("adaptive/0/0", "writer", "routed"), ("adaptive/1/0", "reviewer", "routed"),
    ]
    assert result.output == answer_of("reviewer")
    assert team.prompts("writer") == [EMAIL_TASK]
    (review_prompt,) = team.prompts("reviewer")
    assert "(writer):\nDear customers, we migrate." in review_prompt
    assert team.prompts("generalist") == []
    assert len(result.notes) == 3
    assert result.notes[0].startswith("round 0: writer (task mentions writing")
    assert result.notes[1].startswith("round 1: reviewer (writer's answer is very short")
    assert result.notes[2] == "round 2: done (reviewer's answer is complete)"
    assert result.to_dict()["notes"] == list(result.notes)


async def test_adaptive_rules_route_an_unsure_answer_to_a_reviewer() -> None:
    team = Team()
    unsure = "I am not sure, but the email should explain the downtime window and the rollback plan clearly."
    team.add("writer", {"writing"}, answer=unsure)
    team.add("reviewer", {"review"})
    result = await team.orchestrator().run(
        EMAIL_TASK, strategy="adaptive", agents=["writer", "reviewer"], options={"router": RuleRouter()}
    )
    assert [s.agent for s in result.steps] == ["writer", "reviewer"]
    assert "writer's answer sounds unsure; reviewer reviews it" in result.notes[1]


async def test_adaptive_rules_stop_when_the_answer_is_complete() -> None:
    team = Team()
    team.add("writer", {"writing"})
    team.add("reviewer", {"review"})
    result = await team.orchestrator().run(
        EMAIL_TASK, strategy="adaptive", agents=["writer", "reviewer"], options={"router": RuleRouter()}
    )
    assert [s.agent for s in result.steps] == ["writer"]
    assert result.output == answer_of("writer")
    assert result.notes[-1] == "round 1: done (writer's answer is complete)"
    assert team.prompts("reviewer") == []


async def test_adaptive_uses_a_routing_agent() -> None:
    team = Team()

    def route(index: int) -> str:
        if index == 0:
            return '```json\n{"next": ["reviewer"], "done": false, "reason": "reviewer knows best"}\n```'
        return '{"next": [], "done": true, "reason": "good enough"}'

    team.add("router", {"routing"}, answer=route)
    team.add("writer", {"writing"})
    team.add("reviewer", {"review"})
    result = await team.orchestrator().run(EMAIL_TASK, strategy="adaptive")
    assert result.status == "completed"
    assert [(s.key, s.agent, s.role) for s in result.steps] == [
        ("route/0", "router", "router"), ("adaptive/0/0", "reviewer", "routed"), ("route/1", "router", "router"),
    ]
    assert result.output == answer_of("reviewer")
    assert result.notes == ("round 0: reviewer (reviewer knows best)", "round 1: done (good enough)")
    first_route, second_route = team.prompts("router")
    assert "- writer: writing" in first_route and "- reviewer: review" in first_route
    assert "- router" not in first_route  # the routing agent is not in the pool
    assert f"[reviewer]\n{answer_of('reviewer')}" in second_route


def test_adaptive_pool_leaves_out_routing_agents() -> None:
    team = Team()
    team.add("router", {"routing"})
    team.add("a")
    team.add("b", {"routing", "writing"})
    team.add("c")
    pool = AdaptiveStrategy().pick(AgentRegistry(team.agents.values()), None, ())
    assert [a.id for a in pool] == ["a", "c"]


async def test_adaptive_falls_back_to_rules_when_the_router_talks_nonsense() -> None:
    team = Team()
    team.add("router", {"routing"}, answer="I think the writer should start, then maybe someone else.")
    team.add("writer", {"writing"})
    team.add("reviewer", {"review"})
    result = await team.orchestrator().run(EMAIL_TASK, strategy="adaptive")
    assert result.status == "completed"
    assert [s.agent for s in result.steps if s.role == "routed"] == ["writer"]
    assert result.notes[0].startswith(
        "round 0: writer (router unusable (no JSON object in the router's answer); task mentions writing"
    )
    assert "router unusable" in result.notes[1]


async def test_adaptive_falls_back_to_rules_when_the_router_fails() -> None:
    team = Team()
    team.failing("router", {"routing"})
    team.add("writer", {"writing"})
    result = await team.orchestrator().run(EMAIL_TASK, strategy="adaptive", agents=["writer"])
    assert result.status == "completed"
    assert result.output == answer_of("writer")
    assert f"router unusable ({SERVER_ERROR})" in result.notes[0]


async def test_adaptive_fails_when_no_routed_agent_answers() -> None:
    team = Team()
    team.failing("writer", {"writing"})
    result = await team.orchestrator().run(
        EMAIL_TASK, strategy="adaptive", agents=["writer"], options={"router": RuleRouter()}
    )
    assert result.status == "failed"
    assert result.error == "no routed agent produced an answer"
    assert result.notes[-1] == "round 1: done (every agent in the pool has contributed)"


async def test_adaptive_stops_after_max_rounds() -> None:
    team = Team()
    for agent_id in ("a", "b", "c"):
        team.add(agent_id, answer="Not sure.")
    result = await team.orchestrator().run(
        TASK, strategy="adaptive", agents=["a", "b", "c"], options={"max_rounds": 2, "router": RuleRouter()}
    )
    assert [s.agent for s in result.steps] == ["a", "b"]
    assert len(result.notes) == 2


# --- auto --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("prompt", "strategy", "quoted"),
    [
        ("Should we adopt Kafka for order events?", "consensus", "'Should we'"),
        ("Help me decide between two vendors", "consensus", "'decide'"),
        ("Compare Postgres and MySQL for analytics", "parallel", "'Compare'"),
        ("Redis vs. Memcached for sessions", "parallel", "'vs'"),
        ("Please review my cover letter", "sequential", "'review'"),
        ("Polish this paragraph", "sequential", "'Polish'"),
        ("Should we compare and review the options?", "consensus", "'Should we'"),  # first rule wins
    ],
)
def test_choose_strategy_by_keyword(prompt: str, strategy: str, quoted: str) -> None:
    choice = choose_strategy(prompt, 4)
    assert choice.strategy == strategy
    assert choice.reason.startswith(quoted + ": ")


def test_choose_strategy_by_length_and_parts() -> None:
    long_task = "Explain the history of relational databases. " * 20
    assert len(long_task) > 600
    choice = choose_strategy(long_task, 4)
    assert choice.strategy == "adaptive"
    assert f"{len(long_task)} characters" in choice.reason
    parts = "Plan the launch:\n1. pricing\n2. docs\n3. support rota"
    choice = choose_strategy(parts, 4)
    assert choice.strategy == "adaptive"
    assert "3 parts" in choice.reason
    assert choose_strategy("Plan:\n- a\n- b", 4).strategy == "single"


def test_choose_strategy_short_direct_task_is_single() -> None:
    choice = choose_strategy("What is the capital of France?", 4)
    assert choice.strategy == "single"
    assert "short, direct task" in choice.reason
    assert choose_strategy("The decided budget is final; what is it?", 4).strategy == "single"  # word boundary


def test_choose_strategy_falls_back_when_too_few_agents() -> None:
    two = choose_strategy("Should we adopt Kafka?", 2)
    assert two.strategy == "parallel"
    assert "only 2 agent(s) are available, too few for consensus" in two.reason
    assert two.reason.startswith("'Should we'")
    one = choose_strategy("Should we adopt Kafka?", 1)
    assert one.strategy == "single"
    for prompt in ("Compare A and B", "Review this text"):
        choice = choose_strategy(prompt, 1)
        assert choice.strategy == "single"
        assert choice.reason.endswith("but only one agent is available")
    assert choose_strategy("Compare A and B", 2).strategy == "parallel"


async def test_orchestrator_auto_reports_the_strategy_and_reason() -> None:
    team = Team()
    for agent_id in ("a", "b", "c", "d"):
        team.add(agent_id)
    orch = team.orchestrator()
    prompt = "Should we adopt Kafka for order events?"
    result = await orch.run(prompt, strategy="auto")
    assert result.strategy == "consensus"
    assert result.strategy_reason == choose_strategy(prompt, 4).reason
    assert result.to_dict()["strategy_reason"] == result.strategy_reason
    result = await orch.run(prompt, agents=["a", "b"])  # auto is the default
    assert result.strategy == "parallel"
    assert "too few for consensus" in result.strategy_reason


async def test_auto_counts_only_healthy_agents() -> None:
    team = Team()
    for agent_id in ("a", "b", "c"):
        team.add(agent_id)
    team.agents["c"].enabled = False
    plan = team.orchestrator().plan("Should we adopt Kafka?")
    assert plan.strategy.name == "parallel"
    assert [a.id for a in plan.agents] == ["a", "b"]


# --- failover ----------------------------------------------------------------------------------


async def test_failover_to_a_stand_in_with_the_same_capabilities() -> None:
    team = Team()
    team.failing("a", {"x"})
    team.add("b", {"x"})
    team.add("other", {"y"})
    result = await team.orchestrator().run(TASK, strategy="single", agents=["a"], allow_failover_outside=True)
    assert result.status == "completed"
    (step,) = result.steps
    assert step.agent == "b"
    assert step.output == answer_of("b")
    assert step.failed_over_from == (("a", SERVER_ERROR),)
    assert step.attempts == 2
    assert result.answered == ["b"]
    assert result.failed == {"a": SERVER_ERROR}
    assert result.degraded
    assert step.to_dict()["failed_over_from"] == [{"agent": "a", "error": SERVER_ERROR}]
    assert team.prompts("other") == []


async def test_failover_emits_an_event_when_streaming() -> None:
    team = Team()
    team.failing("a", {"x"})
    team.add("b", {"x"})
    events, result = await collect(team.orchestrator(), strategy="single", agents=["a"], allow_failover_outside=True)
    kinds = [(type(e).__name__, getattr(e, "agent", None)) for e in events if not isinstance(e, RunFinished)]
    assert kinds[0] == ("RunStarted", None)
    failovers = [e for e in events if isinstance(e, AgentFailedOver)]
    assert len(failovers) == 1
    event = failovers[0]
    assert (event.step, event.from_agent, event.to_agent, event.error) == ("single", "a", "b", SERVER_ERROR)
    assert event.run_id == result.task_id
    started = [i for i, e in enumerate(events) if isinstance(e, StepStarted)]
    assert [events[i].agent for i in started] == ["a", "b"]  # type: ignore[union-attr]
    fo = events.index(event)
    finished = next(i for i, e in enumerate(events) if isinstance(e, StepFinished))
    assert started[0] < fo < started[1] < finished
    assert event.to_dict() == {"type": "agent_failed_over", "run_id": result.task_id, "step": "single",
                               "from_agent": "a", "to_agent": "b", "error": SERVER_ERROR}


async def test_failover_prefers_agents_outside_the_run() -> None:
    team = Team()
    team.failing("a", {"x"})
    team.add("b", {"x"})
    team.add("spare", {"x"})
    result = await team.orchestrator().run(TASK, strategy="sequential", agents=["a", "b"], allow_failover_outside=True)
    assert [s.agent for s in result.steps] == ["spare", "b"]


async def test_failover_uses_the_tasks_required_capabilities() -> None:
    team = Team()
    team.failing("a", {"x", "y"})
    team.add("only_x", {"x"})
    result = await team.orchestrator().run(TASK, strategy="single", agents=["a"], capabilities=["x"],
                                           allow_failover_outside=True)
    assert result.steps[0].agent == "only_x"


async def test_failover_gives_up_after_two_stand_ins() -> None:
    team = Team()
    for agent_id in ("a", "b", "c"):
        team.failing(agent_id, {"x"})
    team.add("d", {"x"})
    result = await team.orchestrator().run(TASK, strategy="single", agents=["a"], allow_failover_outside=True)
    assert result.status == "failed"
    (step,) = result.steps
    assert step.agent == "c"
    assert step.error == SERVER_ERROR
    assert step.failed_over_from == (("a", SERVER_ERROR), ("b", SERVER_ERROR))
    assert step.attempts == 3
    assert team.prompts("d") == []
    assert result.failed == {"a": SERVER_ERROR, "b": SERVER_ERROR, "c": SERVER_ERROR}


async def test_step_without_a_stand_in_fails_with_the_agents_error() -> None:
    team = Team()
    team.failing("a", {"x"})
    team.add("b", {"y"})
    result = await team.orchestrator().run(TASK, strategy="single", agents=["a"])
    assert result.status == "failed"
    assert result.error == SERVER_ERROR
    assert result.steps[0].failed_over_from == ()
    assert scripted(team.agents["b"]).calls == []


async def test_failover_on_timeout_and_rate_limit() -> None:
    team = Team()
    team.add("slow", {"x"}, retry=NO_RETRY, timeout_s=0.05, failures={0: "timeout"})
    team.add("limited", {"x"}, retry=NO_RETRY,
             failures={0: ScriptedReply(error="rate_limit", retry_after=60.0)})
    team.add("ok", {"x"})
    result = await team.orchestrator().run(TASK, strategy="parallel", agents=["slow", "limited"],
                                           allow_failover_outside=True)
    assert result.status == "completed"
    by_key = {s.key: s for s in result.steps}
    assert by_key["par/0"].agent == "ok" and by_key["par/0"].failed_over_from[0][1].startswith("timeout: ")
    assert by_key["par/1"].failed_over_from[0] == ("limited", "rate_limited: scripted 429: rate limited")

