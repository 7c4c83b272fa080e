"""The JSON form of every event, defined once: `event_to_dict` / `encode_event` write it,
`decode_event` reads it back into the same typed event.

Every event's JSON is an object whose ``type`` names its class, then its fields in declaration order
(tuples as arrays). Some fields hold records: a `StepFinished` carries its `StepResult`'s fields
beside ``run_id`` (flattened), a `RunFinished` its `RunResult` under ``result`` (`RunResult.to_dict`;
the in-process ``outputs`` are not part of it), a tool call's event its `ToolCallRecord`'s fields
beside ``step`` (its key as ``call``; `call_to_dict`). A step's ``tool_calls`` are summaries (each
call's result cut to an excerpt): the ``tool_call_finished`` events carry each call in full. Costs
are written to 1e-10 USD and durations to 1e-3 ms, as the results' ``to_dict`` round them.

`encode_event` has a fast path for the events every run (and every workflow node) logs (no dict is built, no float goes
through a Python callback); the rest, and any value of an unexpected type, go through
``dumps(event_to_dict(event))``. Both give the same JSON (tests compare them over every type).
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Mapping
from dataclasses import MISSING, fields
from json.encoder import encode_basestring
from typing import Any

from ..models import Usage
from ..tools.records import ToolCallRecord
from .events import (
    EVENT_CLASSES,
    Event,
    NodeFinished,
    NodeStarted,
    RunFinished,
    RunStarted,
    StepDelta,
    StepFinished,
    StepStarted,
    TaskFinished,
    TaskQueued,
    TaskStarted,
    ToolFinished,
    ToolRefused,
)
from .result import RunResult, StepResult

dumps = json.JSONEncoder(ensure_ascii=False, separators=(",", ":")).encode
loads = json.loads

json_str = _str = encode_basestring
"""A str as a JSON string literal (the C encoder `dumps` uses; it raises TypeError for a non-str)."""


class EventDecodeError(ValueError):
    """JSON that is not an event of the closed union: the message says what is wrong."""


class UnknownEventType(EventDecodeError):
    """An event whose ``type`` no event class has."""


# -- records held by events ---------------------------------------------------------------------


def step_to_dict(s: StepResult) -> dict[str, Any]:
    """A step's JSON fields (`StepResult.to_dict`)."""
    return s.to_dict()


def step_from_dict(d: Mapping[str, Any]) -> StepResult:
    """The step `step_to_dict` wrote (costs and durations at the precision it keeps)."""
    u = d.get("usage") or {}
    return StepResult(
        d["key"], d["agent"], d["role"], d.get("output", ""),
        Usage(u.get("input_tokens", 0), u.get("output_tokens", 0)), d.get("cost_usd", 0.0),
        d.get("duration_ms", 0.0), d.get("error"), d.get("attempts", 1),
        tuple((f["agent"], f["error"]) for f in d.get("failed_over_from") or ()), d.get("model", ""),
        d.get("offline", False), tuple(_call_summary_from_dict(c) for c in d.get("tool_calls") or ()),
    )


def _call_summary_from_dict(d: Mapping[str, Any]) -> ToolCallRecord:
    """A step's tool call from its summary (`ToolCallRecord.to_dict`: the result's excerpt as its
    content; no provider call id nor structured data; turn and index read from its key)."""
    turn, index = _turn_index(d["key"])
    return ToolCallRecord(
        d["key"], turn, index, "", d["name"], dict(d.get("arguments") or {}), d["status"], d.get("result", ""),
        d.get("error"), d.get("error_kind"), d.get("duration_ms", 0.0), tuple(d.get("waited_for") or ()),
    )


def _turn_index(key: str) -> tuple[int, int]:
    """``(t, i)`` of a call key ending ``turn/<t>/call/<i>`` ((0, 0) for another key)."""
    parts = key.rsplit("/", 4)
    if len(parts) >= 4 and parts[-4] == "turn" and parts[-2] == "call" and parts[-3].isdigit() and parts[-1].isdigit():
        return int(parts[-3]), int(parts[-1])
    return 0, 0


def call_to_dict(r: ToolCallRecord) -> dict[str, Any]:
    """A tool call event's record fields: its summary (`ToolCallRecord.to_dict`, the key as ``call``)
    then what the summary leaves out (``turn``, ``index``, ``call_id``, the full ``content``, ``data``)."""
    d = r.to_dict()
    d = {"call": d.pop("key"), **d}
    d.update(turn=r.turn, index=r.index, call_id=r.call_id, content=r.content, data=r.data)
    return d


