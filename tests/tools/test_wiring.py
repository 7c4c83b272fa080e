"""The tool loop inside real runs: every strategy's agent calls go through it, with each agent's
allow-list narrowed by the run's `tools`, typed events, `steps[].tool_calls`, max rounds, the
offline default agents, and durable runs (the result and the journal keep the calls)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from loomiq import Orchestrator
from loomiq.agents import Agent, AgentConfig
from loomiq.config import default_agents
from loomiq.engine._codec import step_from_json, step_to_json
from loomiq.models import ModelRequest, ScriptedModel, ScriptedReply
from loomiq.runtime import InvalidOptions, ToolFinished, ToolRefused, ToolStarted, UnknownTools
from loomiq.tools import ToolRegistry, tool

RAN: list[str] = []


@tool
def add(a: int, b: int) -> int:
    """Add two integers."""
    RAN.append("add")
    return a + b


@tool
def wipe() -> str:
    """Destroys things: never allowed to these agents."""
    RAN.append("wipe")
    return "wiped"


@pytest.fixture(autouse=True)
def _reset() -> None:
    RAN.clear()


def agent(ident: str, replies: object, tools: tuple[str, ...] = ("add",), rounds: int = 8) -> Agent:
    return Agent(AgentConfig(ident, "scripted", "s", tools=tools, max_tool_rounds=rounds),
                 ScriptedModel(replies))  # type: ignore[arg-type]


def calls_then_answers(*calls: tuple[str, dict[str, object]]):
    """A model that asks for `calls` once, then answers with what the tools returned."""

    def reply(request: ModelRequest, index: int) -> ScriptedReply | str:
        results = [m.content for m in request.messages if m.role == "tool"]
        if not results:
            return ScriptedReply.calling(*calls)
        return "answer: " + "; ".join(results)

    return reply


def orchestrator(*agents: Agent) -> Orchestrator:
    return Orchestrator(agents, tools=ToolRegistry([add, wipe], builtins=False))


async def test_a_run_calls_the_allowed_tool_and_reports_it_in_steps_and_events() -> None:
    orch = orchestrator(agent("a", calls_then_answers(("add", {"a": 2, "b": 3}))))
    handle = orch.stream("sum", strategy="single")
    events = [e async for e in handle]
    result = await handle.result()
    assert result.status == "completed"
    assert result.output == "answer: 5"
    (step,) = result.steps
    (record,) = step.tool_calls
    assert (record.name, dict(record.arguments), record.content, record.error) == ("add", {"a": 2, "b": 3}, "5", None)
    data = result.to_dict()["steps"][0]["tool_calls"][0]
    assert data["name"] == "add" and data["result"] == "5" and data["duration_ms"] >= 0
    assert data["waited_for"] == [] and data["key"] == "single/turn/0/call/0"
    started = [e for e in events if isinstance(e, ToolStarted)]
    finished = [e for e in events if isinstance(e, ToolFinished)]
    assert [(e.step, e.agent, e.name) for e in started] == [("single", "a", "add")]
    assert finished[0].to_dict()["type"] == "tool_call_finished" and finished[0].to_dict()["duration_ms"] >= 0
    assert RAN == ["add"]


@pytest.mark.parametrize("strategy", ["single", "sequential", "parallel", "consensus", "adaptive"])
async def test_every_strategy_runs_its_agent_calls_through_the_tool_loop(strategy: str) -> None:
    team = [agent(f"a{i}", calls_then_answers(("add", {"a": i, "b": 1}))) for i in range(3)]
    result = await orchestrator(*team).run("sum things", strategy=strategy)
    assert result.status == "completed", result.error
    assert result.steps and all(s.tool_calls and s.tool_calls[0].name == "add" for s in result.steps)
    assert all(s.tool_calls[0].error is None for s in result.steps)


async def test_a_tool_outside_the_allow_list_is_refused_never_run_and_recorded() -> None:
    # The prompt-injection shape: the model asks for a registered tool its agent may not use.
    orch = orchestrator(agent("a", calls_then_answers(("wipe", {}), ("add", {"a": 1, "b": 1}))))
    handle = orch.stream("tidy up", strategy="single")
    events = [e async for e in handle]
    result = await handle.result()
    refused, ran = result.steps[0].tool_calls
    assert refused.status == "refused" and refused.error_kind == "refused" and "not allowed" in (refused.error or "")
    assert ran.content == "2"
    assert RAN == ["add"]
    assert [e.record.name for e in events if isinstance(e, ToolRefused)] == ["wipe"]
    assert result.to_dict()["steps"][0]["tool_calls"][0]["status"] == "refused"


async def test_the_run_narrows_the_agents_allow_list() -> None:
    orch = orchestrator(agent("a", calls_then_answers(("add", {"a": 1, "b": 2})), tools=("add", "wipe")))
    result = await orch.run("sum", strategy="single", tools=["wipe"])
    (record,) = result.steps[0].tool_calls
    assert record.status == "refused" and "allowed: wipe" in (record.error or "")
    assert RAN == []


async def test_a_run_naming_no_tool_at_all_is_refused_before_it_starts() -> None:
    orch = orchestrator(agent("a", "hi"))
    with pytest.raises(UnknownTools, match="'nope'"):
        await orch.run("x", strategy="single", tools=["nope"])
    with pytest.raises(InvalidOptions, match="tools"):
        await orch.run("x", strategy="single", tools=[""])


async def test_too_many_tool_rounds_end_the_call_with_a_clear_error() -> None:
    forever = agent("a", [ScriptedReply.calling(("add", {"a": 1, "b": 1}))], rounds=2)
    result = await orchestrator(forever).run("loop", strategy="single")
    (step,) = result.steps
    assert result.status == "failed"
    assert step.error is not None and "max_tool_rounds=2" in step.error
    assert len(step.tool_calls) == 2 and RAN == ["add", "add"]


async def test_agents_without_an_allow_list_are_offered_no_tools() -> None:
    seen: list[int] = []

    def reply(request: ModelRequest, index: int) -> str:
        seen.append(len(request.tools))
        return "plain"

    result = await orchestrator(agent("a", reply, tools=())).run("x", strategy="single")
    assert result.output == "plain" and seen == [0] and result.steps[0].tool_calls == ()


async def test_offline_default_agents_call_a_tool_only_when_the_run_allows_tools() -> None:
    orch = Orchestrator(default_agents())
    plain = await orch.run("Count the words here", strategy="single")
    assert plain.steps[0].tool_calls == () and "I called tool" not in plain.output
    # web_search is unavailable here (no backend configured): still a real call, its error goes back.
    with_tools = await orch.run("Count the words here", strategy="single", tools=["web_search"])
    (record,) = with_tools.steps[0].tool_calls
    assert record.name == "web_search" and record.status == "finished"
    assert "I called tool web_search" in with_tools.output and with_tools.offline


async def test_a_durable_run_keeps_tool_calls_in_its_result_and_journal(tmp_path: Path) -> None:
    orch = orchestrator(agent("a", calls_then_answers(("add", {"a": 4, "b": 4}))))
    await orch.open_engine(f"sqlite:///{tmp_path / 'x.db'}")
    try:
        result = await orch.run("sum", strategy="single", durable=True, tools=["add"])
        task = await orch.get_task(result.task_id)
    finally:
        await orch.aclose()
    assert task.request.tools == ("add",)
    stored = task.result
    assert stored is not None
    assert stored["steps"][0]["tool_calls"][0]["result"] == "8"
    assert json.loads(json.dumps(stored)) == result.to_dict() | {"duration_ms": stored["duration_ms"]}
    step = result.steps[0]
    assert step_from_json(step_to_json(step)) == step


def test_tool_loop_journal_entries_come_back_exactly() -> None:
    from loomiq.engine._codec import journal_entry_from_json, tool_entry_to_json
    from loomiq.models import ModelResponse, ToolCall, Usage
    from loomiq.tools import ToolCallRecord

    turn = ModelResponse("", "m", Usage(3, 4), "tool_calls",
                         (ToolCall("c1", "add", {"a": 1}), ToolCall("c2", "x", {}, "{bad", "not JSON")), 0.25, "p")
    record = ToolCallRecord("s/turn/0/call/0", 0, 0, "c1", "add", {"a": 1}, "finished", "2", None, None, 1.5, (1,),
                            {"n": 2})
    assert journal_entry_from_json(tool_entry_to_json(turn)) == turn
    assert journal_entry_from_json(tool_entry_to_json(record)) == record


async def test_calls_writing_the_same_file_wait_for_each_other_and_say_so() -> None:
    from loomiq.runtime import ToolSerialized

    @tool(writes=["file:{path}"])
    async def save(path: str, text: str) -> str:
        """Write a file."""
        return f"saved {path}"

    two_writes = calls_then_answers(("save", {"path": "a.txt", "text": "1"}), ("save", {"path": "a.txt", "text": "2"}),
                                    ("save", {"path": "b.txt", "text": "3"}))
    writer = Agent(AgentConfig("w", "scripted", "s", tools=("save",)), ScriptedModel(two_writes))
    orch = Orchestrator([writer], tools=[save])
    handle = orch.stream("write", strategy="single")
    events = [e async for e in handle]
    result = await handle.result()
    first, second, third = result.steps[0].tool_calls
    assert (first.waited_for, second.waited_for, third.waited_for) == ((), (0,), ())
    assert [(e.name, e.waits_for) for e in events if isinstance(e, ToolSerialized)] == [("save", (0,))]
    assert result.to_dict()["steps"][0]["tool_calls"][1]["waited_for"] == [0]


async def test_a_stand_in_keeps_the_tool_calls_of_the_agent_it_took_over_from() -> None:
    from loomiq.agents import RetryPolicy

    once = RetryPolicy(max_attempts=1)
    caps = frozenset({"math"})
    first = Agent(AgentConfig("first", "scripted", "s", tools=("add",), capabilities=caps, retry=once),
                  ScriptedModel(calls_then_answers(("add", {"a": 1, "b": 1})), failures={1: "server_error"}))
    second = Agent(AgentConfig("second", "scripted", "s", tools=("add",), capabilities=caps),
                   ScriptedModel(calls_then_answers(("add", {"a": 2, "b": 2}))))
    result = await orchestrator(first, second).run("sum", strategy="single", capabilities=["math"])
    (step,) = result.steps
    assert step.agent == "second" and [a for a, _ in step.failed_over_from] == ["first"]
    assert [c.content for c in step.tool_calls] == ["2", "4"] and RAN == ["add", "add"]
    assert step.output == "answer: 4"
