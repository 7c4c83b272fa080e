"""The offline scripted agents' tool calls: which tool they pick and the arguments they make."""

from __future__ import annotations

import contextlib
import io

from loomiq.models import Message, ModelRequest, ScriptedModel, ToolSpec
from loomiq.models._offline_tools import offline_tool_call

TASK = "Should we move our billing service to event sourcing?"


def spec(name: str, props: dict[str, object], read_only: bool = True) -> ToolSpec:
    return ToolSpec(name, "", {"type": "object", "properties": props, "required": list(props)}, read_only)


def ask(*tools: ToolSpec) -> ModelRequest:
    return ModelRequest((Message("system", "be brief"), Message("user", TASK + "\n\nAnswer in one line.")), tools)


def test_picks_the_first_read_only_tool_and_fills_its_schema() -> None:
    call = offline_tool_call(ask(spec("writer", {"path": {"type": "string"}}, read_only=False),
                                 spec("search", {"query": {"type": "string"}, "k": {"type": "integer"},
                                                 "mode": {"enum": ["bm25", "hybrid"]}})))
    assert call is not None
    assert (call.name, call.arguments) == ("search", {"query": TASK, "k": 1, "mode": "bm25"})


def test_python_code_counts_the_words_of_the_task() -> None:
    call = offline_tool_call(ask(spec("python", {"code": {"type": "string"}})))
    assert call is not None
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        exec(call.arguments["code"], {})  # noqa: S102 - the scripted model's own, fixed code
    assert out.getvalue() == f"{len(TASK.split())}\n"
    shell = offline_tool_call(ask(spec("shell", {"code": {"type": "string"}})))
    assert shell is not None and shell.arguments["code"].endswith("| wc -w")


def test_no_call_without_a_read_only_tool_or_after_results() -> None:
    assert offline_tool_call(ask()) is None
    assert offline_tool_call(ask(spec("writer", {"path": {"type": "string"}}, read_only=False))) is None
    done = ModelRequest((*ask().messages, Message("tool", "3", tool_call_id="x")), ask(spec("s", {})).tools)
    assert offline_tool_call(done) is None


async def test_the_offline_answer_without_tools_is_unchanged() -> None:
    model = ScriptedModel(persona="Lead")
    text = (await model.complete(ask())).text
    assert text.startswith("[offline answer from scripted agent Lead]")
    assert text.endswith("the decision hinges on cost, risk and reversibility. This text is scripted, not a model's.")