def call_from_dict(d: Mapping[str, Any]) -> ToolCallRecord:
    """The record `call_to_dict` wrote (its duration at the precision it keeps)."""
    key = d["call"]
    turn, index = _turn_index(key)
    return ToolCallRecord(
        key, d.get("turn", turn), d.get("index", index), d.get("call_id", ""), d["name"],
        dict(d.get("arguments") or {}), d["status"], d.get("content", d.get("result", "")), d.get("error"),
        d.get("error_kind"), d.get("duration_ms", 0.0), tuple(d.get("waited_for") or ()), d.get("data"),
    )


def result_from_dict(d: Mapping[str, Any]) -> RunResult:
    """The run result `RunResult.to_dict` wrote (without ``outputs``, which it does not carry)."""
    u = d.get("usage") or {}
    return RunResult(
        task_id=d["task_id"], status=d["status"], strategy=d["strategy"], output=d["output"],
        steps=tuple(step_from_dict(s) for s in d.get("steps") or ()),
        usage=Usage(u.get("input_tokens", 0), u.get("output_tokens", 0)), cost_usd=d.get("cost_usd", 0.0),
        duration_ms=d.get("duration_ms", 0.0), offline=d.get("offline", False),
        strategy_reason=d.get("strategy_reason", ""), error=d.get("error"), notes=tuple(d.get("notes") or ()),
    )


# -- the generic codec: each class's fields, read once --------------------------------------------

_SCALARS: dict[str, tuple[type, ...]] = {
    "str": (str,), "int": (int,), "float": (int, float), "bool": (bool,),
    "str | None": (str, type(None)), "int | None": (int, type(None)), "float | None": (int, float, type(None)),
    "str | int": (str, int),
}
_RECORDS: dict[str, tuple[Callable[[Any], Any], Callable[[Any], Any]]] = {
    "StepResult": (step_to_dict, step_from_dict),
    "RunResult": (RunResult.to_dict, result_from_dict),
    "ToolCallRecord": (call_to_dict, call_from_dict),
}


class _Field:
    __slots__ = ("name", "kind", "default", "check")

    def __init__(self, name: str, annotation: str, default: Any) -> None:
        self.name = name
        self.default = default
        self.check = _SCALARS.get(annotation)
        if annotation in _RECORDS:
            self.kind = annotation
        elif annotation.startswith("tuple["):
            self.kind = "tuple"
        elif annotation.startswith(("dict[", "Mapping[")):
            self.kind = "dict?" if annotation.endswith(" | None") else "dict"
        else:
            self.kind = "value"


def _plan(cls: type[Any]) -> tuple[_Field, ...]:
    out = []
    for f in fields(cls):
        if f.name == "type":
            continue
        default = f.default if f.default is not MISSING else (
            f.default_factory if f.default_factory is not MISSING else MISSING)
        out.append(_Field(f.name, str(f.type), default))
    return tuple(out)


_PLANS: dict[type[Any], tuple[_Field, ...]] = {cls: _plan(cls) for cls in EVENT_CLASSES.values()}
_FLAT = frozenset({StepFinished, ToolFinished, ToolRefused})
"""Events whose record's fields are written beside their own (not under the field's name)."""


def event_to_dict(event: Event) -> dict[str, Any]:
    """An event's JSON form as a dict: ``type`` first, then its fields."""
    cls = type(event)
    d: dict[str, Any] = {"type": event.type}
    for f in _PLANS[cls]:
        v = getattr(event, f.name)
        if f.kind == "tuple":
            v = list(v)
        elif f.kind == "dict" or f.kind == "dict?" and v is not None:
            v = dict(v)
        elif f.kind in _RECORDS:
            v = _RECORDS[f.kind][0](v)
            if cls in _FLAT:  # a step's or a tool call's fields sit beside run_id
                d.update(v)
                continue
        d[f.name] = v
    return d


def decode_event(data: Mapping[str, Any] | str | bytes) -> Event:
    """The typed event of a JSON form (text or parsed; other keys, such as a task event's ``task_id``
    and ``seq``, are ignored). Raises `UnknownEventType` or `EventDecodeError` saying what is wrong."""
    if isinstance(data, str | bytes):
        try:
            data = loads(data)
        except ValueError as exc:
            raise EventDecodeError(f"an event must be a JSON object: {exc}") from None
    if not isinstance(data, Mapping):
        raise EventDecodeError(f"an event must be a JSON object, not {type(data).__name__}")
    type_ = data.get("type")
    cls = EVENT_CLASSES.get(type_) if isinstance(type_, str) else None
    if cls is None:
        raise UnknownEventType(f"unknown event type {type_!r}; known types: {', '.join(EVENT_CLASSES)}")
    kwargs: dict[str, Any] = {}
    try:
        for f in _PLANS[cls]:
            if f.kind in _RECORDS and cls in _FLAT:
                kwargs[f.name] = _RECORDS[f.kind][1](data)
                continue
            if f.name not in data:
                if f.default is MISSING:
                    raise EventDecodeError(f"a {type_!r} event needs the field {f.name!r}")
                continue
            v = data[f.name]
            if f.check is not None:
                if not isinstance(v, f.check) or (v is True or v is False) and bool not in f.check:
                    raise EventDecodeError(f"field {f.name!r} of a {type_!r} event has a {type(v).__name__} "
                                           f"value, expected {' or '.join(t.__name__ for t in f.check)}")
            elif f.kind == "tuple":
                v = tuple(v)
            elif f.kind == "dict" or f.kind == "dict?" and v is not None:
                if not isinstance(v, Mapping):
                    raise EventDecodeError(f"field {f.name!r} of a {type_!r} event has a {type(v).__name__} "
                                           "value, expected an object")
                v = dict(v)
            elif f.kind in _RECORDS:
                v = _RECORDS[f.kind][1](v)
            kwargs[f.name] = v
    except (KeyError, TypeError, AttributeError) as exc:
        raise EventDecodeError(f"a {type_!r} event is malformed: {type(exc).__name__} {exc}") from None
    return cls(**kwargs)  # type: ignore[no-any-return]


