"""`Orchestrator`: planning, streamed events, cancellation, timeouts, results, and agents at run time."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest

from loomiq import Orchestrator
from loomiq.agents import Agent, UnknownAgent
from loomiq.models import ScriptedReply
from loomiq.runtime import (
    RunEvent,
    RunFinished,
    RunResult,
    RunStarted,
    StepDelta,
    StepFinished,
    StepStarted,
)
from loomiq.strategies import StrategyError
from tests.factories import make_agent, scripted

TASK = "Should we move the nightly batch jobs to a queue?"


def reply(agent_id: str) -> str:
    return f"answer from {agent_id}: use a durable queue with idempotent workers and dead letters"


def agents(*ids: str, **kw: Any) -> list[Agent]:
    return [make_agent(i, replies=[reply(i)], **kw) for i in ids]


async def drain(handle: Any) -> list[RunEvent]:
    """Every event of the run; a run that never finishes fails the test instead of hanging it."""
    async with asyncio.timeout(2.0):
        return [event async for event in handle]


# --- streamed events ---------------------------------------------------------------------------


async def test_stream_events_come_in_order() -> None:
    orch = Orchestrator(agents("a", "b", "c", "lead"))
    handle = orch.stream(TASK, strategy="consensus", agents=["a", "b", "c", "lead"])
    events = await drain(handle)
    assert isinstance(events[0], RunStarted)
    assert isinstance(events[-1], RunFinished)
    assert sum(isinstance(e, RunStarted) for e in events) == 1
    assert sum(isinstance(e, RunFinished) for e in events) == 1
    started = events[0]
    assert (started.strategy, started.agents, started.offline) == ("consensus", ("a", "b", "c", "lead"), True)
    assert {e.run_id for e in events} == {handle.task_id}

    keys = {e.step for e in events if isinstance(e, StepStarted)}
    assert keys == {"analyst/0", "analyst/1", "analyst/2", "lead"}
    for key in keys:
        indexed = [(i, e) for i, e in enumerate(events) if getattr(e, "step", None) == key]
        begin = next(i for i, e in indexed if isinstance(e, StepStarted))
        deltas = [(i, e) for i, e in indexed if isinstance(e, StepDelta)]
        finish = [(i, e) for i, e in enumerate(events) if isinstance(e, StepFinished) and e.result.key == key]
        assert len(finish) == 1
        end, finished = finish[0]
        assert deltas, f"no text streamed for {key}"
        assert all(begin < i < end for i, _ in deltas)
        assert "".join(d.text for _, d in deltas) == finished.result.output
        assert all(d.agent == finished.result.agent for _, d in deltas)
        assert finished.result.key == key
    lead_start = next(i for i, e in enumerate(events) if isinstance(e, StepStarted) and e.step == "lead")
    analysts_done = [i for i, e in enumerate(events) if isinstance(e, StepFinished) and e.result.key != "lead"]
    assert max(analysts_done) < lead_start

    result = await handle.result()
    assert events[-1].result is result
    assert result.status == "completed"
    assert result.output == reply("lead")


async def test_events_encode_to_json_dicts() -> None:
    orch = Orchestrator(agents("a"))
    events = await drain(orch.stream(TASK, strategy="single"))
    types = [e.to_dict()["type"] for e in events]
    assert types[0] == "run_started" and types[-1] == "run_finished"
    assert {"step_started", "text_delta", "step_finished"} <= set(types)
    finished = next(e for e in events if isinstance(e, StepFinished)).to_dict()
    assert finished["agent"] == "a" and finished["output"] == reply("a")
    assert events[-1].to_dict()["result"]["status"] == "completed"


async def test_run_without_listener_does_not_stream() -> None:
    agent = make_agent("a", replies=[reply("a")])
    calls: list[str] = []
    original = agent.model.stream

    def spy(request: Any) -> Any:
        calls.append("stream")
        return original(request)

    agent.model.stream = spy  # type: ignore[method-assign]
    result = await Orchestrator([agent]).run(TASK, strategy="single")
    assert result.output == reply("a")
    assert calls == []


# --- cancellation and timeouts -----------------------------------------------------------------


async def test_cancel_ends_a_slow_run_quickly_and_counts_only_finished_steps() -> None:
    fast = make_agent("fast", replies=[ScriptedReply(reply("fast"), input_tokens=11, output_tokens=7)])
    slow = make_agent("slow", latency_s=5.0, replies=[reply("slow")])
    orch = Orchestrator([fast, slow])
    handle = orch.stream(TASK, strategy="sequential", agents=["fast", "slow"])
    events: list[RunEvent] = []
    started = time.perf_counter()
    async with asyncio.timeout(2.0):
        async for event in handle:
            events.append(event)
            if isinstance(event, StepStarted) and event.agent == "slow":
                handle.cancel()
    elapsed = time.perf_counter() - started
    assert elapsed < 0.5
    final = events[-1]
    assert isinstance(final, RunFinished)
    result = final.result
    assert result.status == "cancelled"
    assert result.error == "cancelled by the caller"
    assert [s.agent for s in result.steps] == ["fast"]
    assert (result.usage.input_tokens, result.usage.output_tokens) == (11, 7)
    assert await handle.result() is result
    assert scripted(slow).calls[0].finished is False
    assert slow.stats.in_flight == 0 and slow.stats.failures == 0


async def test_cancel_right_after_stream_still_reports_start_and_finish() -> None:
    orch = Orchestrator(agents("a", "b", latency_s=5.0))
    started = time.perf_counter()
    handle = orch.stream(TASK, strategy="parallel", agents=["a", "b"])
    handle.cancel()
    events = await drain(handle)
    assert time.perf_counter() - started < 0.5
    assert isinstance(events[0], RunStarted)
    assert isinstance(events[-1], RunFinished)
    result = events[-1].result
    assert result.status == "cancelled"
    assert result.steps == ()
    assert result.usage.total_tokens == 0 and result.cost_usd == 0.0
    assert result.offline is True


async def test_cancelling_the_awaiting_task_cancels_run() -> None:
    orch = Orchestrator(agents("a", latency_s=5.0))
    task = asyncio.create_task(orch.run(TASK, strategy="single"))
    await asyncio.sleep(0.02)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert orch.registry.get("a").stats.in_flight == 0


async def test_run_timeout_gives_timed_out_with_partial_steps() -> None:
    fast = make_agent("fast", replies=[reply("fast")])
    slow = make_agent("slow", latency_s=5.0, replies=[reply("slow")])
    orch = Orchestrator([fast, slow])
    started = time.perf_counter()
    result = await orch.run(TASK, strategy="sequential", agents=["fast", "slow"], timeout_s=0.1)
    elapsed = time.perf_counter() - started
    assert 0.1 <= elapsed < 0.3
    assert result.status == "timed_out"
    assert result.error == "the run did not finish within 0.1s"
    assert [s.agent for s in result.steps] == ["fast"]
    assert result.output == ""
    assert slow.stats.failures == 0  # the run's timeout is not the agent's failure
    assert slow.state.value == "idle"


async def test_stream_timeout_ends_with_run_finished() -> None:
    orch = Orchestrator(agents("a", latency_s=5.0))
    events = await drain(orch.stream(TASK, strategy="single", timeout_s=0.05))
    assert isinstance(events[-1], RunFinished)
    assert events[-1].result.status == "timed_out"


# --- planning errors ---------------------------------------------------------------------------


@pytest.mark.parametrize("prompt", ["", "   \n\t"])
async def test_empty_prompt_is_refused(prompt: str) -> None:
    orch = Orchestrator(agents("a"))
    with pytest.raises(StrategyError, match="the prompt is empty"):
        await orch.run(prompt)
    with pytest.raises(StrategyError):
        orch.stream(prompt)


async def test_unknown_agent_is_refused() -> None:
    orch = Orchestrator(agents("a", "b"))
    with pytest.raises(UnknownAgent, match=r"unknown agent 'zed' \(known: a, b\)"):
        await orch.run(TASK, strategy="single", agents=["zed"])


async def test_unknown_strategy_is_refused_with_the_valid_names() -> None:
    orch = Orchestrator(agents("a"))
    with pytest.raises(StrategyError, match="unknown strategy 'magic'.*single, sequential, parallel"):
        orch.plan(TASK, strategy="magic")
    with pytest.raises(StrategyError, match=r"strategy 'parallel' has no option 'nonsense' \(it takes aggregate\)"):
        orch.plan(TASK, strategy="parallel", options={"nonsense": 1})
    with pytest.raises(StrategyError, match=r"strategy 'single' has no option 'lead' \(it takes none\)") as refused:
        orch.plan(TASK, strategy="single", options={"lead": "a"})
    assert refused.value.argument == "options" and "SingleStrategy" not in str(refused.value)


async def test_named_agent_without_the_capability_is_refused() -> None:
    # "coding" is a known capability (b has it), so the refusal is about the named agent lacking it
    orch = Orchestrator([make_agent("a", {"writing"}), make_agent("b", {"coding"})])
    with pytest.raises(StrategyError, match="agent\\(s\\) a lack the required capabilities coding"):
        orch.plan(TASK, strategy="single", agents=["a"], capabilities=["coding"])


# --- results -----------------------------------------------------------------------------------


async def test_run_result_to_dict() -> None:
    orch = Orchestrator(agents("a", "b"))
    result = await orch.run(TASK, strategy="parallel", agents=["a", "b"], task_id="task-123")
    data = result.to_dict()
    for key in ("task_id", "status", "strategy", "output", "steps", "usage", "cost_usd", "offline"):
        assert key in data
    assert data["task_id"] == "task-123"
    assert data["status"] == "completed"
    assert data["strategy"] == "parallel"
    assert data["output"] == result.output
    assert data["offline"] is True
    assert data["answered"] == ["a", "b"] and data["failed"] == {} and data["degraded"] is False
    assert len(data["steps"]) == 2
    for step in data["steps"]:
        for key in ("agent", "role", "output", "usage", "cost_usd", "duration_ms", "error"):
            assert key in step
        assert step["output"] == reply(step["agent"])
        assert step["role"] == "answer"
        assert step["error"] is None
        assert step["offline"] is True
        assert step["duration_ms"] >= 0
    total_in = sum(s["usage"]["input_tokens"] for s in data["steps"])
    total_out = sum(s["usage"]["output_tokens"] for s in data["steps"])
    assert data["usage"] == {"input_tokens": total_in, "output_tokens": total_out,
                             "total_tokens": total_in + total_out}
    assert total_in > 0 and total_out > 0


async def test_costs_are_summed_over_steps() -> None:
    from loomiq.models import Pricing

    priced = [
        make_agent(i, replies=[ScriptedReply("x", input_tokens=10, output_tokens=10)],
                   pricing=Pricing(input_per_token=0.01, output_per_token=0.02))
        for i in ("a", "b")
    ]
    result = await Orchestrator(priced).run(TASK, strategy="parallel", agents=["a", "b"])
    assert result.cost_usd == pytest.approx(0.6)
    assert [s.cost_usd for s in result.steps] == [pytest.approx(0.3)] * 2


async def test_task_ids_are_unique_by_default() -> None:
    orch = Orchestrator(agents("a"))
    first = await orch.run(TASK, strategy="single")
    second = await orch.run(TASK, strategy="single")
    assert first.task_id and second.task_id and first.task_id != second.task_id


# --- agents at run time ------------------------------------------------------------------------


async def test_add_and_remove_agents_at_run_time() -> None:
    orch = Orchestrator(agents("a", "b"))
    orch.add_agent(make_agent("c", replies=[reply("c")]))
    assert [a.id for a in orch.agents] == ["a", "b", "c"]
    result = await orch.run(TASK, strategy="single", agents=["c"])
    assert result.output == reply("c")
    removed = orch.remove_agent("a")
    assert removed.id == "a" and removed.enabled is False
    plan = orch.plan(TASK, strategy="parallel")
    assert [a.id for a in plan.agents] == ["b", "c"]
    with pytest.raises(UnknownAgent):
        await orch.run(TASK, strategy="single", agents=["a"])
    with pytest.raises(ValueError, match="already registered"):
        orch.add_agent(make_agent("b"))


async def test_removed_agent_finishes_its_call_in_flight() -> None:
    orch = Orchestrator([make_agent("a", latency_s=0.05, replies=[reply("a")]), *agents("b")])
    handle = orch.stream(TASK, strategy="single", agents=["a"])
    async with asyncio.timeout(2.0):
        async for event in handle:
            if isinstance(event, StepStarted):
                orch.remove_agent("a")
    result: RunResult = await handle.result()
    assert result.status == "completed"
    assert result.steps[0].agent == "a" and result.output == reply("a")
    follow_up = await orch.run(TASK, strategy="single")
    assert follow_up.steps[0].agent == "b"


async def test_aclose_closes_every_model() -> None:
    closed: list[str] = []
    team = agents("a", "b")
    for agent in team:
        async def aclose(agent_id: str = agent.id) -> None:
            closed.append(agent_id)

        agent.model.aclose = aclose  # type: ignore[method-assign]
    await Orchestrator(team).aclose()
    assert sorted(closed) == ["a", "b"]


async def test_context_dependencies_reach_every_agent_request() -> None:
    from loomiq import Agent, AgentConfig, ScriptedModel
    from loomiq.models import ModelRequest
    from loomiq.runtime import ExecutionContext, TaskSpec

    seen: list[ModelRequest] = []

    def reply(request: ModelRequest, index: int) -> str:
        seen.append(request)
        return "ok"

    agent = Agent(AgentConfig("a", "scripted", "s", system_prompt="You are a."), ScriptedModel(replies=reply))
    from loomiq.agents import AgentRegistry

    spec = TaskSpec("next step", context={"dependencies": {"t1": "forty-two"}})
    ctx = ExecutionContext("run", spec, AgentRegistry([agent]))
    step = await ctx.call("single", agent, "answer", "next step")
    assert step.ok
    roles = [m.role for m in seen[0].messages]
    assert roles == ["system", "system", "user"]
    assert seen[0].messages[0].content == "You are a."
    assert "Result of task t1:\nforty-two" in seen[0].messages[1].content


async def test_strategy_reason_says_the_caller_chose_a_named_strategy() -> None:
    orch = Orchestrator(agents("a", "b"))
    named = await orch.run(TASK, strategy="parallel", agents=["a", "b"])
    assert named.strategy_reason == "chosen by the caller"
    assert named.to_dict()["strategy_reason"] == "chosen by the caller"
    auto = await orch.run(TASK, agents=["a", "b"])
    assert auto.strategy_reason and auto.strategy_reason != "chosen by the caller"
