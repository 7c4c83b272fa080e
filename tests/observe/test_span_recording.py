"""Spans recorded on the hot path as plain records and built into SDK spans at export: names, kinds, GenAI
attributes from their templates, parent links (nesting, a stored carrier, FastAPI's request span), error status,
sampling, and the pipe encoding of odd attribute values."""

from __future__ import annotations

import marshal
from collections.abc import Iterator
from types import SimpleNamespace
from typing import Any

import pytest
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode

from loomiq.observe import genai, shutdown, span, trace_carrier, tracing
from loomiq.observe._export import encodable


@pytest.fixture
def exported(monkeypatch: pytest.MonkeyPatch) -> Iterator[InMemorySpanExporter]:
    monkeypatch.delenv("OTEL_TRACES_SAMPLER", raising=False)
    shutdown()
    exporter = InMemorySpanExporter()
    assert tracing("t", exporter=exporter, set_global=False)
    yield exporter
    shutdown()


def _finish() -> None:
    shutdown()  # flushes the buffer and waits for the export thread


def test_genai_spans_nest_with_their_attributes(exported: InMemorySpanExporter) -> None:
    response = SimpleNamespace(model="m-1", usage=SimpleNamespace(input_tokens=3, output_tokens=5),
                               finish_reason="stop")
    with span("run_task single", {"loomiq.task_id": "t1", "loomiq.none": None}, kind="consumer"), \
            genai.invoke_workflow("wf", "r1"), genai.invoke_agent("a1", "Agent one", "scripted", "m", "s1"):
        with genai.chat("scripted", "m", "a1") as chat:
            genai.record_response(chat, response)
        with genai.execute_tool("search", "c1", "looks things up"):
            pass
    _finish()
    spans = {s.name: s for s in exported.get_finished_spans()}
    assert set(spans) == {"run_task single", "invoke_workflow wf", "invoke_agent a1", "chat m",
                          "execute_tool search"}
    run, wf, agent, chat_span, tool = (spans[n] for n in ("run_task single", "invoke_workflow wf",
                                                          "invoke_agent a1", "chat m", "execute_tool search"))
    assert len({s.context.trace_id for s in spans.values()}) == 1
    assert run.parent is None and wf.parent.span_id == run.context.span_id
    assert agent.parent.span_id == wf.context.span_id
    assert chat_span.parent.span_id == agent.context.span_id and tool.parent.span_id == agent.context.span_id
    assert run.kind is SpanKind.CONSUMER and chat_span.kind is SpanKind.CLIENT and agent.kind is SpanKind.INTERNAL
    assert dict(run.attributes) == {"loomiq.task_id": "t1"}
    assert dict(agent.attributes) == {
        "gen_ai.operation.name": "invoke_agent", "gen_ai.agent.id": "a1", "gen_ai.agent.name": "Agent one",
        "gen_ai.provider.name": "scripted", "gen_ai.request.model": "m", "loomiq.step": "s1"}
    assert dict(chat_span.attributes) == {
        "gen_ai.operation.name": "chat", "gen_ai.provider.name": "scripted", "gen_ai.request.model": "m",
        "gen_ai.agent.id": "a1", "gen_ai.response.model": "m-1", "gen_ai.usage.input_tokens": 3,
        "gen_ai.usage.output_tokens": 5, "gen_ai.response.finish_reasons": ["stop"]}
    assert tool.attributes["gen_ai.tool.description"] == "looks things up"
    assert tool.attributes["gen_ai.tool.call.id"] == "c1" and tool.attributes["gen_ai.tool.type"] == "function"
    assert dict(wf.attributes) == {"gen_ai.operation.name": "invoke_workflow", "gen_ai.workflow.name": "wf",
                                   "loomiq.workflow_run_id": "r1"}
    for s in spans.values():
        assert s.start_time <= s.end_time and s.resource.attributes["service.name"] == "t"
        assert s.status.status_code is StatusCode.UNSET


