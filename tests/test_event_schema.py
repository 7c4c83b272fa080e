"""The one event schema: every event type round-trips through its JSON form, the fast encoder writes
what the generic one writes, and JSON that is no event gets a clear error."""

from __future__ import annotations

import json
from dataclasses import fields
from typing import Any, get_args

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from loomiq.models import Usage
from loomiq.runtime import (
    EVENT_TYPES,
    Event,
    EventDecodeError,
    RunResult,
    StepResult,
    UnknownEventType,
    WorkflowEvent,
    decode_event,
    encode_event,
    event_to_dict,
    type_of,
)
from loomiq.runtime.event_json import dumps
from loomiq.tools import ToolCallRecord

text = st.text(max_size=12)
names = st.tuples(text, text).map(lambda p: p[0] + p[1])
ints = st.integers(min_value=0, max_value=2**53)
# Costs and durations at the precision the JSON keeps (1e-10 USD, 1e-3 ms).
costs = st.floats(min_value=0, max_value=1e6, allow_nan=False).map(lambda x: round(x, 10))
durations = st.floats(min_value=0, max_value=1e9, allow_nan=False).map(lambda x: round(x, 3))
json_values = st.recursive(st.none() | st.booleans() | ints | text,
                           lambda inner: st.lists(inner, max_size=3) | st.dictionaries(text, inner, max_size=3),
                           max_leaves=6)

steps = st.builds(
    StepResult, names, names, text, text, st.builds(Usage, ints, ints), costs, durations,
    st.none() | text, st.integers(1, 9), st.lists(st.tuples(names, text), max_size=2).map(tuple), text, st.booleans(),
)
results = st.builds(
    lambda steps, **kw: RunResult(steps=tuple(steps), **kw), st.lists(steps, max_size=3),
    task_id=names, status=st.sampled_from(["completed", "failed", "cancelled", "timed_out"]), strategy=names,
    output=text, usage=st.builds(Usage, ints, ints), cost_usd=costs, duration_ms=durations, offline=st.booleans(),
    strategy_reason=text, error=st.none() | text, notes=st.lists(text, max_size=2).map(tuple),
)
records = st.builds(
    ToolCallRecord, names, st.integers(0, 9), st.integers(0, 9), names, names,
    st.dictionaries(text, json_values, max_size=3), st.sampled_from(["finished", "refused"]), text,
    st.none() | text, st.none() | st.sampled_from(["refused", "tool_error", "timeout"]),
    durations, st.lists(st.integers(0, 9), max_size=3).map(tuple),
    json_values,
)
_BY_ANNOTATION: dict[str, st.SearchStrategy[Any]] = {
    "str": text, "int": ints, "float": costs, "bool": st.booleans(), "str | None": st.none() | text,
    "tuple[str, ...]": st.lists(names, max_size=3).map(tuple), "tuple[int, ...]": st.lists(ints, max_size=3).map(tuple),
    "dict[str, int]": st.fixed_dictionaries({"input_tokens": ints, "output_tokens": ints, "total_tokens": ints}),
    "Mapping[str, Any]": st.dictionaries(text, json_values, max_size=3),
    "dict[str, Any]": st.dictionaries(text, json_values, max_size=3),
    "StepResult": steps, "RunResult": results, "ToolCallRecord": records,
    "int | None": st.none() | ints, "float | None": st.none() | costs, "str | int": text | ints,
    "dict[str, Any] | None": st.none() | st.dictionaries(text, json_values, max_size=3),
}


def _event_of(cls: type[Any]) -> st.SearchStrategy[Any]:
    args = {f.name: _BY_ANNOTATION[str(f.type)] for f in fields(cls) if f.name != "type"}
    return st.builds(cls, **args)


events = st.one_of(*(_event_of(cls) for cls in get_args(Event)))


def test_every_type_has_a_strategy_here() -> None:
    """A new event type with a field of a new kind fails here until the round trip covers it."""
    for cls in get_args(Event):
        for f in fields(cls):
            assert f.name == "type" or str(f.type) in _BY_ANNOTATION, (cls, f.name, f.type)
    assert len(set(EVENT_TYPES)) == len(get_args(Event))