# -- the fast path -----------------------------------------------------------------------------


def _val(v: Any) -> str:
    """A scalar as JSON, as `dumps` writes it."""
    t = type(v)
    if t is str:
        return _str(v)
    if t is int:
        return int.__repr__(v)
    if t is float and math.isfinite(v):
        return float.__repr__(v)
    if v is None:
        return "null"
    if v is True:
        return "true"
    if v is False:
        return "false"
    return dumps(v)


def _usage_json(u: Usage) -> str:
    return (f'{{"input_tokens":{_val(u.input_tokens)},"output_tokens":{_val(u.output_tokens)},'
            f'"total_tokens":{_val(u.total_tokens)}}}')


json_value = _val
"""A scalar as JSON, as `dumps` writes it (a fast `dumps` for str, int, float, bool and None)."""

_INF = math.inf


def _tool_calls_json(s: StepResult) -> str:
    calls = s.tool_calls
    return "[" + ",".join(dumps(c.to_dict()) for c in calls) + "]" if calls else "[]"


def step_fields_json(s: StepResult) -> str:
    """``dumps(s.to_dict())`` without its braces (raises TypeError or ValueError for odd values)."""
    fo = s.failed_over_from
    failed_over = "[" + ",".join(f'{{"agent":{_str(a)},"error":{_str(e)}}}' for a, e in fo) + "]" if fo else "[]"
    u = s.usage
    tin, tout = u.input_tokens, u.output_tokens
    cost, duration = round(s.cost_usd, 10), round(s.duration_ms, 3)
    attempts, error, offline = s.attempts, s.error, s.offline
    if (type(tin) is int and type(tout) is int and type(cost) is float and -_INF < cost < _INF
            and type(duration) is float and -_INF < duration < _INF and type(attempts) is int
            and (offline is True or offline is False)):
        # The usual types, written without a call per value (ints and finite floats as `dumps` does).
        return (
            f'"key":{_str(s.key)},"agent":{_str(s.agent)},"role":{_str(s.role)},"model":{_str(s.model)},'
            f'"output":{_str(s.output)},"usage":{{"input_tokens":{tin},"output_tokens":{tout},'
            f'"total_tokens":{tin + tout}}},"cost_usd":{cost!r},"duration_ms":{duration!r},'
            f'"error":{"null" if error is None else _str(error)},"attempts":{attempts},'
            f'"failed_over_from":{failed_over},"offline":{"true" if offline else "false"},'
            f'"tool_calls":{_tool_calls_json(s)}'
        )
    return (
        f'"key":{_str(s.key)},"agent":{_str(s.agent)},"role":{_str(s.role)},"model":{_str(s.model)},'
        f'"output":{_str(s.output)},"usage":{_usage_json(u)},"cost_usd":{_val(cost)},'
        f'"duration_ms":{_val(duration)},"error":{_val(error)},"attempts":{_val(attempts)},'
        f'"failed_over_from":{failed_over},"offline":{_val(offline)},"tool_calls":{_tool_calls_json(s)}'
    )