def test_a_carrier_makes_the_parent_in_another_place(exported: InMemorySpanExporter) -> None:
    with span("submit"):
        carrier = trace_carrier()
    assert carrier["traceparent"].startswith("00-") and carrier["traceparent"].endswith("-01")
    with span("run_task single", parent=carrier):
        pass
    with span("bad carrier", parent={"traceparent": "00-zz-yy-01"}):
        pass
    _finish()
    spans = {s.name: s for s in exported.get_finished_spans()}
    submit, run = spans["submit"], spans["run_task single"]
    assert run.context.trace_id == submit.context.trace_id and run.parent.span_id == submit.context.span_id
    assert spans["bad carrier"].parent is None
    assert spans["bad carrier"].context.trace_id != submit.context.trace_id


def test_an_exception_marks_the_span(exported: InMemorySpanExporter) -> None:
    with pytest.raises(RuntimeError), genai.chat("p", "m", "a"):
        raise RuntimeError("the model fell over")
    _finish()
    (failed,) = exported.get_finished_spans()
    assert failed.status.status_code is StatusCode.ERROR
    assert failed.status.description == "RuntimeError: the model fell over"
    (event,) = failed.events
    assert event.name == "exception" and event.attributes["exception.type"] == "RuntimeError"
    assert "the model fell over" in event.attributes["exception.stacktrace"]


def test_not_sampled_records_nothing_but_carries_the_flag(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OTEL_TRACES_SAMPLER", "parentbased_always_off")
    shutdown()
    exporter = InMemorySpanExporter()
    tracing("t", exporter=exporter, set_global=False)
    try:
        with span("root"), genai.chat("p", "m", "a"):
            assert trace_carrier()["traceparent"].endswith("-00")
        with span("child of a sampled parent", parent={"traceparent": f"00-{'1' * 32}-{'2' * 16}-01"}):
            pass
    finally:
        shutdown()
    (only,) = exporter.get_finished_spans()  # a parent's decision is followed
    assert only.name == "child of a sampled parent" and only.context.trace_id == int("1" * 32, 16)


def test_a_ratio_sampler_decides_on_the_trace_id(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OTEL_TRACES_SAMPLER", "traceidratio")
    monkeypatch.setenv("OTEL_TRACES_SAMPLER_ARG", "0.5")
    shutdown()
    exporter = InMemorySpanExporter()
    tracing("t", exporter=exporter, set_global=False)
    try:
        for _ in range(400):
            with span("r"):
                pass
    finally:
        shutdown()
    spans = exporter.get_finished_spans()
    assert 120 < len(spans) < 280
    assert all(s.context.trace_id & ((1 << 64) - 1) < 1 << 63 for s in spans)


def test_off_is_one_shared_no_op() -> None:
    shutdown()
    assert span("a") is span("b") and genai.chat("p", "m", "a") is genai.execute_tool("t", "c")
    assert trace_carrier() == {}


def test_odd_attribute_values_cross_the_pipe_as_text() -> None:
    record: tuple[Any, ...] = ("s", None, {"ok": 1, "odd": object()}, {"list": [1, object()]}, 0, 1, 2, 0, 1, 2, 0,
                               None, None, None)
    decoded = marshal.loads(encodable([record]))
    assert decoded[0][2]["ok"] == 1 and decoded[0][2]["odd"].startswith("<object object")
    assert decoded[0][3]["list"][0] == 1 and isinstance(decoded[0][3]["list"][1], str)


def test_an_agent_span_binds_the_agent_log_id(exported: InMemorySpanExporter) -> None:
    from loomiq.observe import bind_ids, current_ids

    with bind_ids(task_id="t1"):
        with genai.invoke_agent("a1", "A", "p", "m", "s") as agent:
            assert dict(current_ids()) == {"task_id": "t1", "agent": "a1"}
            assert agent is not None and agent.is_recording()
        assert dict(current_ids()) == {"task_id": "t1"}
    with pytest.raises(ValueError), genai.invoke_agent("a2", "A", "p", "m", "s"):
        raise ValueError("x")
    assert dict(current_ids()) == {}