@settings(max_examples=400, deadline=None)
@given(events)
def test_round_trip(event: Event) -> None:
    """Encoded then decoded (as text, and as a parsed dict with a task event's extra keys), an event
    comes back equal (a workflow run's event too); the fast encoder's JSON is the generic encoder's."""
    text_form = encode_event(event)
    assert json.loads(text_form) == json.loads(dumps(event_to_dict(event)))
    if hasattr(event, "to_dict"):  # the tool loop's events (below the runtime) have only the codec
        assert json.loads(text_form) == event.to_dict()
    assert decode_event(text_form) == event
    if not isinstance(event, get_args(WorkflowEvent)):  # a workflow run's frame nests them under "data"
        assert decode_event({**json.loads(text_form), "task_id": "t1", "seq": 3}) == event
    assert json.loads(text_form)["type"] == type_of(type(event)) == event.type


def test_unknown_type_is_a_clear_error() -> None:
    with pytest.raises(UnknownEventType, match="unknown event type 'approval_granted'; known types: run_started"):
        decode_event({"type": "approval_granted"})
    with pytest.raises(UnknownEventType, match="unknown event type None"):
        decode_event("{}")


@pytest.mark.parametrize(("data", "message"), [
    ("[1]", "must be a JSON object, not list"),
    ("{", "must be a JSON object"),
    ({"type": "task_queued"}, "a 'task_queued' event needs the field 'priority'"),
    ({"type": "task_started", "attempt": "1", "epoch": 1, "worker": "w", "resumed": False},
     "field 'attempt' of a 'task_started' event has a str value, expected int"),
    ({"type": "task_started", "attempt": True, "epoch": 1, "worker": "w", "resumed": False},
     "field 'attempt' of a 'task_started' event has a bool value"),
    ({"type": "step_finished", "run_id": "r"}, "a 'step_finished' event is malformed"),
    ({"type": "workflow_finished", "status": "failed", "error": None, "outputs": [1]},
     "field 'outputs' of a 'workflow_finished' event has a list value, expected an object"),
    ({"type": "approval_requested", "approval_id": "r.a.1", "node": "a", "round": 1, "message": "m",
      "approvers": {}, "require": True, "deadline": None},
     "field 'require' of a 'approval_requested' event has a bool"),
])
def test_malformed_events_are_clear_errors(data: Any, message: str) -> None:
    with pytest.raises(EventDecodeError, match=message.replace("(", r"\(").replace("[", r"\[")):
        decode_event(data)


def test_odd_values_fall_back_to_the_generic_encoder() -> None:
    """A value of an unexpected type (an int cost) is written as the generic encoder writes it."""
    from loomiq.runtime import StepFinished

    e = StepFinished("r", StepResult("k", "a", "role", cost_usd=1, duration_ms=2))  # type: ignore[arg-type]
    assert json.loads(encode_event(e)) == event_to_dict(e)


def test_a_steps_tool_calls_are_summaries() -> None:
    """In ``step_finished`` a step's tool calls are their summaries (`ToolCallRecord.to_dict`): decoded,
    each has the summary's fields, its turn and index read from its key; the full record travels in
    its ``tool_call_finished`` event."""
    from loomiq.runtime import StepFinished, ToolFinished

    call = ToolCallRecord("s1/turn/2/call/1", 2, 1, "call_9", "grep", {"q": "x"}, "finished", "y" * 500,
                          duration_ms=1.5, waited_for=(0,), data={"hits": 3})
    step = StepResult("s1", "a", "solo", "done", tool_calls=(call,))
    back = decode_event(encode_event(StepFinished("r", step)))
    assert isinstance(back, StepFinished)
    (summary,) = back.result.tool_calls
    assert summary.to_dict() == call.to_dict()
    assert (summary.turn, summary.index, summary.content) == (2, 1, call.excerpt)
    assert decode_event(encode_event(ToolFinished("r", "s1", "a", call))) == ToolFinished("r", "s1", "a", call)


def test_docs_events_md_lists_every_type_with_its_fields() -> None:
    """docs/events.md is what clients code against: each type has its row (type, class), naming every
    field of the class (a step's, a record's fields are the record's own, listed in their rows too)."""
    from pathlib import Path

    doc = (Path(__file__).resolve().parents[1] / "docs" / "events.md").read_text(encoding="utf-8")
    rows = {line.split("|")[1].strip(" `"): line for line in doc.splitlines() if line.startswith("| `")}
    for cls in get_args(Event):
        name = type_of(cls)
        assert name in rows, f"docs/events.md has no row for {name}"
        row = rows[name]
        assert f"`{cls.__name__}`" in row, (name, cls.__name__)
        row += "".join(rows[other] for other in rows if f"as `{other}`" in row)  # "as `tool_call_finished`"
        for f in fields(cls):
            if f.name != "type" and str(f.type) not in ("StepResult", "ToolCallRecord"):
                assert f"`{f.name}`" in row, f"docs/events.md: the {name} row does not name its field {f.name}"