def result_to_json(r: RunResult, steps_json: Mapping[int, tuple[StepResult, str]] | None = None) -> str:
    """``dumps(r.to_dict())``, faster (falls back to it for values of unexpected types). `steps_json`:
    the fields of steps already encoded (by ``id()``, with the step), reused."""
    try:
        if steps_json:
            parts = []
            for s in r.steps:
                done = steps_json.get(id(s))
                parts.append("{" + (done[1] if done is not None and done[0] is s else step_fields_json(s)) + "}")
            steps = ",".join(parts)
        else:
            steps = ",".join("{" + step_fields_json(s) + "}" for s in r.steps)
        failed = ",".join(f"{_str(a)}:{_str(e)}" for a, e in r.failed.items())
        return (
            f'{{"task_id":{_str(r.task_id)},"status":{_str(r.status)},"strategy":{_str(r.strategy)},'
            f'"strategy_reason":{_str(r.strategy_reason)},"output":{_str(r.output)},"steps":[{steps}],'
            f'"usage":{_usage_json(r.usage)},"cost_usd":{_val(round(r.cost_usd, 10))},'
            f'"duration_ms":{_val(round(r.duration_ms, 3))},"answered":[{",".join(map(_str, r.answered))}],'
            f'"failed":{{{failed}}},"degraded":{_val(r.degraded)},"error":{_val(r.error)},'
            f'"notes":[{",".join(map(_str, r.notes))}],"offline":{_val(r.offline)}}}'
        )
    except (TypeError, ValueError):
        return dumps(r.to_dict())


def step_finished_json(run_id: str, step_fields: str) -> str:
    """A ``step_finished`` event's JSON from its step's fields (`step_fields_json`)."""
    return f'{{"type":"step_finished","run_id":{_str(run_id)},{step_fields}}}'


def run_finished_json(run_id: str, result_json: str) -> str:
    """A ``run_finished`` event's JSON from its result's (`result_to_json`)."""
    return f'{{"type":"run_finished","run_id":{_str(run_id)},"result":{result_json}}}'


def text_delta_json(run_id: str, step: str, agent: str, text: str) -> str:
    """A ``text_delta`` event's JSON, from its fields (no event object needed)."""
    return (f'{{"type":"text_delta","run_id":{_str(run_id)},"step":{_str(step)},"agent":{_str(agent)},'
            f'"text":{_str(text)}}}')


def _run_started(e: RunStarted) -> str:
    return (f'{{"type":"run_started","run_id":{_str(e.run_id)},"strategy":{_str(e.strategy)},'
            f'"reason":{_str(e.reason)},"agents":[{",".join(map(_str, e.agents))}],"offline":{_val(e.offline)}}}')


def _step_started(e: StepStarted) -> str:
    return (f'{{"type":"step_started","run_id":{_str(e.run_id)},"step":{_str(e.step)},"agent":{_str(e.agent)},'
            f'"role":{_str(e.role)}}}')


def _task_started(e: TaskStarted) -> str:
    if type(e.attempt) is not int or type(e.epoch) is not int:
        raise TypeError
    return (f'{{"type":"task_started","attempt":{e.attempt},"epoch":{e.epoch},'
            f'"worker":{_str(e.worker)},"resumed":{_val(e.resumed)}}}')


_USAGE_KEYS = ["input_tokens", "output_tokens", "total_tokens"]


def _task_finished(e: TaskFinished) -> str:
    u = e.usage
    if type(u) is not dict or list(u) != _USAGE_KEYS:
        raise TypeError
    return (f'{{"type":"task_finished","status":{_str(e.status)},"error":{_val(e.error)},'
            f'"output":{_str(e.output)},"usage":{{"input_tokens":{_val(u["input_tokens"])},'
            f'"output_tokens":{_val(u["output_tokens"])},"total_tokens":{_val(u["total_tokens"])}}},'
            f'"cost_usd":{_val(e.cost_usd)},"dead":{_val(e.dead)}}}')


def _node_started(e: NodeStarted) -> str:
    if type(e.attempt) is not int:
        raise TypeError
    return (f'{{"type":"node_started","node":{_str(e.node)},"attempt":{e.attempt},"index":{_val(e.index)},'
            f'"task_id":{_str(e.task_id)}}}')


def _node_finished(e: NodeFinished) -> str:
    if type(e.attempt) is not int:
        raise TypeError
    return (f'{{"type":"node_finished","node":{_str(e.node)},"attempt":{e.attempt},"index":{_val(e.index)},'
            f'"status":{_str(e.status)},"error":{_val(e.error)}}}')


_FAST: dict[type[Any], Callable[[Any], str]] = {
    RunStarted: _run_started,
    StepStarted: _step_started,
    StepDelta: lambda e: text_delta_json(e.run_id, e.step, e.agent, e.text),
    StepFinished: lambda e: step_finished_json(e.run_id, step_fields_json(e.result)),
    RunFinished: lambda e: run_finished_json(e.run_id, result_to_json(e.result)),
    TaskQueued: lambda e: f'{{"type":"task_queued","priority":{_str(e.priority)}}}',
    TaskStarted: _task_started,
    TaskFinished: _task_finished,
    NodeStarted: _node_started,
    NodeFinished: _node_finished,
}


def encode_event(event: Event) -> str:
    """An event's JSON text: ``dumps(event_to_dict(event))``, faster for the events every run logs."""
    enc = _FAST.get(type(event))
    if enc is not None:
        try:
            return enc(event)
        except (TypeError, ValueError):
            pass
    return dumps(event_to_dict(event))
